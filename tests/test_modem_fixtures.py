"""The modem driver (firmware/modem.py, mqtt.py, sms.py) against the answers SIMCom's
documents and real modules give (tests/data/modem, each record citing its source),
not against the simulated modem; and the simulated modem against the same records,
so the simulator and the vboard run the paths a real module does."""

import calendar
import re
from binascii import unhexlify

import pytest
from modem_script import REC, Script, Step, answer, chunks, run

from jkfw import modem as md
from jkfw.modem import Modem, cclk_utc
from jkfw.mqtt import Mqtt
from jkfw.pdu import deliver
from jksim.hw import SimUart
from jksim.modem import SimModem
from jksim.vclock import VirtualClock

T0 = 1772303400  # 2026-03-01T00:00+05:30
OK = b"\r\nOK\r\n"


def rig(family, steps, first=b""):
    clock = VirtualClock(T0)
    s = Script(clock, steps, first)
    return clock, s, Modem(s.uart, clock, family)


# --- the corpus itself


def test_every_record_cites_its_source_and_is_whole():
    assert len(REC) >= 60
    for r in REC.values():
        where = r["_file"]
        assert r["source"].strip(), where
        assert r["family"] in ("sim800", "sim7000", "sim7600", "any"), where
        if "pdu" in r:
            unhexlify(r["pdu"])
            assert set(r["decoded"]) >= {"sender", "sender_type", "text"}, where
            continue
        assert isinstance(r["answer"], str) and isinstance(r["command"], str), where
        r["answer"].encode("latin-1")
        if r.get("chunks"):
            assert "".join(r["chunks"]) == r["answer"], where


# --- defect 1: the SIM7600's HTTPREAD answers +HTTPREAD: DATA,<n> (and the
# manual's own example +HTTPREAD: <n>), the body, then +HTTPREAD: 0


def http_post_steps(read_id, status=200, split=False):
    """HTTPDATA, the body, HTTPACTION (the note's answer with this read's length),
    HTTPREAD: the documented answers."""
    body = re.search(rb"\+HTTPREAD: (?:DATA,)?(\d+)\r\n", answer(read_id))
    n = int(body.group(1))
    action = answer("sim7600.httpaction.post").replace(
        b"1,200,2\r", b"1,%d,%d\r" % (status, n)
    )
    read = answer(read_id)
    if split:  # the answer in pieces of 7 bytes, each a separate read
        read = [read[k : k + 7] for k in range(0, len(read), 7)]
    return n, [
        Step(b"AT+HTTPDATA=", chunks("sim7600.httpdata"), raw=5),
        Step(b"AT+HTTPACTION=1", action, delay_ms=200),
        Step(b"AT+HTTPREAD=0,%d" % n, read),
    ]


@pytest.mark.parametrize(
    "rid",
    [
        "sim7600.httpread.data",
        "sim7600.httpread.data-crlf",
        "sim7600.httpread.data-https",
        "sim7600.httpread.data-manual",
    ],
)
@pytest.mark.parametrize("split", [False, True])
def test_sim7600_http_read_as_documented(rid, split):
    n, steps = http_post_steps(rid, split=split)
    clock, s, m = rig("sim7600", steps)
    assert run(clock, m.post(5, lambda w: w(b"frame"))) == 200
    want = re.search(
        rb"\+HTTPREAD: (?:DATA,)?\d+\r\n(.*)\r\n\+HTTPREAD: 0", answer(rid), re.S
    )
    assert bytes(m.body[: m.blen]) == want.group(1)[:n] and m.blen == n
    assert s.unexpected == [] and s.steps == []
    assert (
        bytes(s.wire)
        == b"AT+HTTPDATA=5,10\rframeAT+HTTPACTION=1\rAT+HTTPREAD=0,%d\r" % n
    )


def test_sim7600_http_error_status_is_returned():
    clock, s, m = rig("sim7600", [
        Step(b"AT+HTTPDATA=", chunks("sim7600.httpdata"), raw=1),
        Step(b"AT+HTTPACTION=1", answer("sim7600.httpaction.error-706")),
    ])  # fmt: skip
    assert run(clock, m.post(1, lambda w: w(b"x"))) == 706 and m.blen == 0


# --- defect 2: a modem clock the network never set


def test_documented_clock_answers():
    line = answer("sim7600.cclk.net").split(b"\r\n")[1]
    # the manual's example is of 2008: not a time this firmware can have
    assert cclk_utc(line) is None
    old = md.YEARS
    try:
        md.YEARS = (2000, 2100)
        # 12:30:35 at +32 quarter hours (UTC+8): 04:30:35 UTC
        assert cclk_utc(line) == calendar.timegm((2008, 11, 28, 4, 30, 35))
    finally:
        md.YEARS = old
    for rid in ("sim800.cclk.default", "sim7000.cclk.default", "sim7600.cclk.default"):
        if rid in REC:
            assert cclk_utc(answer(rid).split(b"\r\n")[1]) is None, rid


# --- the power-on: echo on, boot URCs in between


def test_power_on_through_echo_and_boot_urcs():
    clock, s, m = rig("sim7600", [
        Step(b"AT", answer("sim7600.at.echo"), delay_ms=50),
        Step(b"ATE0", b"ATE0\r" + OK),  # V.25ter: the command that ends echo is echoed
        Step(b"AT+CTZU=1", OK),
    ], first=answer("sim7600.boot"))  # fmt: skip
    assert run(clock, m.power_on()) is True
    assert s.unexpected == [] and bytes(s.wire) == b"AT\rATE0\rAT+CTZU=1\r"


# --- registration: the <n> a former user left set, answers of every kind


@pytest.mark.parametrize(
    "reg, registered",
    [
        ("sim7600.cereg.plain", False),
        ("sim7600.cgreg.plain-registered", True),
    ],
)
def test_lte_registration_answers(reg, registered):
    q = REC[reg]["command"][:-2].encode()  # AT+CEREG / AT+CGREG
    steps = [Step(b"AT+CFUN=1", answer("sim7600.cfun1")),
             Step(b"AT+CEREG=0", OK), Step(b"AT+CGREG=0", OK)]  # fmt: skip
    other = b"AT+CGREG?" if q == b"AT+CEREG" else b"AT+CEREG?"
    first = [Step(q + b"?", answer(reg))]
    rest = [Step(other, b"\r\n+%s: 0,2\r\n" % other[3:-1] + OK)]
    steps += first + rest if q == b"AT+CEREG" else rest + first
    clock, s, m = rig("sim7600", steps)
    assert run(clock, m.attach(1500)) is registered  # one round of queries
    assert s.unexpected == []


# --- MQTT: the documented sequence, and the answer before +CMQTTPUB: 0,0


def mqtt_steps(rx, rx_first=False):
    pub = answer("sim7600.cmqttpub")
    publish = pub + rx if not rx_first else OK + rx + pub[len(OK) :]
    return [
        Step(b"AT+CMQTTTOPIC=0,", chunks("sim7600.cmqtttopic"), raw=21),
        Step(b"AT+CMQTTPAYLOAD=0,", chunks("sim7600.cmqttpayload"), raw=9),
        Step(b"AT+CMQTTPUB=0,1,60", publish, delay_ms=300),
    ]


@pytest.mark.parametrize("rid", ["sim7600.cmqttrx", "sim7600.cmqttrx.compact"])
@pytest.mark.parametrize("rx_first", [False, True])
def test_mqtt_answer_in_either_order(rid, rx_first):
    clock, s, m = rig("sim7600", mqtt_steps(answer(rid), rx_first))
    q = Mqtt(m, b"0a1b2c3d")
    st = run(clock, q.post(9, lambda w: w(b"mqtt_test")))
    assert st == 200 and bytes(m.body[: m.blen]) == b"mqtt_test"
    assert s.unexpected == []


def test_mqtt_answer_in_several_payload_blocks():
    rx = answer("sim7600.cmqttrx.compact")
    two = rx.replace(
        b"+CMQTTRXPAYLOAD: 0,9\r\nmqtt_test\r\n",
        b"+CMQTTRXPAYLOAD: 0,4\r\nmqtt\r\n+CMQTTRXPAYLOAD: 0,5\r\n_test\r\n",
    )
    clock, s, m = rig("sim7600", mqtt_steps(two))
    st = run(clock, Mqtt(m, b"0a1b2c3d").post(9, lambda w: w(b"mqtt_test")))
    assert st == 200 and bytes(m.body[: m.blen]) == b"mqtt_test"


def test_mqtt_connection_lost_ends_the_post():
    lost = answer("sim7600.cmqttconnlost")
    steps = mqtt_steps(b"")
    steps[-1] = Step(b"AT+CMQTTPUB=0,1,60", OK + lost)
    clock, s, m = rig("sim7600", steps)
    assert run(clock, Mqtt(m, b"0a1b2c3d").post(9, lambda w: w(b"mqtt_test"))) is None


# --- the simulated modem answers in the documented formats


def sim_answer(family, cmds, setup=None, after_ms=30000):
    clock = VirtualClock(T0)
    uart = SimUart(clock)
    sm = SimModem(clock, uart, family, utc0=None, post=lambda u, b: (200, b"", 0))
    sm.reg_ms = 0
    clock.run_until(20000)  # booted
    uart.clear()
    if setup:
        setup(sm)
    out = []
    for c in cmds:
        sm.receive(c)
        clock.run_until(clock.ms + after_ms)
        out.append(uart.read() or b"")
    return out


def shape(b):
    """The framing of an answer: digits, quoted text and bodies made alike."""
    b = re.sub(rb'"[^"\r\n]*"', b'"s"', b)
    return re.sub(rb"\d+", b"9", b)


def test_simulated_sim7600_http_read_has_the_documented_shape():
    def setup(sm):
        sm.http = {}
        sm.answer = b"<!DOCTYPE html P"

    got = sim_answer("sim7600", [b"ATE0\r", b"AT+HTTPREAD=0,16\r"], setup)[1]
    assert got == answer("sim7600.httpread.data")


def test_simulated_clock_before_network_time_is_each_modules_default():
    for fam in ("sim7600", "sim800"):
        got = sim_answer(fam, [b"ATE0\r", b"AT+CCLK?\r"])[1]
        assert shape(got) == shape(answer("sim7600.cclk.net"))
        assert cclk_utc(got.split(b"\r\n")[1]) is None
        assert (b'"80/01/06' if fam == "sim7600" else b'"04/01/01') in got


def test_simulated_registration_answers_as_documented():
    got = sim_answer("sim7600", [b"ATE0\r", b"AT+CREG?\r", b"AT+CGREG?\r"])
    assert shape(got[1]) == shape(answer("sim7600.creg.plain"))
    assert shape(got[2]) == shape(answer("sim7600.cgreg.plain"))


def test_simulated_mqtt_publish_answers_as_the_note_prints_it():
    class Link:  # the broker's side: the server answers on the ack topic
        def publish(self, topic, payload):
            return True

        def answer(self, timeout_s):
            return b"simcomtest", b"mqtt_test"

    def setup(sm):
        sm.mq = {"link": Link(), "topic": b"simcomtest", "payload": b"mqtt_test"}

    got = sim_answer("sim7600", [b"ATE0\r", b"AT+CMQTTPUB=0,1,60\r"], setup)[1]
    assert got == answer("sim7600.cmqttpub") + answer("sim7600.cmqttrx.compact")


def test_the_sms_pdus_decode_as_their_sources_read_them():
    pdus = [r for r in REC.values() if "pdu" in r]
    for r in pdus:
        d = r["decoded"]
        got = deliver(r["pdu"].encode())
        assert got is not None, r["id"]
        sender, text = got
        want = (d["sender"] or "").lstrip("+")
        if d["sender"] is None:
            pass  # the source does not say
        elif d["sender_type"] == "alphanumeric":
            assert sender is None, r["id"]
        elif d["sender_type"] == "international":
            assert sender == b"+" + want.encode(), r["id"]
        else:
            assert sender == want.encode(), r["id"]
        assert text == ascii_view(d["text"]), r["id"]


def ascii_view(text):
    """What the board keeps of a text: the characters commands use, line breaks as
    spaces, '?' for any other (one per character, GSM extension ones included)."""
    keep = set("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789")
    keep |= set(" !\"#%&'()*+,-./:;<=>?")
    return "".join(
        " " if c in "\r\n" else c if c in keep else "?" for c in text
    ).encode()


# --- SIM800: defect 3 (the bearer a reset left open), power down, URCs, listing


@pytest.mark.parametrize(
    "rid",
    [
        "sim800.sapbr.query-open",
        "sim800.sapbr.query-open.ipnote",
        "sim800.sapbr.query-open.posted",
    ],  # fmt: skip
)
def test_an_open_bearer_is_used_as_it_is(rid):
    clock, s, m = rig("sim800", [Step(b"AT+SAPBR=2,1", chunks(rid))])
    assert run(clock, m.bearer(b"internet")) is True
    assert bytes(s.wire) == b"AT+SAPBR=2,1\r" and s.unexpected == []


def test_a_closed_bearer_is_opened():
    clock, s, m = rig("sim800", [
        Step(b"AT+SAPBR=2,1", answer("sim800.sapbr.query-closed")),
        Step(b'AT+SAPBR=3,1,"Contype"', OK), Step(b'AT+SAPBR=3,1,"APN"', OK),
        Step(b"AT+SAPBR=1,1", answer("sim800.sapbr.open"), delay_ms=1500),
    ])  # fmt: skip
    assert run(clock, m.bearer(b"internet")) is True and s.steps == []


def test_power_down_answers_normal_power_down_and_no_ok():
    clock, s, m = rig("sim800", [Step(b"AT+CPOWD=1", answer("sim800.cpowd"))])
    m.pins = {"power": None}  # a module the board can switch: the command first
    t0 = clock.ms
    run(clock, m.power_off())
    assert clock.ms - t0 < 1000 and m.dead == 0 and not m.on


@pytest.mark.parametrize("rid", ["any.creg.loc", "any.creg.loc-unquoted"])
def test_registration_with_location_fields(rid):
    clock, s, m = rig("sim800", [
        Step(b"AT+CFUN=1", answer("sim800.cfun.1")),
        Step(b"AT+CREG=0", answer("sim800.creg.set0")),
        Step(b"AT+CREG?", answer(rid)),
    ])  # fmt: skip
    assert run(clock, m.attach(1500)) is True


def test_a_urc_inside_an_answer_is_skipped():
    rid = "sim800.cmti.during-command"
    clock, s, m = rig("sim800", [Step(b"AT+CGACT=1,1", answer(rid))])
    assert run(clock, m.at(b"+CGACT=1,1")) is True


def test_sim800_power_on_through_sync_bytes_echo_and_boot_urcs():
    boot = answer("sim800.boot.sync-bytes") + answer("sim800.boot")
    clock, s, m = rig("sim800", [
        Step(b"AT", b"AT\r" + OK, delay_ms=50),
        Step(b"ATE0", b"ATE0\r" + OK),
        Step(b"AT+CLTS=1", answer("sim800.clts.set")),
    ], first=boot)  # fmt: skip
    assert run(clock, m.power_on()) is True and s.unexpected == []


def test_a_late_httpaction_is_waited_for():
    action = answer("sim800.httpaction.post")
    ok, urc = (
        action[: action.index(b"+HTTPACTION") - 2],
        action[action.index(b"+HTTPACTION") - 2 :],
    )
    status = int(re.search(rb"\+HTTPACTION: ?\d, ?(\d+)", urc).group(1))
    size = int(re.search(rb"\+HTTPACTION: ?\d, ?\d+,(\d+)", urc).group(1))
    # the manual's syntax (no record shows the bytes): +HTTPREAD: <n>, data, OK
    read = b"\r\n+HTTPREAD: %d\r\n" % size + b"x" * size + b"\r\n" + OK
    clock, s, m = rig("sim800", [
        Step(b"AT+HTTPDATA=", chunks("sim800.httpdata"), raw=1),
        Step(b"AT+HTTPACTION=1", [ok, urc], gap_ms=90000),  # 90 s on a slow link
        Step(b"AT+HTTPREAD", read),
    ])  # fmt: skip
    assert run(clock, m.post(1, lambda w: w(b"x"))) == status


@pytest.mark.parametrize("rid", ["any.cmgl.pdu-deliver", "any.cmgl.pdu-stored-submit"])
def test_pdu_listing_as_modules_print_it(rid):
    from jkfw import sms as fsms

    clock, s, m = rig("sim800", [
        Step(b"AT+CMGF=0", answer("sim800.cmgf.0")), Step(b"AT+CMGL=4", answer(rid)),
    ])  # fmt: skip
    got = []
    run(clock, fsms.inbox(m, got))
    listed = re.findall(rb"\+CMGL: (\d+),\d,,\d+\r\n([0-9A-F]+)\r\n", answer(rid))
    assert got == [(int(i), p) for i, p in listed] and len(got) == 1
    if rid.endswith("deliver"):
        sender, text = deliver(got[0][1])
        assert sender.startswith(b"+") and text
    else:
        assert deliver(got[0][1]) is None  # a stored SMS-SUBMIT: nobody's command


def test_simulated_sim800_answers_have_the_documented_shape():
    def setup(sm):
        sm.bearer = True
        sm.deliver(b"+919876543210", b"PUMP OFF 4821")

    cmds = [b"ATE0\r", b"AT+SAPBR=2,1\r", b"AT+CMGF=0\r", b"AT+CMGL=4\r",
            b"AT+CMGF=1\r", b'AT+CMGL="ALL"\r', b"AT+CPOWD=1\r"]  # fmt: skip
    got = sim_answer("sim800", cmds, setup)
    assert shape(got[1]) == shape(answer("sim800.sapbr.query-open"))
    pdu_list = answer("any.cmgl.pdu-deliver")[len(b"AT+CMGL=4\r") :]
    assert shape(re.sub(rb"[0-9A-F]{20,}", b"P", got[3])) == shape(
        re.sub(rb"[0-9A-F]{20,}", b"P", pdu_list)
    )
    text = answer("sim800.cmgl.text-ok-body").replace(
        b"\r\nOK\r\n\r\nOK", b"\r\nPUMP OFF 9\r\n\r\nOK"
    )
    assert shape(got[5]).replace(b"REC UNREAD", b"REC READ") == shape(text)
    assert got[6] == answer("sim800.cpowd")


# --- the MQTT login and TLS with the server's certificate pinned (SOURCES-sim7600.md)

PEM = b"-----BEGIN CERTIFICATE-----\nMIIBszCCAVmgAwIBAgIU\n-----END CERTIFICATE-----\n"


def pinned(monkeypatch, tmp_path, data=PEM):
    """The board's /server.pem (here in tmp_path) and its SHA-256 as config holds it."""
    import hashlib

    from jkfw import tls

    p = tmp_path / "server.pem"
    p.write_bytes(data)
    monkeypatch.setattr(tls, "CERT", str(p))
    return hashlib.sha256(data).hexdigest()


def tls_steps(pin, listed=False):
    name = b"jk%s.pem" % pin[:12].encode()
    listing = answer("sim7600.ccertlist").replace(b"ca_cert.der", name)
    steps = [
        Step(b"AT+CCERTLIST", listing if listed else answer("sim7600.ccertlist.empty"))
    ]
    if not listed:
        steps.append(Step(b'AT+CCERTDOWN="%s",%d' % (name, len(PEM)),
                          chunks("sim7600.ccertdown"), raw=len(PEM)))  # fmt: skip
    for cmd in (b'"sslversion",0,3', b'"authmode",0,1', b'"enableSNI",0,1',
                b'"cacert",0,"%s"' % name):  # fmt: skip
        steps.append(Step(b"AT+CSSLCFG=" + cmd, OK))
    return name, steps


def tls_wire(pin, listed=False):
    name = b"jk%s.pem" % pin[:12].encode()
    down = b"" if listed else b'AT+CCERTDOWN="%s",%d\r' % (name, len(PEM)) + PEM
    return (
        b"AT+CCERTLIST\r" + down + b'AT+CSSLCFG="sslversion",0,3\r'
        b'AT+CSSLCFG="authmode",0,1\rAT+CSSLCFG="enableSNI",0,1\r'
        b'AT+CSSLCFG="cacert",0,"%s"\r' % name
    )


def signer():
    from jkproto import codec

    return codec.Signer(bytes(range(32)))


def mqtt_start_steps(connect, tls=False):
    return [
        Step(b"AT+CMQTTSTART", answer("sim7600.cmqttstart")),
        Step(b"AT+CMQTTACCQ=0,", answer("sim7600.cmqttaccq" + (".ssl" if tls else ""))),
        *([Step(b"AT+CMQTTSSLCFG=0,0", answer("sim7600.cmqttsslcfg"))] if tls else []),
        Step(b"AT+CMQTTCONNECT=0,", connect, delay_ms=500),
        Step(b"AT+CMQTTSUBTOPIC=0,", chunks("sim7600.cmqttsubtopic"), raw=22),
        Step(b"AT+CMQTTSUB=0", answer("sim7600.cmqttsub")),
    ]  # fmt: skip


def test_mqtt_login_with_the_devices_credentials_as_the_manual_writes_it():
    from jkproto.codec import mqtt_password

    clock, s, m = rig("sim7600", mqtt_start_steps(answer("sim7600.cmqttconnect.login")))
    q = Mqtt(m, b"0a1b2c3d", signer())
    assert run(clock, q.http_start(b"mqtt://127.0.0.1:1883")) is True
    assert s.unexpected == [] and s.steps == []
    pw = mqtt_password(signer())
    line = b'AT+CMQTTCONNECT=0,"tcp://127.0.0.1:1883",60,1,"0a1b2c3d","%s"\r' % pw
    assert line in bytes(s.wire)
    # the documented syntax: quoted user name and password after <clean_session>
    assert shape(line) == shape(REC["sim7600.cmqttconnect.login"]["command"].encode())


def test_a_refused_login_ends_the_session():
    clock, s, m = rig(
        "sim7600", mqtt_start_steps(answer("sim7600.cmqttconnect.bad-login"))
    )
    q = Mqtt(m, b"0a1b2c3d", signer())
    assert not run(clock, q.http_start(b"mqtt://127.0.0.1:1883"))
    assert b"CMQTTSUB" not in bytes(s.wire)


def test_mqtts_downloads_the_pinned_certificate_once(monkeypatch, tmp_path):
    pin = pinned(monkeypatch, tmp_path)
    for listed in (False, True):  # the second session finds it in the module
        _name, steps = tls_steps(pin, listed)
        steps += mqtt_start_steps(answer("sim7600.cmqttconnect.tls"), tls=True)
        clock, s, m = rig("sim7600", steps)
        m.pin = pin
        assert run(clock, Mqtt(m, b"0a1b2c3d").http_start(b"mqtts://10.0.0.1:8883"))
        assert s.unexpected == [] and s.steps == []
        assert bytes(s.wire).startswith(
            tls_wire(pin, listed) + b"AT+CMQTTSTART\r"
            b'AT+CMQTTACCQ=0,"jk0a1b2c3d",1\rAT+CMQTTSSLCFG=0,0\r'
            b'AT+CMQTTCONNECT=0,"tcp://10.0.0.1:8883",60,1\r'
        )


@pytest.mark.parametrize("what", ["other file", "no file"])
def test_a_certificate_that_is_not_the_pinned_one_is_never_used(
    monkeypatch, tmp_path, what
):
    pin = pinned(monkeypatch, tmp_path, PEM.replace(b"MIIB", b"MIIC"))
    if what == "no file":
        (tmp_path / "server.pem").unlink()
    else:
        pin = pinned(monkeypatch, tmp_path, PEM)
        (tmp_path / "server.pem").write_bytes(PEM.replace(b"MIIB", b"MIIC"))
    clock, s, m = rig("sim7600", [Step(b"AT+HTTPTERM", OK)])
    m.pin = pin
    assert not run(clock, m.http_start(b"https://10.0.0.1/v1/frames"))
    assert bytes(s.wire) == b"AT+HTTPTERM\r"  # nothing of TLS, nothing sent
    clock, s, m = rig("sim7600", [])
    m.pin = pin
    assert not run(clock, Mqtt(m, b"0a1b2c3d").http_start(b"mqtts://10.0.0.1:8883"))
    assert bytes(s.wire) == b""


def test_https_post_and_a_failed_handshake_as_documented(monkeypatch, tmp_path):
    pin = pinned(monkeypatch, tmp_path)
    url = b"https://10.0.0.1:8443/v1/frames"
    _name, steps = tls_steps(pin)
    steps = [Step(b"AT+HTTPTERM", answer("sim7600.httpterm")), *steps,
             Step(b"AT+HTTPINIT", answer("sim7600.httpinit")),
             Step(b'AT+HTTPPARA="URL","https://', answer("sim7600.httppara.url-https")),
             Step(b'AT+HTTPPARA="CONTENT"', OK),
             Step(b'AT+HTTPPARA="SSLCFG"', answer("sim7600.httppara.sslcfg")),
             Step(b"AT+HTTPDATA=", chunks("sim7600.httpdata"), raw=1),
             Step(b"AT+HTTPACTION=1", answer("sim7600.httpaction.error-715")),
    ]  # fmt: skip
    clock, s, m = rig("sim7600", steps)
    m.pin = pin
    assert run(clock, m.http_start(url)) is True
    assert run(clock, m.post(1, lambda w: w(b"x"))) == 715 and m.blen == 0
    assert s.unexpected == [] and s.steps == []
    sslcfg = b'AT+HTTPPARA="SSLCFG","0"\r'
    assert (
        sslcfg.rstrip(b"\r") == REC["sim7600.httppara.sslcfg"]["command"][:-1].encode()
    )
    assert bytes(s.wire).startswith(
        b"AT+HTTPTERM\r" + tls_wire(pin) + b"AT+HTTPINIT\r"
        b'AT+HTTPPARA="URL","%s"\r'
        % url
        + b'AT+HTTPPARA="CONTENT","application/octet-stream"\r'
        + sslcfg
    )


def test_simulated_certificate_commands_answer_as_documented():
    name = b"client_key.pem"
    got = sim_answer("sim7600", [
        b"ATE0\r", b"AT+CCERTLIST\r", b'AT+CCERTDOWN="%s",4\r' % name, b"abcd",
        b'AT+CCERTDOWN="ca_cert.der",2\r', b"ok", b"AT+CCERTLIST\r",
        b'AT+CCERTDOWN="client_key.der",20000\r', b'AT+CCERTDOWN="key.txt",4\r',
        b'AT+CSSLCFG="sslversion",0,3\r', b'AT+CSSLCFG="authmode",0,1\r',
        b'AT+CSSLCFG="enableSNI",0,1\r', b'AT+CSSLCFG="cacert",0,"ca_cert.der"\r',
        b'AT+CSSLCFG="sslversion",1,1\r', b'AT+CSSLCFG="authmode",0,7\r',
        b'AT+CCERTDELE="server_ca.der"\r', b'AT+CCERTDELE="ca_cert.der"\r',
    ])  # fmt: skip
    assert got[1] == answer("sim7600.ccertlist.empty")
    assert got[2] + got[3] == answer("sim7600.ccertdown")
    assert got[6] == answer("sim7600.ccertlist")
    assert got[7] == got[8] == answer("sim7600.ccertdown.error")
    for g in got[9:13]:
        assert g == answer("sim7600.csslcfg.tls12")
    assert got[13] == answer("sim7600.csslcfg.example")
    assert got[14] == answer("sim7600.ccertdown.error")  # authmode is 0-3
    assert got[15] == answer("sim7600.ccertdown.error")  # no such file
    assert got[16] == answer("sim7600.ccertdele")


def test_simulated_connect_answers_the_manuals_errors(monkeypatch):
    from jksim import modem as simmodem

    def refuse(rc):
        def link(*a, **kw):
            raise simmodem.MqttRefused(rc)

        return link

    def setup(sm):
        sm.mq = {"id": "jk0a1b2c3d"}

    cmd = REC["sim7600.cmqttconnect.bad-login"]["command"].encode()
    for rc, rid in (
        (4, "sim7600.cmqttconnect.bad-login"),
        (0, "sim7600.cmqttconnect.login"),
    ):
        monkeypatch.setattr(
            simmodem, "MqttLink", refuse(rc) if rc else lambda *a, **k: 1
        )
        got = sim_answer("sim7600", [b"ATE0\r", cmd], setup)[1]
        assert got == answer(rid)

    # TLS with no certificate set: 33; a wrong one: 32 (tests/test_modem_tls.py)
    def tls_setup(sm):
        sm.mq = {"id": "jk0a1b2c3d", "tls": True}
        sm.ssl = {0: {b"authmode": 1, b"cacert": b"server.pem"}}

    got = sim_answer("sim7600", [b"ATE0\r", cmd], tls_setup)[1]
    assert got == answer("sim7600.cmqttconnect.bad-login").replace(b"0,30", b"0,33")
