"""CPython stand-in for MicroPython's ``framebuf`` (the subset jalkal uses).

Same buffer layout as MicroPython, so a driver's ``show()`` writes the same bytes:
MONO_VLSB (one byte = 8 vertical pixels, LSB at the top, rows of bytes ``stride``
wide), MONO_HLSB (one byte = 8 horizontal pixels, MSB at the left) and MONO_HMSB
(LSB at the left). Drawing follows ``extmod/modframebuf.c`` step for step (clipping,
``line``'s Bresenham, ``blit`` with key and palette, ``scroll``), and ``text`` uses
MicroPython's own 8x8 font, so a page renders to the very bytes the board draws.

Install it before importing firmware that does ``import framebuf``::

    sys.modules["framebuf"] = fbuf

Helpers for looking at a screen: ``ascii(fb, w, h)`` and ``to_png(fb, w, h, path)``.
"""

from __future__ import annotations

import struct
import zlib

MONO_VLSB = 0
MVLSB = MONO_VLSB
MONO_HLSB = 3
MONO_HMSB = 4
_MONO = (MONO_VLSB, MONO_HLSB, MONO_HMSB)

# MicroPython's font_petme128_8x8, Copyright (c) 2013-2014 Damien P. George and the
# MicroPython contributors, used under the MIT licence (the permission notice is
# in sim/NOTICE-font.txt). Characters 32..127, 8 column bytes each, LSB at
# the top. Taken from the real framebuf (each glyph drawn and read back) so sim
# pages match the board's.
_FONT = bytes.fromhex(
    "00000000000000000000004f4f0000000007070000070700147f7f14147f7f14"
    "00242e6b6b3a1200006333180c66630000327f4d4d7772500000000406030100"
    "00001c3e63410000000041633e1c0000082a3e1c1c3e2a080008083e3e080800"
    "000080e0600000000008080808080800000000606000000000406030180c0602"
    "003e7f49457f3e000040447f7f40400000627351494f460000226349497f3600"
    "00181814167f7f1000276745457d3900003e7f49497b3200000303797d070300"
    "00367f49497f360000266f49497f3e000000002424000000000080e464000000"
    "00081c3663414100001414141414140000414163361c080000020351590f0600"
    "003e7f414d4f2e00007c7e0b0b7e7c00007f7f49497f3600003e7f4141632200"
    "007f7f41633e1c00007f7f4949414100007f7f0909010100003e7f41497b3a00"
    "007f7f08087f7f000000417f7f410000002060417f3f0100007f7f1c36634100"
    "007f7f4040404000007f7f060c067f7f007f7f0e1c7f7f00003e7f41417f3e00"
    "007f7f09090f0600001e3f21617f5e00007f7f19396f460000266f49497b3200"
    "0001017f7f010100003f7f40407f3f00001f3f60603f1f00007f7f3018307f7f"
    "0063771c1c77630000070f78780f0700006171594d47430000007f7f41410000"
    "0002060c18306040000041417f7f000000080c06060c0800c0c0c0c0c0c0c0c0"
    "000001030604000000207454547c7800007f7f44447c380000387c44446c2800"
    "00387c44447f7f0000387c54545c580000087e7f090302000098bca4a4fc7c00"
    "007f7f04047c78000000007d7d0000000040c08080fd7d00007f7f30386c4400"
    "0000417f7f400000007c7c1830187c7c007c7c04047c780000387c44447c3800"
    "00fcfc24243c180000183c2424fcfc00007c7c04040c080000485c5454742000"
    "04043f7f44642000003c7c40407c3c00001c3c60603c1c00001c7c3018307c1c"
    "00446c38386c4400009cbca0a0fc7c00004464745c4c44000008083e77414100"
    "000000ffff000000004141773e0808000002030103020301aa55aa55aa55aa55"
)


class FrameBuffer:
    """A monochrome frame buffer over a writable buffer, like framebuf.FrameBuffer."""

    def __init__(self, buffer, width, height, format, stride=None):
        if format not in _MONO:
            raise ValueError("invalid format")
        if width < 1 or height < 1:
            raise ValueError("invalid size")
        stride = width if stride is None else stride
        if format != MONO_VLSB:
            stride = (stride + 7) & ~7
        rows = (height + 7) // 8 if format == MONO_VLSB else height
        per_row = stride if format == MONO_VLSB else stride // 8
        mv = memoryview(buffer)
        if mv.readonly:
            raise TypeError("object with buffer protocol required")
        if rows * per_row > mv.nbytes:
            raise ValueError("buffer too small")
        self._buf = mv.cast("B") if mv.format != "B" else mv
        self.width = width
        self.height = height
        self.format = format
        self.stride = stride

    # -- pixel access (the only place that knows the layout) --
    def _index(self, x, y):
        if self.format == MONO_VLSB:
            return (y >> 3) * self.stride + x, y & 7
        index = (x + y * self.stride) >> 3
        return index, (7 - (x & 7)) if self.format == MONO_HLSB else (x & 7)

    def _get(self, x, y):
        index, bit = self._index(x, y)
        return (self._buf[index] >> bit) & 1

    def _set(self, x, y, c):
        index, bit = self._index(x, y)
        if c:
            self._buf[index] |= 1 << bit
        else:
            self._buf[index] &= ~(1 << bit) & 0xFF

    def _fill_rect(self, x, y, w, h, c):
        # already clipped
        if self.format == MONO_VLSB:
            buf, stride = self._buf, self.stride
            for yy in range(y, y + h):
                row = (yy >> 3) * stride
                bit = 1 << (yy & 7)
                if c:
                    for i in range(row + x, row + x + w):
                        buf[i] |= bit
                else:
                    inv = ~bit & 0xFF
                    for i in range(row + x, row + x + w):
                        buf[i] &= inv
            return
        for yy in range(y, y + h):
            for xx in range(x, x + w):
                self._set(xx, yy, c)

    # -- the framebuf API --
    def fill(self, c):
        self._fill_rect(0, 0, self.width, self.height, c)

    def pixel(self, x, y, c=None):
        if not (0 <= x < self.width and 0 <= y < self.height):
            return None
        if c is None:
            return self._get(x, y)
        self._set(x, y, c)
        return None

    def fill_rect(self, x, y, w, h, c):
        if h < 1 or w < 1 or x + w <= 0 or y + h <= 0:
            return
        if y >= self.height or x >= self.width:
            return
        xend = min(self.width, x + w)
        yend = min(self.height, y + h)
        x = max(x, 0)
        y = max(y, 0)
        self._fill_rect(x, y, xend - x, yend - y, c)

    def hline(self, x, y, w, c):
        self.fill_rect(x, y, w, 1, c)

    def vline(self, x, y, h, c):
        self.fill_rect(x, y, 1, h, c)

    def rect(self, x, y, w, h, c, f=False):
        if f:
            self.fill_rect(x, y, w, h, c)
            return
        self.fill_rect(x, y, w, 1, c)
        self.fill_rect(x, y + h - 1, w, 1, c)
        self.fill_rect(x, y, 1, h, c)
        self.fill_rect(x + w - 1, y, 1, h, c)

    def line(self, x1, y1, x2, y2, c):
        dx, sx = (x2 - x1, 1) if x2 - x1 > 0 else (x1 - x2, -1)
        dy, sy = (y2 - y1, 1) if y2 - y1 > 0 else (y1 - y2, -1)
        steep = dy > dx
        if steep:
            x1, y1, dx, dy, sx, sy = y1, x1, dy, dx, sy, sx
        e = 2 * dy - dx
        for _ in range(dx):
            px, py = (y1, x1) if steep else (x1, y1)
            if 0 <= px < self.width and 0 <= py < self.height:
                self._set(px, py, c)
            while e >= 0:
                y1 += sy
                e -= 2 * dx
            x1 += sx
            e += 2 * dy
        if 0 <= x2 < self.width and 0 <= y2 < self.height:
            self._set(x2, y2, c)

    def text(self, s, x, y, c=1):
        for ch in s.encode("utf-8"):
            if ch == 0:
                break  # the C code stops at a NUL byte
            if ch < 32 or ch > 127:
                ch = 127
            glyph = _FONT[(ch - 32) * 8 : (ch - 32) * 8 + 8]
            for col in glyph:
                if 0 <= x < self.width:
                    yy = y
                    while col:
                        if col & 1 and 0 <= yy < self.height:
                            self._set(x, yy, c)
                        col >>= 1
                        yy += 1
                x += 1

    def blit(self, fbuf, x, y, key=-1, palette=None):
        if isinstance(fbuf, (tuple, list)):
            fbuf = FrameBuffer(bytearray(fbuf[0]), *fbuf[1:])
        if x >= self.width or y >= self.height:
            return
        if -x >= fbuf.width or -y >= fbuf.height:
            return
        x0, y0 = max(0, x), max(0, y)
        x1, y1 = max(0, -x), max(0, -y)
        x0end = min(self.width, x + fbuf.width)
        y0end = min(self.height, y + fbuf.height)
        for yy in range(y0, y0end):
            cx1 = x1
            for xx in range(x0, x0end):
                col = fbuf.pixel(cx1, y1)  # in range: clipped above
                if palette is not None:
                    col = palette.pixel(col, 0)
                if col != key:
                    self._set(xx, yy, col)
                cx1 += 1
            y1 += 1

    def scroll(self, xstep, ystep):
        if xstep < 0:
            sx, xend, dx = 0, self.width + xstep, 1
            if xend <= 0:
                return
        else:
            sx, xend, dx = self.width - 1, xstep - 1, -1
            if xend >= sx:
                return
        if ystep < 0:
            y, yend, dy = 0, self.height + ystep, 1
            if yend <= 0:
                return
        else:
            y, yend, dy = self.height - 1, ystep - 1, -1
            if yend >= y:
                return
        while y != yend:
            x = sx
            while x != xend:
                self._set(x, y, self._get(x - xstep, y - ystep))
                x += dx
            y += dy


FrameBuffer1 = FrameBuffer


def ascii(fb, w, h):  # shadows the builtin on purpose: the name callers use
    """The screen as text lines, '#' for a lit pixel and '.' for a dark one."""
    return ["".join("#" if fb.pixel(x, y) else "." for x in range(w)) for y in range(h)]


def _chunk(kind, data):
    body = kind + data
    return struct.pack(">I", len(data)) + body + struct.pack(">I", zlib.crc32(body))


def to_png(fb, w, h, path, scale=4):
    """Write the screen as a greyscale PNG, each pixel a scale x scale block.

    Lit pixels are white on black, as on an OLED. Uses only zlib and struct.
    """
    raw = bytearray()
    for y in range(h):
        row = bytearray()
        for x in range(w):
            row += (b"\xff" if fb.pixel(x, y) else b"\x00") * scale
        raw += (b"\x00" + row) * scale  # filter type 0 per scanline
    png = b"\x89PNG\r\n\x1a\n"
    png += _chunk(b"IHDR", struct.pack(">IIBBBBB", w * scale, h * scale, 8, 0, 0, 0, 0))
    png += _chunk(b"IDAT", zlib.compress(bytes(raw), 9))
    png += _chunk(b"IEND", b"")
    with open(path, "wb") as f:
        f.write(png)
    return path
