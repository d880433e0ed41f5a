# SSD1306 OLED (128x64, I2C): a framebuf.FrameBuffer you draw on, then show().
import framebuf

# I2C control bytes: 0x00 = command stream follows, 0x40 = display data follows
_CTRL_CMD = 0x00
_CTRL_DATA = 0x40
_SET_DISP = 0xAE  # | 1 = on
_SET_CONTRAST = 0x81
_SET_NORM_INV = 0xA6  # | 1 = inverted
_SET_COL_ADDR = 0x21
_SET_PAGE_ADDR = 0x22


class SSD1306(framebuf.FrameBuffer):
    """Frame buffer (MONO_VLSB) for an SSD1306 at `addr` on `i2c`; init() before use."""

    def __init__(self, i2c, addr=0x3C, width=128, height=64, external_vcc=False):
        self.i2c = i2c
        self.addr = addr
        self.width = width
        self.height = height
        self.external_vcc = external_vcc
        self.pages = height // 8
        # Byte 0 is the data control byte and the frame follows it, so show() sends
        # the whole screen in one write with no copy and no allocation.
        self.wire = bytearray(1 + width * self.pages)
        self.wire[0] = _CTRL_DATA
        self.buffer = memoryview(self.wire)[1:]
        # Address window for show(): all columns, all pages (horizontal mode wraps).
        self._window = bytearray(
            (_CTRL_CMD, _SET_COL_ADDR, 0, width - 1, _SET_PAGE_ADDR, 0, self.pages - 1)
        )
        self._cmd = bytearray(3)
        super().__init__(self.buffer, width, height, framebuf.MONO_VLSB)

    def init(self):
        """Send the power-up sequence, clear the screen and turn it on."""
        ext = self.external_vcc
        seq = bytes(
            (
                _CTRL_CMD,
                _SET_DISP,  # off while configuring
                0x20,  # memory addressing mode:
                0x00,  # horizontal, so one data write fills the screen
                0x40,  # start line 0
                0xA1,  # segment remap: column 127 is SEG0 (modules mount it flipped)
                0xA8,  # multiplex ratio
                self.height - 1,
                0xC8,  # COM scan from COM[N-1] to COM0
                0xD3,  # display offset
                0x00,
                0xDA,  # COM pins: sequential on 128x32, alternative on 128x64
                0x02 if self.width > 2 * self.height else 0x12,
                0xD5,  # clock divide / oscillator
                0x80,
                0xD9,  # pre-charge period
                0x22 if ext else 0xF1,
                0xDB,  # VCOMH deselect level
                0x30,
                _SET_CONTRAST,
                0xFF,
                0xA4,  # output follows RAM
                _SET_NORM_INV,
                0xAD,  # internal IREF (newer SSD1306 modules need it)
                0x30,
                0x8D,  # charge pump: on unless the panel has its own VCC
                0x10 if ext else 0x14,
                _SET_DISP | 1,
            )
        )
        self.i2c.writeto(self.addr, seq)
        self.fill(0)
        self.show()

    def _command(self, a, b=None):
        c = self._cmd
        c[0] = _CTRL_CMD
        c[1] = a
        if b is None:
            self.i2c.writeto(self.addr, memoryview(c)[:2])
        else:
            c[2] = b
            self.i2c.writeto(self.addr, c)

    def show(self):
        """Write the whole buffer to the panel."""
        self.i2c.writeto(self.addr, self._window)
        self.i2c.writeto(self.addr, self.wire)

    def power(self, on):
        """Panel on or off (off keeps RAM; an idle OLED burns in slower)."""
        self._command(_SET_DISP | (1 if on else 0))

    def contrast(self, level):
        """Brightness 0..255."""
        self._command(_SET_CONTRAST, level & 0xFF)

    def invert(self, on):
        """White-on-black (False) or black-on-white (True)."""
        self._command(_SET_NORM_INV | (1 if on else 0))
