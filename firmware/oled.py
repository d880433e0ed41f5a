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
    litres_lpcd,
    off_state,
    reason,
    tank_state,
    word,
    yes_no,
)

_RIGHT = 123  # content stays left of the page dots

# 16x16 icons, MONO_HMSB (2 bytes a row, LSB at the left); drawn as ASCII art
# in tests/data/display/icons.txt; tests/test_display.py checks these bytes against it.
_ICONS = bytes.fromhex(
    "0000fe00fe003000ff0fff1fff1f003c003c0000001800180000001800180000"  # TAP_ON
    "0000fe00fe003000ff0fff1fff1f003c003c000000008031001b000e001b8031"  # TAP_OFF
    "80018001c003c003e007e007f00ff81ff81fbc3fdc3fdc3f981fb80ff007c001"  # DROP
    "830186014c02580230046004d008881108130426042c041808301868e0c70080"  # DRY
    "0000fe7f0240da56b66dfe7ffe7ffe7ffe7ffe7ffe7ffe7ffe7ffe7ffc3f0000"  # TANK_FULL
    "00000240024002400240024002400240024002400240da56b66dfe7ffc3f0000"  # TANK_LOW
    "0000024002400240024002400240da56b66dfe7ffe7ffe7ffe7ffe7ffc3f0000"  # TANK_MID
    "001e000f8007c003e001f000f81ffc0f8007c003e001700038000c0006000100"  # BOLT
    "031e060f8c07d803b0016000d81ebc0d0003c006e00d701838300c6006c00180"  # NO_BOLT
    "e007181884218241824181818181818f818f018001800240024004201818e007"  # CLOCK
    "f01f58355c355e35fe3ffe3f06300630e6332632e63306300630fe3ffe3f0000"  # SD
    "02400990c5a325a4a5a5a5a58991824180018001c003c00360066006300c300c"  # ANTENNA
    "8001c003c00360066006b00db00d981998198c310c308661866103c0ffffffff"  # WARN
    "000000c000e000700038001c000e03078703ce01fc0078003000000000000000"  # TICK
    "c003e007e007e007c0030000f00ff81ffc3fec37ec37ec376006600660066006"  # PERSON
    "000000000000000000000000ff3fffffffffff3f000000000000000000000000"  # WIRE
    "0000000000000006000380019f017ff07ffe1fe38001c0006000000000000000"  # NO_WIRE
    "8001800198198c318661824183c103c003c003c0024006600c30381ce0070000"  # POWER
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
    for i in range(PAGES):
        if i == d.page:
            fb.fill_rect(125, 8 + 12 * i, 3, 3, 1)
        else:
            fb.pixel(126, 9 + 12 * i, 1)
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


_PAGES = (_p0, _p1, _p2, _p3, _p4)
