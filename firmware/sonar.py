# Ultrasonic tank level over a UART (9600 8N1): DFRobot A02YYUW (SEN0311) and the
# JSN-SR04T in its serial modes. The frame, from DFRobot's wiki (SEN0311 "UART
# Output Form"): 0xFF, DATA_H, DATA_L, SUM with SUM = (0xFF + DATA_H + DATA_L) & 0xFF
# and the distance DATA_H * 256 + DATA_L in mm (example FF 07 A1 A7 = 1953 mm). The
# A02YYUW sends a frame every 100-300 ms by itself; a JSN-SR04T with R27 = 47k does
# the same (every 100 ms), with R27 = 120k it is idle and answers one frame per 0x55
# byte written (request(); config tank.sonar = "trigger", docs/sensors.md).
# Then distance -> water level -> litres from the tank's geometry.
from .sensors import ABSENT, OK, RANGE, STALE, median

HEADER = 0xFF
TRIGGER = b"\x55"


def frame_mm(b, i):
    """Distance of the frame at b[i:i+4], or -1 if it is not a valid frame."""
    if b[i] != HEADER or (b[i] + b[i + 1] + b[i + 2]) & 0xFF != b[i + 3]:
        return -1
    return (b[i + 1] << 8) | b[i + 2]


class Sonar:
    """poll() reads what the UART holds (never blocks) and keeps the median of the
    last `window` valid distances; fault: RANGE for a distance outside
    [min_mm, max_mm] (blind zone, no echo), STALE when nothing valid came for
    `stale` polls, ABSENT when the UART never gave a frame. In trigger mode
    (measure.read_tank) the reader writes request() and polls 150 ms later, a
    window of times; a sensor left in trigger mode under an "auto" config sends
    nothing, so it reads ABSENT, never a level. (No attribute for the mode: a
    new name costs this module a qstr pool chunk, ~1.1 KB of heap.)"""

    def __init__(self, uart, min_mm=30, max_mm=4500, window=5, stale=3):
        self.uart = uart
        self.min_mm = min_mm
        self.max_mm = max_mm
        self.buf = bytearray(36)
        self.rx = bytearray(32)
        self.n = 0
        self.hist = [0] * window
        self.tmp = [0] * window
        self.k = 0  # valid distances held (<= window)
        self.stale = stale
        self.idle = 0
        self.seen = False
        self.fault = ABSENT
        self.mm = None
        self.last = -1  # last frame's distance, valid or not (for the doctor)

    def request(self):
        """JSN-SR04T mode 3: ask for one frame."""
        self.uart.write(TRIGGER)

    def feed(self, data, count=None):
        """Process bytes (from the UART or a test); returns the frame count."""
        frames = 0
        for k in range(len(data) if count is None else count):
            self.buf[self.n] = data[k]
            self.n += 1
            if self.n == len(self.buf):
                frames += self._drain()
        return frames + self._drain()

    def _drain(self):
        b = self.buf
        frames = 0
        i = 0
        while i + 4 <= self.n:
            d = frame_mm(b, i)
            if d < 0:
                i += 1
                continue
            i += 4
            frames += 1
            self._take(d)
        while i < self.n and b[i] != HEADER:
            i += 1
        for j in range(i, self.n):
            b[j - i] = b[j]
        self.n -= i
        return frames

    def _take(self, d):
        self.seen = True
        self.last = d
        self.idle = 0
        if d < self.min_mm or d > self.max_mm:
            self.fault = RANGE
            return
        w = len(self.hist)
        if self.k == w:
            for j in range(1, w):
                self.hist[j - 1] = self.hist[j]
            self.k -= 1
        self.hist[self.k] = d
        self.k += 1
        self.fault = OK

    def poll(self):
        """Median distance in mm, or None with `fault` set."""
        got = 0
        u = self.uart
        while u.any():
            n = u.readinto(self.rx)
            if not n:
                break
            got += self.feed(self.rx, n)
        if not got:
            self.idle += 1
            if self.idle >= self.stale:
                self.k = 0
                self.fault = STALE if self.seen else ABSENT
        if self.fault or not self.k:
            self.mm = None
            return None
        for j in range(self.k):
            self.tmp[j] = self.hist[j]
        self.mm = median(self.tmp, self.k)
        return self.mm


PI = 3.141592653589793


# tank shapes
VERTICAL = 0  # vertical cylinder: diameter d
RECT = 1  # rectangular: length l, width w


class Tank:
    """A tank's geometry. mount_mm: from the sonar's face down to the tank floor;
    height_m: the overflow level above the floor (levels are clipped to it);
    diameter_m for a vertical cylinder, length_m and width_m for a rectangle."""

    def __init__(
        self, shape, height_m, diameter_m=0.0, length_m=0.0, width_m=0.0, mount_mm=0
    ):
        self.shape = shape
        self.height_m = height_m
        self.diameter = diameter_m
        self.length = length_m
        self.width = width_m
        self.mount_mm = mount_mm

    def level_m(self, distance_mm):
        """Water level above the floor from a sonar distance (clipped to 0..height)."""
        return self.clip((self.mount_mm - distance_mm) / 1000)

    def clip(self, h):
        return 0.0 if h < 0 else self.height_m if h > self.height_m else h

    def litres(self, level_m):
        h = self.clip(level_m)
        if self.shape == RECT:
            return self.length * self.width * h * 1000
        d = self.diameter
        return PI * d * d / 4 * h * 1000

    def capacity_l(self):
        return self.litres(self.height_m)
