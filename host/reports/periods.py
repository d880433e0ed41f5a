"""Period reports: days, weeks, months and years per village, block, district or
State, with the JJM functionality class of Table 11. The rules are in
docs/reports.md; every table here is a pyarrow.Table with the documented columns.

    rep = build(frames, registry)            # the daily detail and the timeline
    periods(rep.days, "month", "village")    # PERIOD_COLUMNS
    alerts(rep, ...)                         # jalkal.alerts.ALERT_COLUMNS
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date, timedelta
from functools import lru_cache
from typing import Any

import pyarrow as pa

from ..errors import JalkalError
from ..registry import Registry, as_registry
from . import measures
from .daily import DailyResult, band_of, compute
from .frames import Frames
from .period_sql import from_months, village_periods
from .plausible import DEFAULT_MAX_FLOW_M3H
from .quality import quality_of

PERIODS = ("day", "week", "month", "year")
LEVELS = ("village", "block", "district", "state")
CLASSES = ("fully", "partially", "non")
MIN_COMPLETE = 0.9  # share of a period's days that must be complete for a class
REGULAR_MONTHS = 0.75  # 9 of 12 months with supply: "partially" regular

DAY_SCHEMA = pa.schema(
    [
        ("village", pa.string()), ("device", pa.string()), ("date", pa.date32()),
        ("litres", pa.float64()), ("population", pa.int64()), ("lpcd", pa.float64()),
        ("band", pa.string()), ("pump_hours", pa.float64()),
        ("completeness", pa.float64()), ("complete", pa.bool_()),
        ("implausible_litres", pa.float64()), ("block", pa.string()),
        ("district", pa.string()), ("state", pa.string()),
        ("tz", pa.string()), ("supply_hours", pa.float64()),
        ("supply_start_min", pa.int64()), ("lockouts", pa.int64()),
        ("power_off_hours", pa.float64()), ("faults_raised", pa.int64()),
        ("night_min_lph", pa.float64()), *measures.DAY_FIELDS,
    ]
)  # fmt: skip
DAY_COLUMNS = tuple(DAY_SCHEMA.names)

PERIOD_SCHEMA = pa.schema(
    [
        ("period", pa.string()), ("start", pa.date32()), ("end", pa.date32()),
        ("state", pa.string()), ("district", pa.string()), ("block", pa.string()),
        ("village", pa.string()), ("villages", pa.int64()), ("population", pa.int64()),
        ("days", pa.int64()), ("days_complete", pa.int64()),
        ("completeness", pa.float64()), ("litres", pa.float64()),
        ("mean_lpcd", pa.float64()), ("days_fully", pa.int64()),
        ("days_partially", pa.int64()), ("days_non", pa.int64()),
        ("days_incomplete", pa.int64()), ("days_with_supply", pa.int64()),
        ("months", pa.int64()), ("months_with_supply", pa.int64()),
        ("supply_hours", pa.float64()), ("start_sd_min", pa.float64()),
        ("pump_hours", pa.float64()), ("lockouts", pa.int64()),
        ("power_off_hours", pa.float64()), ("faults_raised", pa.int64()),
        ("quantity", pa.string()), ("regularity", pa.string()),
        ("quality", pa.string()), ("functionality", pa.string()),
        ("villages_fully", pa.int64()), ("villages_partially", pa.int64()),
        ("villages_non", pa.int64()), ("villages_insufficient", pa.int64()),
        ("note", pa.string()), *measures.PERIOD_FIELDS,
    ]
)  # fmt: skip
PERIOD_COLUMNS = tuple(PERIOD_SCHEMA.names)

UNPLACED_SCHEMA = pa.schema(
    [
        ("device", pa.string()), ("boot", pa.int64()), ("first_seq", pa.int64()),
        ("last_seq", pa.int64()), ("frames", pa.int64()), ("readings", pa.int64()),
        ("after", pa.timestamp("s", tz="UTC")), ("before", pa.timestamp("s", tz="UTC")),
    ]
)  # fmt: skip
EVENT_SCHEMA = pa.schema(
    [
        ("device", pa.string()), ("boot", pa.int64()), ("seq", pa.int64()),
        ("t", pa.timestamp("s", tz="UTC")), ("event", pa.string()),
        ("reason", pa.string()), ("value", pa.int64()),
    ]
)  # fmt: skip


@dataclass
class Months:
    """What the store's aggregates keep for a month or year report: each
    device's months in each village (period_sql.MONTHS_SCHEMA) and the day rows
    of the villages more than one device served."""

    months: pa.Table
    shared_days: pa.Table


@dataclass
class Report:
    """What build() found: the daily detail and the device timelines."""

    days: pa.Table  # DAY_COLUMNS
    registry: Registry
    result: DailyResult  # the same, as Python objects (daily.compute)
    unplaced: pa.Table = field(default_factory=lambda: UNPLACED_SCHEMA.empty_table())
    events: pa.Table = field(default_factory=lambda: EVENT_SCHEMA.empty_table())
    months: Months | None = None  # aggregates.report(months=True): days left out

    @property
    def notes(self) -> list[str]:
        return self.result.notes

    @property
    def unknown(self) -> dict[str, int]:
        return self.result.unknown


def days_table(detail: Sequence[Mapping[str, Any]]) -> pa.Table:
    """DailyResult.detail (dicts) as the DAY_COLUMNS table."""
    cols: dict[str, list[Any]] = {k: [] for k in DAY_COLUMNS}
    for r in detail:
        for k in DAY_COLUMNS:
            cols[k].append(r[k])
    cols["date"] = [date.fromisoformat(x) for x in cols["date"]]
    return pa.table(cols, schema=DAY_SCHEMA)


def build(
    frames: Frames,
    registry: Registry | Mapping[str, Any],
    max_flow_m3h: float = DEFAULT_MAX_FLOW_M3H,
) -> Report:
    """The daily detail of every registered device (daily.compute) as tables;
    max_flow_m3h: the supply meters' maximum flow (plausible.py)."""
    reg = as_registry(registry)
    return report_of(compute(frames, reg, max_flow_m3h), reg)


def report_of(res: DailyResult, reg: Registry) -> Report:
    """A DailyResult (daily.compute's, or aggregates.py's) as the Report tables."""
    from jkproto import objects as ob

    un = {k: [u[k] for u in res.unplaced] for k in UNPLACED_SCHEMA.names[:6]}
    un["after"] = [u["after_t"] for u in res.unplaced]
    un["before"] = [u["before_t"] for u in res.unplaced]
    ev = {
        "device": [e["device"] for e in res.events],
        "boot": [e["boot"] for e in res.events],
        "seq": [e["seq"] for e in res.events],
        "t": [e["t"] for e in res.events],
        "event": _names(ob.EVENTS, [e["event"] for e in res.events]),
        "reason": _names(ob.REASONS, [e["reason"] for e in res.events]),
        "value": [e["value"] for e in res.events],
    }
    return Report(
        days=days_table(res.detail),
        registry=reg,
        result=res,
        unplaced=pa.table(un, schema=UNPLACED_SCHEMA),
        events=pa.table(ev, schema=EVENT_SCHEMA),
    )


def _name(table: tuple[str, ...], code: int) -> str:
    return table[code] if 0 <= code < len(table) and table[code] else str(code)


def _names(table: tuple[str, ...], codes: list[int]) -> list[str]:
    """_name of each code (a district's year: 730,000 events, a few codes)."""
    names = {c: _name(table, c) for c in set(codes)}
    return [names[c] for c in codes]


# --- periods ----------------------------------------------------------------------


@lru_cache(maxsize=4096)
def period_of(d: date, period: str) -> tuple[str, date, date]:
    """(label, start, end exclusive) of the period holding day d."""
    if period == "day":
        return d.isoformat(), d, d + timedelta(days=1)
    if period == "week":  # ISO weeks: Monday to Sunday
        y, w, _ = d.isocalendar()
        start = d - timedelta(days=d.weekday())
        return f"{y}-W{w:02d}", start, start + timedelta(days=7)
    if period == "month":
        start = d.replace(day=1)
        end = (start + timedelta(days=32)).replace(day=1)
        return f"{d.year}-{d.month:02d}", start, end
    if period == "year":
        return str(d.year), date(d.year, 1, 1), date(d.year + 1, 1, 1)
    raise JalkalError(f"period must be one of {', '.join(PERIODS)}, got {period!r}")


@lru_cache(maxsize=4096)
def _months(a: date, b: date) -> tuple[tuple[int, int], ...]:
    """Calendar months touched by the days [a, b)."""
    out = []
    y, m = a.year, a.month
    last = b - timedelta(days=1)
    while (y, m) <= (last.year, last.month):
        out.append((y, m))
        y, m = (y + 1, 1) if m == 12 else (y, m + 1)
    return tuple(out)


def _round1(x: float) -> float:
    return math.floor(x * 10 + 0.5 + 1e-9) / 10


def _worst(*classes: str | None) -> str | None:
    if any(x is None for x in classes):
        return None
    return max(classes, key=lambda x: CLASSES.index(x))  # type: ignore[arg-type]


VILLAGE_DAY = ("complete", "population", "litres", "lpcd", "band", "supply_hours",
               "supply_start_min", "pump_hours", "lockouts", "power_off_hours",
               "faults_raised")  # fmt: skip


def village_day(rows: list[dict[str, Any]]) -> dict[str, Any]:
    """The devices of one village on one day, summed (its meters together supply
    it); the population is the registry's (the largest if rows differ)."""
    if len(rows) == 1:  # its own row's figures (a district's year: 366,000)
        r = rows[0]
        out = {k: r[k] for k in VILLAGE_DAY}
        out["supply"] = (r["supply_hours"] or 0) > 0
        return out
    complete = all(r["complete"] for r in rows)
    pop = max(r["population"] for r in rows)
    lit = [r["litres"] for r in rows]
    litres = None if any(x is None for x in lit) else round(sum(lit), 1)
    lpcd = _round1(litres / pop) if complete and litres is not None else None
    starts = [r["supply_start_min"] for r in rows if r["supply_start_min"] is not None]
    return {
        "complete": complete,
        "population": pop,
        "litres": litres,
        "lpcd": lpcd,
        "band": band_of(lpcd) if lpcd is not None else None,
        "supply": any((r["supply_hours"] or 0) > 0 for r in rows),
        "supply_hours": max(r["supply_hours"] for r in rows),
        "supply_start_min": min(starts) if starts else None,
        "pump_hours": sum(r["pump_hours"] for r in rows),
        "lockouts": sum(r["lockouts"] for r in rows),
        "power_off_hours": max(r["power_off_hours"] for r in rows),
        "faults_raised": sum(r["faults_raised"] for r in rows),
    }


def _classify(
    v: dict[str, Any], min_complete: float, quality: str
) -> tuple[str | None, str | None, str | None, str | None]:
    """(quantity, regularity, functionality, note) of one village-period."""
    need = math.ceil(min_complete * v["days"] - 1e-9)
    if v["days_complete"] < max(need, 1):
        return (
            None,
            None,
            None,
            f"insufficient data: {v['days_complete']} of {v['days']} days complete "
            f"(needs {max(need, 1)})",
        )
    quantity = band_of(v["mean_lpcd"])
    daily = v["complete_supply_days"] == v["days_complete"]
    if daily and v["months_with_supply"] == v["months"]:
        regularity = "fully"
    elif v["months_with_supply"] >= REGULAR_MONTHS * v["months"] - 1e-9:
        regularity = "partially"
    else:
        regularity = "non"
    q = {"potable": "fully", "non potable": "non"}.get(quality)
    func = _worst(quantity, regularity, *((q,) if q else ()))
    note = f"over {v['days_complete']} complete days of {v['days']}" + (
        "; quality not measured" if quality == "not measured" else ""
    )
    return quantity, regularity, func, note


def periods(
    days: pa.Table | Sequence[Mapping[str, Any]],
    period: str = "month",
    by: str = "village",
    *,
    min_complete: float = MIN_COMPLETE,
    quality: Mapping[tuple[str, ...], list[tuple[date, bool]]] | None = None,
    registry: Registry | Mapping[str, Any] | None = None,
    months: Months | None = None,
) -> pa.Table:
    """One row per (group, period), PERIOD_COLUMNS, sorted by period start then
    state, district, block, village.

    days: the DAY_COLUMNS table (build().days) or its rows as dicts. A period's
    days are its calendar days, cut to the registry rows' from/to dates when a
    registry is given, so a village that joined mid-month is judged on its days.
    months: the store's device-months (Report.months), read instead of the days
    for a month or year report."""
    if period not in PERIODS:
        raise JalkalError(f"period must be one of {', '.join(PERIODS)}, got {period!r}")
    if by not in LEVELS:
        raise JalkalError(f"--by must be one of {', '.join(LEVELS)}, got {by!r}")
    reg = as_registry(registry) if registry is not None else None
    villages = [
        _village_period(x, period, reg, min_complete, quality)
        for x in (
            from_months(months.months, months.shared_days, period)
            if months is not None and period in ("month", "year")
            else village_periods(days, period, DAY_SCHEMA)
        )
    ]
    if by == "village":
        out = villages
    else:
        out = _group(villages, by)
    out.sort(
        key=lambda r: (
            r["start"],
            *(r[c] or "" for c in ("state", "district", "block", "village")),
        )
    )
    cols = {k: [r.get(k) for r in out] for k in PERIOD_COLUMNS}
    return pa.table(cols, schema=PERIOD_SCHEMA)


def _calendar_days(
    key: tuple[str, str, str, str],
    devices: Iterable[str],
    a: date,
    b: date,
    reg: Registry | None,
) -> int:
    """The days of [a, b) the registry places one of these devices in this
    village (all of them when it places none there, or without a registry)."""
    if reg is None:
        return (b - a).days
    spans = sorted(
        (max(a, v.start or a), min(b, v.end or b))
        for dev in devices
        for v in reg.rows(dev)
        if v.key() == key
    )
    n, upto = 0, a
    for lo, hi in spans:  # the union of the spans
        lo = max(lo, upto)
        if hi > lo:
            n += (hi - lo).days
            upto = hi
    return n or (b - a).days


def _village_period(
    x: dict[str, Any],
    period: str,
    reg: Registry | None,
    min_complete: float,
    quality: Mapping[tuple[str, ...], list[tuple[date, bool]]] | None,
) -> dict[str, Any]:
    """One village-period row from period_sql's sums."""
    key = (x["s"], x["di"], x["b"], x["v"])
    label, a, b = period_of(x["p"], period)
    ndays = _calendar_days(key, x["devices"], a, b, reg)
    done = x["days_complete"]
    litres, person_days = x["litres"], x["person_days"]
    v: dict[str, Any] = {
        "period": label,
        "start": a,
        "end": b,
        "state": key[0],
        "district": key[1],
        "block": key[2],
        "village": key[3],
        "villages": 1,
        "population": x["population"],
        "days": ndays,
        "days_complete": done,
        "completeness": round(done / ndays, 3) if ndays else 0.0,
        "litres": round(litres, 1),
        "mean_lpcd": _round1(litres / person_days) if person_days else None,
        "days_incomplete": ndays - done,
        "months": len(_months(a, b)),
        "supply_hours": round(x["supply_hours"], 2),
        "start_sd_min": _sd(x["start_n"], x["start_s1"], x["start_s2"]),
        "pump_hours": round(x["pump_hours"], 2),
        "power_off_hours": round(x["power_off_hours"], 2),
        "_person_days": person_days,
    }
    for k in ("days_fully", "days_partially", "days_non", "days_with_supply",
              "complete_supply_days", "months_with_supply", "lockouts",
              "faults_raised"):  # fmt: skip
        v[k] = int(x[k])
    sensed = measures.period_sums(x)
    v.update(sensed)
    qual = measures.quality_leg(quality_of(quality, key, a, b), sensed)
    quantity, regularity, func, note = _classify(v, min_complete, qual)
    v.update(
        quantity=quantity,
        regularity=regularity,
        quality=qual,
        functionality=func,
        note=note,
        villages_fully=int(func == "fully"),
        villages_partially=int(func == "partially"),
        villages_non=int(func == "non"),
        villages_insufficient=int(func is None),
    )
    return v


def _sd(n: int, s1: int | None, s2: int | None) -> float | None:
    """Population standard deviation of n integers (minutes) from their sum and
    sum of squares, exactly up to the one square root; 1 decimal."""
    if not n:
        return None
    var = (n * int(s2 or 0) - int(s1 or 0) ** 2) / (n * n)
    return round(math.sqrt(var), 1)


_SUMS = (
    "villages", "population", "days", "days_complete", "litres", "days_fully",
    "days_partially", "days_non", "days_incomplete", "days_with_supply",
    "supply_hours", "pump_hours", "lockouts", "power_off_hours", "faults_raised",
    "villages_fully", "villages_partially", "villages_non", "villages_insufficient",
)  # fmt: skip


def _group(villages: list[dict[str, Any]], by: str) -> list[dict[str, Any]]:
    """Village-period rows summed per block, district or State."""
    depth = LEVELS.index(by)  # block 1, district 2, state 3
    keep = ("state", "district", "block")[: 4 - depth]
    out: dict[tuple[Any, ...], dict[str, Any]] = {}
    for v in villages:
        k = (v["period"], *(v[c] for c in keep))
        g = out.get(k)
        if g is None:
            g = {c: None for c in PERIOD_COLUMNS}
            g.update({c: v[c] for c in ("period", "start", "end", *keep)})
            g.update({c: 0 for c in _SUMS})
            g["months"] = v["months"]
            g["quality"] = None
            g["state"] = g["state"] or ""
            g["district"] = g["district"] or ""
            g["block"] = g["block"] or ""
            g["village"] = ""
            out[k] = g
        for c in _SUMS:
            g[c] += v[c]
    rows = []
    for g in out.values():
        g["litres"] = round(g["litres"], 1)
        for c in ("supply_hours", "pump_hours", "power_off_hours"):
            g[c] = round(g[c], 2)
        g["completeness"] = round(g["days_complete"] / g["days"], 3) if g["days"] else 0
        g["note"] = (
            f"{g['villages']} villages: {g['villages_fully']} fully, "
            f"{g['villages_partially']} partially, {g['villages_non']} non, "
            f"{g['villages_insufficient']} insufficient data"
        )
        rows.append(g)
    # mean lpcd of a group: litres / person-days over complete village-days
    pd = _person_days(villages, by)
    for g in rows:
        k = (g["period"], *(g[c] or "" for c in keep))
        n = pd.get(k, 0)
        g["mean_lpcd"] = _round1(g["litres"] / n) if n else None
        g["months_with_supply"] = None
        g["start_sd_min"] = None
        if by != "block":
            g["block"] = None
        if by == "state":
            g["district"] = None
        g["village"] = None
    return rows


def _person_days(villages: list[dict[str, Any]], by: str) -> dict[tuple[Any, ...], int]:
    depth = LEVELS.index(by)
    keep = ("state", "district", "block")[: 4 - depth]
    out: dict[tuple[Any, ...], int] = {}
    for v in villages:
        k = (v["period"], *(v[c] or "" for c in keep))
        out[k] = out.get(k, 0) + v["_person_days"]
    return out


# --- text ---------------------------------------------------------------------------
