# The operator's pages on a 128x64 OLED (SSD1306) or a 16x2 LCD (HD44780).
# Icons and numbers first, short words second: operators may not read English.
# What a page says is decided here; jkfw.oled and jkfw.lcd draw it (jkfw.display
# loads only the one for the fitted display: each is a few KB of heap on the board).

PAGES = 5  # pump, litres, switches, storage/uplink, faults
LEVELS = 5  # and a sixth where a tank or borewell level sensor is fitted
LPCD_TARGET = 55  # litres per capita per day of a fully functional scheme (JJM)

# icon numbers: glyphs in jkfw.oled (16x16) and CGRAM characters in jkfw.lcd
(TAP_ON, TAP_OFF, DROP, DRY, TANK_FULL, TANK_LOW, TANK_MID, BOLT, NO_BOLT) = range(9)
(CLOCK, SD, ANTENNA, WARN, TICK, PERSON, WIRE, NO_WIRE, POWER) = range(9, 18)
DEPTH = 18  # a borewell: the ground, and the water down below it

_WORDS = {
    "tank_full": "TANK FULL", "tank_low": "TANK LOW", "dry_run": "DRY-RUN",
    "no_flow": "NO FLOW", "power_loss": "NO POWER", "power_return": "POWER BACK",
    "wire_break": "WIRE CUT", "min_off": "REST", "manual": "MANUAL",
    "max_run": "MAX RUN", "relay_stuck": "RELAY JAM", "none": "",
}  # fmt: skip


def word(name):
    """Short upper-case words for a reason name."""
    return _WORDS.get(name) or str(name).upper().replace("_", " ")


def as_int(v):
    try:
        return int(v)
    except (TypeError, ValueError):
        return None


def age(s):
    """Seconds as 45s / 12m / 3h / 2d; '--' when unknown."""
    s = as_int(s)
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
    left = as_int(st.get("lockout_left_s"))
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


def tank_state(inputs):
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


def off_state(mains):
    return None if mains is None else not mains


def litres_lpcd(st):
    litres, people = as_int(st.get("litres_today")), as_int(st.get("population"))
    return litres, (litres // people if litres is not None and people else None)


def yes_no(flag, yes, no):
    return "?" if flag is None else (yes if flag else no)


def tank_level(lv):
    """(icon, percent text, litres text, alert) of the tank's level sensor: "?"
    and the warning sign while it is in fault (or not read yet)."""
    pct, litres = as_int(lv.get("tank_pct")), as_int(lv.get("tank_l"))
    if pct is None:
        return WARN, "?", "--" if litres is None else "%d" % litres, True
    icon = TANK_FULL if pct >= 90 else TANK_LOW if pct <= 25 else TANK_MID
    return icon, "%d%%" % pct, "--" if litres is None else "%d" % litres, False


def bore_level(lv):
    """(icon, metres text, word, alert) of the borewell's level sensor: the water's
    depth below ground, LOW (inverted) while the pump is held off for it."""
    m = lv.get("bore_m")
    if m is None:
        return WARN, "?", "FAULT", True
    low = lv.get("bore_low")
    # tenths rounded half up in integers: "%.1f" rounds 38.25 down on CPython and
    # up on MicroPython
    t = int(abs(m) * 10 + 0.5)
    text = "%s%d.%d" % ("-" if m < 0 and t else "", t // 10, t % 10)
    return DEPTH, text, "LOW" if low else "DEPTH", bool(low)
