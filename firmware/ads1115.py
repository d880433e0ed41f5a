# TI ADS1115 16-bit ADC over machine.I2C, single-shot conversions. From TI's datasheet
# SBAS444D (ADS1113/4/5, 2009-2018): the register map and Address Pointer register
# (9.6, 9.6.1: P[1:0] 00 conversion, 01 config), the Config register (9.6.3, reset
# 8583h: OS[15], MUX[14:12], PGA[11:9], MODE[8], DR[7:5], COMP_QUE[1:0] = 11 disables
# the comparator), full-scale range and LSB = FSR / 2^15 (9.3.3), data rates
# 8..860 SPS (9.3.6), single-shot mode (9.4.2.1: write OS = 1 in power-down, OS
# reads 0 while converting and 1 when done) and register access (9.5.3: the pointer
# byte, then the register's MSB first), which machine.I2C's writeto_mem and
# readfrom_mem_into do. The same bit layout is in robert-hh/ads1x15 (MicroPython)
# and adafruit/Adafruit_CircuitPython_ADS1x15.
from .sensors import ABSENT, OK, OVER

ADDRESS = 0x48  # ADDR pin to GND (0x49 VDD, 0x4A SDA, 0x4B SCL)
REG_CONV = 0
REG_CONFIG = 1
OS = 0x8000
MODE_SINGLE = 0x0100
COMP_OFF = 0x0003
# PGA[2:0] -> full-scale range in mV (110 and 111 are also 256 mV)
FSR_MV = (6144, 4096, 2048, 1024, 512, 256)
# DR[2:0] -> samples per second
RATES = (8, 16, 32, 64, 128, 250, 475, 860)


def config_word(channel, pga=1, dr=4):
    """Config for one single-shot conversion of AINx against GND (MUX 100 + x)."""
    return OS | ((4 + channel) << 12) | (pga << 9) | MODE_SINGLE | (dr << 5) | COMP_OFF


def code_to_volts(code, pga=1):
    """A conversion register value (16-bit two's complement) to volts."""
    if code & 0x8000:
        code -= 0x10000
    return code * FSR_MV[pga] / 32768000


class ADS1115:
    def __init__(self, i2c, address=ADDRESS, pga=1, dr=4, wait_ms=None):
        self.i2c = i2c
        self.address = address
        self.pga = pga
        self.dr = dr
        self.buf = bytearray(2)
        self.fault = OK
        self.code = None  # last raw conversion code
        # one conversion takes 1/DR (+ ~10 %, the internal oscillator's tolerance)
        self.conv_ms = 1000 // RATES[dr] + 2
        if wait_ms is None:
            import time

            wait_ms = getattr(time, "sleep_ms", None)
        self.wait_ms = wait_ms

    def _write(self, reg, value):
        b = self.buf
        b[0] = value >> 8
        b[1] = value & 0xFF
        self.i2c.writeto_mem(self.address, reg, b)

    def _read(self, reg):
        b = self.buf
        self.i2c.readfrom_mem_into(self.address, reg, b)
        return (b[0] << 8) | b[1]

    def start(self, channel):
        """Start a single-shot conversion of AIN`channel`; False if the chip is gone."""
        try:
            self._write(REG_CONFIG, config_word(channel, self.pga, self.dr))
            self.fault = OK
            return True
        except OSError:
            self.fault = ABSENT
            return False

    def result(self):
        """The conversion in volts once OS reads 1 (done), else None."""
        try:
            if not self._read(REG_CONFIG) & OS:
                return None
            code = self._read(REG_CONV)
        except OSError:
            self.fault = ABSENT
            return None
        self.code = code
        # 7FFFh / 8000h are the clipped codes: past full scale, not a value
        self.fault = OVER if code in (0x7FFF, 0x8000) else OK
        return None if self.fault else code_to_volts(code, self.pga)

    def read(self, channel, polls=5):
        """Blocking single-shot read (a few ms): volts, or None with fault set."""
        if not self.start(channel):
            return None
        for _ in range(polls):
            if self.wait_ms is not None:
                self.wait_ms(self.conv_ms)
            v = self.result()
            if v is not None or self.fault:
                return v
        self.fault = ABSENT  # never finished: not an ADS1115 answering
        return None

    def channel(self, n):
        return Channel(self, n)


class Channel:
    """One input of an ADS1115 as a source: read() -> volts or None, fault."""

    def __init__(self, adc, n):
        self.adc = adc
        self.n = n
        self.fault = OK

    def read(self):
        v = self.adc.read(self.n)
        self.fault = self.adc.fault
        return v
