"""The virtual board's sensor stand-ins (sim/vboard: machine.ADC, the ADS1115 on
machine.I2C, the ultrasonic sensor on machine.UART, onewire/ds18x20 with a DS18B20,
the motor's CT and auxiliary contact), read by the firmware's own drivers in real
MicroPython (jkfw.measure builds them from config.json, as the firmware does),
against the true values of the vboard's plant (jkvb.truth(): the simulator's
aquifer, quality and motor models), and with the sensor faults the simulator
injects (open loop, short, probe out of water, a missing or shorted DS18B20, a
silent sonar, a tripped motor).

One vboard for the module: ESP32-S3 DevKitC's pins, every sensor fitted."""

from __future__ import annotations

import json

import pytest
from conftest import REPO, firmware_files
from test_vboard import VBoard, mpremote

pytestmark = pytest.mark.micropython

INSTALL_M = 45.0
RANGE_M = 50.0
SHUNT = 150
MOUNT_MM = 3300
DIAMETER_M = 2.9


def config(**over):
    board = json.loads((REPO / "boards" / "esp32s3-devkitc-sim7600.json").read_text())
    cfg = {
        "device": "0a1b2c3d", "key": "5a" * 32, "board": board["name"],
        "pins": board["pins"], "population": 500,
        "bore": {"in": "ads0", "shunt_ohm": SHUNT, "range_m": RANGE_M,
                 "install_m": INSTALL_M, "intake_m": 40},
        "tank": {"in": "sonar", "height_m": 3, "diameter_m": DIAMETER_M,
                 "mount_mm": MOUNT_MM},
        # the vboard's EC board: 1000 uS/cm per volt; pH board: pH 7 at 2.5 V,
        # -5.7 pH per volt (sim/vboard/jkvbsense.py): calibrated right
        "quality": {"ec_in": "ads1", "ph_in": "ads2", "temp": True,
                    "ec_slope": 1000.0, "ec_date": "2026-11-02", "ph_slope": -5.7,
                    "ph_offset": 21.25, "ph_date": "2026-11-02"},
        "motor": {"sense": "ct"},
        "volts": {"supply": {"in": "adc", "r_top": 100000, "r_bottom": 10000},
                  "battery": {"in": "ads3", "r_top": 100000, "r_bottom": 10000}},
    }  # fmt: skip
    cfg.update(over)
    return cfg


# the firmware's sensor code on the board's config, as the controller builds it
MEASURE = r"""
import json, time, machine, jkvb
from jkfw import config, hal, measure, sensors
N = sensors.NAMES
with open('/config.json') as f:
    cfg, bad = config.validate(json.load(f))
assert not bad, bad
class Ctl:
    pass
c = Ctl(); c.cfg = cfg; c.hal = hal.Hal(cfg); c.clock = None
m = measure.Measure(c)
"""

# the firmware's drivers, as jkfw.measure builds them, each read once (the
# 4-20 mA loop and the probes as single samples: the plant holds still)
READ = (
    MEASURE
    + r"""
t0 = None
RELAY
out = {}
lp = m.bore
out['bore'] = [lp.read(), lp.ma, lp.depth_m, N[lp.fault]]
m.sonar.poll(); time.sleep_ms(500)
mm = m.sonar.poll()
out['sonar'] = [mm, N[m.sonar.fault]]
t = m.temp
temp = None
if t.start():
    time.sleep_ms(t.CONVERT_MS)
    temp = t.result()
out['temp'] = [temp, N[t.fault]]
v = m.ec_src.read()
out['ec'] = [v, m.ec.value(v, temp), m.ec.tds, N[m.ec.fault]]
v = m.ph_src.read()
out['ph'] = [v, m.ph.value(v, temp), N[m.ph.fault]]
out['motor'] = [m.motor.read(), m.motor.running, N[m.motor.fault]]
out['volts'] = [d.read() for d, _b, _i in m.volts]
out['truth'] = jkvb.truth()
if t0:
    t1 = jkvb.truth()
    out['lifted'] = [t1['source_l'] - t0['source_l'], t1['t'] - t0['t']]
print('OUT', json.dumps(out))
"""
)
RELAY_ON = (
    "import machine\nt0 = jkvb.truth()\n"
    "machine.Pin(cfg['pins']['relay'], machine.Pin.OUT, value=1)\n"
    "time.sleep_ms(3000)  # the motor starts 1.5 s after its contactor, inrush 0.5 s"
)


def firmware_flash(folder):  # type: ignore[no-untyped-def]
    """A flash folder holding the firmware (jkfw/, jkproto/)."""
    flash = folder / "flash"
    for name, data in firmware_files().items():
        p = flash / name
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_bytes(data)
    return flash


@pytest.fixture(scope="module")
def board(mpy, tmp_path_factory):
    pytest.importorskip("mpremote")
    flash = firmware_flash(tmp_path_factory.mktemp("vbs"))
    (flash / "config.json").write_text(json.dumps(config()))
    vb = VBoard(flash, "--board", "esp32s3-devkitc-sim7600")
    vb.flash = flash
    yield vb
    assert vb.stop() == 0


def run(board, code, tmp_path, name="read.py"):
    script = tmp_path / name
    script.write_text(code)
    out = mpremote(board.port, "run", str(script)).stdout.decode()
    for line in out.splitlines():
        if line.startswith("OUT "):
            return json.loads(line[4:])
    pytest.fail(f"no OUT line: {out}")


def read(board, tmp_path, relay=False):
    return run(board, READ.replace("RELAY", RELAY_ON if relay else ""), tmp_path)


def fault(board, sensor, kind=None):
    arg = f"{sensor!r}" + (f", {kind!r}" if kind else "")
    mpremote(board.port, "exec", f"import jkvb; jkvb.fault({arg})")


def test_drivers_read_the_plant(board, tmp_path):
    r = read(board, tmp_path)
    t = r["truth"]
    head, ma, depth, f = r["bore"]
    assert f == "ok"
    # the ADS1115 at +-4.096 V: 125 uV a count = 0.83 uA on 150 ohm = 2.6 mm of water
    assert head == pytest.approx(t["bore_head_m"], abs=0.005)
    assert depth == pytest.approx(t["bore_depth_m"], abs=0.005)
    assert ma == pytest.approx(4 + 16 * t["bore_head_m"] / RANGE_M, abs=0.002)
    mm, f = r["sonar"]
    assert f == "ok"
    assert (MOUNT_MM - mm) / 1000 == pytest.approx(t["tank_level_m"], abs=0.002)
    temp, f = r["temp"]
    assert f == "ok" and temp == pytest.approx(t["water_c"], abs=1 / 16)
    v, ec25, tds, f = r["ec"]
    assert f == "ok"
    assert ec25 == pytest.approx(t["ec25_us"], rel=0.005)
    assert tds == pytest.approx(t["tds_mgl"], rel=0.005)
    v, ph, f = r["ph"]
    assert f == "ok" and ph == pytest.approx(t["ph"], abs=0.01)
    amps, running, f = r["motor"]
    assert f == "ok" and amps < 0.3 and running is False  # relay off: no current
    supply, battery = r["volts"]
    assert supply == pytest.approx(t["supply_v"], abs=0.02)  # ESP32 ADC: ~1 mV x 11
    assert battery == pytest.approx(t["battery_v"], abs=0.002)


def test_motor_current_follows_the_relay(board, tmp_path):
    r = read(board, tmp_path, relay=True)
    amps, running, f = r["motor"]
    assert r["truth"]["motor_running"] is True
    # 200 samples over 5 cycles of the 50 Hz sine at the board's own pace
    assert f == "ok" and running is True
    assert amps == pytest.approx(r["truth"]["motor_a"], rel=0.08)
    # the pump lifts 5 L/s once its motor runs, 1.5 s after the contactor
    litres, seconds = r["lifted"]
    assert litres == pytest.approx(5 * (seconds - 1.5), abs=0.5)
    fault(board, "motor", "trip")  # overload tripped: relay on, no current
    try:
        r = read(board, tmp_path, relay=True)
        assert r["truth"]["motor_running"] is False
        amps, running, f = r["motor"]
        assert f == "ok" and amps < 0.3 and running is False
        assert r["lifted"][0] == 0  # a tripped motor lifts nothing: no flow
    finally:
        fault(board, "motor")


@pytest.mark.parametrize(
    "kind, want",
    [("open", "open"), ("short", "short"), ("dry", "ok")],
)
def test_borewell_loop_faults(board, tmp_path, kind, want):
    fault(board, "bore", kind)
    try:
        r = read(board, tmp_path)
    finally:
        fault(board, "bore")
    head, ma, depth, f = r["bore"]
    assert f == want
    if kind == "open":  # NAMUR NE 43: < 3.6 mA is a fault, never a level
        assert ma < 3.6 and head is None and depth is None
    elif kind == "short":
        assert ma > 21 and head is None and depth is None
    else:  # out of water: 4 mA is a level (0 m above the sensor), not a fault
        assert ma == pytest.approx(4.0, abs=0.002)
        assert head == pytest.approx(0, abs=0.003)
        assert depth == pytest.approx(INSTALL_M, abs=0.003)
    assert r["truth"]["faults"]["bore"][0] == kind


def test_probe_faults(board, tmp_path):
    for sensor, kind in (("temp", "open"), ("tank", "open"), ("ec", "dry")):
        fault(board, sensor, kind)
    try:
        r = read(board, tmp_path)
        assert r["temp"] == [None, "absent"]  # no presence pulse on the bus
        assert r["sonar"][0] is None and r["sonar"][1] in ("stale", "absent")
        # a conductivity probe out of water reads 0; EC has no temperature: absent
        v, ec25, tds, f = r["ec"]
        assert v == pytest.approx(0, abs=0.001) and ec25 is None and f == "absent"
        fault(board, "temp", "short")  # the data line held low: zeros pass the CRC
        r = read(board, tmp_path)
        assert r["temp"] == [None, "absent"]
    finally:
        for sensor in ("temp", "tank", "ec"):
            fault(board, sensor)
    r = read(board, tmp_path)
    assert r["temp"][1] == "ok" and r["sonar"][1] == "ok" and r["ec"][3] == "ok"


ANALOG = (
    MEASURE
    + r"""
out = {'off': m.motor.read()}
relay = machine.Pin(cfg['pins']['relay'], machine.Pin.OUT, value=1)
time.sleep_ms(2000)  # the contactor pulls in, the motor starts 1.5 s later
out['on'] = m.motor.read()
relay.value(0)
time.sleep_ms(100)
out['stopped'] = m.motor.read()
out['tank'] = [m.tank.read(), m.tank.ma, sensors.NAMES[m.tank.fault]]
out['truth'] = jkvb.truth()
print('OUT', json.dumps(out))
"""
)


def test_tank_on_the_esp32_adc_and_the_auxiliary_contact(board, tmp_path):
    """A 4-20 mA tank transducer on an ESP32 ADC1 pin (100 ohm, read_uv) and the
    motor's auxiliary contact on a pulled-up pin: another config.json on the same
    board (read at the next soft reset, as the wiring of the plant)."""
    cfg_path = board.flash / "config.json"
    saved = cfg_path.read_text()
    cfg = config()
    cfg["pins"] = dict(cfg["pins"], tank_adc=3)  # GPIO 3: ADC1 on the S3
    cfg["tank"] = {"in": "adc", "height_m": 3, "diameter_m": DIAMETER_M,
                   "range_m": 5, "shunt_ohm": 100}  # fmt: skip
    cfg["motor"] = {"sense": "aux"}
    cfg_path.write_text(json.dumps(cfg))
    try:
        r = run(board, ANALOG, tmp_path, "analog.py")
    finally:
        cfg_path.write_text(saved)
    assert (r["off"], r["on"], r["stopped"]) == (False, True, False)
    level, ma, f = r["tank"]
    assert f == "ok"
    # 12 bits of 3.9 V: 0.95 mV = 9.5 uA on 100 ohm = 3 mm of a 5 m range
    assert level == pytest.approx(r["truth"]["tank_level_m"], abs=0.005)
    assert ma == pytest.approx(4 + 16 * level / 5, abs=0.002)


REGISTERS = r"""
import json, time, machine, ds18x20, onewire
i2c = machine.I2C(0, sda=machine.Pin(8), scl=machine.Pin(9))
b = bytearray(2)
out = {'scan': i2c.scan()}
def reg(r):
    i2c.readfrom_mem_into(0x48, r, b)
    return b[0] << 8 | b[1]
out['reset'] = [reg(1), reg(2), reg(3)]
i2c.writeto_mem(0x48, 1, b'\xc3\x83')  # OS=1, AIN0, +-4.096 V, single, 128 SPS
out['busy'] = reg(1)
time.sleep_ms(9)
out['done'] = reg(1)
out['code'] = reg(0)
i2c.writeto_mem(0x48, 1, b'\x43\x83')  # OS=0: no conversion starts
out['idle'] = reg(1)
try:
    i2c.writeto(0x49, b'\x00')
    out['other'] = 'ack'
except OSError as e:
    out['other'] = e.errno
ow = onewire.OneWire(machine.Pin(47))
ds = ds18x20.DS18X20(ow)
roms = ds.scan()
out['roms'] = [bytes(r).hex() for r in roms]
out['pad'] = bytes(ds.read_scratch(roms[0])).hex()
out['nobus'] = onewire.OneWire(machine.Pin(46)).scan()
print('OUT', json.dumps(out))
"""


def test_ads1115_registers_and_ds18b20_bus(board, tmp_path):
    """The register map and timing of TI's datasheet; the DS18B20's power-on
    scratchpad as Maxim documents it (85 C, CRC 1Ch), found by a ROM search."""
    r = run(board, REGISTERS, tmp_path, "regs.py")
    assert 0x48 in r["scan"]
    assert r["reset"] == [0x8583, 0x8000, 0x7FFF]
    assert r["busy"] == 0x4383  # OS reads 0 while converting
    assert r["done"] == 0xC383  # 1/128 s later: done
    assert 0 < r["code"] < 0x7FFF
    assert r["idle"] == 0xC383  # an idle device reads OS = 1
    assert r["other"] == 19  # ENODEV: nothing at 0x49
    (rom,) = r["roms"]
    assert rom[:2] == "28"  # family code of the DS18B20
    assert r["pad"] == "50054b467fff0c101c"  # power-up: 85 C (0550h), CRC 1Ch
    assert r["nobus"] == []


@pytest.mark.slow
def test_deployed_firmware_logs_the_plants_borewell(mpy, tmp_path):
    """The whole firmware on the vboard at 600x with every sensor: each measure
    frame's borewell depth is the median of the last five transducer samples the
    plant gave before it (its ground truth), to the frame's 1 cm; the pump's runs
    draw the water down and it recovers."""
    from datetime import datetime

    from test_vboard_firmware import MAIN_PY, board_eval, decode, pull_logs

    pytest.importorskip("mpremote")
    flash = tmp_path / "flash"
    for name, data in firmware_files().items():
        p = flash / name
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_bytes(data)
    cfg = config(interval_s=60, measure_s=60, heartbeat_s=600)
    cfg["bore"] = {k: v for k, v in cfg["bore"].items() if k != "intake_m"}
    (flash / "config.json").write_text(json.dumps(cfg))
    (flash / "main.py").write_text(MAIN_PY)
    vb = VBoard(flash, "--board", "esp32s3-devkitc-sim7600", "--speed", "600")
    try:
        import time

        time.sleep(20)  # about 3 board hours
        samples = board_eval(vb.port, "__import__('jkvb').bore_samples()")
        names = pull_logs(vb.port, tmp_path / "logs")
    finally:
        assert vb.stop() == 0
    frames = []
    for n in names:
        frames += decode(tmp_path / "logs" / n, tmp_path)
    measures = [f for f in frames if f["kind"] == "measure"]
    assert len(measures) >= 60
    checked = 0
    depths = []
    for f in measures:
        ts = datetime.fromisoformat(f["ts"].replace("Z", "+00:00")).timestamp()
        before = [s for s in samples if s[0] <= ts + 1]
        if len(before) < 5 or before[0] is samples[0] and len(before) < 10:
            continue  # its burst began before the samples kept
        burst = sorted(s[1] for s in before[-5:])
        assert f["bore_depth_cm"] / 100 == pytest.approx(burst[2], abs=0.011)
        assert f["faults"] == []
        depths.append(f["bore_depth_cm"] / 100)
        checked += 1
    assert checked >= 50
    pumped = [s for s in samples if s[1] > 21.5]
    assert pumped and max(depths) - min(depths) > 1  # drawn down, then recovering
