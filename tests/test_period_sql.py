"""The period report in one DuckDB query (reports/period_sql.py, periods.periods)
held equal to the rules one row at a time (tests/periods_oracle.py, the Python
loop periods.py ran before): random daily tables — several devices in a village
on some days, incomplete days, days without litres, sensor values and faults, a
registry that moves a device between villages — every period and every level,
with and without the registry and a water-test file."""

from __future__ import annotations

from datetime import date, timedelta

import periods_oracle as oracle
import pyarrow as pa
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from jalkal.registry import parse_registry
from jalkal.reports.daily import band_of
from jalkal.reports.period_sql import device_months
from jalkal.reports.periods import DAY_SCHEMA, LEVELS, PERIODS, Months, periods

DEVICES = ["0a000001", "0a000002", "0a000003", "0a000004"]
PLACES = [  # village, block, district, state
    ("Rampur", "Malpura", "Tonk", "Rajasthan"),
    ("Sarana", "Malpura", "Tonk", "Rajasthan"),
    ("Soda", "Niwai", "Tonk", "Rajasthan"),
    ("Diggi", "Dudu", "Jaipur", "Rajasthan"),
]
START = date(2026, 2, 20)
QUALITY = ("acceptable", "permissible", "not acceptable")


def registry(moved: bool) -> object:
    lines = ["device,village,population,block,district,state,from,to"]
    for i, dev in enumerate(DEVICES[:3]):
        v, b, d, s = PLACES[i]
        lines.append(f"{dev},{v},{500 + 250 * i},{b},{d},{s},,")
    v, b, d, s = PLACES[3]
    if moved:  # the fourth device serves Diggi, then Rampur from 10 March
        lines.append(f"{DEVICES[3]},{v},800,{b},{d},{s},,2026-03-10")
        v, b, d, s = PLACES[0]
        lines.append(f"{DEVICES[3]},{v},500,{b},{d},{s},2026-03-10,")
    else:
        lines.append(f"{DEVICES[3]},{v},800,{b},{d},{s},,")
    return parse_registry("\n".join(lines) + "\n")


def maybe(x: st.SearchStrategy) -> st.SearchStrategy:
    return st.none() | x


tenths = st.integers(0, 400_000).map(lambda n: n / 10)
hours = st.integers(0, 2400).map(lambda n: n / 100)
metres = st.integers(500, 6000).map(lambda n: n / 100)


@st.composite
def day_rows(draw: st.DrawFn) -> tuple[list[dict], bool]:
    moved = draw(st.booleans())
    rows = []
    n = draw(st.integers(1, 60))
    span = draw(st.sampled_from([3, 20, 70]))  # short spans: devices share days
    for _ in range(n):
        k = draw(st.integers(0, 3))
        dev = DEVICES[k]
        d = START + timedelta(days=draw(st.integers(0, span)))
        place = PLACES[0] if k == 3 and moved and d >= date(2026, 3, 10) else PLACES[k]
        pop = draw(st.sampled_from([500, 750, 1000, 800]))
        complete = draw(st.booleans())
        litres = draw(maybe(tenths)) if not complete else draw(tenths)
        lpcd = oracle._round1(litres / pop) if complete and litres is not None else None
        supply_h = draw(hours)
        rows.append({
            "village": place[0], "device": dev, "date": d, "litres": litres,
            "population": pop, "lpcd": lpcd,
            "band": band_of(lpcd) if lpcd is not None else None,
            "pump_hours": draw(hours), "completeness": 1.0 if complete else 0.5,
            "complete": complete, "implausible_litres": 0.0, "block": place[1],
            "district": place[2], "state": place[3], "tz": "Asia/Kolkata",
            "supply_hours": supply_h,
            "supply_start_min": draw(maybe(st.integers(0, 1439)))
            if supply_h > 0 else None,
            "lockouts": draw(st.integers(0, 3)), "power_off_hours": draw(hours),
            "faults_raised": draw(st.integers(0, 2)),
            "night_min_lph": None, "bore_min_m": draw(maybe(metres)),
            "bore_max_m": draw(maybe(metres)), "bore_0600_m": draw(maybe(metres)),
            "tank_min_m": draw(maybe(metres)), "tank_max_m": None,
            "tank_mean_m": None, "tank_mean_l": None,
            "ph": draw(maybe(st.integers(550, 950).map(lambda n: n / 100))),
            "tds_mgl": draw(maybe(st.integers(50, 2500).map(float))),
            "ec_us": None, "water_c": None,
            "water_quality": draw(maybe(st.sampled_from(QUALITY))),
            "motor_hours": draw(maybe(hours)),
            "sensor_faults": draw(st.sampled_from([None, "", "bore", "bore,ph"])),
        })  # fmt: skip
    # one row per device and date, as the daily computation gives
    seen, out = set(), []
    for r in rows:
        if (r["device"], r["date"]) not in seen:
            seen.add((r["device"], r["date"]))
            out.append(r)
    return out, moved


def table(rows: list[dict]) -> pa.Table:
    return pa.Table.from_pylist(rows, schema=DAY_SCHEMA)


@settings(max_examples=60, deadline=None,
          suppress_health_check=[HealthCheck.too_slow])  # fmt: skip
@given(
    got=day_rows(),
    period=st.sampled_from(PERIODS),
    by=st.sampled_from(LEVELS),
    with_reg=st.booleans(),
    tests=st.booleans(),
)
def test_one_query_equals_the_rules_row_by_row(got, period, by, with_reg, tests):
    rows, moved = got
    reg = registry(moved) if with_reg else None
    quality = None
    if tests:  # a water test in Rampur on 1 March (fails) and 1 April (passes)
        key = ("Rajasthan", "Tonk", "Malpura", "Rampur")
        quality = {key: [(date(2026, 3, 1), False), (date(2026, 4, 1), True)]}
    want = oracle.periods(
        table(rows), period, by, quality=quality, registry=reg
    ).to_pylist()
    assert periods(table(rows), period, by, quality=quality,
                   registry=reg).to_pylist() == want  # fmt: skip
    # rows as dicts, the date as ISO text, give the same
    as_text = [dict(r, date=r["date"].isoformat()) for r in rows]
    assert periods(as_text, period, by, quality=quality,
                   registry=reg).to_pylist() == want  # fmt: skip


def test_several_devices_on_one_day_make_one_village_day():
    base = {k: None for k in DAY_SCHEMA.names}
    one = dict(base, village="Rampur", block="Malpura", district="Tonk",
               state="Rajasthan", date=date(2026, 3, 2), population=500,
               complete=True, supply_hours=2.0, supply_start_min=360,
               pump_hours=2.0, lockouts=0, power_off_hours=0.0, faults_raised=0,
               tz="Asia/Kolkata")  # fmt: skip
    rows = [
        dict(one, device="0a000001", litres=15000.0, lpcd=30.0, band="non"),
        dict(
            one,
            device="0a000002",
            litres=14000.0,
            lpcd=28.0,
            band="non",
            supply_start_min=300,
        ),  # fmt: skip
    ]
    (r,) = periods(table(rows), "day", "village").to_pylist()
    # 29,000 L for 500 people: 58 lpcd, fully, on one complete village-day
    assert (r["litres"], r["mean_lpcd"], r["days_fully"], r["days_non"]) == (
        29000.0, 58.0, 1, 0,
    )  # fmt: skip
    assert r["days"] == 1 and r["start_sd_min"] == 0.0


@pytest.mark.parametrize("starts, sd", [([0, 1], 0.5), ([360, 420, 480], 49.0)])
def test_start_spread_is_the_population_standard_deviation(starts, sd):
    base = {k: None for k in DAY_SCHEMA.names}
    rows = [
        dict(base, village="Rampur", device="0a000001", population=500,
             date=date(2026, 3, 1) + timedelta(days=i), complete=True,
             litres=25000.0, lpcd=50.0, band="partially", supply_hours=1.0,
             supply_start_min=m, pump_hours=1.0, lockouts=0, power_off_hours=0.0,
             faults_raised=0, tz="Asia/Kolkata")
        for i, m in enumerate(starts)
    ]  # fmt: skip
    (r,) = periods(table(rows), "month", "village").to_pylist()
    assert r["start_sd_min"] == sd  # sqrt(((360-420)^2 + 0 + 60^2) / 3) = 48.99


def test_a_village_day_of_two_devices_at_55_lpcd_is_fully():
    base = {k: None for k in DAY_SCHEMA.names}
    one = dict(base, village="Rampur", block="Malpura", district="Tonk",
               state="Rajasthan", date=date(2026, 3, 2), population=500,
               complete=True, supply_hours=2.0, pump_hours=2.0, lockouts=0,
               power_off_hours=0.0, faults_raised=0, tz="Asia/Kolkata")  # fmt: skip
    rows = [
        dict(one, device="0a000001", litres=20000.0, lpcd=40.0, band="non"),
        dict(one, device="0a000002", litres=7500.0, lpcd=15.0, band="non"),
    ]
    (r,) = periods(table(rows), "day", "village").to_pylist()
    assert (r["mean_lpcd"], r["days_fully"], r["days_partially"]) == (55.0, 1, 0)


def test_the_0600_depths_change_first_to_last_by_date_then_device():
    base = {k: None for k in DAY_SCHEMA.names}
    one = dict(base, village="Rampur", population=500, complete=False,
               supply_hours=0.0, pump_hours=0.0, lockouts=0, power_off_hours=0.0,
               faults_raised=0, tz="Asia/Kolkata")  # fmt: skip
    rows = [  # two borewells read on the first and the last day
        dict(one, device="0a000002", date=date(2026, 3, 1), bore_0600_m=30.0),
        dict(one, device="0a000001", date=date(2026, 3, 1), bore_0600_m=20.0),
        dict(one, device="0a000002", date=date(2026, 3, 9), bore_0600_m=31.5),
        dict(one, device="0a000001", date=date(2026, 3, 9), bore_0600_m=21.0),
    ]
    (r,) = periods(table(rows), "month", "village").to_pylist()
    # first: 3-1, device 0a000001 (20.0 m); last: 3-9, device 0a000002 (31.5 m)
    assert r["bore_0600_change_m"] == 11.5


@settings(max_examples=40, deadline=None,
          suppress_health_check=[HealthCheck.too_slow])  # fmt: skip
@given(
    got=day_rows(),
    period=st.sampled_from(["month", "year"]),
    by=st.sampled_from(LEVELS),
    with_reg=st.booleans(),
)
def test_month_and_year_from_the_device_months_equal_the_days(
    got, period, by, with_reg
):
    rows, moved = got
    reg = registry(moved) if with_reg else None
    days = table(rows)
    devices: dict[tuple, set] = {}  # villages more than one device served
    for r in rows:
        key = (r["state"], r["district"], r["block"], r["village"])
        devices.setdefault(key, set()).add(r["device"])
    shared = [
        r
        for r in rows
        if len(devices[(r["state"], r["district"], r["block"], r["village"])]) > 1
    ]
    months = Months(device_months(days), table(shared))
    want = periods(days, period, by, registry=reg).to_pylist()
    assert periods(days.slice(0, 0), period, by, registry=reg,
                   months=months).to_pylist() == want  # fmt: skip
