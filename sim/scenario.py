"""Scenarios: a village, its scheme, and the faults to inject (TOML or built in)."""

from __future__ import annotations

import copy
import datetime as dt
import random
import sys
from pathlib import Path
from typing import Any

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - Python 3.10
    import tomli as tomllib

FAULT_KINDS = (
    "power_cut", "brownout", "dry_borewell", "sd_removed", "sd_corrupt", "sim_outage",
    "switch_chatter", "wire_break", "clock_unset", "float_stuck", "relay_stuck",
    "watchdog", "motor_trip", "motor_bypass", "sensor",
)  # fmt: skip
SENSOR_NAMES = ("bore", "tank", "ec", "ph", "temp")
SENSOR_MODES = ("open", "short", "drift", "stuck", "noise", "dry")
SWITCHES = ("dry", "low", "high")

DEFAULTS: dict[str, Any] = {
    "name": "custom",
    "start": "2026-03-01",
    "days": 10,
    "seed": 1,
    "tz": "Asia/Kolkata",
    "board": "esp32-devkitc-sim800l",
    "village": {"name": "Hirapur", "population": 1200},
    "scheme": {
        "pump_lpm": 300,  # pump flow, litres per minute
        "tank_litres": 50000,
        "litres_per_pulse": 10.0,  # supply meter (tank -> village)
        "source_litres_per_pulse": 10.0,  # source meter (borewell -> tank)
        "tank_start": 0.5,  # fraction full at the start
        "low_frac": 0.3,  # the low float closes below this
        "high_frac": 0.9,  # the high float closes above this
    },
    "borewell": {
        "storage_litres": 30000,  # water above the dry-run probe when recovered
        "recharge_lpm": 250,  # aquifer inflow
    },
    "demand": {"lpcd": 62},
    "sensors": {  # the sensors of docs/sensors.md, driven by sim/aquifer.py
        "fitted": False,  # borewell, tank, quality probes, CT, dividers
        "static_m": 21.0,  # depth to the water table at rest
        "trend_m_month": 0.0,  # its decline a month
        "transmissivity": 25.0,  # m^2/day
        "storativity": 0.01,
        "install_m": 45.0,  # the transducer's depth below ground
        "range_m": 50.0,  # its full scale, metres of water
        "intake_m": 40.0,  # the pump's intake
        "margin_m": 3.0,  # stop with this much water above the intake
        "restart_m": 2.0,  # start again once it is this much higher
        "dry_probe_m": 39.0,  # the dry-run probe (float switch) depth
        "motor_a": 8.0,  # the motor's rated current
        "sonar": "auto",  # the tank sonar's serial mode: auto or trigger (0x55)
        "tds_mg": 350.0,  # TDS (mg/L) at its lowest; it rises in summer by
        "summer_mg": 150.0,  # this much to its peak (late May, sim/aquifer.py)
        "ph_excursions": [[4, 5, -1.1]],  # [first day, last day, pH change]
    },
    "tank_level": {  # start/stop on a tank transducer (sim/control.py)
        "fitted": False,
        "low_frac": 0.45,  # the controller's low mark, a fraction of the tank
        "high_frac": 0.8,  # its high mark (the floats stay at scheme's fractions)
        "every_s": 60,  # how often the controller reads the level
    },
    "solar": {  # a solar pump (sim/control.py): runs while the panel drives it
        "fitted": False,
        "peak_w": 1000.0,  # clear-sky irradiance at noon, W/m^2
        "cloudy_days": [],  # day indices (0 = the first day) that are cloudy
        "p_cloudy": 0.0,  # else each day is cloudy with this probability (seeded)
        "need_w": 200.0,  # the pump lifts nothing below this irradiance
        "stop_x": 1.25,  # the controller stops at the panel volts of need_w x this
        "start_x": 1.75,  # and starts above those of need_w x this
        "settle_s": 120,  # held that long above the start voltage first
        "every_s": 10,  # how often the controller reads the panel
        "battery_ah": 40.0,  # the controller's 12 V battery (0: none)
        "charge_a": 3.0,  # its charge current at 1000 W/m^2
        "load_a": 0.3,  # the controller and modem
        "pump_a": 0.5,  # the contactor's coil and the drive, while the relay is on
        "cut_v": 11.9,  # battery cut-off: the pump held below it
        "on_v": 12.3,  # until the battery is back above this
    },
    "pump": {  # controller settings (config.json keys)
        "min_off_s": 300,
        "max_run_s": 14400,
        "debounce_s": 3,
        "no_flow_s": 120,
        "restart_delay_s": 120,
    },
}
FAULT_KEYS = {"kind", "start", "hours", "switch", "factor", "sensor", "mode", "rate"}


class ScenarioError(ValueError):
    """A scenario that cannot be run; the message names the key."""


def _merge(base: dict, raw: dict, where: str) -> dict:
    out = copy.deepcopy(base)
    for k, v in raw.items():
        if k not in base:
            raise ScenarioError(f"{where}unknown key {k!r}")
        if isinstance(base[k], dict):
            if not isinstance(v, dict):
                raise ScenarioError(f"{where}{k} must be a table")
            out[k] = _merge(base[k], v, f"{where}{k}.")
        else:
            want = type(base[k])
            if want is float and isinstance(v, int) and not isinstance(v, bool):
                v = float(v)
            if not isinstance(v, want) or isinstance(v, bool) != isinstance(
                base[k], bool
            ):
                raise ScenarioError(
                    f"{where}{k} must be {want.__name__}, got {type(v).__name__} {v!r}"
                )
            out[k] = v
    return out


def _tz_offset_min(tz: str, day: dt.date) -> int:
    try:
        from zoneinfo import ZoneInfo

        z = ZoneInfo(tz)
    except Exception:  # ZoneInfoNotFoundError, ValueError, missing tzdata
        raise ScenarioError(f"tz: unknown time zone {tz!r}")
    off = dt.datetime(day.year, day.month, day.day, 12, tzinfo=z).utcoffset()
    assert off is not None
    return int(off.total_seconds() // 60)


def normalize(raw: dict, name: str = "custom") -> dict:
    """Defaults filled in, every value checked; raises ScenarioError naming the key."""
    raw = dict(raw)
    faults = raw.pop("fault", [])
    base = copy.deepcopy(DEFAULTS)
    base["name"] = name
    sc = _merge(base, raw, "")
    try:
        start = dt.date.fromisoformat(sc["start"])
    except ValueError:
        raise ScenarioError(
            f"start must be a date like 2026-03-01, got {sc['start']!r}"
        )
    if not 1 <= sc["days"] <= 3660:
        raise ScenarioError("days must be 1..3660")
    pop = sc["village"]["population"]
    if not 1 <= pop <= 10_000_000:
        raise ScenarioError("village.population must be 1..10000000")
    s = sc["scheme"]
    for k in ("pump_lpm", "tank_litres", "litres_per_pulse"):
        if s[k] <= 0:
            raise ScenarioError(f"scheme.{k} must be > 0")
    if not 0 <= s["low_frac"] < s["high_frac"] <= 1:
        raise ScenarioError("scheme: need 0 <= low_frac < high_frac <= 1")
    if sc["demand"]["lpcd"] < 0:
        raise ScenarioError("demand.lpcd must be >= 0")
    tl, so = sc["tank_level"], sc["solar"]
    if not 0 < tl["low_frac"] < tl["high_frac"] <= 1:
        raise ScenarioError("tank_level: need 0 < low_frac < high_frac <= 1")
    if not all(type(d) is int and d >= 0 for d in so["cloudy_days"]):
        raise ScenarioError("solar.cloudy_days must be day indices (integers >= 0)")
    if not (0 < so["need_w"] and 1 < so["stop_x"] < so["start_x"]):
        raise ScenarioError("solar: need need_w > 0 and 1 < stop_x < start_x")
    if (tl["fitted"] or so["fitted"]) and sc["sensors"]["fitted"]:
        raise ScenarioError(
            "tank_level and solar use the ADS1115 inputs sensors.fitted takes: "
            "fit one or the other"
        )
    if sc["sensors"]["sonar"] not in ("auto", "trigger"):
        raise ScenarioError("sensors.sonar must be 'auto' or 'trigger'")
    for x in sc["sensors"]["ph_excursions"]:
        if not (isinstance(x, list) and len(x) == 3 and all(
                isinstance(v, (int, float)) for v in x)):  # fmt: skip
            raise ScenarioError("sensors.ph_excursions: [first day, last day, delta]")
    sc["tz_offset_min"] = _tz_offset_min(sc["tz"], start)
    midnight = dt.datetime(start.year, start.month, start.day, tzinfo=dt.timezone.utc)
    sc["start_utc"] = int(midnight.timestamp()) - sc["tz_offset_min"] * 60
    if not isinstance(faults, list):
        raise ScenarioError("fault must be an array of tables ([[fault]])")
    sc["fault"] = [_fault(f, i, sc) for i, f in enumerate(faults)]
    return sc


def _fault(f: Any, i: int, sc: dict) -> dict:
    where = f"fault[{i}]."
    if not isinstance(f, dict):
        raise ScenarioError(f"fault[{i}] must be a table")
    for k in f:
        if k not in FAULT_KEYS:
            raise ScenarioError(f"{where}unknown key {k!r}")
    kind = f.get("kind")
    if kind not in FAULT_KINDS:
        raise ScenarioError(
            f"{where}kind must be one of {', '.join(FAULT_KINDS)}; got {kind!r}"
        )
    out = {
        "kind": kind,
        "switch": f.get("switch", "high"),
        "factor": f.get("factor", 0.05),
    }
    if out["switch"] not in SWITCHES:
        raise ScenarioError(f"{where}switch must be one of {', '.join(SWITCHES)}")
    tank = kind == "sensor" and f.get("sensor") == "tank"
    fitted = sc["sensors"]["fitted"] or tank and sc["tank_level"]["fitted"]
    if kind in ("sensor", "motor_trip", "motor_bypass") and not fitted:
        raise ScenarioError(f"{where}{kind} needs sensors.fitted = true")
    if kind == "sensor":
        out["sensor"], out["mode"] = f.get("sensor"), f.get("mode", "open")
        out["rate"] = f.get("rate", 0.0)
        if out["sensor"] not in SENSOR_NAMES:
            names = ", ".join(SENSOR_NAMES)
            raise ScenarioError(f"{where}sensor must be one of {names}")
        if out["mode"] not in SENSOR_MODES:
            names = ", ".join(SENSOR_MODES)
            raise ScenarioError(f"{where}mode must be one of {names}")
        if not isinstance(out["rate"], (int, float)) or isinstance(out["rate"], bool):
            raise ScenarioError(f"{where}rate must be a number")
    if kind == "clock_unset":
        out["at_s"], out["hours"] = 0, 0.0
        return out
    start = f.get("start")
    try:
        local = dt.datetime.fromisoformat(str(start))
    except ValueError:
        raise ScenarioError(f"{where}start must be a local time like 2026-03-03T14:00")
    instant = kind in ("sd_corrupt", "watchdog")  # happen at start; no duration
    hours = f.get("hours", 0.0 if instant else None)
    if not isinstance(hours, (int, float)) or isinstance(hours, bool):
        raise ScenarioError(f"{where}hours must be a number > 0")
    if hours <= 0 and not instant:
        raise ScenarioError(f"{where}hours must be a number > 0")
    epoch = dt.datetime(1970, 1, 1)
    at = (
        int((local - epoch).total_seconds())
        - sc["tz_offset_min"] * 60
        - sc["start_utc"]
    )
    if at < 0:
        raise ScenarioError(f"{where}start is before the scenario starts")
    if at >= sc["days"] * 86400:
        first = dt.date.fromisoformat(sc["start"])
        last = first + dt.timedelta(days=sc["days"] - 1)
        raise ScenarioError(
            f"fault[{i}] ({kind} at {start}) falls outside the simulated days: "
            f"the scenario runs {sc['days']} days, {first} to {last}; start the "
            "fault earlier or give more days"
        )
    out["at_s"], out["hours"] = at, float(hours)
    return out


def _local(sc_start: str, day: int, hour: float) -> str:
    d = dt.date.fromisoformat(sc_start) + dt.timedelta(days=day)
    t = dt.datetime(d.year, d.month, d.day) + dt.timedelta(hours=hour)
    return t.strftime("%Y-%m-%dT%H:%M")


def builtin(
    name: str, days: int = 10, seed: int = 1, start: str = "2026-03-01"
) -> dict:
    """The raw (TOML-shaped) dict of a built-in scenario."""
    rng = random.Random(f"{name}:{seed}")
    raw: dict[str, Any] = {"start": start, "days": days, "seed": seed}
    faults: list[dict] = []

    def add(kind: str, day: int, hour: float, hours: float, **extra: Any) -> None:
        when = _local(start, min(day, days - 1), hour)
        faults.append({"kind": kind, "start": when, "hours": hours, **extra})

    if name == "normal":
        pass
    elif name == "power-cuts":
        for d in range(days):  # most days lose power for a few hours, as villages do
            if rng.random() < 0.7:
                add("power_cut", d, rng.uniform(0, 20), round(rng.uniform(1, 6), 2))
    elif name == "dry-borewell":
        add("dry_borewell", 2, 6, 36.0, factor=0.03)
    elif name == "overflow-fault":
        add("float_stuck", 1, 0, 48.0)
    elif name == "sensor-faults":
        add("switch_chatter", 1, 5, 10.0, switch="high")
        add("wire_break", 3, 8, 12.0, switch="high")
    elif name == "sd-fault":
        add("sd_removed", 1, 10, 30.0)
    elif name == "sim-outage":
        add("sim_outage", 1, 6, 168.0)  # a week without the mobile network
    elif name in SENSOR_BUILTINS:
        raw["board"] = "esp32s3-devkitc-sim7600"  # ADC1 pins for a CT and a sonar
        raw["sensors"] = {"fitted": True}
        if name == "bore-open":  # the transducer's cable cut for a day and a half
            add("sensor", 2, 6, 36.0, sensor="bore", mode="open")
        elif name == "motor-faults":
            add("motor_trip", 1, 6, 8.0)  # an overload trips: relay on, no motor
            add("motor_bypass", 3, 14, 2.0)  # a starter bypassed: motor, no relay
        elif name == "quality-drift":  # TDS past 500 mg/L, a pH dip on days 6-7
            raw["sensors"].update(tds_mg=120.0, summer_mg=600.0,
                                  ph_excursions=[[6, 7, -1.3]])  # fmt: skip
        elif name == "water-table-decline":  # the water table 3 m deeper a month
            raw["sensors"]["trend_m_month"] = 3.0
    elif name == "solar-week":  # a solar pump through a week with cloudy days
        raw["board"] = "esp32s3-devkitc-sim7600"
        raw["solar"] = {"fitted": True, "cloudy_days": [1, 4, 5]}
    elif name == "tank-level":  # start/stop on the tank's transducer
        raw["board"] = "esp32s3-devkitc-sim7600"
        raw["tank_level"] = {"fitted": True}
        if days >= 3:  # its loop cut for a few hours: the floats take over
            add("sensor", 2, 7, 6.0, sensor="tank", mode="open")
    else:
        names = ", ".join(BUILTINS)
        raise ScenarioError(f"no built-in scenario {name!r}; try one of {names}")
    raw["fault"] = faults
    return raw


SENSOR_BUILTINS = ("sensors", "bore-open", "motor-faults", "quality-drift",
                   "water-table-decline")  # fmt: skip
BUILTINS = ("normal", "power-cuts", "dry-borewell", "overflow-fault", "sensor-faults",
            "sd-fault", "sim-outage") + SENSOR_BUILTINS + ("solar-week",
            "tank-level")  # fmt: skip


def load(
    name_or_file: str,
    days: int | None = None,
    seed: int | None = None,
    start: str | None = None,
) -> dict:
    """A normalized scenario from a built-in name or a TOML file; flags override."""
    p = Path(name_or_file)
    if name_or_file in BUILTINS:
        week = name_or_file == "solar-week"
        raw = builtin(name_or_file, days or (7 if week else 10),
                      seed if seed is not None else 1,
                      start or "2026-03-01")  # fmt: skip
        name = name_or_file
    elif p.suffix == ".toml" or p.exists():
        try:
            raw = tomllib.loads(p.read_text(encoding="utf-8"))
        except OSError as e:
            raise ScenarioError(f"cannot read {p}: {e.strerror or e}")
        except tomllib.TOMLDecodeError as e:
            raise ScenarioError(f"{p}: not valid TOML ({e})")
        except UnicodeDecodeError:
            raise ScenarioError(f"{p}: not text (a TOML scenario file expected)")
        name = p.stem
        if days is not None:
            raw["days"] = days
        if seed is not None:
            raw["seed"] = seed
        if start is not None:
            raw["start"] = start
    else:
        names = ", ".join(BUILTINS)
        raise ScenarioError(
            f"no scenario {name_or_file!r}: give a TOML file or one of {names}"
        )
    return normalize(raw, name)
