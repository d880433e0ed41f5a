# What every analogue sensor shares: the fault codes, the median of a burst taken
# after the probe's settle time, the ESP32 ADC as volts, and resistor dividers.
# Imported only by the sensor modules (loop420, ads1115, sonar, quality, motor), so
# a board without sensors never loads it. Hardware comes in as small objects (an
# ADC with read_uv/read_u16, anything with read() -> volts or None), never `machine`.

# fault codes: 0 is a reading; anything else is a fault and comes with no value
OK = 0
OPEN = 1  # 4-20 mA loop below 3.6 mA: wire break, no supply; CT bias lost
SHORT = 2  # 4-20 mA loop above 21 mA: shorted cable or failed transmitter
UNDER = 3  # NE 43 saturation band 3.6-3.8 mA: below the measuring range
OVER = 4  # NE 43 saturation band 20.5-21 mA, or an ADC at the top of its range
ABSENT = 5  # the device does not answer (I2C, 1-Wire, UART silent)
CRC = 6  # a 1-Wire scratchpad or a frame that fails its check
RANGE = 7  # a value the sensor cannot give (no echo, 85 C power-on value)
STALE = 8  # no new data since the last reading
CAL = 9  # no valid calibration
NAMES = ("ok", "open", "short", "under", "over", "absent", "crc", "range", "stale",
         "cal")  # fmt: skip

# ESP32 ADC, uncalibrated full scale per attenuation (index = machine.ADC.ATTN_0DB,
# ATTN_2_5DB, ATTN_6DB, ATTN_11DB = 0..3), mV; ESP-IDF's ESP32 ADC guide. The linear
# part is narrower: 100-950, 100-1250, 150-1750, 150-2450 mV. read_uv() uses the
# chip's eFuse calibration and is preferred.
ATTEN_FS_MV = (1100, 1500, 2200, 3900)
ATTEN_TOP_MV = (950, 1250, 1750, 2450)


def median(buf, n):
    """Median of buf[0:n], sorted in place (insertion sort: no allocation)."""
    for i in range(1, n):
        v = buf[i]
        j = i - 1
        while j >= 0 and buf[j] > v:
            buf[j + 1] = buf[j]
            j -= 1
        buf[j + 1] = v
    h = n // 2
    if n % 2:
        return buf[h]
    return (buf[h - 1] + buf[h]) / 2


async def burst(read, clock, buf, n, gap_ms=100, settle_ms=0):
    """Median of n calls of read() (None = a failed sample) after settle_ms, gap_ms
    apart; None when half or more failed. buf: a preallocated list of >= n."""
    if settle_ms:
        await clock.sleep_ms(settle_ms)
    k = 0
    for i in range(n):
        if i and gap_ms:
            await clock.sleep_ms(gap_ms)
        v = read()
        if v is not None:
            buf[k] = v
            k += 1
    if k * 2 <= n:
        return None
    return median(buf, k)


def counts_to_volts(counts, atten=3, bits=12):
    """Raw ESP32 ADC counts (read() at `bits`) to volts at the pin, uncalibrated."""
    return counts * ATTEN_FS_MV[atten] / ((1 << bits) - 1) / 1000


class AdcVolts:
    """An ESP32 ADC pin as volts: read_uv() (eFuse-calibrated) when the port has it,
    else read_u16() scaled by the attenuation's nominal full scale. fault = OVER
    when the pin is past the linear top of its attenuation (a clipped value)."""

    def __init__(self, adc, atten=3, calibrated=True):
        self.adc = adc
        self.atten = atten
        self.uv = calibrated and hasattr(adc, "read_uv")
        self.fault = OK
        self.volts = None

    def read(self):
        if self.uv:
            v = self.adc.read_uv() / 1000000
        else:
            v = self.adc.read_u16() * ATTEN_FS_MV[self.atten] / 65535000
        self.volts = v
        self.fault = OVER if v * 1000 > ATTEN_TOP_MV[self.atten] else OK
        return None if self.fault else v


def divider_ratio(r_top, r_bottom):
    """Input volts per pin volt of a divider: r_top from the input to the pin,
    r_bottom from the pin to ground."""
    return (r_top + r_bottom) / r_bottom


class Divider:
    """Supply, panel or battery voltage through a divider into an ADC source
    (anything with read() -> pin volts or None, and a fault attribute)."""

    def __init__(self, src, r_top, r_bottom):
        self.src = src
        self.ratio = divider_ratio(r_top, r_bottom)
        self.fault = OK
        self.volts = None

    def read(self):
        v = self.src.read()
        self.fault = getattr(self.src, "fault", OK) if v is None else OK
        if v is None and not self.fault:
            self.fault = ABSENT
        self.volts = None if v is None else v * self.ratio
        return self.volts
