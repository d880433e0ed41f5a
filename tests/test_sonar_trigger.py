"""The JSN-SR04T in its triggered serial mode (R27 = 120 kΩ, "mode 3"; config
tank.sonar = "trigger", docs/sensors.md): the stand-in answers as the module's
documentation says (idle until a 0x55 byte, then one ranging and one frame
FF H L SUM), the config key and `jalkal provision --tank ...,sonar=trigger`, the
simulator's fitted sonar read by the firmware through a simulated day against the
plant's tank, and the firmware's own reader (jkfw.measure.Measure.read_tank) in
real MicroPython on the virtual board: the plant's level within 2 mm in trigger
mode, and a sensor left in trigger mode under an "auto" config read as a fault
(absent), never as a level."""

from __future__ import annotations

import json
from statistics import median

import pytest
from test_vboard import VBoard, mpremote
from test_vboard_sensors import config, firmware_flash, run

from jalkal.cli import main
from jalkal.decode import bulk
from jkfw import config as fwconfig
from jksim import probes, scenario, village

MOUNT_MM = 3300


class Clock:
    def __init__(self):
        self.ms = 0


def frames(data):
    """The distances of the frames in data (FF, H, L, SUM)."""
    out = []
    for i in range(0, len(data) - 3):
        b = data[i : i + 4]
        if b[0] == 0xFF and (b[0] + b[1] + b[2]) & 0xFF == b[3]:
            out.append(b[1] << 8 | b[2])
    return out


def drain(u):
    buf = bytearray(64)
    got = b""
    while u.any():
        n = u.readinto(buf)
        got += bytes(buf[:n])
    return got


# --- the stand-in, as the documentation says --------------------------------------


def test_trigger_mode_answers_one_frame_per_0x55_after_the_ranging():
    clock = Clock()
    p = probes.Probes()
    level = [1234.0]
    p.sonar_mm = lambda: level[0]
    p.sonar_mode = "trigger"
    u = probes.SimSonarUart(clock, p)
    clock.ms += 5000
    assert u.any() == 0  # idle: nothing without a trigger, however long
    u.write(b"\x01\xaa")  # other bytes start nothing
    clock.ms += 1000
    assert u.any() == 0
    u.write(b"\x55")
    clock.ms += u.MEASURE_MS - 1
    assert u.any() == 0  # still ranging
    u.write(b"\x55")  # a trigger while it ranges: ignored
    clock.ms += 1
    assert frames(drain(u)) == [1234]  # FF 04 D2 D5
    clock.ms += 1000
    assert u.any() == 0  # one frame, not a stream
    level[0] = 2000.0
    for _ in range(3):  # three triggers, three frames, each of the level then
        u.write(b"\x55")
        clock.ms += 150
    assert frames(drain(u)) == [2000, 2000, 2000]
    p.sonar_mm = lambda: None  # no echo: no frame
    u.write(b"\x55")
    clock.ms += 150
    assert u.any() == 0
    assert u.triggers == 5
    assert probes.sonar_frame(1953) == bytes.fromhex("ff07a1a7")  # DFRobot's example


def test_auto_mode_streams_and_ignores_triggers():
    clock = Clock()
    p = probes.Probes()
    p.sonar_mm = lambda: 800.0
    u = probes.SimSonarUart(clock, p)
    u.write(b"\x55")
    clock.ms += 1000
    assert frames(drain(u)) == [800] * 10  # every 100 ms, asked or not
    assert u.triggers == 0


# --- config and provision -----------------------------------------------------------


def board_cfg(tank):
    cfg = config(tank=tank)
    for k in ("bore", "quality", "motor", "volts"):
        cfg.pop(k)
    return cfg


def test_config_key_defaults_to_auto_and_belongs_to_a_sonar():
    sonar = {"in": "sonar", "height_m": 3, "diameter_m": 2.9, "mount_mm": MOUNT_MM}
    cfg, bad = fwconfig.validate(board_cfg(sonar))
    assert not bad and cfg["tank"]["sonar"] == "auto"
    cfg, bad = fwconfig.validate(board_cfg(dict(sonar, sonar="trigger")))
    assert not bad and cfg["tank"]["sonar"] == "trigger"
    cfg, bad = fwconfig.validate(board_cfg(dict(sonar, sonar="mode3")))
    assert bad == ["tank"]
    loop = {"in": "ads1", "height_m": 3, "diameter_m": 2.9, "shunt_ohm": 150}
    cfg, bad = fwconfig.validate(board_cfg(dict(loop, sonar="trigger")))
    assert bad == ["tank"]  # a trigger mode for a 4-20 mA transducer: confused


def provision(tmp_path, tank, capsys):
    rc = main(["provision", "--board", "esp32s3-devkitc-sim7600", "--village",
               "Rampur", "--population", "500", "--out", str(tmp_path / "out"),
               "--keys", str(tmp_path / "keys.json"), "--tank", tank])  # fmt: skip
    return rc, capsys.readouterr()


def test_provision_writes_the_sonar_mode(tmp_path, capsys):
    rc, out = provision(
        tmp_path, f"in=sonar,height_m=3,diameter_m=2.9,mount_mm={MOUNT_MM},"
        "sonar=trigger", capsys)  # fmt: skip
    assert rc == 0, out.err
    raw = json.loads((tmp_path / "out" / "config.json").read_text())
    assert raw["tank"]["sonar"] == "trigger"
    cfg, bad = fwconfig.validate(raw)
    assert not bad and cfg["tank"]["sonar"] == "trigger"
    assert "sensor: tank: sonar (0x55 trigger), 3 m high" in out.out
    rc, out = provision(tmp_path / "2", "in=sonar,height_m=3,diameter_m=2.9,"
                        "mount_mm=3300,sonar=on", capsys)  # fmt: skip
    assert rc != 0 and "sonar=on: use one of auto, trigger" in out.err
    assert not (tmp_path / "2" / "out" / "config.json").exists()


# --- the simulator: a day of the firmware's reads of the fitted sonar ----------------


def test_simulated_day_reads_the_tank_through_triggers(tmp_path):
    """The sensors scenario with its sonar in trigger mode: every measure frame's
    tank level is the median of the true levels at the five frames the sonar
    sent before it (the plant's tank over the tank's area), to 2 mm."""
    sc = scenario.load("sensors", days=1)
    sc["sensors"]["sonar"] = "trigger"
    seen = []  # (board ms, true level mm) at each frame the sonar sent
    uarts = []

    def setup(v):
        f = v.fitted
        p = v.hal.probes

        def mm():
            d = f._sonar_mm()
            if d is not None:
                seen.append((v.clock.ms, v.plant.level / f.tank_area_m2))
            return d

        p.sonar_mm = mm
        fit = v.hal.sonar_uart
        v.hal.sonar_uart = lambda: uarts.append(fit()) or uarts[-1]

    v = village.simulate(sc, tmp_path / "x", setup=setup)
    assert not v.clock.failures
    data = b"".join(p.read_bytes() for p in sorted((tmp_path / "x" / "sd" / "log")
                                                    .glob("*")))  # fmt: skip
    t = bulk.decode(data).table.to_pylist()
    m = [r for r in t if r["kind"] == 7]  # measure frames
    assert len(m) >= 90
    assert uarts and all(u.p.sonar_mode == "trigger" for u in uarts)
    sent = sum(u.triggers for u in uarts)
    assert sent == len(seen)  # every trigger answered, once
    assert 5 * len(m) <= sent <= 5 * (len(m) + 1)  # five a read (one may be going)
    start = v.sc["start_utc"]
    checked = 0
    for r in m:
        assert r["tank_mm"] is not None and not r["faults"] & 2  # measure.TANK
        ms = (r["t"] - start) * 1000
        before = [lv for at, lv in seen if at <= ms + 1000][-5:]
        assert len(before) == 5
        assert r["tank_mm"] == pytest.approx(median(before), abs=2)
        checked += 1
    assert checked == len(m)


# --- the firmware's reader in real MicroPython on the virtual board ------------------

READ_TANK = r"""
import json, time, asyncio, jkvb
from jkfw import config, hal, measure, sensors
MODE
with open('/config.json') as f:
    cfg, bad = config.validate(json.load(f))
assert not bad, bad
class Clk:
    def sleep_ms(self, ms):
        return asyncio.sleep_ms(ms)
class Ctl:
    pass
c = Ctl(); c.cfg = cfg; c.hal = hal.Hal(cfg); c.clock = Clk()
m = measure.Measure(c)
t0 = jkvb.truth()
asyncio.run(m.read_tank(m.buf))
t1 = jkvb.truth()
s = m.sonar
print('OUT', json.dumps({'mode': cfg['tank']['sonar'],
      'mm': m.vals[2], 'litres': m.vals[3], 'faults': m.faults,
      'fault': sensors.NAMES[s.fault], 'sent': s.uart._far.triggers,
      'truth': [t0['tank_level_m'], t1['tank_level_m']], 'tank_l': t1['tank_l']}))
"""
NO_H = 0xFFFF


@pytest.fixture(scope="module")
def board(mpy, tmp_path_factory):
    pytest.importorskip("mpremote")
    flash = firmware_flash(tmp_path_factory.mktemp("sonar"))
    cfg = board_cfg({"in": "sonar", "height_m": 3, "diameter_m": 2.9,
                     "mount_mm": MOUNT_MM, "sonar": "trigger"})  # fmt: skip
    (flash / "config.json").write_text(json.dumps(cfg))
    vb = VBoard(flash, "--board", "esp32s3-devkitc-sim7600")
    vb.flash = flash
    mpremote(vb.port, "exec", "import jkvb; jkvb.set(tank=9000)")
    yield vb
    assert vb.stop() == 0


def read_tank(board, tmp_path, mode=""):
    return run(board, READ_TANK.replace("MODE", mode), tmp_path, "tank.py")


@pytest.mark.micropython
def test_trigger_mode_reads_the_plants_tank(board, tmp_path):
    r = read_tank(board, tmp_path)
    assert (r["mode"], r["fault"], r["faults"]) == ("trigger", "ok", 0)
    assert r["sent"] == 5  # one 0x55 a frame, five frames for the median
    lo, hi = sorted(r["truth"])
    assert lo - 0.002 <= r["mm"] / 1000 <= hi + 0.002
    assert r["mm"] / 1000 == pytest.approx(9000 / 1000 / (3.14159265 * 2.9**2 / 4),
                                           abs=0.003)  # fmt: skip
    assert r["litres"] == pytest.approx(r["tank_l"], abs=7)  # 1 mm = 6.6 L


@pytest.mark.micropython
def test_auto_config_on_a_trigger_sensor_is_a_fault_not_a_level(board, tmp_path):
    """config.json says auto (the default) while the sensor's R27 is 120k: the
    firmware writes no trigger, the sensor sends nothing, and the tank reads as
    absent (its fault bit set, no level), never as a level."""
    cfg_path = board.flash / "config.json"
    saved = cfg_path.read_text()
    cfg = json.loads(saved)
    del cfg["tank"]["sonar"]
    cfg_path.write_text(json.dumps(cfg))
    fit = "jkvb.sensors().sonar_mode('trigger')  # the sensor fitted: R27 = 120k"
    try:
        r = read_tank(board, tmp_path, fit)
    finally:
        cfg_path.write_text(saved)
        mpremote(board.port, "exec", "import jkvb; jkvb.sensors().sonar_mode()")
    assert (r["mode"], r["sent"]) == ("auto", 0)
    assert r["fault"] == "absent" and r["faults"] & 2  # measure.TANK
    assert r["mm"] == NO_H and r["litres"] == 0xFFFFFFFF
    assert r["truth"][0] > 0.5  # there was water to see
    # and back in the mode its config names, the same board reads the level again
    r = read_tank(board, tmp_path)
    assert r["fault"] == "ok" and r["mm"] != NO_H
