# A 4-20 mA loop (a submersible pressure transducer in the borewell or the tank)
# read across a shunt, by the ESP32 ADC or an ADS1115: current -> metres of water
# above the sensor -> depth of the water below ground.
#
# NAMUR NE 43 signal bands: 3.8-20.5 mA carries the measurement; a transmitter
# saturates in 3.6-3.8 and 20.5-21 mA (out of range, no value); below 3.6 mA is a
# failure (open loop: wire break, no loop supply) and above 21 mA a failure (short).
# A fault or an out-of-range current is never turned into a level.
from .sensors import OK, OPEN, OVER, SHORT, UNDER

FAIL_LOW_MA = 3.6
MIN_MA = 3.8
MAX_MA = 20.5
FAIL_HIGH_MA = 21.0


def classify(ma):
    """OK, UNDER, OVER, OPEN or SHORT for a loop current (NE 43)."""
    if ma < FAIL_LOW_MA:
        return OPEN
    if ma > FAIL_HIGH_MA:
        return SHORT
    if ma < MIN_MA:
        return UNDER
    if ma > MAX_MA:
        return OVER
    return OK


def head_m(ma, range_m, zero_ma=4.0, span_ma=16.0):
    """Metres of water above the transducer: 4 mA = 0, 20 mA = range_m."""
    return (ma - zero_ma) * range_m / span_ma


class Loop:
    """A loop transducer behind `src` (read() -> shunt volts or None, .fault).

    range_m: metres of water at 20 mA (a 1 bar sensor: 10.2 m);
    install_m: the sensor's depth below ground (the datum) in metres.
    read() -> metres of water above the sensor, or None with `fault` set;
    `ma`, `depth_m` (water below ground) are kept for the display and doctor."""

    def __init__(self, src, shunt_ohm, range_m, install_m=0.0, zero_ma=4.0):
        self.src = src
        self.shunt = shunt_ohm
        self.range_m = range_m
        self.install_m = install_m
        self.zero_ma = zero_ma  # a calibrated zero (4.0 nominal), from the doctor
        self.fault = OK
        self.ma = None
        self.head = None
        self.depth_m = None

    def current(self):
        v = self.src.read()
        if v is None:
            # an ADC clipped at its top only happens past the short threshold with a
            # sane shunt; anything else from the source (absent) passes through
            f = self.src.fault
            self.fault = SHORT if f == OVER else f
            self.ma = self.head = self.depth_m = None
            return None
        self.ma = v * 1000 / self.shunt
        return self.ma

    def read(self):
        ma = self.current()
        return None if ma is None else self.from_ma(ma)

    def from_ma(self, ma):
        """The same as read() for a current already measured (a burst median)."""
        self.ma = ma
        self.fault = classify(ma)
        if self.fault:
            self.head = self.depth_m = None
            return None
        self.head = head_m(ma, self.range_m, self.zero_ma, 20.0 - self.zero_ma)
        self.depth_m = self.install_m - self.head
        return self.head


def shunt_ok(shunt_ohm, top_v):
    """True when a current past the short threshold still reads below the ADC's
    top (top_v), so a short reads as a short and not as a clipped level."""
    return FAIL_HIGH_MA * shunt_ohm / 1000 < top_v
