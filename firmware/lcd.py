# The operator's pages on a 16x2 character LCD (HD44780): two lines of 16 with
# eight custom characters for the icons. What each page says comes from jkfw.pages.
from .pages import (
    BOLT,
    CLOCK,
    DROP,
    DRY,
    LPCD_TARGET,
    NO_BOLT,
    TANK_FULL,
    TANK_LOW,
    TANK_MID,
    TAP_OFF,
    TAP_ON,
    WARN,
    age,
    bore_level,
    litres_lpcd,
    off_state,
    reason,
    tank_level,
    tank_state,
    word,
    yes_no,
)

# 5x8 LCD characters for CGRAM slots 0-7 (rows top first, 5 low bits);
# _SLOT maps an icon to the slot that stands for it on the LCD.
_LCD_CHARS = bytes.fromhex(
    "1c081e1f030200021c081e1f03000a0404040e0e1f1f1f0e04040a0a1111110e"
    "111f1f1f1f1f1f0e03060c1f060c1810040e0a1b1b1f1b1f000e1517110e0000"
)
_SLOT = {TAP_ON: 0, TAP_OFF: 1, DROP: 2, DRY: 3, TANK_FULL: 4, NO_BOLT: 5}
_SLOT.update({WARN: 6, CLOCK: 7, TANK_LOW: 4, TANK_MID: 4, BOLT: 5})


def setup(d):
    d._lines = [None, None]  # what the LCD shows, to rewrite only changes


def start(d):
    """After the screen's init(): load the icon characters, forget what it showed."""
    for i in range(8):
        d.screen.custom_char(i, _LCD_CHARS[i * 8 : i * 8 + 8])
    d._lines = [None, None]


def draw(d, st):
    lines = _PAGES[d.page](d, st)
    for row in (0, 1):
        line = (lines[row] + " " * 16)[:16]
        if line != d._lines[row]:  # rewrite only what changed: no flicker
            d.screen.move_to(0, row)
            d.screen.putstr(line)
            d._lines[row] = line


def _l0(d, st):
    on = st.get("pump") == "on"
    pump = _ch(TAP_ON if on else TAP_OFF) + (" PUMP ON" if on else " PUMP OFF")
    icon, text, detail, mins = reason(st)
    if mins is not None:
        detail = "%dmin" % mins
    if st.get("pump") is None:
        pump = "  PUMP ?"
    top = _lr(pump, str(st.get("time") or ""))
    return top, "%s %s %s" % (_ch(icon), text, detail or "")


def _l1(d, st):
    litres, lpcd = litres_lpcd(st)
    top = "%s %s L" % (_ch(DROP), "--" if litres is None else litres)
    return top, "  %s lpcd /%d" % ("--" if lpcd is None else lpcd, LPCD_TARGET)


def _l2(d, st):
    ins = st.get("inputs") or {}
    dry, off, cut = ins.get("dry"), off_state(ins.get("mains")), ins.get("broken")
    icon, text, _ = tank_state(ins)
    well = _ch(DRY if dry else DROP) + yes_no(dry, "DRY", "OK")
    top = _lr("%s %s%s" % (well, _ch(icon), text), str(st.get("mode") or "?").upper())
    bottom = _ch(BOLT) + yes_no(off, "OFF", "OK") + " WIRE " + yes_no(cut, "CUT", "OK")
    return top, bottom


def _l3(d, st):
    top = _lr("SD " + str(st.get("sd") or "?").upper(), str(st.get("time") or ""))
    up = "NET " + str(st.get("uplink") or "?").upper()
    return top, _lr(up, _ch(CLOCK) + age(st.get("last_upload_s")))


def _l4(d, st):
    faults = st.get("faults") or []
    if not faults:
        return "NO FAULTS", ""
    return "%s %d FAULTS" % (_ch(WARN), len(faults)), ",".join(map(word, faults))


def _l5(d, st):
    # the tank's level sensor above, the borewell's below (where each is fitted)
    lv = st.get("levels") or {}
    rows = []
    if "tank_pct" in lv:
        icon, pct, litres, _ = tank_level(lv)
        rows.append(_lr("%s%s %s" % (_ch(icon), "TANK", pct), litres + "L"))
    if "bore_m" in lv:
        _, m, what, _ = bore_level(lv)
        rows.append(_lr("WELL " + (m + "m" if m != "?" else m), what))
    return (rows + ["", ""])[:2]


def _ch(icon):
    return chr(_SLOT[icon]) if icon in _SLOT else " "


def _lr(left, right):
    """Left and right text on one 16-column line."""
    return left + " " * max(1, 16 - len(left) - len(right)) + right


_PAGES = (_l0, _l1, _l2, _l3, _l4, _l5)
