"""`jalkal provision`'s sensor settings and calibration (docs/sensors.md): the
borewell and tank transducers (range, installation depth, intake), the tank's
geometry, two-point pH and EC calibrations from two buffer or standard readings
with their date, the CT's ratio. Every value is checked as the firmware's
jkfw.sensorcfg checks it, with an error that names the option, the value and what
would do; provision writes nothing when one is wrong.

Readings are in millivolts at the board's input, as `jalkal doctor` shows them
(pH: 1432 mV → 7.21): --ph-cal 2500=7.00 --ph-cal 3024=4.01."""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import date, datetime
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

from ..errors import JalkalError
from ..fileio import read_optional

SENSOR_KEYS = ("bore", "tank", "quality", "motor", "volts", "solar", "ads_addr",
               "measure_s")  # fmt: skip
NERNST_MV = 59.16  # a glass electrode's mV per pH at 25 C
PH_SPAN = 1.0  # the two buffers at least this far apart (e.g. 4.01 and 7.00)
EC_RATIO = 1.5  # the two standards' EC at least this far apart (1413 and 12880)
UNITS = {"range_m": "m", "install_m": "m", "intake_m": "m", "margin_m": "m",
         "restart_m": "m", "height_m": "m", "diameter_m": "m", "length_m": "m",
         "width_m": "m", "mount_mm": "mm", "shunt_ohm": "Ω", "zero_ma": "mA",
         "low_m": "m", "high_m": "m", "every_s": "s"}  # fmt: skip


@dataclass
class Calibration:
    """What the technician gave (the provision command's sensor options)."""

    bore: str | None = None  # "in=ads0,range_m=50,install_m=45,intake_m=40"
    tank: str | None = None  # "in=sonar,height_m=3,diameter_m=2.9,mount_mm=3300"
    # (a JSN-SR04T with R27 = 120k: ",sonar=trigger")
    ph_in: str | None = None
    ph_cal: tuple[str, ...] = ()  # "MV=PH", two
    ec_in: str | None = None
    ec_cal: tuple[str, ...] = ()  # "MV=USCM" (the standard's EC at 25 C), two
    cal_temp: float | None = None  # the buffers' / standards' temperature (C)
    tds_factor: float | None = None
    ct_ratio: float | None = None  # amps per volt of the CT and its burden
    motor_aux: bool = False
    cal_date: str | None = None  # YYYY-MM-DD; default today in the village's zone
    tz: str = "Asia/Kolkata"


def _sensorcfg() -> Any:
    from jkfw import sensorcfg

    return sensorcfg


def defaults() -> dict[str, Any]:
    """The sensor keys the firmware knows (sensorcfg), for --set."""
    return dict(_sensorcfg().DEFAULTS)


def _number(text: str, option: str) -> float:
    t = text.strip().lower().removesuffix("mv").strip()
    try:
        v = float(t)
    except ValueError:
        raise JalkalError(f"{option} {text!r}: not a number") from None
    if v != v or v in (float("inf"), float("-inf")):
        raise JalkalError(f"{option} {text!r}: not a number")
    return v


def check_field(kind: str, key: str, value: Any, option: str) -> Any:
    """value as sensorcfg.SENSORS[kind][key] accepts it, or JalkalError."""
    spec = _sensorcfg().SENSORS[kind]
    if key not in spec:
        raise JalkalError(
            f"{option} {key}: not a {kind} setting (known: {', '.join(spec)})"
        )
    check = spec[key][1]
    if check == "date":
        return _cal_date(Calibration(cal_date=str(value)))
    if isinstance(check[0], str):
        if value not in check:
            raise JalkalError(
                f"{option} {key}={value}: use one of "
                + ", ".join(repr(c) if c == "" else c for c in check)
            )
        return value
    if check == (bool,):
        return value
    typ, lo, hi = check
    v = _number(str(value), f"{option} {key}=")
    if typ is int and v != int(v):
        raise JalkalError(f"{option} {key}={value}: a whole number, please")
    if not lo <= v <= hi:
        unit = UNITS.get(key, "")
        raise JalkalError(
            f"{option} {key}={value}: must be between {lo:g} and {hi:g}"
            + (f" {unit}" if unit else "")
        )
    return int(v) if typ is int else float(v)


def parse_fields(text: str, kind: str, option: str) -> dict[str, Any]:
    """ "in=ads0,range_m=50" -> {"in": "ads0", "range_m": 50.0}, each checked."""
    out: dict[str, Any] = {}
    for part in text.split(","):
        if not part.strip():
            continue
        key, sep, value = part.partition("=")
        key, value = key.strip(), value.strip()
        if not sep or not key:
            raise JalkalError(f"{option} {part!r}: use KEY=VALUE, e.g. range_m=50")
        if key in out:
            raise JalkalError(f"{option}: {key} given twice")
        out[key] = check_field(kind, key, value, option)
    return out


def points(pairs: tuple[str, ...], option: str) -> list[tuple[float, float]]:
    """Two "MV=VALUE" readings -> [(volts, value), (volts, value)]."""
    if len(pairs) != 2:
        raise JalkalError(
            f"{option} needs two readings (one per buffer or standard), "
            f"{len(pairs)} given: {option} MV=VALUE {option} MV=VALUE"
        )
    out = []
    for p in pairs:
        mv, sep, value = p.partition("=")
        if not sep:
            raise JalkalError(f"{option} {p!r}: use MV=VALUE, e.g. 2500=7.00")
        v = _number(mv, option)
        if not 0 <= v <= 6144:
            raise JalkalError(f"{option} {p!r}: {v:g} mV is not an input's reading")
        out.append((v / 1000, _number(value, option)))
    if out[0][0] == out[1][0]:
        raise JalkalError(
            f"{option}: both readings are {out[0][0] * 1000:g} mV: the probe did not "
            "respond; rinse it, check its wiring and read the buffers again"
        )
    return out


def _cal_date(cal: Calibration) -> str:
    if cal.cal_date is None:
        return datetime.now(ZoneInfo(cal.tz)).date().isoformat()
    try:
        d = date.fromisoformat(cal.cal_date)
    except ValueError:
        raise JalkalError(f"--cal-date {cal.cal_date!r}: use YYYY-MM-DD") from None
    if len(cal.cal_date) != 10:
        raise JalkalError(f"--cal-date {cal.cal_date!r}: use YYYY-MM-DD")
    if d > datetime.now(ZoneInfo(cal.tz)).date():
        raise JalkalError(f"--cal-date {cal.cal_date}: that day has not come yet")
    return d.isoformat()


def ph_line(cal: Calibration, day: str) -> dict[str, Any]:
    from jkfw import quality

    (v1, p1), (v2, p2) = points(cal.ph_cal, "--ph-cal")
    for p in (p1, p2):
        if not 0 < p < 14:
            raise JalkalError(f"--ph-cal: pH {p:g} is not a buffer (0-14)")
    if abs(p1 - p2) < PH_SPAN:
        raise JalkalError(
            f"--ph-cal: buffers {p1:g} and {p2:g} are too close; use two at least "
            f"{PH_SPAN:g} pH apart (e.g. 4.01 and 7.00)"
        )
    per_ph = abs(v2 - v1) * 1000 / abs(p2 - p1)
    if per_ph < NERNST_MV / 2:
        raise JalkalError(
            f"--ph-cal: the probe moved {per_ph:.1f} mV per pH, less than half a "
            f"glass electrode's {NERNST_MV} mV: clean it (or replace it), let it "
            "settle in each buffer, and read them again"
        )
    temp = 25.0 if cal.cal_temp is None else cal.cal_temp
    ph = quality.PH()
    ph.calibrate(v1, p1, v2, p2, temp, day)  # the firmware's own line
    out = {"ph_slope": ph.slope, "ph_offset": ph.offset, "ph_temp_c": temp,
           "ph_date": day}  # fmt: skip
    for k, v in out.items():
        if k != "ph_date":
            check_field("quality", k, v, "--ph-cal gives")
    return out


def ec_line(cal: Calibration, day: str) -> dict[str, Any]:
    from jkfw import quality

    (v1, e1), (v2, e2) = points(cal.ec_cal, "--ec-cal")
    for e in (e1, e2):
        if not 0 < e <= 200000:
            raise JalkalError(f"--ec-cal: {e:g} µS/cm is not a standard's EC")
    lo, hi = sorted((e1, e2))
    if hi < lo * EC_RATIO:
        raise JalkalError(
            f"--ec-cal: standards {e1:g} and {e2:g} µS/cm are too close; use two "
            "far apart (e.g. 1413 and 12880 µS/cm)"
        )
    if cal.cal_temp is None:
        raise JalkalError(
            "--ec-cal needs --cal-temp C: the standards' temperature when read "
            "(EC changes about 2 % per °C)"
        )
    ec = quality.Conductivity()
    if not ec.calibrate(v1, e1, v2, e2, cal.cal_temp, day):
        raise JalkalError(
            "--ec-cal: the reading is lower for the stronger standard; the probe "
            "or its board is miswired, or the readings are swapped"
        )
    out = {"ec_slope": ec.slope, "ec_offset": ec.offset, "ec_date": day}
    for k in ("ec_slope", "ec_offset"):
        check_field("quality", k, out[k], "--ec-cal gives")
    return out


def previous(out_dir: Path, device: str) -> dict[str, Any]:
    """The sensor keys of the config.json already in out_dir for this device (a
    re-provisioning keeps them; the options given change them)."""
    data = read_optional(out_dir / "config.json")
    if data is None:
        return {}
    try:
        old = json.loads(data)
    except ValueError:
        return {}
    if not isinstance(old, dict) or old.get("device") != device:
        return {}
    return {k: old[k] for k in SENSOR_KEYS if k in old}


def apply(cal: Calibration, raw: dict[str, Any], out_dir: Path, device: str) -> None:
    """raw's sensor keys: those of the config.json this device had in out_dir,
    then those of --set, then the sensor options."""
    old = previous(out_dir, device)
    old.update({k: raw[k] for k in SENSOR_KEYS if k in raw})
    raw.update(sensor_keys(cal, old))


def sensor_keys(cal: Calibration, old: dict[str, Any]) -> dict[str, Any]:
    """The config.json sensor keys: old ones with the options applied."""
    keys = json.loads(json.dumps(old))
    day = _cal_date(cal)
    if cal.bore:
        keys["bore"] = {**(keys.get("bore") or {}),
                        **parse_fields(cal.bore, "bore", "--bore")}  # fmt: skip
    if cal.tank:
        keys["tank"] = {**(keys.get("tank") or {}),
                        **parse_fields(cal.tank, "tank", "--tank")}  # fmt: skip
    q = dict(keys.get("quality") or {})
    if cal.ph_in is not None:
        q["ph_in"] = check_field("quality", "ph_in", cal.ph_in, "--ph-in")
    if cal.ec_in is not None:
        q["ec_in"] = check_field("quality", "ec_in", cal.ec_in, "--ec-in")
    if cal.ph_cal:
        if not q.get("ph_in"):
            raise JalkalError("--ph-cal: which input is the pH board on? add --ph-in")
        q.update(ph_line(cal, day))
    if cal.ec_cal:
        if not q.get("ec_in"):
            raise JalkalError("--ec-cal: which input is the EC board on? add --ec-in")
        q.update(ec_line(cal, day))
    if cal.tds_factor is not None:
        q["tds_factor"] = check_field("quality", "tds_factor", cal.tds_factor,
                                      "--tds-factor")  # fmt: skip
    if q.get("ec_in"):
        q["temp"] = True  # EC is compensated to 25 C by the DS18B20's temperature
    if q:
        keys["quality"] = q
    if cal.ct_ratio is not None and cal.motor_aux:
        raise JalkalError("--ct-ratio and --motor-aux: the motor has one sensor")
    if cal.ct_ratio is not None:
        m = {k: v for k, v in (keys.get("motor") or {}).items() if k != "aux_sense"}
        m["sense"] = "ct"
        m["amps_per_volt"] = check_field("motor", "amps_per_volt", cal.ct_ratio,
                                         "--ct-ratio")  # fmt: skip
        keys["motor"] = m
    if cal.motor_aux:
        m = {k: v for k, v in (keys.get("motor") or {}).items()
             if k not in ("amps_per_volt", "on_a", "off_a")}  # fmt: skip
        m["sense"] = "aux"
        keys["motor"] = m
    return keys


def explain(raw: dict[str, Any], bad: list[str]) -> list[str]:
    """Why the firmware refuses a sensor key of raw (its wiring checks)."""
    sc = _sensorcfg()
    pins = raw.get("pins") or {}
    role = {"bore": "bore_adc", "tank": "tank_adc"}
    why = []
    for key in bad:
        s = raw.get(key)
        spec = sc.SENSORS.get(key, {})
        missing = [k for k, (d, _c) in spec.items() if d is None and isinstance(s, dict)
                   and k not in s]  # fmt: skip
        if missing:
            why.append(f"{key}: give {', '.join(missing)}")
        if key in ("bore", "tank") and isinstance(s, dict) and s.get("in") != "sonar":
            shunt = s.get("shunt_ohm", 100)
            top = sc.ADC_TOP_V if s.get("in") == "adc" else sc.ADS_TOP_V
            if s.get("in") == "adc" and pins.get(role[key]) not in sc.ADC1:
                why.append(f"{key}: in=adc needs an ADC1 pin {role[key]} on the "
                           "board; use an ADS1115 input (ads0-ads3)")  # fmt: skip
            elif 21 * shunt / 1000 >= top:
                why.append(f"{key}: shunt_ohm={shunt}: a short (21 mA) would read "
                           f"{21 * shunt / 1000:.2f} V, past the input's {top} V "
                           "top; use a smaller shunt")  # fmt: skip
        if key == "bore" and isinstance(s, dict) and s.get("intake_m"):
            if s["intake_m"] > s.get("install_m", 0):
                why.append(
                    "bore: intake_m is deeper than the transducer "
                    "(install_m): it could not see the level fall there"
                )
            elif s.get("margin_m", 2.0) >= s["intake_m"]:
                why.append("bore: margin_m must be smaller than intake_m")
        if key == "tank" and isinstance(s, dict):
            if s.get("in") == "sonar" and not ("sonar_rx" in pins and "sonar_tx"
                                                in pins):  # fmt: skip
                why.append(
                    "tank: in=sonar needs sonar_rx and sonar_tx pins on the board"
                )
            if s.get("in") == "sonar" and s.get("mount_mm", 0) <= s.get(
                    "height_m", 0) * 1000:  # fmt: skip
                why.append(
                    "tank: mount_mm (sonar face to the floor) must be above "
                    "the overflow (height_m)"
                )
            if s.get("in") != "sonar" and s.get("sonar", "auto") != "auto":
                why.append("tank: sonar=trigger is for an ultrasonic sensor (in=sonar)")
            if not (s.get("diameter_m") or s.get("length_m") and s.get("width_m")):
                why.append(
                    "tank: give its size: diameter_m, or length_m and "
                    "width_m with shape=rect"
                )
        if key == "quality" and isinstance(s, dict):
            if s.get("temp") and "onewire" not in pins:
                why.append(
                    "quality: the water temperature needs a onewire pin on "
                    "the board (a DS18B20)"
                )
        if key == "motor" and isinstance(s, dict):
            need = "ct_adc" if s.get("sense") == "ct" else "motor_aux"
            if need not in pins:
                why.append(f"motor: the board has no {need} pin")
    return why


def summary(cfg: dict[str, Any]) -> list[str]:
    """Lines for provision's summary: the sensors and their calibration."""
    out = []
    b, t, q, m = (cfg.get(k) for k in ("bore", "tank", "quality", "motor"))
    if b:
        out.append(
            f"borewell: 4-20 mA on {b['in']}, range {b['range_m']:g} m, "
            f"installed at {b['install_m']:g} m"
            + (f", intake {b['intake_m']:g} m" if b.get("intake_m") else "")
        )
    if t:
        size = (
            f"{t['diameter_m']:g} m across"
            if t.get("diameter_m")
            else f"{t.get('length_m', 0):g} x {t.get('width_m', 0):g} m"
        )
        how = t["in"]
        if how == "sonar":  # its serial mode (a JSN-SR04T's R27, docs/sensors.md)
            how += " (0x55 trigger)" if t.get("sonar") == "trigger" else ""
        out.append(f"tank: {how}, {t['height_m']:g} m high, {size}")
    if q:
        if q.get("ph_in"):
            cal = (f"calibrated {q['ph_date']}" if q.get("ph_slope")
                   else "not calibrated")  # fmt: skip
            out.append(f"pH on {q['ph_in']}: {cal}")
        if q.get("ec_in"):
            cal = (f"calibrated {q['ec_date']}" if q.get("ec_slope")
                   else "not calibrated")  # fmt: skip
            out.append(f"EC/TDS on {q['ec_in']} (water temperature: DS18B20): {cal}")
    if m:
        out.append(
            "motor: "
            + (
                f"CT, {m.get('amps_per_volt', 30):g} A per volt"
                if m["sense"] == "ct"
                else "auxiliary contact"
            )
        )
    return [f"  sensor: {line}" for line in out]
