"""SMS alerts and commands (firmware/sms.py): only authorised numbers command the
pump, and a command goes through the pump state machine like the button, so no
sequence of texts and inputs breaks a pump invariant (the driver of
test_pump_props checks them on the relay timeline)."""

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from jkfw.modem import Modem
from jkfw.sms import Sms, digits, parse
from jksim.modem import fit
from jksim.vclock import VirtualClock
from test_pump_props import SWITCHES, Driver, HypChooser, RandChooser, draw_settings

T0 = 1772303400
OWNER = "+91 98765 43210"
CFG = {"sms_to": ["+919876543210"], "sms_allow": [OWNER], "sms_max_day": 10}
TEXTS = (b"PUMP ON", b"pump off", b" Auto ", b"status", b"PUMP  ON", b"pump", b"",
         b"PUMP ON NOW", b"\xff\x00", b"off")  # fmt: skip
SENDERS = (b"+919876543210", b"09876543210", b"9876543210", b"+919876543211",
           b"+15550001", b"", b"SIM-INFO")  # fmt: skip


def test_parse_and_numbers():
    assert parse(b"  pump   on ") == b"PUMP ON"
    assert parse(b"AUTO") == b"AUTO" and parse(b"status") == b"STATUS"
    assert parse(b"pump on now") is None and parse(b"") is None
    assert digits(b"+91 98765-43210") == digits(b"09876543210") == b"9876543210"


def test_only_authorised_numbers_command():
    done = []
    s = Sms(CFG, done.append, lambda: b"pump off idle")
    assert s.handle(b"+15550001", b"PUMP ON") is None
    assert s.handle(b"", b"PUMP ON") is None
    assert s.handle(b"+919876543211", b"PUMP ON") is None  # one digit off
    assert done == [] and s.ignored == 3
    assert s.handle(b"09876543210", b"pump on") == b"pump off idle"
    assert s.handle(b"+919876543210", b"status") == b"pump off idle"
    assert s.handle(b"+919876543210", b"help").startswith(b"?")
    assert done == ["on"]


def test_a_short_allow_entry_matches_nobody():
    s = Sms(dict(CFG, sms_allow=["12"]), lambda m: None, lambda: b"")
    assert s.handle(b"12", b"PUMP ON") is None


def test_session_sends_alerts_and_answers_commands():
    clock = VirtualClock(T0)

    class H:
        modem = None

    sm = fit(H, clock, "sim800", ())
    uart, pins = H.modem
    m = Modem(uart, clock, "sim800", pins)
    done = []
    s = Sms(CFG, done.append, lambda: b"pump on run")
    for i in range(6):
        s.alert(b"alert %d" % i)
    assert len(s.queue) == 4 and s.dropped == 2  # bounded: the oldest go first
    sm.deliver(b"+919876543210", b"PUMP ON")
    sm.deliver(b"+15550001", b"PUMP OFF")
    out = []

    async def go():
        assert await m.power_on() and await m.attach(60000)
        await s.session(m, 1, 100)
        out.append(1)

    clock.spawn(go())
    clock.run_until(300000)
    assert out and clock.failures == []
    assert done == ["on"]
    assert sm.sent == [(b"+919876543210", b"alert %d" % i) for i in (2, 3, 4, 5)] + [
        (b"+919876543210", b"pump on run")
    ]
    assert sm.inbox == []  # both deleted, the stranger's unanswered
    assert s.due_s(100) == 300  # the inbox again in 5 min


def test_texts_are_capped_per_day():
    clock = VirtualClock(T0)

    class H:
        modem = None

    sm = fit(H, clock, "sim800", ())
    uart, pins = H.modem
    m = Modem(uart, clock, "sim800", pins)
    s = Sms(dict(CFG, sms_max_day=2), lambda mode: None, lambda: b"")
    for i in range(3):
        s.alert(b"a%d" % i)
    out = []

    async def go():
        assert await m.power_on() and await m.attach(60000)
        await s.session(m, 7, 0)  # two go out, the third waits for tomorrow
        out.append(len(sm.sent))
        await s.session(m, 8, 0)
        out.append(len(sm.sent))

    clock.spawn(go())
    clock.run_until(600000)
    assert out == [2, 3] and s.queue == []


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
            sms.handle(ch.pick(SENDERS), ch.pick(TEXTS))
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
