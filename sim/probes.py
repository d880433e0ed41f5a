# Stand-ins for the sensors' hardware, for SimHal: an ESP32 ADC pin, an I2C bus
# with an ADS1115 on it (and a display that takes every write), the ultrasonic
# sensor's UART, a DS18B20 behind ds18x20's interface, a CT's ADC samples and a
# contactor's auxiliary contact. Each reads its true value from a function the
# plant sets (None: the sensor gives nothing); the bytes and codes are the ones
# the real parts give (docs/sensors.md). Runs on MicroPython and CPython alike.
import math

ENODEV = 19


class Probes:
    """What the plant puts on the wires: volts on each ADC pin (by GPIO), on each
    ADS1115 input (0-3), the sonar's distance (mm), the water temperature (C),
    the motor current (A RMS) and whether the contactor is pulled in. Each is a
    function of nothing (the plant knows the time) returning a value or None."""

    def __init__(self):
        self.pin_volts = {}  # GPIO -> fn
        self.ads_volts = {}  # channel -> fn
        self.ads_addr = 0x48
        self.sonar_mm = None
        # the sonar's serial mode, as its board is fitted: "auto" (A02YYUW, or a
        # JSN-SR04T with R27 = 47k) or "trigger" (a JSN-SR04T with R27 = 120k)
        self.sonar_mode = "auto"
        self.temp_c = None
        self.amps = None
        self.contact = None  # fn -> True while the contactor is in


class SimAdc:
    """machine.ADC at 11 dB: read_uv() (calibrated) and read_u16()."""

    def __init__(self, fn):
        self.fn = fn

    def volts(self):
        v = self.fn() if self.fn else 0.0
        v = 0.0 if v is None or v < 0 else v
        return 3.1 if v > 3.1 else v  # the pin clamps near 3.1 V

    def read_uv(self):
        return int(self.volts() * 1000000)

    def read_u16(self):
        return min(65535, int(self.volts() / 3.9 * 65535))


class SimI2C:
    """An I2C bus: the display at any address takes every write (writeto); an
    ADS1115 at probes.ads_addr answers register access, its conversion done at
    once; nothing else answers (OSError ENODEV, as machine.I2C)."""

    def __init__(self, probes):
        self.p = probes
        self.writes = 0
        self.cfg = 0x8583
        self.code = 0

    def writeto(self, addr, buf, stop=True):
        self.writes += 1
        return len(buf)

    def _ads(self, addr):
        if addr != self.p.ads_addr or not self.p.ads_volts:
            raise OSError(ENODEV)

    def writeto_mem(self, addr, reg, buf):
        self._ads(addr)
        if reg == 1:
            self.cfg = (buf[0] << 8) | buf[1]
            fn = self.p.ads_volts.get(((self.cfg >> 12) & 7) - 4)
            v = fn() if fn else None
            v = 0.0 if v is None else v
            fsr = (6.144, 4.096, 2.048, 1.024, 0.512, 0.256)[(self.cfg >> 9) & 7]
            c = int(v / fsr * 32768)
            c = 32767 if c > 32767 else -32768 if c < -32768 else c
            self.code = c & 0xFFFF

    def readfrom_mem_into(self, addr, reg, buf):
        self._ads(addr)
        v = self.code if reg == 0 else self.cfg | 0x8000  # OS = 1: done
        buf[0] = v >> 8
        buf[1] = v & 0xFF


def sonar_frame(mm):
    """The 4-byte frame (FF, H, L, SUM) of a distance in mm."""
    d = int(mm) & 0xFFFF
    return bytes((0xFF, d >> 8, d & 0xFF, (0xFF + (d >> 8) + (d & 0xFF)) & 0xFF))


class SimSonarUart:
    """An ultrasonic sensor on a UART, in the serial mode probes.sonar_mode says
    (docs/sensors.md, JSN-SR04T): "auto", an A02YYUW (or a JSN-SR04T with R27 =
    47k) sending a frame (FF, H, L, SUM) every 100 ms of virtual time while it sees
    an echo; "trigger", a JSN-SR04T with R27 = 120k: idle and silent until a 0x55
    byte arrives on its RX, then one ranging of MEASURE_MS and one frame (other
    bytes, and a 0x55 while it is ranging, start nothing). No echo: no frame. The
    UART keeps the last rxbuf bytes."""

    MEASURE_MS = 100  # one ranging: mode 2's cycle; mode 1 gives up at 60 ms

    def __init__(self, clock, probes, rxbuf=256):
        self.clock = clock
        self.p = probes
        self.rxbuf = rxbuf
        self.last_ms = clock.ms
        self.pending = b""
        self.due = None  # trigger mode: the ranging under way ends then (ms)
        self.triggers = 0  # 0x55 bytes that started a ranging

    def _mm(self):
        return self.p.sonar_mm() if self.p.sonar_mm else None

    def _put(self, data):
        self.pending = (self.pending + data)[-self.rxbuf :]

    def _fill(self):
        now = self.clock.ms
        if self.p.sonar_mode == "trigger":
            self.last_ms = now
            if self.due is not None and now >= self.due:
                self.due = None
                mm = self._mm()
                if mm is not None:
                    self._put(sonar_frame(mm))
            return
        n = (now - self.last_ms) // 100
        if n <= 0:
            return
        self.last_ms += n * 100
        mm = self._mm()
        if mm is None:
            return  # no echo, no power: silence
        self._put(sonar_frame(mm) * min(n, self.rxbuf // 4))

    def any(self):
        self._fill()
        return len(self.pending)

    def readinto(self, buf, nbytes=None):
        self._fill()
        k = min(len(buf), len(self.pending))
        if not k:
            return None
        buf[:k] = self.pending[:k]
        self.pending = self.pending[k:]
        return k

    def write(self, data):
        self._fill()
        if self.p.sonar_mode == "trigger":
            for b in data:
                if b == 0x55 and self.due is None:
                    self.due = self.clock.ms + self.MEASURE_MS
                    self.triggers += 1
        return len(data)


class SimDS18X20:
    """ds18x20.DS18X20's interface: scan, convert_temp, read_temp; a missing probe
    scans empty; buf is the scratchpad (the config byte's low bits set)."""

    ROM = bytearray(b"\x28\x01\x02\x03\x04\x05\x06\x07")

    def __init__(self, probes):
        self.p = probes
        self.buf = bytearray(b"\x00\x00\x00\x00\x7f\xff\x00\x10\x00")

    def _t(self):
        return self.p.temp_c() if self.p.temp_c else None

    def scan(self):
        return [self.ROM] if self._t() is not None else []

    def convert_temp(self):
        if self._t() is None:
            raise OSError(ENODEV)

    def read_temp(self, rom):
        t = self._t()
        if t is None:
            raise Exception("CRC error")
        return int(t * 16) / 16  # 12 bits: 1/16 C


class SimContact:
    """A contactor's auxiliary contact to ground on a pulled-up pin: 0 while in."""

    def __init__(self, probes):
        self.p = probes

    def __call__(self):
        return 0 if self.p.contact and self.p.contact() else 1


def ct_sampler(probes, counts_per_amp, bias=32768):
    """sample(buf, n, period_us) as motor.paced_read gives it: a biased sine of the
    motor's current (one waveform per current, kept)."""
    cache = {}

    def sample(buf, n, period_us):
        a = probes.amps() if probes.amps else 0.0
        key = int(a * 100)
        w = cache.get(key)
        if w is None:
            per = 1000000 // (50 * period_us)
            peak = key / 100 * 1.4142135623730951 * counts_per_amp
            w = [0] * n
            for i in range(n):
                v = int(bias + peak * math.sin(2 * math.pi * i / per) + 0.5)
                w[i] = 0 if v < 0 else 65535 if v > 65535 else v
            if len(cache) > 64:
                cache.clear()
            cache[key] = w
        for i in range(n):
            buf[i] = w[i]

    return sample


# every sensor (jksim.probes gives steady values): the heap of a fully fitted board
SENSORS = {
    "bore": {"in": "ads0", "shunt_ohm": 150, "range_m": 50, "install_m": 45,
             "intake_m": 40},
    "tank": {"in": "sonar", "height_m": 3, "diameter_m": 2.9, "mount_mm": 3300},
    "quality": {"ec_in": "ads1", "ph_in": "ads2", "temp": True, "ec_slope": 1000.0,
                "ph_slope": -5.7, "ph_offset": 21.25},
    "motor": {"sense": "ct"},
    "volts": {"supply": {"r_top": 100000, "r_bottom": 10000},
              "battery": {"in": "ads3", "r_top": 100000, "r_bottom": 10000}},
}  # fmt: skip


def fit(hal, p):
    """Give SimHal the sensors' calls of jkfw.hal.Hal (adc, ct, pin_in, sonar_uart,
    ds18x20, wait_ms), valued by the Probes p, and an I2C bus with the ADS1115 (the
    display shares it). Here, not in sim/hw.py: a board without sensors loads
    none of it."""
    hal.probes = p
    hal.i2c = SimI2C(p)
    hal.adc = lambda n: SimAdc(p.pin_volts.get(n))
    # the CT's volts per amp at 3.9 V / 65535 counts (hal.ct's scale)
    apv = (hal.cfg.get("motor") or {}).get("amps_per_volt", 30.0)
    hal.ct = lambda n: ct_sampler(p, 65535 / 3.9 / apv)
    hal.pin_in = lambda n: SimContact(p)
    hal.sonar_uart = lambda: SimSonarUart(hal.clock, p)
    hal.ds18x20 = lambda: SimDS18X20(p)
    hal.wait_ms = lambda ms: None  # virtual time: a conversion is done at once
    return p


def fit_probes(hal):
    """Steady values on the sensors' wires for SENSORS."""
    p = fit(hal, Probes())
    p.ads_volts = {0: lambda: 0.0015, 1: lambda: 0.7, 2: lambda: 2.5, 3: lambda: 1.16}
    p.pin_volts = {hal.cfg["pins"]["supply_adc"]: lambda: 1.1}
    p.sonar_mm = lambda: 1800
    p.temp_c = lambda: 26.5
    p.amps = lambda: 8.0 if hal.relay_is_on() else 0.0
