"""The period report's rules one row at a time, as periods.py first computed them
(a Python loop over every device-day): the oracle that tests/test_period_sql.py
holds the one-query version (reports/period_sql.py) equal to. Only the order of
a village-period's 06:00 depths on one date differs from that first version:
by device here, as there (it was the input's order)."""

# ruff: noqa

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date, timedelta
from typing import Any

import pyarrow as pa

from jalkal.errors import JalkalError
from jalkal.registry import Registry, as_registry
from jalkal.reports import measures
from jalkal.reports.daily import band_of

# shared with periods.py: a village-day from its devices' rows (as the alerts make
# it), a village-period's classes from its row, the groups' sums from the
# villages' rows (what is held equal is how the sums are made)
from jalkal.reports.periods import (
    LEVELS,
    MIN_COMPLETE,
    PERIOD_COLUMNS,
    PERIOD_SCHEMA,
    PERIODS,
    _classify,
    _group,
    _months,
    _round1,
    period_of,
    village_day,
)
from jalkal.reports.quality import quality_of


def period_values(rows):
    """The PERIOD_FIELDS of one village-period from its device-day rows: the
    extremes of the days' values, the 06:00 depth's change from the first day
    that has one to the last (positive: the water table fell), the days judged
    against BIS 10500, and the sensors' Table 11 quality (sensor_quality): non
    potable when any day's medians are not acceptable, potable when every judged
    day is acceptable or permissible, null when no day was judged."""
    rows = sorted(rows, key=lambda r: (str(r["date"]), r["device"]))

    def vals(k: str) -> list[Any]:
        return [r[k] for r in rows if r.get(k) is not None]

    def ext(fn: Callable[..., Any], k: str) -> Any:
        v = vals(k)
        return fn(v) if v else None

    at = vals("bore_0600_m")
    q = vals("water_quality")
    hours = vals("motor_hours")
    bad = sum(x == measures.QUALITY[2] for x in q)
    return {
        "bore_min_m": ext(min, "bore_min_m"),
        "bore_max_m": ext(max, "bore_max_m"),
        "bore_0600_change_m": round(at[-1] - at[0], 2) if len(at) > 1 else None,
        "tank_min_m": ext(min, "tank_min_m"),
        "ph_min": ext(min, "ph"),
        "ph_max": ext(max, "ph"),
        "tds_max_mgl": ext(max, "tds_mgl"),
        "days_quality": len(q),
        "days_permissible": sum(x == measures.QUALITY[1] for x in q),
        "days_not_acceptable": bad,
        "sensor_quality": None if not q else "non potable" if bad else "potable",
        "motor_hours": round(sum(hours), 2) if hours else None,
        "days_sensor_fault": sum(1 for r in rows if r.get("sensor_faults")),
    }


@dataclass
class _Acc:
    """One village in one period."""

    key: tuple[str, str, str, str]  # state, district, block, village
    days: dict[date, list[dict[str, Any]]] = field(default_factory=dict)


def periods(
    days: pa.Table | Sequence[Mapping[str, Any]],
    period: str = "month",
    by: str = "village",
    *,
    min_complete: float = MIN_COMPLETE,
    quality: Mapping[tuple[str, ...], list[tuple[date, bool]]] | None = None,
    registry: Registry | Mapping[str, Any] | None = None,
) -> pa.Table:
    """One row per (group, period), PERIOD_COLUMNS, sorted by period start then
    state, district, block, village.

    days: the DAY_COLUMNS table (build().days) or its rows as dicts. A period's
    days are its calendar days, cut to the registry rows' from/to dates when a
    registry is given, so a village that joined mid-month is judged on its days."""
    if period not in PERIODS:
        raise JalkalError(f"period must be one of {', '.join(PERIODS)}, got {period!r}")
    if by not in LEVELS:
        raise JalkalError(f"--by must be one of {', '.join(LEVELS)}, got {by!r}")
    rows = days.to_pylist() if isinstance(days, pa.Table) else list(days)
    reg = as_registry(registry) if registry is not None else None
    # village -> date -> device rows
    acc: dict[tuple[tuple[str, str, str, str], str], _Acc] = {}
    spans: dict[str, tuple[date, date]] = {}
    for r in rows:
        d = r["date"] if isinstance(r["date"], date) else date.fromisoformat(r["date"])
        key = (r["state"] or "", r["district"] or "", r["block"] or "", r["village"])
        label, a, b = period_of(d, period)
        spans[label] = (a, b)
        x = acc.setdefault((key, label), _Acc(key))
        x.days.setdefault(d, []).append(r)
    villages = [
        _village_period(x, label, spans[label], reg, min_complete, quality)
        for (_k, label), x in acc.items()
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
    if reg is None:
        return (b - a).days
    covered: set[date] = set()
    for dev in devices:
        for v in reg.rows(dev):
            if v.key() != key:
                continue
            lo = max(a, v.start or a)
            hi = min(b, v.end or b)
            covered.update(lo + timedelta(days=i) for i in range((hi - lo).days))
    return len(covered) or (b - a).days


def _village_period(
    x: _Acc,
    label: str,
    span: tuple[date, date],
    reg: Registry | None,
    min_complete: float,
    quality: Mapping[tuple[str, ...], list[tuple[date, bool]]] | None,
) -> dict[str, Any]:
    a, b = span
    devs = {r["device"] for rs in x.days.values() for r in rs}
    vd = {d: village_day(rs) for d, rs in sorted(x.days.items())}
    done = [r for r in vd.values() if r["complete"]]
    ndays = _calendar_days(x.key, devs, a, b, reg)
    litres = sum(r["litres"] for r in done)
    person_days = sum(r["population"] for r in done)
    starts = [r["supply_start_min"] for r in vd.values() if r["supply"]]
    starts = [s for s in starts if s is not None]
    months = _months(a, b)
    supplied = {(d.year, d.month) for d, r in vd.items() if r["supply"]}
    v: dict[str, Any] = {
        "period": label,
        "start": a,
        "end": b,
        "state": x.key[0],
        "district": x.key[1],
        "block": x.key[2],
        "village": x.key[3],
        "villages": 1,
        "population": max(r["population"] for r in vd.values()),
        "days": ndays,
        "days_complete": len(done),
        "completeness": round(len(done) / ndays, 3) if ndays else 0.0,
        "litres": round(litres, 1),
        "mean_lpcd": _round1(litres / person_days) if person_days else None,
        "days_fully": sum(r["band"] == "fully" for r in done),
        "days_partially": sum(r["band"] == "partially" for r in done),
        "days_non": sum(r["band"] == "non" for r in done),
        "days_incomplete": ndays - len(done),
        "days_with_supply": sum(r["supply"] for r in vd.values()),
        "complete_supply_days": sum(
            1 for r in done if r["supply"] and (r["litres"] or 0) > 0
        ),
        "months": len(months),
        "months_with_supply": len(supplied),
        "supply_hours": round(sum(r["supply_hours"] for r in vd.values()), 2),
        "start_sd_min": _sd(starts),
        "pump_hours": round(sum(r["pump_hours"] for r in vd.values()), 2),
        "lockouts": sum(r["lockouts"] for r in vd.values()),
        "power_off_hours": round(sum(r["power_off_hours"] for r in vd.values()), 2),
        "faults_raised": sum(r["faults_raised"] for r in vd.values()),
        "_person_days": person_days,
    }
    sensed = period_values([r for rs in x.days.values() for r in rs])
    v.update(sensed)
    qual = measures.quality_leg(quality_of(quality, x.key, a, b), sensed)
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


def _sd(xs: list[int]) -> float | None:
    """Population standard deviation, minutes, 1 decimal."""
    if not xs:
        return None
    m = sum(xs) / len(xs)
    return round(math.sqrt(sum((x - m) ** 2 for x in xs) / len(xs)), 1)
