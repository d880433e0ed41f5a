# The operator's pages drawn on a 128x64 OLED (SSD1306 frame buffer): 16x16 icons,
# big numbers, short words. What each page says comes from jkfw.pages.
import framebuf

from .pages import (
    ANTENNA,
    BOLT,
    CLOCK,
    DROP,
    DRY,
    LPCD_TARGET,
    NO_BOLT,
    NO_WIRE,
    PAGES,
    PERSON,
    POWER,
    SD,
    TAP_OFF,
    TAP_ON,
    TICK,
    WARN,
    WIRE,
    age,
    as_int,
    bore_level,
    litres_lpcd,
    off_state,
    reason,
    tank_level,
    tank_state,
    word,
    yes_no,
)

_RIGHT = 123  # content stays left of the page dots

# 16x16 icons, MONO_HMSB (2 bytes a row, LSB at the left); drawn as ASCII art
# in tests/data/display/icons.txt; tests/test_display.py checks these bytes against it.
# A bytes literal is one object on the board's heap (a hex string to decode would be
# a second, twice its size, kept with the module's constants).
_ICONS = (
    b"\x00\x00\xfe\x00\xfe\x00\x30\x00\xff\x0f\xff\x1f\xff\x1f\x00\x3c"  # TAP_ON
    b"\x00\x3c\x00\x00\x00\x18\x00\x18\x00\x00\x00\x18\x00\x18\x00\x00"
    b"\x00\x00\xfe\x00\xfe\x00\x30\x00\xff\x0f\xff\x1f\xff\x1f\x00\x3c"  # TAP_OFF
    b"\x00\x3c\x00\x00\x00\x00\x80\x31\x00\x1b\x00\x0e\x00\x1b\x80\x31"
    b"\x80\x01\x80\x01\xc0\x03\xc0\x03\xe0\x07\xe0\x07\xf0\x0f\xf8\x1f"  # DROP
    b"\xf8\x1f\xbc\x3f\xdc\x3f\xdc\x3f\x98\x1f\xb8\x0f\xf0\x07\xc0\x01"
    b"\x83\x01\x86\x01\x4c\x02\x58\x02\x30\x04\x60\x04\xd0\x08\x88\x11"  # DRY
    b"\x08\x13\x04\x26\x04\x2c\x04\x18\x08\x30\x18\x68\xe0\xc7\x00\x80"
    b"\x00\x00\xfe\x7f\x02\x40\xda\x56\xb6\x6d\xfe\x7f\xfe\x7f\xfe\x7f"  # TANK_FULL
    b"\xfe\x7f\xfe\x7f\xfe\x7f\xfe\x7f\xfe\x7f\xfe\x7f\xfc\x3f\x00\x00"
    b"\x00\x00\x02\x40\x02\x40\x02\x40\x02\x40\x02\x40\x02\x40\x02\x40"  # TANK_LOW
    b"\x02\x40\x02\x40\x02\x40\xda\x56\xb6\x6d\xfe\x7f\xfc\x3f\x00\x00"
    b"\x00\x00\x02\x40\x02\x40\x02\x40\x02\x40\x02\x40\x02\x40\xda\x56"  # TANK_MID
    b"\xb6\x6d\xfe\x7f\xfe\x7f\xfe\x7f\xfe\x7f\xfe\x7f\xfc\x3f\x00\x00"
    b"\x00\x1e\x00\x0f\x80\x07\xc0\x03\xe0\x01\xf0\x00\xf8\x1f\xfc\x0f"  # BOLT
    b"\x80\x07\xc0\x03\xe0\x01\x70\x00\x38\x00\x0c\x00\x06\x00\x01\x00"
    b"\x03\x1e\x06\x0f\x8c\x07\xd8\x03\xb0\x01\x60\x00\xd8\x1e\xbc\x0d"  # NO_BOLT
    b"\x00\x03\xc0\x06\xe0\x0d\x70\x18\x38\x30\x0c\x60\x06\xc0\x01\x80"
    b"\xe0\x07\x18\x18\x84\x21\x82\x41\x82\x41\x81\x81\x81\x81\x81\x8f"  # CLOCK
    b"\x81\x8f\x01\x80\x01\x80\x02\x40\x02\x40\x04\x20\x18\x18\xe0\x07"
    b"\xf0\x1f\x58\x35\x5c\x35\x5e\x35\xfe\x3f\xfe\x3f\x06\x30\x06\x30"  # SD
    b"\xe6\x33\x26\x32\xe6\x33\x06\x30\x06\x30\xfe\x3f\xfe\x3f\x00\x00"
    b"\x02\x40\x09\x90\xc5\xa3\x25\xa4\xa5\xa5\xa5\xa5\x89\x91\x82\x41"  # ANTENNA
    b"\x80\x01\x80\x01\xc0\x03\xc0\x03\x60\x06\x60\x06\x30\x0c\x30\x0c"
    b"\x80\x01\xc0\x03\xc0\x03\x60\x06\x60\x06\xb0\x0d\xb0\x0d\x98\x19"  # WARN
    b"\x98\x19\x8c\x31\x0c\x30\x86\x61\x86\x61\x03\xc0\xff\xff\xff\xff"
    b"\x00\x00\x00\xc0\x00\xe0\x00\x70\x00\x38\x00\x1c\x00\x0e\x03\x07"  # TICK
    b"\x87\x03\xce\x01\xfc\x00\x78\x00\x30\x00\x00\x00\x00\x00\x00\x00"
    b"\xc0\x03\xe0\x07\xe0\x07\xe0\x07\xc0\x03\x00\x00\xf0\x0f\xf8\x1f"  # PERSON
    b"\xfc\x3f\xec\x37\xec\x37\xec\x37\x60\x06\x60\x06\x60\x06\x60\x06"
    b"\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\xff\x3f\xff\xff"  # WIRE
    b"\xff\xff\xff\x3f\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00"
    b"\x00\x00\x00\x00\x00\x00\x00\x06\x00\x03\x80\x01\x9f\x01\x7f\xf0"  # NO_WIRE
    b"\x7f\xfe\x1f\xe3\x80\x01\xc0\x00\x60\x00\x00\x00\x00\x00\x00\x00"
    b"\x80\x01\x80\x01\x98\x19\x8c\x31\x86\x61\x82\x41\x83\xc1\x03\xc0"  # POWER
    b"\x03\xc0\x03\xc0\x02\x40\x06\x60\x0c\x30\x38\x1c\xe0\x07\x00\x00"
    b"\xff\xff\x55\x55\x80\x01\x80\x01\x80\x01\x80\x01\x80\x01\xf0\x0f"  # DEPTH
    b"\xe0\x07\xc0\x03\x80\x01\x00\x00\xc6\x18\x29\xa5\x10\x42\x00\x00"
)


def setup(d):
    # 8x8 scratch for one character, scaled up by _big()
    d._glyph = bytearray(8)
    d._gfb = framebuf.FrameBuffer(d._glyph, 8, 8, framebuf.MONO_VLSB)


def start(d):
    pass


def draw(d, st):
    fb = d.screen
    fb.fill(0)
    # page dots down the right edge: where am I among the button's pages
    gap = 12 if d.pages <= PAGES else 10
    for i in range(d.pages):
        if i == d.page:
            fb.fill_rect(125, 8 + gap * i, 3, 3, 1)
        else:
            fb.pixel(126, 9 + gap * i, 1)
    _PAGES[d.page](d, st)
    fb.show()


def _runs(d, bits, x, y, s, c, down):
    # one fill_rect per run of set bits, LSB first: rows of icons, columns of text
    i = 0
    while bits:
        if bits & 1:
            j = i
            while bits & 1:
                bits >>= 1
                j += 1
            if down:
                d.screen.fill_rect(x, y + i * s, s, (j - i) * s, c)
            else:
                d.screen.fill_rect(x + i * s, y, (j - i) * s, s, c)
            i = j
        else:
            bits >>= 1
            i += 1


def _icon(d, i, x, y, s=1, c=1):
    a = i * 32
    for r in range(16):
        bits = _ICONS[a + 2 * r] | (_ICONS[a + 2 * r + 1] << 8)
        _runs(d, bits, x, y + r * s, s, c, False)


def _big(d, text, x, y, s, c=1):
    """Text in the 8x8 font scaled by s (less if too wide); returns its end x."""
    while s > 1 and x + 8 * s * len(text) > _RIGHT:
        s -= 1
    for ch in text:
        d._gfb.fill(0)
        d._gfb.text(ch, 0, 0, 1)
        for cx in range(8):
            _runs(d, d._glyph[cx], x + cx * s, y, s, c, True)
        x += 8 * s
    return x


def _p0(d, st):
    pump = st.get("pump")
    if pump is None:
        _big(d, "?", 40, 3, 3)  # not known yet: no icon that could mislead
    else:
        # the taps' top row is blank: lift them for a gap above the reason icon
        _icon(d, TAP_ON if pump == "on" else TAP_OFF, 0, -2, 2)
        _big(d, "ON" if pump == "on" else "OFF", 40, 3, 3)
    icon, text, detail, mins = reason(st)
    if icon is not None:
        _icon(d, icon, 0, 33, 2)
    fb = d.screen
    fb.text(text[:10], 38, 35, 1)
    if mins is not None:
        x = _big(d, "%d" % mins, 38, 46, 2)
        fb.text("min", x + 2, 54, 1)
    elif detail:
        fb.text(detail[:10], 38, 50, 1)


def _p1(d, st):
    fb = d.screen
    litres, lpcd = litres_lpcd(st)
    text = "--" if litres is None else "%d" % litres
    _icon(d, DROP, 0, 4)
    s = max(1, min(3, 96 // (8 * len(text))))
    x = _big(d, text, 18, 24 - 8 * s, s)
    fb.text("L", x + 2, 16, 1)
    _icon(d, PERSON, 0, 28)
    x = _big(d, "--" if lpcd is None else "%d" % lpcd, 18, 28, 2)
    fb.text("lpcd", x + 2, 36, 1)
    # today so far against the target: full bar = a functional day
    fb.rect(0, 50, 100, 12, 1)
    if lpcd:
        fb.fill_rect(2, 52, min(lpcd, LPCD_TARGET) * 96 // LPCD_TARGET, 8, 1)
    fb.text("%d" % LPCD_TARGET, 104, 52, 1)


def _cell(d, i, icon, name, state, alert):
    x, y = (i % 2) * 62, (i // 2) * 21
    c = 0 if alert else 1
    if alert:  # black on white: the operator sees trouble without reading
        d.screen.fill_rect(x, y, 61, 20, 1)
    _icon(d, icon, x + 2, y + 2, 1, c)
    d.screen.text(name, x + 20, y + 2, c)
    d.screen.text(state, x + 20, y + 11, c)


def _p2(d, st):
    ins = st.get("inputs") or {}
    dry, mains, broken = ins.get("dry"), ins.get("mains"), ins.get("broken")
    _cell(d, 0, DRY if dry else DROP, "WELL", yes_no(dry, "DRY", "OK"), dry)
    icon, text, alert = tank_state(ins)
    _cell(d, 1, icon, "TANK", text, alert)
    off = off_state(mains)
    _cell(d, 2, NO_BOLT if off else BOLT, "MAINS", yes_no(off, "OFF", "OK"), off)
    _cell(
        d, 3, NO_WIRE if broken else WIRE, "WIRES", yes_no(broken, "CUT", "OK"), broken
    )
    mode = st.get("mode")
    _cell(d, 4, POWER, "MODE", str(mode).upper() if mode else "?", mode == "off")
    _cell(d, 5, CLOCK, "TIME", str(st.get("time") or "--:--")[:5], False)


def _p3(d, st):
    fb = d.screen
    sd, up = st.get("sd"), st.get("uplink")
    ago = as_int(st.get("last_upload_s"))
    # never or long ago is trouble only when an uplink is fitted
    late = ago is None or not 0 <= ago <= d.upload_stale_s
    rows = (
        (SD, str(sd or "?").upper(), sd in ("flash", "none")),
        (ANTENNA, str(up or "?").upper(), up == "down"),
        (CLOCK, age(ago), late and up in ("ok", "down")),
    )
    for i, (icon, text, alert) in enumerate(rows):
        y, c = i * 21, 0 if alert else 1
        if alert:
            fb.fill_rect(0, y, 123, 20, 1)
        _icon(d, icon, 2, y + 2, 1, c)
        x = _big(d, text, 22, y + 2, 2, c)
    if ago is not None:
        fb.text("AGO", x + 4, 52, c)


def _p4(d, st):
    fb = d.screen
    faults = st.get("faults") or []
    if not faults:
        _icon(d, TICK, 0, 0, 2)
        _big(d, "OK", 40, 4, 3)
        fb.text("NO FAULTS", 0, 44, 1)
        return
    _icon(d, WARN, 0, 0, 2)
    _big(d, "%d" % len(faults), 40, 4, 3)
    shown = faults if len(faults) <= 3 else faults[:2]
    for i, name in enumerate(shown):
        fb.text(word(name)[:15], 0, 34 + 10 * i, 1)
    if len(faults) > 3:
        fb.text("+%d MORE" % (len(faults) - 2), 0, 54, 1)


def _level(d, y, icon, big, small, unit, alert):
    # one sensor's half of the levels page: icon, the number big, a word under it
    fb = d.screen
    c = 0 if alert else 1
    if alert:  # black on white: a fault or a low borewell, seen without reading
        fb.fill_rect(0, y, 123, 31, 1)
    _icon(d, icon, 0, y + 7, 1, c)
    x = _big(d, big, 20, y + 2, 2, c)
    fb.text(unit, x + 2, y + 10, c)
    fb.text(small[:12], 20, y + 21, c)


def _p5(d, st):
    # the tank's level (percent full, litres) above, the borewell's water depth
    # below ground under it; each only where its sensor is fitted
    lv = st.get("levels") or {}
    y = 0
    if "tank_pct" in lv:
        icon, pct, litres, alert = tank_level(lv)
        _level(d, y, icon, pct, litres + " L", "", alert)
        y = 33
    if "bore_m" in lv:
        icon, m, what, alert = bore_level(lv)
        _level(d, y, icon, m, what, "m" if m != "?" else "", alert)


_PAGES = (_p0, _p1, _p2, _p3, _p4, _p5)
