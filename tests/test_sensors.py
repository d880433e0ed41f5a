"""The sensor drivers (firmware/sensors.py, loop420, ads1115, sonar, quality, motor)
under CPython and in real MicroPython: NE 43 bands at their edges, the ADS1115
against a fake I2C bus that answers as the datasheet's registers do, ultrasonic
frames with bad checksums and garbage, pH and EC calibration against numbers worked
out here, CT RMS of a sine, the relay/motor disagreement, and the heap each module
costs when a board imports it."""

import asyncio
import json
import math
from fractions import Fraction

import pytest
from conftest import firmware_files
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from jkfw import ads1115, loop420, motor, quality, sensors, sonar

# --- stand-ins for the hardware, plain enough to run in MicroPython too
FAKES = r'''
class FakeI2C:
    """An ADS1115 on a bus: four 16-bit registers behind the address pointer
    (SBAS444D 9.6); writing OS=1 in single-shot mode starts a conversion that
    reads busy (OS=0) for `busy` config reads, then the code of the selected input
    (MUX 100-111: AINx to GND; 000: AIN0-AIN1) at the PGA's LSB = FSR / 2^15,
    clipped to 7FFFh / 8000h."""

    FSR = (6.144, 4.096, 2.048, 1.024, 0.512, 0.256, 0.256, 0.256)
    DIFF = ((0, 1), (0, 3), (1, 3), (2, 3))

    def __init__(self, volts, address=0x48, busy=1):
        self.volts = volts
        self.address = address
        self.regs = [0, 0x8583, 0x8000, 0x7FFF]
        self.busy_reads = busy
        self.busy = 0
        self.pending = None
        self.writes = []
        self.present = True

    def _check(self, addr):
        if not self.present or addr != self.address:
            raise OSError(19)  # ENODEV: no ACK

    def _code(self, cfg):
        mux = (cfg >> 12) & 7
        fsr = self.FSR[(cfg >> 9) & 7]
        if mux >= 4:
            v = self.volts[mux - 4]
        else:
            p, n = self.DIFF[mux]
            v = self.volts[p] - self.volts[n]
        c = int(round(v * 32768 / fsr))
        c = 32767 if c > 32767 else -32768 if c < -32768 else c
        return c & 0xFFFF

    def writeto_mem(self, addr, reg, buf):
        self._check(addr)
        value = (buf[0] << 8) | buf[1]
        self.writes.append((reg, value))
        reg &= 3
        if reg == 0:
            return  # the conversion register is read-only
        if reg == 1:
            start = value & 0x8000 and self.busy == 0
            self.regs[1] = value & 0x7FFF
            if start and value & 0x0100:
                self.busy = self.busy_reads
                self.pending = self._code(value)
            return
        self.regs[reg] = value

    def readfrom_mem_into(self, addr, reg, buf):
        self._check(addr)
        reg &= 3
        if reg == 1:
            if self.busy:
                self.busy -= 1
                value = self.regs[1]
            else:
                if self.pending is not None:
                    self.regs[0] = self.pending
                    self.pending = None
                value = self.regs[1] | 0x8000
        else:
            value = self.regs[reg]
        buf[0] = value >> 8
        buf[1] = value & 0xFF


class Clock:
    def __init__(self):
        self.slept = []

    async def sleep_ms(self, ms):
        self.slept.append(ms)


class Seq:
    def __init__(self, values):
        self.values = list(values)
        self.i = 0
        self.fault = 0

    def read(self):
        v = self.values[self.i % len(self.values)]
        self.i += 1
        return v


class Uv:
    def __init__(self, uv):
        self.uv = uv

    def read_uv(self):
        return self.uv


class FakeDS:
    """ds18x20.DS18X20 as MicroPython's driver behaves: scan() -> ROMs,
    convert_temp(), read_temp(rom) raising Exception("CRC error"), .buf the
    scratchpad it read."""

    def __init__(self, temp=23.5, roms=(b"\x28\x01\x02\x03\x04\x05\x06\x07",),
                 crc=False, zeros=False, gone=False):
        self.temp = temp
        self.roms = list(roms)
        self.crc = crc
        self.zeros = zeros
        self.gone = gone
        self.converted = 0
        self.buf = bytearray(9)

    def scan(self):
        return list(self.roms)

    def convert_temp(self):
        if self.gone:
            raise OSError(5)  # onewire.OneWireError: no presence pulse
        self.converted += 1

    def read_temp(self, rom):
        if self.crc:
            raise Exception("CRC error")
        if self.zeros:
            for i in range(9):
                self.buf[i] = 0
            return 0.0
        self.buf[4] = 0x7F
        return self.temp


def run(coro):
    # the fake clock never suspends: step the coroutine to its end
    try:
        while True:
            coro.send(None)
    except StopIteration as e:
        return e.args[0] if e.args else None
'''

_ns: dict = {}
exec(FAKES, _ns)
FakeI2C, Clock, Seq, Uv, FakeDS = (
    _ns[n] for n in ("FakeI2C", "Clock", "Seq", "Uv", "FakeDS")
)


# --- NAMUR NE 43


@pytest.mark.parametrize(
    "ma, status",
    [
        (0.0, sensors.OPEN),
        (3.59, sensors.OPEN),
        (3.6, sensors.UNDER),
        (3.79, sensors.UNDER),
        (3.8, sensors.OK),
        (4.0, sensors.OK),
        (20.5, sensors.OK),
        (20.51, sensors.OVER),
        (21.0, sensors.OVER),
        (21.01, sensors.SHORT),
        (30.0, sensors.SHORT),
    ],
)
def test_ne43_bands_at_their_edges(ma, status):
    assert loop420.classify(ma) == status
    lp = loop420.Loop(None, 150, range_m=10.0, install_m=30.0)
    h = lp.from_ma(ma)
    assert lp.fault == status
    if status == sensors.OK:
        assert h == pytest.approx((ma - 4) / 16 * 10)
        assert lp.depth_m == pytest.approx(30 - h)
    else:  # a fault or a saturated current is never a level
        assert h is None and lp.head is None and lp.depth_m is None


def test_loop_through_the_esp32_adc():
    # 12 mA across 100 ohm = 1.2 V at the pin, read calibrated (read_uv)
    lp = loop420.Loop(sensors.AdcVolts(Uv(1200000)), 100, range_m=20.0, install_m=45.0)
    assert lp.read() == pytest.approx(10.0)
    assert lp.ma == pytest.approx(12.0) and lp.depth_m == pytest.approx(35.0)
    # raw counts at 11 dB: 2048 of 4095 -> 2048 * 3.9 / 4095 V
    assert sensors.counts_to_volts(2048) == pytest.approx(2048 * 3.9 / 4095)
    # an open loop reads ~0 V: a fault, not "no water"
    lp.src = sensors.AdcVolts(Uv(20000))
    assert lp.read() is None and lp.fault == sensors.OPEN
    # a shorted loop drives the pin past the ADC's linear top: SHORT, not a level
    lp.src = sensors.AdcVolts(Uv(2600000))
    assert lp.read() is None and lp.fault == sensors.SHORT
    assert loop420.shunt_ok(100, 2.45) and not loop420.shunt_ok(150, 2.45)


# --- ADS1115


def test_ads1115_config_word_is_the_datasheets():
    # OS=1, MUX=100 (AIN0-GND), PGA=001 (4.096 V), MODE=1, DR=100 (128 SPS),
    # COMP_QUE=11: 1100 0011 1000 0011
    assert ads1115.config_word(0, pga=1, dr=4) == 0b1100_0011_1000_0011 == 0xC383
    assert ads1115.config_word(3, pga=2, dr=7) == 0xF5E3
    assert ads1115.code_to_volts(0x7FFF, 1) == pytest.approx(4.096 * 32767 / 32768)
    assert ads1115.code_to_volts(0xFFFF, 1) == pytest.approx(-0.000125)


def test_ads1115_single_shot_against_the_register_model():
    bus = FakeI2C([1.8, 0.6, 0.0, 5.0], busy=2)
    adc = ads1115.ADS1115(bus, pga=1, wait_ms=lambda ms: None)
    assert adc.read(0) == pytest.approx(1.8, abs=125e-6)
    assert adc.code == 14400 and adc.fault == sensors.OK
    assert bus.writes[-1] == (1, 0xC383)  # the config, to pointer 01
    assert adc.read(1) == pytest.approx(0.6, abs=125e-6)
    # 5 V on AIN3 is past the 4.096 V range: the clipped code is not a value
    assert adc.read(3) is None and adc.fault == sensors.OVER
    # 12 mA through 150 ohm into a loop: 5 m of a 10 m transducer
    lp = loop420.Loop(adc.channel(0), 150, range_m=10.0, install_m=30.0)
    assert lp.read() == pytest.approx(5.0, abs=1e-3)
    assert lp.depth_m == pytest.approx(25.0, abs=1e-3)
    # the chip gone from the bus (no ACK): absent, no level
    bus.present = False
    assert lp.read() is None and lp.fault == sensors.ABSENT
    # a chip that never finishes is not an ADS1115 answering
    bus2 = FakeI2C([1.0] * 4, busy=100)
    adc2 = ads1115.ADS1115(bus2, wait_ms=lambda ms: None)
    assert adc2.read(0) is None and adc2.fault == sensors.ABSENT


# --- ultrasonic frames


def frame(mm, bad=0):
    h, lo = mm >> 8, mm & 0xFF
    return bytes([0xFF, h, lo, (0xFF + h + lo + bad) & 0xFF])


def test_dfrobot_example_frame():
    assert frame(1953) == bytes.fromhex("FF07A1A7")  # DFRobot's wiki example
    s = sonar.Sonar(None)
    assert s.feed(bytes.fromhex("FF07A1A7")) == 1 and s.last == 1953


def valid_windows(data):
    return {
        (data[i + 1] << 8) | data[i + 2]
        for i in range(len(data) - 3)
        if data[i] == 0xFF and (0xFF + data[i + 1] + data[i + 2]) & 0xFF == data[i + 3]
    }


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=200))
def test_garbage_never_raises_and_only_checked_frames_count(data):
    s = sonar.Sonar(None, min_mm=0, max_mm=65535)
    taken = []
    for b in data:  # byte by byte, as a slow UART gives them
        if s.feed(bytes([b])):
            taken.append(s.last)
    assert set(taken) <= valid_windows(data)
    s2 = sonar.Sonar(None, min_mm=0, max_mm=65535)
    s2.feed(data)
    assert s2.k == 0 or s2.last in valid_windows(data)


@settings(max_examples=300, deadline=None)
@given(
    st.integers(0, 0xFFFF),
    st.integers(1, 255),
    st.binary(max_size=20).map(lambda b: bytes(x for x in b if x != 0xFF)),
)
def test_a_frame_with_a_bad_checksum_is_never_a_distance(mm, bad, junk):
    data = junk + frame(mm, bad) + junk
    # the frame's 0xFF bytes and the junk after them can make a window whose
    # checksum holds (FF FE 8A 87): a checked frame, which the test above covers
    assume(not valid_windows(data))
    s = sonar.Sonar(None, min_mm=0, max_mm=65535)
    assert s.feed(data) == 0
    assert s.last == -1 and s.k == 0
    # and good frames after it are found (a distance a sensor can give: its high
    # byte is never 0xFF, so a run of frames cannot stay out of step)
    mm %= 6001
    s.feed(frame(mm) * 3 + junk)
    assert s.last == mm


class FakeUart:
    def __init__(self):
        self.data = b""
        self.sent = b""

    def any(self):
        return len(self.data)

    def readinto(self, buf):
        n = min(len(buf), len(self.data))
        buf[:n] = self.data[:n]
        self.data = self.data[n:]
        return n

    def write(self, b):
        self.sent += b


def test_sonar_poll_median_range_and_stale():
    u = FakeUart()
    s = sonar.Sonar(u, min_mm=250, max_mm=4500, window=5, stale=2)
    assert s.poll() is None and s.fault == sensors.ABSENT
    u.data = b"\x00\x13" + frame(1000) + frame(1010) + frame(3000) + frame(1005)[:2]
    assert s.poll() == 1010  # median of 1000, 1010, 3000
    u.data = frame(1005)[2:] + frame(990)
    assert s.poll() == 1005  # median of 1000, 1010, 3000, 1005, 990
    u.data = frame(100)  # inside the blind zone: a fault, not a level
    assert s.poll() is None and s.fault == sensors.RANGE
    u.data = frame(1000)
    assert s.poll() is not None and s.fault == sensors.OK
    assert s.poll() is not None  # one quiet poll is fine
    assert s.poll() is None and s.fault == sensors.STALE
    s.request()
    assert u.sent == b"\x55"


def test_tank_geometry():
    v = sonar.Tank(sonar.VERTICAL, 2.0, diameter_m=2.0, mount_mm=2500)
    assert v.level_m(1000) == pytest.approx(1.5)
    assert v.litres(1.5) == pytest.approx(math.pi * 1.0 * 1.5 * 1000)
    assert v.level_m(3000) == 0.0 and v.level_m(0) == 2.0
    r = sonar.Tank(sonar.RECT, 1.5, length_m=3.0, width_m=2.0)
    assert r.litres(1.2) == pytest.approx(7200)
    assert r.capacity_l() == pytest.approx(9000)


# --- water quality


def test_ph_two_point_against_worked_numbers():
    p = quality.PH()
    assert p.value(1.0) is None and p.fault == sensors.CAL
    assert p.calibrate(2.032, 4.01, 1.500, 6.86, 25.0, "2026-03-01")
    F = Fraction
    slope = (F("6.86") - F("4.01")) / (F("1.500") - F("2.032"))
    offset = F("4.01") - slope * F("2.032")
    assert p.slope == pytest.approx(float(slope))  # -5.357142857...
    assert p.offset == pytest.approx(float(offset))  # 14.895714285...
    want = slope * F("1.75") + offset  # 5.520714285...
    assert p.value(1.75) == pytest.approx(float(want))
    assert float(want) == pytest.approx(5.5207142857)
    # at 35 C the electrode's slope is 308.15 / 298.15 of the calibration's
    hot = 7 + (want - 7) * F("298.15") / F("308.15")
    assert p.value(1.75, 35.0) == pytest.approx(float(hot))
    assert p.value(-5.0) is None and p.fault == sensors.RANGE
    assert not quality.PH().calibrate(1.0, 4.0, 1.0, 7.0)


def test_ec_tds_temperature_compensation_against_worked_numbers():
    c = quality.Conductivity(tds_factor=0.5)
    assert c.value(1.0, 25) is None and c.fault == sensors.CAL
    # 1413 and 12880 uS/cm standards (values at 25 C) read 0.5 V and 2.5 V at 20 C
    assert c.calibrate(0.5, 1413, 2.5, 12880, 20.0, "2026-03-01")
    F = Fraction
    f20 = 1 + F("0.02") * (20 - 25)  # 0.9: the standards read lower at 20 C
    slope = (12880 * f20 - 1413 * f20) / 2
    offset = 1413 * f20 - slope / 2
    assert c.slope == pytest.approx(float(slope))  # 5160.15
    assert c.offset == pytest.approx(float(offset))  # -1308.375
    ec_t = slope * F("1.2") + offset  # 4883.805 at 30 C
    ec25 = ec_t / (1 + F("0.02") * 5)  # 4439.822...
    assert c.value(1.2, 30.0) == pytest.approx(float(ec25))
    assert c.tds == pytest.approx(float(ec25 / 2))  # 2219.911 mg/L
    assert c.value(1.2, None) is None and c.fault == sensors.ABSENT
    assert quality.compensate(1000, 25) == 1000
    assert quality.cal_age_days("2026-03-01", "2026-05-30") == 90
    assert quality.cal_age_days("2024-02-28", "2024-03-01") == 2  # leap year
    assert quality.day_number("1970-01-01") == 0
    assert quality.day_number("2000-03-01") == 11017
    assert quality.cal_age_days("", "2026-01-01") is None


def test_burst_median_after_the_settle_time():
    clk = Clock()
    buf = [0.0] * 8
    src = Seq([5.0, 100.0, 6.0, None, 7.0])
    got = asyncio.run(sensors.burst(src.read, clk, buf, 5, gap_ms=200, settle_ms=30000))
    assert got == 6.5  # median of 5, 100, 6, 7: one spike does not move it
    assert clk.slept == [30000, 200, 200, 200, 200]
    src = Seq([None, None, 1.0])
    assert asyncio.run(sensors.burst(src.read, clk, buf, 3)) is None  # mostly failed
    assert sensors.median([3, 1, 2], 3) == 2


@pytest.mark.parametrize(
    "ds, fault, temp",
    [
        (FakeDS(23.5), sensors.OK, 23.5),
        (FakeDS(-0.5), sensors.OK, -0.5),
        (FakeDS(85.0), sensors.RANGE, None),  # the power-on value
        (FakeDS(crc=True), sensors.CRC, None),
        (FakeDS(roms=()), sensors.ABSENT, None),
        (FakeDS(zeros=True), sensors.ABSENT, None),  # line held low
        (FakeDS(gone=True), sensors.ABSENT, None),
    ],
)
def test_ds18b20_glue(ds, fault, temp):
    clk = Clock()
    th = quality.Thermometer(ds)
    assert asyncio.run(th.read(clk)) == temp
    assert th.fault == fault
    if ds.roms and not ds.gone:
        assert clk.slept == [750] and ds.converted == 1


# --- motor


def sine(n, amp, per_cycle=40, bias=32768.0, phase=0.3):
    return [
        int(round(bias + amp * math.sin(2 * math.pi * i / per_cycle + phase)))
        for i in range(n)
    ]


@pytest.mark.parametrize("amp", [50, 800, 12000, 30000])
def test_ct_rms_of_a_sine_is_amplitude_over_root_two(amp):
    buf = sine(200, amp)
    rms, mean = motor.ac_rms(buf, 200)
    assert rms == pytest.approx(amp / math.sqrt(2), rel=0.01)
    assert mean == pytest.approx(32768, abs=1)


def test_current_transformer_thresholds_and_faults():
    amps = [0.0]

    def sample(buf, n, period_us):
        assert period_us == 500 and n == 200  # 5 whole 50 Hz cycles at 2 kHz
        # 30 A/V CT, 3.9 V per 65535 counts
        for i, v in enumerate(sine(n, amps[0] * math.sqrt(2) / 30 / 3.9 * 65535)):
            buf[i] = v

    ct = motor.CurrentTransformer(sample, 30.0, 3.9 / 65535, on_a=1.0, off_a=0.5)
    seen = []
    for a in (0.0, 0.7, 1.2, 8.0, 0.7, 0.4, 0.7):
        amps[0] = a
        got = ct.read()
        assert got == pytest.approx(a, rel=0.01, abs=0.01)
        seen.append(ct.running)
    assert seen == [False, False, True, True, True, False, False]

    def dead(buf, n, period_us):  # the bias divider open: the pin sits at 0
        for i in range(n):
            buf[i] = 0

    ct2 = motor.CurrentTransformer(dead, 30.0)
    assert ct2.read() is None and ct2.fault == sensors.OPEN

    def clipped(buf, n, period_us):
        for i, v in enumerate(sine(n, 40000)):
            buf[i] = max(0, min(65535, v))

    ct3 = motor.CurrentTransformer(clipped, 30.0)
    assert ct3.read() is None and ct3.fault == sensors.OVER


def test_relay_motor_disagreement_with_allowance():
    d = motor.disagreement
    assert d(True, False, 1.0) == motor.AGREE  # still starting
    assert d(True, False, 5.0) == motor.NOT_RUNNING
    assert d(False, True, 2.0) == motor.AGREE  # running down
    assert d(False, True, 6.0) == motor.RUNNING_OFF
    assert d(True, True, 100) == d(False, False, 100) == motor.AGREE
    w = motor.Watch(start_s=5, stop_s=5)
    timeline = [
        (0, False, False, motor.AGREE),
        (10, True, False, motor.AGREE),
        (12, True, True, motor.AGREE),  # started 2 s after the relay
        (100, False, True, motor.AGREE),
        (102, False, False, motor.AGREE),
        (200, True, False, motor.AGREE),
        (206, True, False, motor.NOT_RUNNING),  # tripped: never started
        (300, False, False, motor.AGREE),
        (400, False, True, motor.AGREE),  # bypassed starter...
        (410, False, True, motor.RUNNING_OFF),
        (420, False, None, motor.AGREE),  # sensor fault: nothing concluded
    ]
    for t, relay, running, want in timeline:
        assert w.step(t, relay, running) == want, t
    assert w.run_s == (100 - 12) + (102 - 100) + (420 - 400)
    aux = motor.AuxContact(lambda: 0, sense=0)
    assert aux.read() is True


def test_dividers():
    assert sensors.divider_ratio(100000, 10000) == pytest.approx(11.0)
    d = sensors.Divider(sensors.AdcVolts(Uv(1100000)), 100000, 10000)
    assert d.read() == pytest.approx(12.1)
    d = sensors.Divider(sensors.AdcVolts(Uv(3000000)), 100000, 10000)
    assert d.read() is None and d.fault == sensors.OVER


# --- the same checks in real MicroPython

MP_SCRIPT = r"""
import json
from fakes import FakeI2C, Clock, Seq, Uv, FakeDS, run
from jkfw import sensors, loop420, ads1115, sonar, quality, motor
import math
out = {}
out["ne43"] = [loop420.classify(x) for x in (3.59, 3.6, 3.8, 20.5, 21.0, 21.01)]
bus = FakeI2C([1.8, 0.6, 0.0, 5.0], busy=2)
adc = ads1115.ADS1115(bus, pga=1, wait_ms=lambda ms: None)
lp = loop420.Loop(adc.channel(0), 150, 10.0, 30.0)
out["ads"] = [adc.read(0), adc.code, adc.read(3), adc.fault, lp.read(), lp.depth_m,
              bus.writes[-1]]
s = sonar.Sonar(None, min_mm=0, max_mm=65535)
fr = bytes([0xFF, 0x07, 0xA1, 0xA7])
bad = bytes([0xFF, 0x07, 0xA1, 0xA8])
out["sonar"] = [s.feed(b"\x00\xff\x12" + bad + fr), s.last]
r = sonar.Tank(sonar.RECT, 1.5, length_m=3.0, width_m=2.0)
out["tank"] = [r.litres(1.2), sonar.Tank(sonar.VERTICAL, 2, diameter_m=2.0).litres(1.5)]
p = quality.PH()
p.calibrate(2.032, 4.01, 1.5, 6.86, 25.0, "2026-03-01")
c = quality.Conductivity(tds_factor=0.5)
c.calibrate(0.5, 1413, 2.5, 12880, 20.0, "2026-03-01")
out["q"] = [p.value(1.75), p.value(1.75, 35.0), c.value(1.2, 30.0), c.tds,
            quality.cal_age_days("2024-02-28", "2024-03-01")]
clk = Clock()
th = quality.Thermometer(FakeDS(23.5))
crc = quality.Thermometer(FakeDS(crc=True))
out["ds"] = [run(th.read(clk)), th.fault, run(crc.read(clk)), crc.fault,
             list(clk.slept)]
buf = [0.0] * 8
out["burst"] = run(sensors.burst(Seq([5.0, 100.0, 6.0, None, 7.0]).read, clk, buf, 5))
amp = 12000
sn = [int(32768 + amp * math.sin(2 * math.pi * i / 40 + 0.3) + 0.5) for i in range(200)]
out["rms"] = [motor.ac_rms(sn, 200)[0], amp / math.sqrt(2)]
w = motor.Watch()
out["watch"] = [w.step(0, True, False), w.step(6, True, False), w.step(7, False, True),
                w.step(13, False, True)]
class Adc:
    n = 0
    def read_u16(self):
        self.n += 1
        return 32768
import time
a = Adc()
t0 = time.ticks_ms()
motor.paced_read(a, [0] * 200, 200, 500)
out["paced"] = [a.n, time.ticks_diff(time.ticks_ms(), t0) >= 99]
print(json.dumps(out))
"""


def _cpython_expected():
    return {
        "ne43": [1, 3, 0, 0, 4, 2],
        "ds": [23.5, 0, None, sensors.CRC, [750, 750]],
        "burst": 6.5,
        "sonar": [1, 1953],
        "watch": [0, 1, 0, 2],
        "paced": [200, True],
    }


@pytest.mark.micropython
def test_drivers_in_micropython(mpy):
    files = firmware_files()
    files["fakes.py"] = FAKES
    out = json.loads(mpy.run(MP_SCRIPT, files))
    for k, v in _cpython_expected().items():
        assert out[k] == v, k
    a = out["ads"]
    assert a[0] == pytest.approx(1.8, abs=1.25e-4) and a[1] == 14400
    assert a[2] is None and a[3] == sensors.OVER
    assert a[4] == pytest.approx(5.0, abs=1e-3) and a[5] == pytest.approx(25, abs=1e-3)
    assert a[6] == [1, 0xC383]
    assert out["tank"] == pytest.approx([7200, math.pi * 1500])
    q = out["q"]
    assert q[0] == pytest.approx(5.5207142857)
    assert q[1] == pytest.approx(7 + (5.5207142857 - 7) * 298.15 / 308.15)
    assert q[2] == pytest.approx(4439.8227272) and q[3] == pytest.approx(2219.9113636)
    assert q[4] == 2
    assert out["rms"][0] == pytest.approx(out["rms"][1], rel=0.01)


MODULES = ("sensors", "loop420", "ads1115", "sonar", "quality", "motor")


def heap_figures(mpy, files):
    """Bytes of live heap each sensor module adds when imported (sensors first,
    as every other one imports it), measured between gc.collect() steps."""
    steps = ["import gc\ngc.collect()\nB = gc.mem_alloc()\nimport jkfw"]
    for m in MODULES:
        steps.append(
            "gc.collect()\nA = gc.mem_alloc()\nimport jkfw.%s\n" % m
            + "gc.collect()\nprint('%s', gc.mem_alloc() - A)" % m
        )
    out = mpy.run("import gc", files, steps=steps)
    return {line.split()[0]: int(line.split()[1]) for line in out.splitlines()}


@pytest.mark.micropython
def test_heap_each_module_costs(mpy):
    from conftest import compiled

    files = firmware_files()
    src = heap_figures(mpy, files)
    mpy_files = heap_figures(mpy, compiled(files))
    print("heap per module, source:", src)
    print("heap per module, .mpy:", mpy_files)
    for m in MODULES:
        assert 0 < mpy_files[m] <= src[m] + 64
        assert mpy_files[m] < 4096, (m, mpy_files[m])
    assert sum(mpy_files.values()) < 20 * 1024  # all six: ~17.7 KB measured
