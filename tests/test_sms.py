"""SMS alerts and commands (firmware/sms.py): texts are read in PDU mode, only a full
authorised international number with the PIN commands the pump, and a command goes
through the pump state machine like the button, so no sequence of texts and inputs
breaks a pump invariant (the driver of test_pump_props checks them on the relay
timeline)."""

import re

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from test_pump_props import SWITCHES, Driver, HypChooser, RandChooser, draw_settings

from jkfw import sms as fsms
from jkfw.modem import RX_BYTES, Modem
from jkfw.pdu import deliver
from jkfw.sms import CMD_HOUR, REPLY_DAY, Sms, parse
from jksim.modem import deliver_pdu, fit
from jksim.vclock import VirtualClock

T0 = 1772303400
OWNER = "+91 98765 43210"
OWNER164 = b"+919876543210"
PIN = "4821"
CFG = {
    "sms_to": ["+919876543210"],
    "sms_allow": [OWNER],
    "sms_pin": PIN,
    "sms_max_day": 10,
}
TEXTS = (b"PUMP ON 4821", b"pump off 4821", b" Auto 4821 ", b"status 4821",
         b"PUMP  ON  4821", b"PUMP ON", b"pump off 1234", b"pump", b"", b"4821",
         b"PUMP ON NOW 4821", b"\xff\x00", b"off 4821")  # fmt: skip
SENDERS = (OWNER164, b"919876543210", b"09876543210", b"9876543210",
           b"+919876543211", b"+19876543210", b"+449876543210", b"0009876543210",
           b"+15550001", b"", None)  # fmt: skip


class H:
    modem = None


def test_parse_and_numbers():
    assert parse(b"  pump   off 4821 ", b"4821") == (2, True)
    assert parse(b"AUTO 4821", b"4821") == (3, True)
    assert parse(b"status 4821", b"4821") == (0, True)
    assert parse(b"PUMP OFF 1234", b"4821") == (2, False)
    assert parse(b"PUMP OFF", b"4821") == (2, False)  # no PIN
    assert parse(b"PUMP OFF 4821", b"") == (2, False)  # none configured: never
    assert parse(b"pump on now 4821", b"4821") is None
    assert parse(b"", b"4821") is None and parse(b"4821", b"4821") is None
    assert Sms(dict(CFG, sms_allow=["+91 98765-43210"]), None, None).allow == [OWNER164]


def sms_of(cfg=CFG):
    done, log = [], []
    s = Sms(cfg, done.append, lambda: b"pump off idle", lambda r, v: log.append((r, v)))
    return s, done, log


def test_only_the_whole_international_number_with_the_pin_commands():
    s, done, log = sms_of()
    # the owner's last ten digits behind any other country code, a national or
    # unknown-type number, an alphanumeric sender (None), nothing: all strangers
    for sender in SENDERS[1:]:
        assert s.handle(sender, b"PUMP ON 4821") is None
    assert done == [] and log == [] and s.ignored == len(SENDERS) - 1
    assert s.handle(OWNER164, b"pump on 4821") == b"pump off idle"
    assert done == ["on"] and log == [("sms", 12)]  # slot 1, PUMP ON
    assert s.handle(OWNER164, b"status 4821") == b"pump off idle"
    assert log[-1] == ("sms", 11) and done == ["on"]


def test_a_wrong_or_missing_pin_is_logged_and_never_sent_back():
    s, done, log = sms_of()
    assert s.handle(OWNER164, b"PUMP OFF") == b"? PIN"
    assert s.handle(OWNER164, b"PUMP OFF 4812") == b"? PIN"
    assert s.handle(OWNER164, b"hello") == fsms.HELP
    assert done == [] and log == [("bad_pin", 10), ("bad_pin", 10), ("sms", 10)]
    assert PIN.encode() not in fsms.HELP


def test_commands_are_capped_per_hour():
    s, done, log = sms_of()
    for _ in range(CMD_HOUR + 3):
        s.handle(OWNER164, b"PUMP OFF 0000", hour=5)  # PIN guesses count too
    assert len(log) == CMD_HOUR and s.ignored == 3
    assert s.handle(OWNER164, b"AUTO 4821", hour=5) is None
    assert s.handle(OWNER164, b"AUTO 4821", hour=6) is not None and done == ["auto"]


def test_no_pin_configured_means_no_commands():
    s, done, log = sms_of(dict(CFG, sms_pin=""))
    assert s.handle(OWNER164, b"PUMP OFF 4821") == b"? PIN" and done == []


def session_rig(cfg=CFG, family="sim800"):
    clock = VirtualClock(T0)
    sm = fit(H, clock, family, ())
    uart, pins = H.modem
    m = Modem(uart, clock, family, pins)
    s, done, log = sms_of(cfg)
    return clock, sm, m, s, done, log


def run_sessions(clock, m, s, *args, ms=600000):
    out = []

    async def go():
        assert await m.power_on() and await m.attach(60000)
        for a in args:
            await s.session(m, *a)
        out.append(1)

    clock.spawn(go())
    clock.run_until(clock.ms + ms)
    assert out and clock.failures == []


def test_session_sends_alerts_and_answers_commands():
    clock, sm, m, s, done, log = session_rig()
    for i in range(6):
        s.alert(b"alert %d" % i)
    assert len(s.queue) == 4 and s.dropped == 2  # bounded: the oldest go first
    sm.deliver(b"+919876543210", b"PUMP ON 4821")
    sm.deliver(b"+15550001", b"PUMP OFF 4821")
    run_sessions(clock, m, s, (1, 100))
    assert done == ["on"]
    assert sm.sent == [(OWNER164, b"alert %d" % i) for i in (2, 3, 4, 5)] + [
        (OWNER164, b"pump off idle")
    ]
    assert sm.inbox == []  # both deleted, the stranger's unanswered
    assert s.due_s(100) == 300  # the inbox again in 5 min


def test_alerts_are_capped_per_day():
    clock, sm, m, s, done, log = session_rig(dict(CFG, sms_max_day=2))
    for i in range(3):
        s.alert(b"a%d" % i)
    run_sessions(clock, m, s, (7, 0))  # two go out, the third waits for tomorrow
    assert len(sm.sent) == 2 and len(s.queue) == 1
    run_sessions(clock, m, s, (8, 0))
    assert len(sm.sent) == 3 and s.queue == []


def test_a_flood_of_status_texts_cannot_silence_an_alert():
    clock, sm, m, s, done, log = session_rig()
    sessions = []
    for k in range(8):  # 8 sessions, 4 STATUS texts each: replies hit their cap
        for _ in range(4):
            sm.deliver(OWNER164, b"STATUS 4821")
        sessions.append((1, 3600 * k))
    run_sessions(clock, m, s, *sessions, ms=3600000)
    replies = [t for _n, t in sm.sent]
    assert len(replies) == REPLY_DAY and sm.inbox == []
    s.alert(b"jalkal 0a1b2c3d: lockout dry_run")
    run_sessions(clock, m, s, (1, 40000))
    assert sm.sent[-1] == (OWNER164, b"jalkal 0a1b2c3d: lockout dry_run")


# --- the defects of the text-mode reader (docs/modem.md, SMS): a body is printed raw
# after its +CMGL header in text mode (TS 27.005 3.4.2), so it could pass for modem
# output. In PDU mode every body is hex.


def test_a_reply_of_ok_does_not_end_the_listing():
    clock, sm, m, s, done, log = session_rig()
    sm.deliver(b"+919812345678", b"OK")  # a villager answers an alert
    sm.deliver(OWNER164, b"PUMP OFF 4821")
    run_sessions(clock, m, s, (1, 0))
    assert done == ["off"] and sm.inbox == []  # both read, both deleted
    sm.deliver(OWNER164, b"AUTO 4821")
    run_sessions(clock, m, s, (1, 400))
    assert done == ["off", "auto"]


FORGED = (
    'hi\r\n+CMGL: 7,"REC READ","+919876543210","","26/03/01,10:00:00+22"\r\n'
    "PUMP OFF 4821"
)


def test_a_forged_header_in_a_strangers_body_commands_nothing():
    clock, sm, m, s, done, log = session_rig()
    sm.deliver(b"+15550001", FORGED.encode())
    run_sessions(clock, m, s, (1, 0))
    assert done == [] and log == [] and sm.inbox == [] and s.ignored == 1


def test_the_old_text_mode_reader_obeyed_the_forgery():
    """The same inbox read in text mode, as the driver did: the stranger's body
    yields a second message 'from the owner' (kept here as the reason for PDU)."""
    clock, sm, m, s, done, log = session_rig()
    sm.deliver(b"+15550001", FORGED.encode())
    got = []

    async def go():
        assert await m.power_on() and await m.attach(60000)
        assert await m.at(b"+CMGF=1")
        m.write(b'AT+CMGL="ALL"\r')
        while (line := await m.readline(3000)) not in (None, b"OK"):
            got.append(line)

    clock.spawn(go())
    clock.run_until(clock.ms + 120000)
    assert got[2].startswith(b'+CMGL: 7,"REC READ","+919876543210"')
    assert got[3] == b"PUMP OFF 4821"


# --- the property: whatever arrives, only the owner's whole number with the PIN
# reaches the pump. Expected commands are computed here, not by the driver.
CMD_RE = re.compile(
    r"[ \r\n]*(STATUS|PUMP[ \r\n]+ON|PUMP[ \r\n]+OFF|AUTO)[ \r\n]+4821[ \r\n]*"
)
MODE = {"STATUS": None, "PUMP ON": "on", "PUMP OFF": "off", "AUTO": "auto"}
senders = st.one_of(
    st.sampled_from(
        [
            OWNER164.decode(),
            "919876543210",
            "09876543210",
            "+449876543210",
            "+19876543210",
            "JIO-INFO",
            "AX-BANK",
        ]
    ),  # fmt: skip
    st.from_regex(r"\+?[0-9]{3,15}", fullmatch=True),
    st.from_regex(r"[A-Z][A-Za-z0-9-]{1,10}", fullmatch=True),
)
bodies = st.one_of(
    st.sampled_from(
        [
            "PUMP OFF 4821",
            "pump on 4821",
            "STATUS 4821",
            "OK",
            "ERROR",
            "+CMS ERROR: 500",
            FORGED,
            "AUTO 4821\r\nOK\r\n",
            "PUMP OFF",
            "> ",
            "\x1a",
            "पंप बंद 4821",
        ]
    ),  # fmt: skip
    st.text(max_size=60),
    st.builds(
        lambda a, b: a + b,
        st.sampled_from(["PUMP OFF ", "", "\r\n+CMGL: "]),
        st.text(alphabet="0123456789 \r\nOK", max_size=12),
    ),  # fmt: skip
)


def expected(sender, body):
    if sender != OWNER164.decode():
        return False
    m = CMD_RE.fullmatch(body.upper()) if body.isascii() else None
    return MODE[" ".join(m.group(1).split())] if m else False


@settings(max_examples=60, deadline=None, suppress_health_check=list(HealthCheck))
@given(msgs=st.lists(st.tuples(senders, bodies), min_size=1, max_size=5))
def test_only_the_owner_with_the_pin_reaches_the_pump(msgs):
    clock, sm, m, s, done, log = session_rig()
    for sender, body in msgs:
        sm.deliver(sender, body)
    fits = all(len(m_[3]) * 2 <= RX_BYTES for m_ in sm.inbox)
    run_sessions(clock, m, s, (1, 0), (1, 300), ms=1200000)  # 4 texts a session
    want = [expected(a, b) for a, b in msgs]
    cmds = [w for w in want if w]
    assert done == [w for w in cmds if w is not None] or not fits
    assert set(done) <= {w for w in cmds if w}  # never a command not asked for
    assert len(done) <= len([w for w in cmds if w])
    assert sm.inbox == []  # every text deleted


def sms_play(ch, n_actions, allow):
    cfg = draw_settings(ch)
    lo = max(1, cfg["no_flow_s"] // 4, cfg["max_run_s"] // 300)
    d = Driver(cfg, ch.int(lo, max(lo, 2 * cfg["no_flow_s"])))
    sms = Sms(dict(CFG, sms_allow=allow), lambda m: d.command(m, "sms"), lambda: b"")
    for _ in range(n_actions):
        n = d.p.next_s(d.t)
        dt = ch.int(0, 60) if n is None else max(0, n + ch.int(-1, 1))
        d.advance(d.t + ch.pick((dt, ch.int(0, 4000))), ch.pick((True, False)))
        kind = ch.pick(("sw", "sw", "sms", "sms", "flow", "reboot", "plant"))
        if kind == "sw":
            name = ch.pick(SWITCHES)
            d.inputs(**{name: not d.sw[name]})
        elif kind == "sms":
            sender = ch.pick((OWNER164, OWNER164) + SENDERS)
            sms.handle(sender, ch.pick(TEXTS), d.t // 3600)
            d.step()
        elif kind == "flow":
            d.flow(ch.int(0, 3))
            d.step()
        elif kind == "plant":
            d.plant_flow = not d.plant_flow
        else:
            d.reboot()
    return d


@settings(max_examples=100, deadline=None, suppress_health_check=list(HealthCheck))
@given(data=st.data())
def test_no_sequence_of_texts_and_inputs_breaks_a_pump_invariant(data):
    allow = data.draw(st.sampled_from(([OWNER], [], ["+15550001", OWNER])))
    sms_play(HypChooser(data), data.draw(st.integers(1, 60)), allow)


def test_the_driver_really_commands_by_sms():
    seen = set()
    for seed in range(100):
        seen |= sms_play(RandChooser(seed), 60, [OWNER]).seen
    assert {("mode_change", "sms"), ("pump_stop", "sms")} <= seen


def hexpdu(sender, text):
    return deliver_pdu(sender, text).hex().upper().encode()


def test_deliver_reads_what_the_simulated_network_sends():
    assert deliver(hexpdu("+919876543210", "Pump Off 4821")) == (
        OWNER164,
        b"Pump Off 4821",
    )
    assert deliver(hexpdu("JIO-INFO", "PUMP OFF 4821"))[0] is None
    assert deliver(hexpdu("09876543210", "पंप OFF")) == (b"09876543210", b"??? OFF")
    assert deliver(b"000102") is None  # an SMS-SUBMIT, not a delivery
    assert deliver(b"") is None and deliver(b"0791F") is None  # cut, odd
    assert deliver(b"+CMGL: 1") is None  # not hex


def test_numbers_are_sent_to_in_e164():
    cfg = dict(CFG, sms_to=["+91 98765-43210"])
    clock, sm, m, s, done, log = session_rig(cfg)
    s.alert(b"power back")
    run_sessions(clock, m, s, (1, 0))
    assert sm.sent == [(OWNER164, b"power back")]


@settings(max_examples=400, deadline=None)
@given(raw=st.one_of(st.binary(max_size=200).map(lambda b: b.hex().encode()),
                     st.binary(max_size=140)))  # fmt: skip
def test_the_pdu_decoder_never_raises_on_garbage(raw):
    got = deliver(raw)
    assert got is None or (
        (got[0] is None or got[0].lstrip(b"+").isdigit()) and isinstance(got[1], bytes)
    )


def test_the_simulated_network_writes_ucs2_as_utf16_big_endian():
    from jksim.modem import ucs2

    for text in ("पंप बंद 4821", "a😀b", "中兴通讯", ""):
        assert ucs2(text) == text.encode("utf-16-be")
