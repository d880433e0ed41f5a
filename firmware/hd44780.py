# HD44780 character LCD (16x2) behind a PCF8574 I2C backpack, 4-bit mode.
import time

# PCF8574 pins on the common backpacks: P0 RS, P1 RW, P2 E, P3 backlight, P4-P7 D4-D7
_RS = 0x01
_E = 0x04
_BL = 0x08

_CLEAR = 0x01
_ENTRY_LEFT = 0x06  # cursor moves right, display does not shift
_DISPLAY_OFF = 0x08
_DISPLAY_ON = 0x0C  # no cursor, no blink
_FUNC_4BIT_2LINE = 0x28  # 4-bit bus, 2 lines, 5x8 dots
_SET_CGRAM = 0x40
_SET_DDRAM = 0x80
_LINE_ADDR = (0x00, 0x40, 0x14, 0x54)


def _sleep_ms_cpython(ms):
    time.sleep(ms / 1000)


# The board's time has sleep_ms; the simulator's CPython time module does not.
_sleep_ms = getattr(time, "sleep_ms", None) or _sleep_ms_cpython


class HD44780:
    """16x2 LCD at `addr` on `i2c`; init() before use. `sleep_ms` may be injected."""

    cols = 16
    rows = 2
    power_up_ms = 50  # the controller needs > 40 ms after VCC rises
    clear_ms = 2  # clear takes 1.52 ms

    def __init__(self, i2c, addr=0x27, sleep_ms=None):
        self.i2c = i2c
        self.addr = addr
        self._sleep_ms = _sleep_ms if sleep_ms is None else sleep_ms
        self._bl = _BL
        # Each character is 4 bus bytes (high nibble with E up, E down, then the low
        # nibble); one write carries up to a whole line. Every byte takes >= 22 us on
        # the bus, longer than the E pulse (0.45 us) and, across the next nibble, the
        # 37 us a command or character needs, so no waits are needed between them.
        self._buf = bytearray(4 * self.cols)
        self._mv = memoryview(self._buf)
        self._one = bytearray(1)
        self.col = 0
        self.row = 0

    def _nibble(self, n):
        b = self._buf
        b[0] = (n << 4) | self._bl | _E
        b[1] = (n << 4) | self._bl
        self.i2c.writeto(self.addr, self._mv[:2])

    def _put(self, i, byte, rs):
        b = self._buf
        j = 4 * i
        hi = (byte & 0xF0) | rs | self._bl
        lo = ((byte << 4) & 0xF0) | rs | self._bl
        b[j] = hi | _E
        b[j + 1] = hi
        b[j + 2] = lo | _E
        b[j + 3] = lo

    def command(self, cmd):
        """Send one instruction byte."""
        self._put(0, cmd, 0)
        self.i2c.writeto(self.addr, self._mv[:4])

    def init(self):
        """Reset into 4-bit mode, clear, display on (blocks ~60 ms)."""
        self._sleep_ms(self.power_up_ms)
        self._one[0] = self._bl
        self.i2c.writeto(self.addr, self._one)
        # "Function set 8-bit" three times brings the controller to a known state
        # from any mode it was left in (the datasheet's reset by instruction).
        for ms in (5, 1, 1):
            self._nibble(0x3)
            self._sleep_ms(ms)
        self._nibble(0x2)  # 4-bit from here on
        self.command(_FUNC_4BIT_2LINE)
        self.command(_DISPLAY_OFF)
        self.clear()
        self.command(_ENTRY_LEFT)
        self.command(_DISPLAY_ON)

    def clear(self):
        """Blank the screen, cursor to the top left."""
        self.command(_CLEAR)
        self._sleep_ms(self.clear_ms)
        self.col = 0
        self.row = 0

    def move_to(self, col, row):
        """Cursor to column `col` of line `row` (both from 0)."""
        self.col = col
        self.row = row
        self.command(_SET_DDRAM | (_LINE_ADDR[row] + col))

    def _flush(self, n):
        if n:
            self.i2c.writeto(self.addr, self._mv[: 4 * n])
            self.col += n
        return 0

    def putstr(self, s):
        """Write text at the cursor; '\\n' or the line end go to the next line."""
        n = 0
        for ch in s:
            if ch == "\n" or self.col + n >= self.cols:
                n = self._flush(n)
                self.move_to(0, (self.row + 1) % self.rows)
                if ch == "\n":
                    continue
            c = ord(ch)
            self._put(n, c if c < 256 else 0x3F, _RS)  # "?" for what the ROM lacks
            n += 1
        self._flush(n)

    def custom_char(self, slot, rows):
        """Define character `slot` (0-7) from 8 row bytes (5 low bits, top first)."""
        self.command(_SET_CGRAM | ((slot & 7) << 3))
        for i in range(8):
            self._put(i, rows[i], _RS)
        self.i2c.writeto(self.addr, self._mv[:32])
        # Data goes to CGRAM until an address is set: point back at the cursor.
        self.move_to(self.col, self.row)

    def backlight(self, on):
        """Backlight on or off (a PCF8574 pin, so it changes at once)."""
        self._bl = _BL if on else 0
        self._one[0] = self._bl
        self.i2c.writeto(self.addr, self._one)

    def power(self, on):
        """Display on or off; DDRAM is kept."""
        self.command(_DISPLAY_ON if on else _DISPLAY_OFF)
