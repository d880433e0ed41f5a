"""The sums behind the period report (periods.periods), in one DuckDB query over
the daily rows: each village's days (its devices' rows of one date together),
then each village's periods. What is left to periods.py is per village-period:
the calendar, the rounding, Table 11's classes and the notes, so a district's
year (366,000 device-days) costs one scan, not a Python loop over its rows.

The rules are periods.py's (docs/reports.md "Periods"):

* a village-day of one device is that device's row; of several, complete when
  every row is, the largest population, the litres summed (none when one row
  has none) and rounded to 0.1 L, its lpcd from those; its band is its lpcd's
  (daily.band_of), supply when any
  device supplied, the longest supply and power-off hours, the earliest start,
  the pump hours, lockouts and faults summed;
* a village-period sums its complete days' litres and person-days, counts its
  days by band, with supply, and its months with supply; the start minutes
  come back as count, sum and sum of squares (periods.py takes the standard
  deviation from them exactly);
* the sensors (measures.py's PERIOD_FIELDS) over the device-day rows: extremes,
  the 06:00 depth of the first and the last row that has one (by date, then
  device), days judged against BIS 10500, motor hours, days with a fault.
"""

from __future__ import annotations

import threading
from collections.abc import Mapping, Sequence
from datetime import date
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc

from .daily import FULLY_LPCD, NON_LPCD
from .measures import QUALITY

UNITS = {"day": "day", "week": "week", "month": "month", "year": "year"}

# the daily columns the query reads (a table may hold more)
NEEDED = (
    "state", "district", "block", "village", "device", "date", "litres",
    "population", "lpcd", "complete", "supply_hours", "supply_start_min",
    "pump_hours", "lockouts", "power_off_hours", "faults_raised", "bore_min_m",
    "bore_max_m", "bore_0600_m", "tank_min_m", "ph", "tds_mgl", "water_quality",
    "motor_hours", "sensor_faults",
)  # fmt: skip

QUERY = """
WITH vd0 AS (
    SELECT vk, d, p, count(*) AS n,
           bool_and(complete) AS complete,
           max(population) AS population,
           CASE WHEN count(*) = 1 THEN first(litres)
                WHEN count(litres) < count(*) THEN NULL
                ELSE round(sum(litres), 1) END AS litres,
           first(lpcd) AS lpcd1,
           bool_or(coalesce(supply_hours, 0) > 0) AS supply,
           max(supply_hours) AS supply_hours,
           min(supply_start_min) AS supply_start_min,
           sum(pump_hours) AS pump_hours,
           CAST(sum(lockouts) AS BIGINT) AS lockouts,
           max(power_off_hours) AS power_off_hours,
           CAST(sum(faults_raised) AS BIGINT) AS faults_raised
    FROM ({raw}) GROUP BY vk, d, p
), vd1 AS (
    SELECT *, CASE WHEN n = 1 THEN lpcd1
                   WHEN complete AND litres IS NOT NULL
                   THEN floor(litres / population * 10 + 0.5 + 1e-9) / 10
              END AS lpcd
    FROM vd0
), vd AS (  -- the band as a number: 2 fully, 1 partially, 0 non
    SELECT *, CASE WHEN lpcd >= {fully} THEN 2 WHEN lpcd > {non} THEN 1
                   WHEN lpcd IS NOT NULL THEN 0 END AS band
    FROM vd1
), vp AS (
    SELECT vk, p,
           count(*) FILTER (WHERE complete) AS days_complete,
           coalesce(sum(litres) FILTER (WHERE complete), 0) AS litres,
           CAST(coalesce(sum(population) FILTER (WHERE complete), 0) AS BIGINT)
               AS person_days,
           max(population) AS population,
           count(*) FILTER (WHERE complete AND band = 2) AS days_fully,
           count(*) FILTER (WHERE complete AND band = 1) AS days_partially,
           count(*) FILTER (WHERE complete AND band = 0) AS days_non,
           count(*) FILTER (WHERE supply) AS days_with_supply,
           count(*) FILTER (WHERE complete AND supply AND coalesce(litres, 0) > 0)
               AS complete_supply_days,
           bit_or(CAST(1 AS BIGINT) << CAST(12 * year(d) + month(d)
                  - 12 * year(p) - month(p) AS BIGINT)) FILTER (WHERE supply)
               AS months_supplied,
           sum(supply_hours) AS supply_hours, sum(pump_hours) AS pump_hours,
           CAST(sum(lockouts) AS BIGINT) AS lockouts,
           sum(power_off_hours) AS power_off_hours,
           CAST(sum(faults_raised) AS BIGINT) AS faults_raised,
           count(supply_start_min) FILTER (WHERE supply) AS start_n,
           sum(CAST(supply_start_min AS DOUBLE)) FILTER (WHERE supply) AS start_s1,
           sum(CAST(supply_start_min AS DOUBLE) * supply_start_min)
               FILTER (WHERE supply) AS start_s2
    FROM vd GROUP BY vk, p
), sens AS (
    SELECT vk, p, first(s) AS s, first(di) AS di, first(b) AS b, first(v) AS v,
           list(DISTINCT device ORDER BY device) AS devices,
           min(bore_min_m) AS bore_min_m, max(bore_max_m) AS bore_max_m,
           count(bore_0600_m) AS bore_0600_n,
           arg_min(bore_0600_m, CAST(d AS VARCHAR) || device)
               FILTER (WHERE bore_0600_m IS NOT NULL) AS bore_0600_first,
           arg_max(bore_0600_m, CAST(d AS VARCHAR) || device)
               FILTER (WHERE bore_0600_m IS NOT NULL) AS bore_0600_last,
           min(CAST(d AS VARCHAR) || device) FILTER (WHERE bore_0600_m IS NOT NULL)
               AS bore_0600_first_key,
           max(CAST(d AS VARCHAR) || device) FILTER (WHERE bore_0600_m IS NOT NULL)
               AS bore_0600_last_key,
           min(tank_min_m) AS tank_min_m, min(ph) AS ph_min, max(ph) AS ph_max,
           max(tds_mgl) AS tds_max_mgl, count(water_quality) AS days_quality,
           count(*) FILTER (WHERE water_quality = '{permissible}') AS days_permissible,
           count(*) FILTER (WHERE water_quality = '{bad}') AS days_not_acceptable,
           count(motor_hours) AS motor_n, sum(motor_hours) AS motor_hours,
           count(*) FILTER (WHERE sensor_faults <> '') AS days_sensor_fault
    FROM ({raw}) GROUP BY vk, p
)
SELECT *, bit_count(coalesce(months_supplied, 0)) AS months_with_supply
FROM vp JOIN sens USING (vk, p) ORDER BY p, s, di, b, v
"""
# the day rows with their village's key and period (p: the period's first day)
RAW = """
SELECT coalesce(state, '') AS s, coalesce(district, '') AS di,
       coalesce(block, '') AS b, village AS v, date AS d,
       CAST(date_trunc('{unit}', date) AS DATE) AS p, *
FROM days
"""


# a village's months as the sums of its devices' months (MONTHS_SCHEMA): a
# village-period that one device served is the sum of that device's months in
# it; one that several served is computed from its day rows
COMBINE = """
SELECT s, di, b, v, CAST(date_trunc('{unit}', p) AS DATE) AS p,
       CAST(sum(days_complete) AS BIGINT) AS days_complete,
       sum(litres) AS litres, CAST(sum(person_days) AS BIGINT) AS person_days,
       max(population) AS population, {sums},
       sum(supply_hours) AS supply_hours, sum(pump_hours) AS pump_hours,
       sum(power_off_hours) AS power_off_hours, sum(start_s1) AS start_s1,
       sum(start_s2) AS start_s2, list(DISTINCT device) AS devices,
       min(bore_min_m) AS bore_min_m, max(bore_max_m) AS bore_max_m,
       arg_min(bore_0600_first, bore_0600_first_key) AS bore_0600_first,
       arg_max(bore_0600_last, bore_0600_last_key) AS bore_0600_last,
       min(tank_min_m) AS tank_min_m, min(ph_min) AS ph_min,
       max(ph_max) AS ph_max, max(tds_max_mgl) AS tds_max_mgl,
       sum(motor_hours) AS motor_hours
FROM months GROUP BY s, di, b, v, CAST(date_trunc('{unit}', p) AS DATE)
HAVING count(DISTINCT device) = 1
"""
COUNTS = (
    "days_fully", "days_partially", "days_non", "days_with_supply",
    "complete_supply_days", "months_with_supply", "lockouts", "faults_raised",
    "start_n", "bore_0600_n", "days_quality", "days_permissible",
    "days_not_acceptable", "motor_n", "days_sensor_fault",
)  # fmt: skip
_F, _I, _S = pa.float64(), pa.int64(), pa.string()
MONTHS_SCHEMA = pa.schema(
    [
        ("device", _S), ("s", _S), ("di", _S), ("b", _S), ("v", _S),
        ("p", pa.date32()), ("days_complete", _I), ("litres", _F),
        ("person_days", _I), ("population", _I), *((c, _I) for c in COUNTS),
        ("supply_hours", _F), ("pump_hours", _F), ("power_off_hours", _F),
        ("start_s1", _F), ("start_s2", _F), ("bore_min_m", _F), ("bore_max_m", _F),
        ("bore_0600_first", _F), ("bore_0600_last", _F),
        ("bore_0600_first_key", _S), ("bore_0600_last_key", _S),
        ("tank_min_m", _F), ("ph_min", _F), ("ph_max", _F), ("tds_max_mgl", _F),
        ("motor_hours", _F),
    ]
)  # fmt: skip


def village_key(tb: pa.Table, *more: str) -> pa.Array:
    """Each day row's village as one string: state, district, block ('' for
    none), village (and the columns `more`), joined by \\x1f (in no name)."""
    return pc.binary_join_element_wise(
        *(pc.fill_null(tb[c], "") for c in ("state", "district", "block")),
        tb["village"],
        *(tb[c] for c in more),
        "\x1f",
    )


def as_table(
    days: pa.Table | Sequence[Mapping[str, Any]],
    schema: pa.Schema,
    by_device: bool = False,
) -> pa.Table:
    """The daily rows (schema: periods.DAY_SCHEMA) as a table of the NEEDED
    columns (rows as dicts may give the date as ISO text; a column a table lacks
    is read as empty) and vk, the village's key as one number (with by_device,
    the village's and device's)."""
    fields = [schema.field(k) for k in NEEDED]
    if isinstance(days, pa.Table):
        cols = {
            f.name: (
                days[f.name].cast(f.type)
                if f.name in days.column_names
                else pa.nulls(days.num_rows, f.type)
            )
            for f in fields
        }
    else:
        cols = {f.name: pa.array([r.get(f.name) for r in days], f.type)
                for f in fields if f.name != "date"}  # fmt: skip
        cols["date"] = pa.array(
            [x if isinstance(x, date) else date.fromisoformat(str(x))
             for x in (r["date"] for r in days)], pa.date32(),
        )  # fmt: skip
    tb = pa.table({f.name: cols[f.name] for f in fields}, schema=pa.schema(fields))
    # grouping by one number rather than four strings: a third of the time
    key = village_key(tb, *(("device",) if by_device else ()))
    return tb.append_column("vk", pc.dictionary_encode(key).combine_chunks().indices)


_DB: list[Any] = []  # one in-memory DuckDB for the process; a cursor a query
_DB_LOCK = threading.Lock()


def _run(tables: Mapping[str, pa.Table], sql: str) -> pa.Table:
    """sql over these Arrow tables (by name), on a cursor of its own (opening a
    DuckDB database costs 10-20 ms, a cursor of an open one microseconds)."""
    import duckdb

    with _DB_LOCK:
        if not _DB:
            _DB.append(duckdb.connect())
        con = _DB[0].cursor()
    try:
        for name, tb in tables.items():
            con.register(name, tb)
        return con.sql(sql).to_arrow_table()
    finally:
        con.close()


def _query(period: str) -> str:
    return QUERY.format(
        raw=RAW.format(unit=UNITS[period]), fully=float(FULLY_LPCD),
        non=float(NON_LPCD), permissible=QUALITY[1], bad=QUALITY[2],
    )  # fmt: skip


def village_periods(
    days: pa.Table | Sequence[Mapping[str, Any]], period: str, schema: pa.Schema
) -> list[dict[str, Any]]:
    """One dict per (village, period) with the sums above: the keys s, di, b, v
    (state, district, block, village; '' for none), p (the period's first day),
    and the columns of QUERY, ordered by period then village."""
    tb = as_table(days, schema)
    if tb.num_rows == 0:
        return []
    return _run({"days": tb}, _query(period)).to_pylist()


def device_months(days: pa.Table) -> pa.Table:
    """Each device's months in each village (MONTHS_SCHEMA) from its day rows:
    what aggregates.py keeps beside the days."""
    tb = as_table(days, days.schema, by_device=True)
    if tb.num_rows == 0:
        return MONTHS_SCHEMA.empty_table()
    got = _run({"days": tb}, _query("month"))
    got = got.append_column("device", pc.list_element(got["devices"], 0))
    return got.select(MONTHS_SCHEMA.names).cast(MONTHS_SCHEMA)


def from_months(months: pa.Table, days: pa.Table, period: str) -> list[dict[str, Any]]:
    """village_periods() of a month or year report from the device-months: the
    village-periods one device served summed from its months, the others from
    `days`, which must hold every day row of their villages."""
    sums = ", ".join(f"CAST(sum({c}) AS BIGINT) AS {c}" for c in COUNTS)
    one = _run({"months": months}, COMBINE.format(unit=UNITS[period], sums=sums))
    rows = one.to_pylist()
    if days.num_rows:
        done = {(r["s"], r["di"], r["b"], r["v"], r["p"]) for r in rows}
        rows += [
            r
            for r in village_periods(days, period, days.schema)
            if (r["s"], r["di"], r["b"], r["v"], r["p"]) not in done
        ]
    rows.sort(key=lambda r: (r["p"], r["s"], r["di"], r["b"], r["v"]))
    return rows
