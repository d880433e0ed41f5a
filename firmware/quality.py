# Water quality: conductivity (EC) and TDS with temperature compensation, pH with a
# two-point calibration, and the DS18B20 water temperature on 1-Wire. Probes are
# read as the median of a burst after their settle time (sensors.burst); each
# calibration keeps its date (YYYY-MM-DD, in config) so a stale one is visible.
#
# EC: a probe board's output volts -> EC at the water's temperature by a two-point
# line (two standards, e.g. 1413 uS/cm and 12880 uS/cm, whose values are given at
# 25 C), then to 25 C by the linear coefficient alpha (2 %/C):
#     EC25 = EC_T / (1 + alpha (T - 25)),   TDS (mg/L) = k * EC25 (k 0.5-0.7)
# pH: a line through two buffers (e.g. 4.01 and 6.86 or 7.00):
#     slope = (pH2 - pH1) / (V2 - V1),   offset = pH1 - slope * V1
# optionally corrected for the electrode's Nernst slope (proportional to absolute
# temperature) about pH 7 when the reading's temperature differs from the
# calibration's.
from .sensors import ABSENT, CAL, CRC, OK, RANGE

ALPHA = 0.02  # per C, the usual linear coefficient for natural waters
REF_C = 25.0
KELVIN = 273.15


def day_number(ymd):
    """Days since 1970-01-01 of a "YYYY-MM-DD" date (proleptic Gregorian)."""
    y, m, d = int(ymd[0:4]), int(ymd[5:7]), int(ymd[8:10])
    y -= m <= 2
    era = y // 400
    yoe = y - era * 400
    doy = (153 * (m + (-3 if m > 2 else 9)) + 2) // 5 + d - 1
    doe = yoe * 365 + yoe // 4 - yoe // 100 + doy
    return era * 146097 + doe - 719468


def cal_age_days(cal_date, today):
    """Days since a calibration date (both "YYYY-MM-DD"); None if there is none."""
    if not cal_date:
        return None
    return day_number(today) - day_number(cal_date)


def compensate(ec_t, temp_c, alpha=ALPHA):
    """EC at temp_c to EC at 25 C."""
    return ec_t / (1 + alpha * (temp_c - REF_C))


def two_point(x1, y1, x2, y2):
    """(slope, offset) of the line y = slope * x + offset through two points;
    None when the points do not make a line (same x)."""
    if x1 == x2:
        return None
    s = (y2 - y1) / (x2 - x1)
    return s, y1 - s * x1


class Conductivity:
    """EC in uS/cm at 25 C and TDS in mg/L from a probe's volts.

    slope/offset: uS/cm per volt at the calibration (EC at the water's temperature);
    calibrate() computes them from two standards measured at a temperature."""

    def __init__(self, slope=0.0, offset=0.0, tds_factor=0.5, alpha=ALPHA, date=""):
        self.slope = slope
        self.offset = offset
        self.k = tds_factor
        self.alpha = alpha
        self.date = date
        self.fault = OK if slope else CAL
        self.ec25 = None
        self.tds = None

    def calibrate(self, v1, std1, v2, std2, temp_c, date):
        """Two standards (their EC at 25 C) read as v1, v2 volts at temp_c."""
        f = 1 + self.alpha * (temp_c - REF_C)
        line = two_point(v1, std1 * f, v2, std2 * f)
        if line is None or line[0] <= 0:
            return False
        self.slope, self.offset = line
        self.date = date
        self.fault = OK
        return True

    def value(self, volts, temp_c):
        """EC25 (uS/cm), or None with fault (no calibration, no temperature)."""
        self.ec25 = self.tds = None
        if not self.slope:
            self.fault = CAL
            return None
        if volts is None or temp_c is None:
            self.fault = ABSENT
            return None
        ec_t = self.slope * volts + self.offset
        if ec_t < 0:
            ec_t = 0.0  # a dry or unpowered probe: below the lower standard's line
        self.fault = OK
        self.ec25 = compensate(ec_t, temp_c, self.alpha)
        self.tds = self.k * self.ec25
        return self.ec25


class PH:
    def __init__(self, slope=0.0, offset=0.0, cal_temp_c=REF_C, date=""):
        self.slope = slope  # pH per volt (negative for a plain electrode)
        self.offset = offset
        self.cal_temp = cal_temp_c
        self.date = date
        self.fault = OK if slope else CAL
        self.ph = None

    def calibrate(self, v1, ph1, v2, ph2, temp_c=REF_C, date=""):
        line = two_point(v1, ph1, v2, ph2)
        if line is None or line[0] == 0:
            return False
        self.slope, self.offset = line
        self.cal_temp = temp_c
        self.date = date
        self.fault = OK
        return True

    def value(self, volts, temp_c=None):
        """pH, or None with fault; temp_c corrects the electrode's slope."""
        self.ph = None
        if not self.slope:
            self.fault = CAL
            return None
        if volts is None:
            self.fault = ABSENT
            return None
        ph = self.slope * volts + self.offset
        if temp_c is not None:
            ph = 7 + (ph - 7) * (self.cal_temp + KELVIN) / (temp_c + KELVIN)
        if ph < 0 or ph > 14:
            self.fault = RANGE
            return None
        self.fault = OK
        self.ph = ph
        return ph


class Thermometer:
    """A DS18B20 on 1-Wire through MicroPython's ds18x20 driver (`ds`: a
    ds18x20.DS18X20(onewire.OneWire(pin)) made by the HAL, or a stand-in).

    read() after convert_temp() and the 750 ms conversion (12 bits); faults: ABSENT
    (no sensor found, or no presence pulse), CRC (the scratchpad fails its CRC),
    RANGE (85.0 C: the power-on value, no conversion happened; or a value a
    DS18B20 cannot give). A line held low reads as zeros with a valid CRC: the
    config byte (bits 0-4 always 1) tells it from 0 C."""

    CONVERT_MS = 750

    def __init__(self, ds, rom=None):
        self.ds = ds
        self.rom = rom
        self.fault = ABSENT
        self.temp = None

    def scan(self):
        try:
            roms = self.ds.scan()
        except Exception:  # onewire.OneWireError, OSError
            roms = []
        self.rom = roms[0] if roms else None
        if self.rom is None:
            self.fault = ABSENT
        return self.rom

    def start(self):
        if self.rom is None and self.scan() is None:
            return False
        try:
            self.ds.convert_temp()
            return True
        except Exception:
            self.fault = ABSENT
            return False

    def result(self):
        self.temp = None
        try:
            t = self.ds.read_temp(self.rom)
        except Exception as e:  # ds18x20 raises Exception("CRC error")
            self.fault = CRC if "CRC" in str(e) else ABSENT
            return None
        b = getattr(self.ds, "buf", None)  # the scratchpad the driver just read
        if t == 0 and b is not None and b[4] & 0x1F != 0x1F:
            self.fault = ABSENT  # all zeros pass the CRC: a line held low
            return None
        if t == 85 or t < -55 or t > 125:
            self.fault = RANGE
            return None
        self.fault = OK
        self.temp = t
        return t

    async def read(self, clock):
        if not self.start():
            return None
        await clock.sleep_ms(self.CONVERT_MS)
        return self.result()
