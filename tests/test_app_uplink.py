"""The controller with a modem fitted (simulated, behind the fake UART): readings
carry the signal, the network sets the clock, the backlog goes up, SMS alerts and
commands reach the pump through its rules, the display shows the uplink; and the
new config keys are checked."""

import json

from conftest import REPO
from signed_ack import answer
from test_app import KEY, T0, Plant, boot, make_cfg, read_log

from jkfw import config
from jkproto import codec
from jksim.hw import SimHal
from jksim.modem import fit
from jksim.vclock import VirtualClock

OWNER = "+919876543210"


class Ack:
    """A server that takes every frame (the contract of docs/uplink.md), its
    answers signed with the device's key."""

    def __init__(self):
        self.frames = {}
        self.signer = codec.Signer(KEY)

    def __call__(self, url, body):
        n = nf = new = 0
        body = bytes(body)
        for o, k in codec.scan(body):
            f = body[o : o + k]
            nf += 1
            if codec.verify(f, 0, k, self.signer):
                new += codec.unpack_head(f)[5:7] not in self.frames
                self.frames[codec.unpack_head(f)[5:7]] = f
                n += k
        ans = answer(KEY, body, nf, new, n and nf - new, n)
        return 200, ans, len(body) + 1000


def rig(tmp_path, rtc=True, sms=False, level=0.2, draw_lpm=40, **over):
    cfg = make_cfg(modem="sim800", uplink_url="http://127.0.0.1:9", **over)
    if sms:
        cfg = make_cfg(modem="sim800", uplink_url="http://127.0.0.1:9",
                       sms_to=[OWNER], sms_allow=[OWNER], sms_pin="4821",
                       **over)  # fmt: skip
    clock = VirtualClock(T0 if rtc else None, quality=1)
    hal = SimHal(cfg, clock)
    server = Ack()
    sm = fit(hal, clock, "sim800", cfg["pins"], utc0=T0, post=server, seed=3)
    plant = Plant(clock, hal, level=level, draw_lpm=draw_lpm)
    ctl = boot(tmp_path, clock, hal, cfg)
    plant.start()
    return cfg, clock, hal, plant, ctl, sm, server


def test_the_backlog_goes_up_and_readings_carry_the_signal(tmp_path):
    cfg, clock, hal, plant, ctl, sm, server = rig(tmp_path)
    clock.run_until(86400 * 1000)
    assert clock.failures == []
    objs, stats = read_log(tmp_path)
    assert stats["skipped_bytes"] == 0
    readings = [o for o in objs if o["kind"] == "reading"]
    assert readings[0]["csq"] == 99  # at boot, before the first session
    assert all(10 <= r["csq"] <= 31 for r in readings[8:])
    beats = [o for o in objs if o["kind"] == "heartbeat"]
    assert all(b["backlog"] <= 30 for b in beats)
    up = ctl.uplink
    assert up.fails == 0 and sm.posts >= 20
    # every frame but those since the last upload is on the server
    keys = {(o["boot"], o["seq"]) for o in objs}
    assert len(keys - set(server.frames)) <= 6
    st = ctl.status()
    assert st["uplink"] == "ok" and 0 <= st["last_upload_s"] <= 3600


def test_no_rtc_the_network_sets_the_clock(tmp_path):
    cfg, clock, hal, plant, ctl, sm, server = rig(tmp_path, rtc=False)
    clock.run_until(3 * 3600 * 1000)
    objs, _ = read_log(tmp_path)
    clocks = [o for o in objs if o["kind"] == "clock"]
    assert clocks and clocks[0]["source"] == "net" and clocks[0]["step_s"] == 0
    assert {o["time"] for o in objs} == {"none", "net"}
    # the frames from before the clock was set went up too (nodate.jkl)
    assert {(o["boot"], o["seq"]) for o in objs[:3]} <= set(server.frames)


def test_sms_alerts_and_commands_go_through_the_pump(tmp_path):
    cfg, clock, hal, plant, ctl, sm, server = rig(tmp_path, sms=True)
    # the well runs dry under the first run: the dry-run switch trips, a lockout
    clock.at(10 * 60000, lambda: setattr(plant, "well_dry", True))
    clock.run_until(2 * 3600 * 1000)
    texts = [t for _n, t in sm.sent]
    assert texts[0] == b"jalkal 0a1b2c3d: power back"  # the first boot
    assert b"jalkal 0a1b2c3d: lockout dry_run" in texts
    plant.well_dry = False
    clock.run_until(4 * 3600 * 1000)
    # a stranger cannot stop the pump; the owner can, and gets the status back
    sm.deliver(b"+15550001", b"PUMP OFF 4821")
    clock.run_until(4 * 3600 * 1000 + 400 * 1000)
    assert ctl.pump.mode == "auto" and sm.inbox == []
    sm.deliver(OWNER.encode(), b"pump off")  # no PIN: the owner is told
    clock.run_until(4 * 3600 * 1000 + 800 * 1000)
    assert ctl.pump.mode == "auto" and sm.sent[-1] == (OWNER.encode(), b"? PIN")
    sm.deliver(OWNER.encode(), b"pump off 4821")
    clock.run_until(4 * 3600 * 1000 + 1200 * 1000)
    assert ctl.pump.mode == "off" and not hal.relay_is_on()
    assert sm.sent[-1][0] == OWNER.encode() and sm.sent[-1][1].startswith(b"pump off")
    # PUMP ON in an empty tank with a dry well: the lockout still holds it
    plant.well_dry = True
    sm.deliver(OWNER.encode(), b"PUMP ON 4821")
    clock.run_until(5 * 3600 * 1000)
    assert ctl.pump.mode == "on"
    objs, _ = read_log(tmp_path)
    ev = [(o["event"], o["reason"]) for o in objs if o["kind"] == "event"]
    assert ("mode_change", "sms") in ev
    # who sent each command: slot 1 of sms_allow; PUMP OFF (3), PUMP ON (2)
    cmds = [(o["reason"], o["value"]) for o in objs if o["kind"] == "event"
            and o["event"] == "sms_command"]  # fmt: skip
    assert cmds == [("bad_pin", 10), ("sms", 13), ("sms", 12)]
    assert clock.failures == []


def test_a_modem_that_never_answers_is_a_fault_and_the_pump_runs_on(tmp_path):
    cfg, clock, hal, plant, ctl, sm, server = rig(tmp_path)
    clock.run_until(3600 * 1000)
    sm.hang()  # after its first session
    clock.run_until(12 * 3600 * 1000)
    assert clock.failures == []
    objs, _ = read_log(tmp_path)
    ev = [(o["event"], o["reason"]) for o in objs if o["kind"] == "event"]
    # the hang ends at the first power cycle, and the pump never noticed
    assert sm.power_ons >= 2 and ctl.uplink.cycles() >= 1
    assert ("pump_start", "tank_low") in ev and ctl.uplink.fails == 0


def test_a_dead_modem_raises_the_modem_fault_once(tmp_path):
    cfg, clock, hal, plant, ctl, sm, server = rig(tmp_path)
    sm.receive = lambda data: None  # nothing ever answers
    clock.run_until(12 * 3600 * 1000)
    assert clock.failures == []
    objs, _ = read_log(tmp_path)
    ev = [(o["event"], o["reason"]) for o in objs if o["kind"] == "event"]
    assert ev.count(("fault_raised", "modem")) == 1
    assert ("pump_start", "tank_low") in ev
    assert ctl.status()["uplink"] == "down"


def test_without_a_modem_nothing_of_it_loads(tmp_path):
    import sys

    for m in ("jkfw.modem", "jkfw.uplink", "jkfw.sms", "jkfw.mqtt"):
        sys.modules.pop(m, None)
    cfg = make_cfg()
    clock = VirtualClock(T0)
    hal = SimHal(cfg, clock)
    ctl = boot(tmp_path, clock, hal, cfg)
    clock.run_until(3600 * 1000)
    assert ctl.uplink is None and ctl.status()["uplink"] == "off"
    assert not {"jkfw.modem", "jkfw.uplink", "jkfw.sms"} & set(sys.modules)


def test_uplink_config_is_checked():
    ok = {"modem": "sim7600", "uplink_url": "mqtt://10.0.0.1:1883", "apn": "jionet",
          "sms_to": ["+91 98765 43210"], "sms_allow": [], "uplink_s": 900}  # fmt: skip
    cfg, bad = config.validate(ok)
    assert bad == [] and cfg["uplink_url"] == "mqtt://10.0.0.1:1883"
    for key, value in [
        ("modem", "sim900"), ("apn", 'x"\r\nAT+CPOWD=1'), ("uplink_url", "ftp://h"),
        ("uplink_url", "http://"), ("sms_to", ["+91 98765 ;x"]), ("sms_allow", "+91"),
        ("uplink_s", 10), ("uplink_batch_bytes", 100000), ("sms_to", ["1"] * 5),
        ("sms_pin", "12"), ("sms_pin", "abcd"), ("sms_pin", 4821),
        ("sms_pin", "123456789"),
    ]:  # fmt: skip
        cfg, bad = config.validate({key: value})
        assert bad == [key], (key, value)
        assert cfg[key] == config.DEFAULTS[key]
    cfg, bad = config.validate({"modem": "sim800", "uplink_url": "mqtt://h:1"})
    assert bad == ["uplink_url"] and cfg["uplink_url"] == ""  # MQTT: SIM7600 only
    cfg, bad = config.validate({"uplink_retry_s": 600, "uplink_retry_max_s": 60})
    assert bad == ["uplink_retry_max_s"]


def test_commands_need_a_whole_international_number_and_a_pin():
    pin = {"sms_pin": "4821"}
    cfg, bad = config.validate(dict(pin, sms_allow=["+91 98765-43210"]))
    assert bad == [] and cfg["sms_allow"] == ["+91 98765-43210"]
    for number in ("098765 43210", "9876543210", "919876543210", "+9198", "+"):
        assert config.validate(dict(pin, sms_allow=[number]))[1] == ["sms_allow"]
    # numbers only for alerts may be national: the network takes them
    assert config.validate({"sms_to": ["098765 43210"]})[1] == []
    cfg, bad = config.validate({"sms_allow": ["+919876543210"]})
    assert bad == ["sms_pin"]  # no PIN: no command is ever taken


def test_the_board_hal_gives_the_modem_its_uart_and_pins_at_rest(monkeypatch):
    import importlib
    import sys
    import types

    made = []
    m = types.ModuleType("machine")

    class Pin:
        OUT = 3

        def __init__(self, n, mode=None, value=None):
            made.append(("pin", n, mode, value))

    class UART:
        def __init__(self, *a, **kw):
            made.append(("uart", a, kw))

    m.Pin, m.UART = Pin, UART
    monkeypatch.setitem(sys.modules, "machine", m)
    monkeypatch.delitem(sys.modules, "jkfw.hal", raising=False)
    hal = importlib.import_module("jkfw.hal")
    try:
        board = json.loads((REPO / "boards" / "ttgo-t-call-sim800.json").read_text())
        cfg = make_cfg(pins=board["pins"], modem="sim800", modem_pwrkey_active=0)
        uart, pins = hal.Hal(cfg).start_modem()
        assert made == [
            ("pin", 23, 3, 0),  # power: off until a session
            ("pin", 4, 3, 1),  # PWRKEY released (pressed = 0 on this board)
            ("pin", 5, 3, 1),  # not in reset
            ("uart", (1, 115200), {"tx": 27, "rx": 26, "timeout": 0, "rxbuf": 1024}),
        ]
        assert sorted(pins) == ["power", "pwrkey", "rst"]
        del made[:]
        assert hal.Hal(make_cfg()).start_modem() is not None  # the DevKitC has one
        no_modem = {k: v for k, v in board["pins"].items() if "modem" not in k}
        assert hal.Hal(make_cfg(pins=no_modem)).start_modem() is None
    finally:
        sys.modules.pop("jkfw.hal", None)
