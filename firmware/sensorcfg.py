# Config of the sensors (docs/sensors.md), loaded by config.validate only when the
# raw config has a sensor key, and dropped with it after boot. Each sensor is off
# (None) unless configured; a bad one is switched off and its key reported.
# Analogue inputs: "adc" = the ESP32 ADC1 pin of the sensor's role in pins
# (bore_adc, tank_adc, ec_adc, ph_adc, ct_adc, supply_adc, panel_adc, battery_adc),
# "ads0".."ads3" = an ADS1115 input.
DEFAULTS = {
    "bore": None,  # borewell level, 4-20 mA: SENSORS["bore"] below
    "tank": None,  # tank level, 4-20 mA or ultrasonic (sonar_rx, sonar_tx, mode)
    "quality": None,  # EC/TDS and pH probes, DS18B20 (pin role onewire)
    "motor": None,  # auxiliary contact (motor_aux) or CT (ct_adc)
    "volts": None,  # {"supply"|"panel"|"battery": divider}
    "solar": None,  # the pump runs on the panel (volts.panel): SENSORS["solar"]
    "ads_addr": 72,  # 0x48: the ADS1115's I2C address (shares the display's bus)
    "measure_s": 0,  # measure frames; 0 = every interval_s
}
_RANGES = {
    "ads_addr": (int, 72, 75),
    "measure_s": (int, 0, 86400),
}
_ANALOG = ("adc", "ads0", "ads1", "ads2", "ads3")
_F = float
# sensor -> {field: (default, (type, low, high) or choices)}; default None: required
SENSORS = {
    "bore": {
        "in": (None, _ANALOG), "range_m": (None, (_F, 1.0, 1000.0)),
        "install_m": (None, (_F, 0.0, 1000.0)), "shunt_ohm": (100, (int, 10, 1000)),
        "zero_ma": (4.0, (_F, 3.8, 4.4)), "intake_m": (0.0, (_F, 0.0, 1000.0)),
        "margin_m": (2.0, (_F, 0.0, 100.0)), "restart_m": (2.0, (_F, 0.1, 100.0)),
        "every_s": (60, (int, 10, 3600)),
    },
    "tank": {
        "in": (None, _ANALOG + ("sonar",)), "height_m": (None, (_F, 0.2, 50.0)),
        "shape": ("vertical", ("vertical", "rect")),
        "diameter_m": (0.0, (_F, 0.0, 100.0)), "length_m": (0.0, (_F, 0.0, 100.0)),
        "width_m": (0.0, (_F, 0.0, 100.0)), "mount_mm": (0, (int, 0, 20000)),
        "range_m": (5.0, (_F, 0.5, 100.0)), "shunt_ohm": (100, (int, 10, 1000)),
        "zero_ma": (4.0, (_F, 3.8, 4.4)),
        # a sonar's serial mode: frames on its own (A02YYUW, JSN-SR04T R27 = 47k)
        # or one per 0x55 trigger (JSN-SR04T R27 = 120k)
        "sonar": ("auto", ("auto", "trigger")),
        # start/stop on the level (0: floats only), read every every_s
        "low_m": (0.0, (_F, 0.0, 50.0)), "high_m": (0.0, (_F, 0.0, 50.0)),
        "every_s": (60, (int, 10, 3600)),
    },
    "solar": {
        "start_v": (None, (_F, 1.0, 1000.0)), "stop_v": (None, (_F, 0.5, 1000.0)),
        "settle_s": (120, (int, 0, 3600)), "every_s": (10, (int, 2, 600)),
        "battery_cut_v": (0.0, (_F, 0.0, 100.0)),
        "battery_on_v": (0.0, (_F, 0.0, 100.0)),
    },
    "quality": {
        "ec_in": ("", ("",) + _ANALOG), "ph_in": ("", ("",) + _ANALOG),
        "temp": (False, (bool,)), "ec_slope": (0.0, (_F, 0.0, 1000000.0)),
        "ec_offset": (0.0, (_F, -100000.0, 100000.0)),
        "tds_factor": (0.64, (_F, 0.4, 1.0)), "ec_date": ("", "date"),
        "ph_slope": (0.0, (_F, -100.0, 100.0)), "ph_offset": (0.0, (_F, -100.0, 100.0)),
        "ph_temp_c": (25.0, (_F, 0.0, 60.0)), "ph_date": ("", "date"),
        "settle_s": (0, (int, 0, 300)),
    },
    "motor": {
        "sense": (None, ("aux", "ct")), "aux_sense": (0, (int, 0, 1)),
        "amps_per_volt": (30.0, (_F, 0.1, 1000.0)), "on_a": (1.0, (_F, 0.0, 500.0)),
        "off_a": (0.5, (_F, 0.0, 500.0)), "start_s": (5, (int, 1, 600)),
        "stop_s": (5, (int, 1, 600)), "every_s": (30, (int, 5, 3600)),
    },
    "divider": {
        "in": ("adc", _ANALOG), "r_top": (None, (int, 0, 10000000)),
        "r_bottom": (None, (int, 1, 10000000)),
    },
}  # fmt: skip
ADC1 = tuple(range(32, 40)) + tuple(range(1, 11))  # ESP32 GPIO 32-39, S3 GPIO 1-10
ADC_TOP_V = 2.45  # the ESP32 ADC's linear top at 11 dB; the ADS1115 at +-4.096 V
ADS_TOP_V = 4.096


def _field(v, check):
    if check == "date":  # YYYY-MM-DD, or "" for none
        return v == "" or isinstance(v, str) and len(v) == 10 and v[4] == v[7] == "-"
    if check == (bool,):
        return isinstance(v, bool)
    if isinstance(check[0], str):
        return v in check
    typ, lo, hi = check
    if isinstance(v, bool) or not isinstance(v, (int, float)):
        return False
    return (typ is float or isinstance(v, int)) and lo <= v <= hi


def _sensor(kind, v):
    """The sensor's settings with defaults filled in, or None when any is bad."""
    if not isinstance(v, dict):
        return None
    spec = SENSORS[kind]  # type: dict
    out = {}
    for k, x in v.items():
        if k not in spec or not _field(x, spec[k][1]):
            return None
        out[k] = float(x) if spec[k][1][0] is float else x
    for k, (default, _check) in spec.items():
        if k not in out:
            if default is None:
                return None
            out[k] = default
    return out


def _wired(cfg, bad):
    """Each configured sensor's pins are in `pins` (ADC1 for analogue inputs) and its
    numbers make sense; a sensor that is not is switched off and its key is bad."""
    pins = cfg["pins"]
    used = [n for n in pins.values() if isinstance(n, int)]
    role = {"bore": "bore_adc", "tank": "tank_adc", "supply": "supply_adc",
            "panel": "panel_adc", "battery": "battery_adc"}  # fmt: skip

    def adc(name):  # the pin of an "adc" input: ADC1, and used once only
        n = pins.get(name)
        return isinstance(n, int) and n in ADC1 and used.count(n) == 1

    def analog(src, name, top_a=0.0, shunt=0):
        if src == "adc":
            return adc(name) and top_a * shunt < ADC_TOP_V * 1000
        return top_a * shunt < ADS_TOP_V * 1000  # a short must read as a short

    for key in ("bore", "tank", "quality", "motor", "volts", "solar"):
        s = cfg[key]
        if s is None:
            continue
        ok = True
        if key in ("bore", "tank") and s["in"] != "sonar":
            ok = analog(s["in"], role[key], 21.0, s["shunt_ohm"])
        if key == "bore" and s["intake_m"]:
            ok = (
                ok and s["intake_m"] <= s["install_m"] and s["margin_m"] < s["intake_m"]
            )
        if key == "tank":
            geo = s["diameter_m"] if s["shape"] == "vertical" else s["length_m"]
            ok = ok and geo > 0 and (s["shape"] == "vertical" or s["width_m"] > 0)
            if s["low_m"] or s["high_m"]:  # marks inside the tank, low below high
                ok = ok and 0 < s["low_m"] < s["high_m"] <= s["height_m"]
            if s["in"] == "sonar":
                ok = ok and "sonar_rx" in pins and "sonar_tx" in pins
                ok = ok and s["mount_mm"] > s["height_m"] * 1000
            else:  # a trigger mode for no sonar: the config is confused
                ok = ok and s["sonar"] == "auto"
        if key == "quality":
            ok = s["ec_in"] == "" or analog(s["ec_in"], "ec_adc")
            ok = ok and (s["ph_in"] == "" or analog(s["ph_in"], "ph_adc"))
            ok = ok and (not s["temp"] or "onewire" in pins)
            ok = ok and (s["ec_in"] == "" or s["temp"])  # EC needs the temperature
        if key == "motor":
            ok = adc("ct_adc") if s["sense"] == "ct" else "motor_aux" in pins
            ok = ok and s["off_a"] <= s["on_a"]
        if key == "volts":
            for name, d in s.items():
                ok = ok and analog(d["in"], role[name])
        if key == "solar":  # needs the panel's divider; a cut-off, the battery's
            v = cfg["volts"] or {}
            ok = "panel" in v and s["stop_v"] < s["start_v"]
            cut = s["battery_cut_v"]
            ok = ok and (not cut or "battery" in v and s["battery_on_v"] > cut)
        if not ok:
            bad.append(key)
            cfg[key] = None


def validate(raw, cfg, bad):
    """The sensor keys of raw into cfg (defaults for the rest); bad keys to bad,
    and any other key config does not know."""
    for k, v in DEFAULTS.items():
        cfg[k] = v
    for k in raw:
        if k not in DEFAULTS and k not in cfg:
            bad.append(k)
    for k in DEFAULTS:
        if k not in raw:
            continue
        v = raw[k]
        if k in _RANGES:
            ok = _field(v, _RANGES[k])
        elif k == "volts":
            ok = (
                v is None
                or isinstance(v, dict)
                and all(
                    n in ("supply", "panel", "battery") and _sensor("divider", x)
                    for n, x in v.items()
                )
            )
            v = v and {n: _sensor("divider", x) for n, x in v.items()}
        else:
            v = v if v is None else _sensor(k, v)
            ok = v is not None or raw[k] is None
        if ok:
            cfg[k] = v
        else:
            bad.append(k)
    if isinstance(cfg["pins"], dict):
        _wired(cfg, bad)
    if not [k for k in SENSORS if k != "divider" and cfg[k]] and not cfg["volts"]:
        for k in DEFAULTS:  # no sensor after all: none of their keys (app.boot)
            del cfg[k]
