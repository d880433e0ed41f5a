"""The modem driver (firmware/modem.py) against the simulated modem behind the fake
UART: the exact bytes it writes, answers cut, garbled, late or missing, power
sequences and power-cycling a modem that hangs."""

import pytest
from modem_script import run

from jkfw import modem as md
from jkfw import sms
from jkfw.modem import Modem, cclk_utc
from jkfw.pdu import deliver
from jksim.hw import SimPin, SimUart
from jksim.modem import SimModem, fit
from jksim.vclock import VirtualClock

T0 = 1772303400  # 2026-03-01T00:00+05:30
T_CALL = ("modem_power", "modem_pwrkey", "modem_rst")  # TTGO T-Call (SIM800)


class Holder:
    modem = None


class Wire(SimUart):
    """The fake UART, also keeping every byte the board wrote."""

    def __init__(self, clock):
        super().__init__(clock)
        self.wire = bytearray()

    def write(self, data):
        self.wire += bytes(data)
        return super().write(data)


def ack_server(log):
    def post(url, body):
        log.append((url, bytes(body)))
        ans = b'{"ok":true,"frames":1,"acked_bytes":%d}' % len(body)
        return 200, ans, 1000

    return post


def rig(family="sim800", pins=T_CALL, pk=0, **kw):
    clock = VirtualClock(T0)
    uart = Wire(clock)
    spins = {}
    for role in ("power", "pwrkey", "rst", "flight"):
        if "modem_" + role in pins:
            spins[role] = SimPin(clock, 1 - pk if role == "pwrkey" else 0)
    kw.setdefault("post", ack_server([]))
    sm = SimModem(clock, uart, family, spins, pk, utc0=T0, **kw)
    m = Modem(uart, clock, family, spins, pk)
    return clock, uart, sm, m


def test_sim800_http_post_exact_bytes():
    clock, uart, sm, m = rig()
    log = []
    sm.post = ack_server(log)
    sm.reg_ms = 0  # registered as soon as it has booted

    async def session():
        assert await m.power_on()
        assert await m.attach(60000)
        assert await m.bearer(b"internet")
        assert await m.http_start(b"http://127.0.0.1:8080/v1/frames")
        st = await m.post(5, lambda w: w(b"\xa5\x01abc"))
        await m.http_end()
        return st

    assert run(clock, session()) == 200
    assert log == [(b"http://127.0.0.1:8080/v1/frames", b"\xa5\x01abc")]
    assert bytes(m.body[: m.blen]) == b'{"ok":true,"frames":1,"acked_bytes":5}'
    wire = bytes(uart.wire)
    # the power-on autobaud ATs before the module answers, then exactly this
    head = wire[: wire.index(b"ATE0")]
    assert set(head.split(b"\r")) == {b"AT", b""}
    assert wire[len(head) :] == (
        b"ATE0\rAT+CLTS=1\r"
        b"AT+CFUN=1\rAT+CREG=0\rAT+CREG?\r"
        b"AT+SAPBR=2,1\r"
        b'AT+SAPBR=3,1,"Contype","GPRS"\rAT+SAPBR=3,1,"APN","internet"\r'
        b"AT+SAPBR=1,1\r"
        b'AT+HTTPTERM\rAT+HTTPINIT\rAT+HTTPPARA="CID",1\r'
        b'AT+HTTPPARA="URL","http://127.0.0.1:8080/v1/frames"\r'
        b'AT+HTTPPARA="CONTENT","application/octet-stream"\r'
        b"AT+HTTPDATA=5,10000\r\xa5\x01abc"
        b"AT+HTTPACTION=1\rAT+HTTPREAD\r"
        b"AT+HTTPTERM\rAT+SAPBR=0,1\r"
    )


def test_sim7600_http_post_exact_bytes_and_read_with_line_ends():
    pins = ("modem_power", "modem_pwrkey", "modem_flight")
    clock, uart, sm, m = rig("sim7600", pins, pk=1)
    answer = b'{"ok":true,\r\n"acked_bytes":3}\r\nOK\r\n'
    sm.post = lambda url, body: (200, answer, 900)
    sm.reg_ms = 0

    async def session():
        assert await m.power_on()
        assert await m.attach(60000)
        assert await m.bearer(b"jionet")
        assert await m.http_start(b"http://h/v1/frames")
        return await m.post(3, lambda w: w(b"xyz"))

    assert run(clock, session()) == 200
    assert bytes(m.body[: m.blen]) == answer  # raw: line ends and an "OK" inside
    wire = bytes(uart.wire)
    assert wire[wire.index(b"ATE0") :] == (
        b"ATE0\rAT+CTZU=1\rAT+CFUN=1\rAT+CEREG=0\rAT+CGREG=0\rAT+CEREG?\r"
        b'AT+CGDCONT=1,"IP","jionet"\rAT+CGACT=1,1\r'
        b'AT+HTTPTERM\rAT+HTTPINIT\rAT+HTTPPARA="URL","http://h/v1/frames"\r'
        b'AT+HTTPPARA="CONTENT","application/octet-stream"\r'
        b"AT+HTTPDATA=3,10\rxyz"
        b"AT+HTTPACTION=1\rAT+HTTPREAD=0,%d\r" % len(answer)
    )


def test_power_key_sequence_per_board():
    # LilyGO T-SIM7600: supply switch on, then the key (through a transistor:
    # active high) pressed for 600 ms; the module answers once it has booted
    clock, uart, sm, m = rig("sim7600", ("modem_power", "modem_pwrkey"), pk=1)
    seen = []
    for role, pin in m.pins.items():
        orig = pin.on_write

        def rec(p, v, role=role, orig=orig):
            seen.append((clock.ms, role, v))
            orig(p, v)

        pin.on_write = rec
    assert run(clock, m.power_on())
    t_on = [t for t, r, v in seen if r == "power" and v == 1][0]
    press = [(t, v) for t, r, v in seen if r == "pwrkey"]
    assert press[0][1] == 1 and press[1][1] == 0
    assert press[0][0] >= t_on + 100 and press[1][0] - press[0][0] == 600
    assert sm.on and sm.power_ons == 1


def test_no_answer_times_out_and_counts():
    clock = VirtualClock(T0)
    uart = Wire(clock)  # nothing behind it
    m = Modem(uart, clock, "sim800")
    t0 = clock.ms
    assert run(clock, m.at(b"+CSQ", 3000)) is None
    assert clock.ms - t0 >= 3000 and m.dead == 1
    assert uart.wire == b"AT+CSQ\r"


def test_garbage_and_overlong_lines_are_survived():
    clock, uart, sm, m = rig(pins=())
    clock.run_until(12000)  # booted and registered

    async def go():
        uart.send(b"\x00\xff" * 150 + b"\r\n")  # a line longer than the buffer
        uart.send(b"+CMTI: junk\r\n")
        return await m.csq()

    # at() drains what came before the command; lines in between are skipped
    v = run(clock, go())
    assert 0 <= v < 99


def test_garbled_or_dropped_answers_fail_cleanly():
    clock, uart, sm, m = rig(pins=())
    clock.run_until(5000)
    sm.p_drop = 1.0
    assert run(clock, m.at(b"", 1000)) is None
    sm.p_drop = 0.0
    sm.p_garble = 1.0  # every answer has a wrong character somewhere
    results = [run(clock, m.csq()) for _ in range(20)]
    assert all(0 <= r <= 99 for r in results)
    assert any(r == 99 for r in results)  # not understood: unknown


def test_a_hung_modem_is_power_cycled():
    clock, uart, sm, m = rig()
    assert run(clock, m.power_on())
    sm.hang()
    assert run(clock, m.at(b"+CSQ", 1000)) is None
    assert run(clock, m.cycle())
    assert m.cycles == 1 and sm.power_ons == 2 and not sm.hung
    assert run(clock, m.at(b"")) is True


def test_modem_without_pins_powers_up_with_the_board_and_sleeps_radio_off():
    clock, uart, sm, m = rig(pins=())
    assert run(clock, m.power_on())
    assert sm.power_ons == 1
    assert run(clock, m.attach(60000))
    run(clock, m.power_off())  # nothing could switch it on again: only the radio
    assert sm.on and m.on and not sm.registered()
    assert run(clock, m.attach(60000)) and sm.power_ons == 1


def test_registration_failure_and_outage():
    clock, uart, sm, m = rig()
    sm.outage = True
    assert run(clock, m.power_on())
    t0 = clock.ms
    assert run(clock, m.attach(20000)) is False
    assert clock.ms - t0 >= 20000
    sm.outage = False
    assert run(clock, m.attach(60000)) is True
    sm.p_reg_fail = 1.0  # this power-on never registers
    assert run(clock, m.cycle())
    assert run(clock, m.attach(20000)) is False


def test_network_time():
    clock, uart, sm, m = rig()
    assert run(clock, m.power_on())

    async def net_time():
        assert await m.at(b"+CCLK?", 2000, b"+CCLK")
        return cclk_utc(m.info)

    assert run(clock, net_time()) is None  # 2004: not from the network yet
    assert run(clock, m.attach(60000))
    t = run(clock, net_time())
    assert t == T0 + clock.ms // 1000 or t == T0 + clock.ms // 1000 - 1


@pytest.mark.parametrize(
    "line, utc",
    [
        (b'+CCLK: "26/03/01,05:30:00+22"', 1772323200),
        (b'+CCLK: "26/02/28,19:00:00-20"', 1772323200),
        (b'+CCLK: "04/01/01,00:00:07+00"', None),  # SIM800's own clock
        (b'+CCLK: "80/01/06,00:01:07+00"', None),  # SIM7000/SIM7600's: not 2080
        (b'+CCLK: "25/12/31,23:59:59+00"', None),  # before the firmware was built
        (b'+CCLK: "45/12/31,23:59:59+00"', 2398377599),
        (b'+CCLK: "46/01/01,00:00:00+00"', None),  # decades ahead
        (b'+CCLK: "26/13/01,00:00:00+00"', None),
        (b'+CCLK: "garbage"', None),
        (b"+CCLK: ", None),
    ],
)
def test_cclk(line, utc):
    assert cclk_utc(line) == utc


def test_sms_send_list_delete_exact_bytes():
    clock, uart, sm, m = rig(pins=())
    clock.run_until(5000 + sm.reg_ms)
    sm.deliver(b"+919876543210", b"Pump On")
    sm.deliver(b"+15550001", b"hello")

    async def go():
        got = []
        await sms.inbox(m, got)
        assert await m.at(b"+CMGD=%d" % got[0][0])
        assert await sms.send(m, b"+919876543210", b"pump: on")
        return got

    got = run(clock, go())
    assert [(i, deliver(pdu)) for i, pdu in got] == [
        (1, (b"+919876543210", b"Pump On")),
        (2, (b"+15550001", b"hello")),
    ]
    assert sm.sent == [(b"+919876543210", b"pump: on")]
    assert [i for i, *_ in sm.inbox] == [2]
    wire = bytes(uart.wire)
    assert wire.endswith(
        b"AT+CMGF=0\rAT+CMGL=4\rAT+CMGD=1\r"
        b'AT+CMGF=1\rAT+CMGS="+919876543210"\rpump: on\x1a'
    )


def test_line_buffer_is_fixed():
    clock, uart, sm, m = rig(pins=())
    clock.run_until(5000)
    buf = m.buf
    uart.send(b"x" * 1000 + b"\r\nOK\r\n")
    lines = []

    async def go():
        while True:
            line = await m.readline(500)
            if line is None:
                return
            lines.append(line)

    run(clock, go())
    assert m.buf is buf and len(buf) == md.RX_BYTES
    assert all(len(x) <= md.RX_BYTES for x in lines) and lines[-1] == b"OK"


def test_fit_gives_the_hal_its_modem():
    clock = VirtualClock(T0)
    h = Holder()
    sm = fit(h, clock, "sim800", T_CALL)
    uart, pins = h.modem
    assert sorted(pins) == ["power", "pwrkey", "rst"] and uart.peer is sm


class FakeLink:
    """Stands in for the broker connection of the simulated SIM7600."""

    def __init__(self, hostport, client_id):
        self.hostport, self.client_id = hostport, client_id
        self.published = []

    def subscribe(self, topic):
        self.topic = topic
        return True

    def publish(self, topic, payload):
        self.published.append((topic, payload))
        return True

    def answer(self, timeout_s):
        body = self.published[-1][1]
        return (
            b"jalkal/v1/0a1b2c3d/ack",
            b'{"ok":true,"acked":[["0a1b2c3d",1,0,0]],'
            b'"acked_bytes":%d,"body_bytes":%d}' % (len(body), len(body)),
        )

    def close(self):
        pass


def test_sim7600_mqtt_exact_bytes(monkeypatch):
    from jkfw.mqtt import Mqtt
    from jksim import modem as simmodem

    links = []
    monkeypatch.setattr(
        simmodem, "MqttLink", lambda *a: links.append(FakeLink(*a)) or links[-1]
    )
    clock, uart, sm, m = rig("sim7600", ("modem_power", "modem_pwrkey"), pk=1)
    sm.reg_ms = 0
    q = Mqtt(m, b"0a1b2c3d")

    async def session():
        assert await m.power_on() and await m.attach(60000)
        del uart.wire[:]
        assert await q.http_start(b"mqtt://127.0.0.1:1883")
        st = await q.post(4, lambda w: w(b"\xa5abc"))
        await q.http_end()
        return st

    assert run(clock, session()) == 200
    assert bytes(m.body[: m.blen]).endswith(b'"acked_bytes":4,"body_bytes":4}')
    assert links[0].hostport == "127.0.0.1:1883" and links[0].client_id == "jk0a1b2c3d"
    assert links[0].published == [(b"jalkal/v1/0a1b2c3d/up", b"\xa5abc")]
    assert bytes(uart.wire) == (
        b'AT+CMQTTSTART\rAT+CMQTTACCQ=0,"jk0a1b2c3d"\r'
        b'AT+CMQTTCONNECT=0,"tcp://127.0.0.1:1883",60,1\r'
        b"AT+CMQTTSUBTOPIC=0,22,1\rjalkal/v1/0a1b2c3d/ack"
        b"AT+CMQTTSUB=0\r"
        b"AT+CMQTTTOPIC=0,21\rjalkal/v1/0a1b2c3d/up"
        b"AT+CMQTTPAYLOAD=0,4\r\xa5abc"
        b"AT+CMQTTPUB=0,1,60\r"
        b"AT+CMQTTDISC=0,60\rAT+CMQTTREL=0\rAT+CMQTTSTOP\rAT+CGACT=0,1\r"
    )
