# The operator's pages on a 128x64 OLED (SSD1306) or a 16x2 LCD (HD44780).
# Icons and numbers first, short words second: operators may not read English.
import framebuf

PAGES = 5  # pump, litres, switches, storage/uplink, faults
_RIGHT = 123  # OLED content stays left of the page dots
LPCD_TARGET = 55  # litres per capita per day of a fully functional scheme (JJM)

# 16x16 icons, MONO_HMSB (2 bytes a row, LSB at the left); drawn as ASCII art
# in tests/test_display.py, which checks these bytes against the art.
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
(TAP_ON, TAP_OFF, DROP, DRY, TANK_FULL, TANK_LOW, TANK_MID, BOLT, NO_BOLT) = range(9)
(CLOCK, SD, ANTENNA, WARN, TICK, PERSON, WIRE, NO_WIRE, POWER) = range(9, 18)

# 5x8 LCD characters for CGRAM slots 0-7 (rows top first, 5 low bits);
# _SLOT maps an icon to the slot that stands for it on the LCD.
_LCD_CHARS = bytes.fromhex(
    "1c081e1f030200021c081e1f03000a0404040e0e1f1f1f0e04040a0a1111110e"
    "111f1f1f1f1f1f0e03060c1f060c1810040e0a1b1b1f1b1f000e1517110e0000"
)
_SLOT = {TAP_ON: 0, TAP_OFF: 1, DROP: 2, DRY: 3, TANK_FULL: 4, NO_BOLT: 5}
_SLOT.update({WARN: 6, CLOCK: 7, TANK_LOW: 4, TANK_MID: 4, BOLT: 5})

_WORDS = {
    "tank_full": "TANK FULL", "tank_low": "TANK LOW", "dry_run": "DRY-RUN",
    "no_flow": "NO FLOW", "power_loss": "NO POWER", "power_return": "POWER BACK",
    "wire_break": "WIRE CUT", "min_off": "REST", "manual": "MANUAL",
    "max_run": "MAX RUN", "relay_stuck": "RELAY JAM", "none": "",
}  # fmt: skip


def word(name):
    """Short upper-case words for a reason name."""
    return _WORDS.get(name) or str(name).upper().replace("_", " ")


def _int(v):
    try:
        return int(v)
    except (TypeError, ValueError):
        return None


def age(s):
    """Seconds as 45s / 12m / 3h / 2d; '--' when unknown."""
    s = _int(s)
    if s is None or s < 0:
        return "--"
    for unit, n in (("d", 86400), ("h", 3600), ("m", 60)):
        if s >= n:
            return "%d%s" % (min(s // n, 999), unit)
    return "%ds" % s


def reason(st):
    """(icon, words, detail words, minutes left) for why the pump is on or off."""
    why = st.get("why")
    why = None if why == "none" else why
    state = st.get("state")
    left = _int(st.get("lockout_left_s"))
    # rounded up: never "0 min" while still waiting
    mins = min((left + 59) // 60, 999) if left and left > 0 else None
    if st.get("pump") == "on":
        return DROP, "PUMPING", "MANUAL" if st.get("mode") == "on" else "AUTO", None
    if why == "power_loss" or (st.get("inputs") or {}).get("mains") is False:
        return NO_BOLT, "NO POWER", None, None
    if state == "fault":
        faults = st.get("faults") or ([why] if why else [])
        return WARN, "FAULT", word(faults[0]) if faults else None, None
    if state == "lockout":
        dry = why in (None, "dry_run")
        return DRY if dry else WARN, word(why or "dry_run"), "WAIT", mins
    if state == "off" or st.get("mode") == "off":
        return POWER, "SWITCHED", "OFF", None
    if why == "dry_run":
        return DRY, "DRY-RUN", None, None
    if why == "tank_full":
        return TANK_FULL, "TANK FULL", None, None
    if why in ("min_off", "max_run", "power_return"):
        return CLOCK, word(why), "WAIT", mins
    if state == "boot" or why == "boot":
        return CLOCK, "STARTING", None, None
    if why:
        return WARN, word(why), None, None
    if state == "idle":
        return TICK, "READY", None, None
    return None, "", None, None  # nothing known yet: say nothing rather than guess


def _tank(inputs):
    low, high = inputs.get("low"), inputs.get("high")
    if low is None and high is None:
        return TANK_MID, "?", False
    # low and high at once: one switch or its wire is lying
    return (
        (TANK_MID, "MID", False),
        (TANK_LOW, "LOW", False),
        (TANK_FULL, "FULL", False),
        (WARN, "??", True),
    )[(1 if low else 0) + (2 if high else 0)]


def _off(mains):
    return None if mains is None else not mains


class Display:
    """Pages for `screen`: kind "ssd1306" (a FrameBuffer with show()) or "hd44780"."""

    upload_stale_s = 86400  # an older last upload is drawn inverted

    def __init__(self, screen, kind):
        if kind not in ("ssd1306", "hd44780"):
            raise ValueError("display kind must be ssd1306 or hd44780")
        self.screen = screen
        self.kind = kind
        self.page = 0
        self._ready = False  # init() sent; cleared when the bus fails
        self._lines = [None, None]  # what the LCD shows, to rewrite only changes
        # 8x8 scratch for one character, scaled up by _big()
        self._glyph = bytearray(8)
        self._gfb = framebuf.FrameBuffer(self._glyph, 8, 8, framebuf.MONO_VLSB)

    def next_page(self):
        """The button: show the next page."""
        self.page = (self.page + 1) % PAGES
        return self.page

    def render(self, status):
        """Draw the current page from `status`; False if the display did not answer."""
        try:
            if not self._ready:
                self.screen.init()
                if self.kind == "hd44780":
                    for i in range(8):
                        self.screen.custom_char(i, _LCD_CHARS[i * 8 : i * 8 + 8])
                    self._lines = [None, None]
                self._ready = True
            if self.kind == "hd44780":
                self._lcd(status or {})
            else:
                self._oled(status or {})
                self.screen.show()
            return True
        except OSError:
            # A loose or unplugged display must never stop the pump logic; it is
            # re-initialised on the next render (it may have lost power too).
            self._ready = False
            return False

    # -- drawing helpers (OLED) --
    def _runs(self, bits, x, y, s, c, down):
        # one fill_rect per run of set bits, LSB first: rows of icons, columns of text
        i = 0
        while bits:
            if bits & 1:
                j = i
                while bits & 1:
                    bits >>= 1
                    j += 1
                if down:
                    self.screen.fill_rect(x, y + i * s, s, (j - i) * s, c)
                else:
                    self.screen.fill_rect(x + i * s, y, (j - i) * s, s, c)
                i = j
            else:
                bits >>= 1
                i += 1

    def _icon(self, i, x, y, s=1, c=1):
        a = i * 32
        for r in range(16):
            bits = _ICONS[a + 2 * r] | (_ICONS[a + 2 * r + 1] << 8)
            self._runs(bits, x, y + r * s, s, c, False)

    def _big(self, text, x, y, s, c=1):
        """Text in the 8x8 font scaled by s (less if too wide); returns its end x."""
        while s > 1 and x + 8 * s * len(text) > _RIGHT:
            s -= 1
        for ch in text:
            self._gfb.fill(0)
            self._gfb.text(ch, 0, 0, 1)
            for cx in range(8):
                self._runs(self._glyph[cx], x + cx * s, y, s, c, True)
            x += 8 * s
        return x

    def _oled(self, st):
        fb = self.screen
        fb.fill(0)
        # page dots down the right edge: where am I among the button's pages
        for i in range(PAGES):
            if i == self.page:
                fb.fill_rect(125, 8 + 12 * i, 3, 3, 1)
            else:
                fb.pixel(126, 9 + 12 * i, 1)
        getattr(self, "_p%d" % self.page)(st)

    def _p0(self, st):
        pump = st.get("pump")
        if pump is None:
            self._big("?", 40, 3, 3)  # not known yet: no icon that could mislead
        else:
            # the taps' top row is blank: lift them for a gap above the reason icon
            self._icon(TAP_ON if pump == "on" else TAP_OFF, 0, -2, 2)
            self._big("ON" if pump == "on" else "OFF", 40, 3, 3)
        icon, text, detail, mins = reason(st)
        if icon is not None:
            self._icon(icon, 0, 33, 2)
        fb = self.screen
        fb.text(text[:10], 38, 35, 1)
        if mins is not None:
            x = self._big("%d" % mins, 38, 46, 2)
            fb.text("min", x + 2, 54, 1)
        elif detail:
            fb.text(detail[:10], 38, 50, 1)

    def _p1(self, st):
        fb = self.screen
        litres, lpcd = _litres(st)
        text = "--" if litres is None else "%d" % litres
        self._icon(DROP, 0, 4)
        s = max(1, min(3, 96 // (8 * len(text))))
        x = self._big(text, 18, 24 - 8 * s, s)
        fb.text("L", x + 2, 16, 1)
        self._icon(PERSON, 0, 28)
        x = self._big("--" if lpcd is None else "%d" % lpcd, 18, 28, 2)
        fb.text("lpcd", x + 2, 36, 1)
        # today so far against the target: full bar = a functional day
        fb.rect(0, 50, 100, 12, 1)
        if lpcd:
            fb.fill_rect(2, 52, min(lpcd, LPCD_TARGET) * 96 // LPCD_TARGET, 8, 1)
        fb.text("%d" % LPCD_TARGET, 104, 52, 1)

    def _cell(self, i, icon, name, state, alert):
        x, y = (i % 2) * 62, (i // 2) * 21
        c = 0 if alert else 1
        if alert:  # black on white: the operator sees trouble without reading
            self.screen.fill_rect(x, y, 61, 20, 1)
        self._icon(icon, x + 2, y + 2, 1, c)
        self.screen.text(name, x + 20, y + 2, c)
        self.screen.text(state, x + 20, y + 11, c)

    def _p2(self, st):
        ins = st.get("inputs") or {}
        dry, mains, broken = ins.get("dry"), ins.get("mains"), ins.get("broken")
        self._cell(0, DRY if dry else DROP, "WELL", _yn(dry, "DRY", "OK"), dry)
        icon, text, alert = _tank(ins)
        self._cell(1, icon, "TANK", text, alert)
        off = _off(mains)
        self._cell(2, NO_BOLT if off else BOLT, "MAINS", _yn(off, "OFF", "OK"), off)
        self._cell(
            3, NO_WIRE if broken else WIRE, "WIRES", _yn(broken, "CUT", "OK"), broken
        )
        mode = st.get("mode")
        self._cell(4, POWER, "MODE", str(mode).upper() if mode else "?", mode == "off")
        self._cell(5, CLOCK, "TIME", str(st.get("time") or "--:--")[:5], False)

    def _p3(self, st):
        fb = self.screen
        sd, up = st.get("sd"), st.get("uplink")
        ago = _int(st.get("last_upload_s"))
        # never or long ago is trouble only when an uplink is fitted
        late = ago is None or not 0 <= ago <= self.upload_stale_s
        rows = (
            (SD, str(sd or "?").upper(), sd in ("flash", "none")),
            (ANTENNA, str(up or "?").upper(), up == "down"),
            (CLOCK, age(ago), late and up in ("ok", "down")),
        )
        for i, (icon, text, alert) in enumerate(rows):
            y, c = i * 21, 0 if alert else 1
            if alert:
                fb.fill_rect(0, y, 123, 20, 1)
            self._icon(icon, 2, y + 2, 1, c)
            x = self._big(text, 22, y + 2, 2, c)
        if ago is not None:
            fb.text("AGO", x + 4, 52, c)

    def _p4(self, st):
        fb = self.screen
        faults = st.get("faults") or []
        if not faults:
            self._icon(TICK, 0, 0, 2)
            self._big("OK", 40, 4, 3)
            fb.text("NO FAULTS", 0, 44, 1)
            return
        self._icon(WARN, 0, 0, 2)
        self._big("%d" % len(faults), 40, 4, 3)
        shown = faults if len(faults) <= 3 else faults[:2]
        for i, name in enumerate(shown):
            fb.text(word(name)[:15], 0, 34 + 10 * i, 1)
        if len(faults) > 3:
            fb.text("+%d MORE" % (len(faults) - 2), 0, 54, 1)

    # -- the LCD: two lines of 16, CGRAM icons --
    def _lcd(self, st):
        lines = getattr(self, "_l%d" % self.page)(st)
        for row in (0, 1):
            line = (lines[row] + " " * 16)[:16]
            if line != self._lines[row]:  # rewrite only what changed: no flicker
                self.screen.move_to(0, row)
                self.screen.putstr(line)
                self._lines[row] = line

    def _l0(self, st):
        on = st.get("pump") == "on"
        pump = _ch(TAP_ON if on else TAP_OFF) + (" PUMP ON" if on else " PUMP OFF")
        icon, text, detail, mins = reason(st)
        if mins is not None:
            detail = "%dmin" % mins
        if st.get("pump") is None:
            pump = "  PUMP ?"
        top = _lr(pump, str(st.get("time") or ""))
        return top, "%s %s %s" % (_ch(icon), text, detail or "")

    def _l1(self, st):
        litres, lpcd = _litres(st)
        top = "%s %s L" % (_ch(DROP), "--" if litres is None else litres)
        return top, "  %s lpcd /%d" % ("--" if lpcd is None else lpcd, LPCD_TARGET)

    def _l2(self, st):
        ins = st.get("inputs") or {}
        dry, off, cut = ins.get("dry"), _off(ins.get("mains")), ins.get("broken")
        icon, text, _ = _tank(ins)
        well = _ch(DRY if dry else DROP) + _yn(dry, "DRY", "OK")
        top = _lr(
            "%s %s%s" % (well, _ch(icon), text), str(st.get("mode") or "?").upper()
        )
        bottom = _ch(BOLT) + _yn(off, "OFF", "OK") + " WIRE " + _yn(cut, "CUT", "OK")
        return top, bottom

    def _l3(self, st):
        top = _lr("SD " + str(st.get("sd") or "?").upper(), str(st.get("time") or ""))
        up = "NET " + str(st.get("uplink") or "?").upper()
        return top, _lr(up, _ch(CLOCK) + age(st.get("last_upload_s")))

    def _l4(self, st):
        faults = st.get("faults") or []
        if not faults:
            return "NO FAULTS", ""
        return "%s %d FAULTS" % (_ch(WARN), len(faults)), ",".join(map(word, faults))


def _litres(st):
    litres, people = _int(st.get("litres_today")), _int(st.get("population"))
    return litres, (litres // people if litres is not None and people else None)


def _yn(flag, yes, no):
    return "?" if flag is None else (yes if flag else no)


def _ch(icon):
    return chr(_SLOT[icon]) if icon in _SLOT else " "


def _lr(left, right):
    """Left and right text on one 16-column line."""
    return left + " " * max(1, 16 - len(left) - len(right)) + right
