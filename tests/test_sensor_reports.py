"""The sensors in the reports and alerts (issue 19, reports part): the daily
sensor columns of `jalkal report`, the Table 11 quality leg from the probes and
the sensor alerts, checked on simulated villages against the simulator's ground
truth (truth.json's `sensors` section, sim/aquifer.py), and the per-frame and
bulk report paths held equal."""

from __future__ import annotations

import json
from datetime import date, timedelta
from pathlib import Path

import numpy as np
import pyarrow as pa
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from test_measure import burst_truth, bursts

from jalkal.cli import main
from jalkal.decode import bulk
from jalkal.registry import load_registry
from jalkal.reports import (
    alerts,
    daily_bulk,
    measures,
    periods,
    sensor_alerts,
    sensor_plots,
)
from jkproto import codec as c
from jksim import scenario, village

TZ_OFF = 19800  # Asia/Kolkata, the scenarios' zone


class Run:
    def __init__(self, out: Path, days: int):
        data = b"".join(p.read_bytes() for p in sorted((out / "sd" / "log").glob("*")))
        self.out = out
        self.table = bulk.decode(data).table
        self.reg = load_registry(str(out / "villages.csv"))
        self.truth = json.loads((out / "truth.json").read_text())["villages"][0]
        self.rep = periods.build(self.table, self.reg)
        self.days = self.rep.days.to_pylist()[:days]
        self.start = date(2026, 3, 1)


def simulate(tmp: Path, name: str, days: int) -> Run:
    sc = scenario.load(name, days=days)
    v = village.simulate(sc, tmp / name)
    assert not v.clock.failures
    return Run(tmp / name, days)


@pytest.fixture(scope="module")
def bore_open(tmp_path_factory):
    return simulate(tmp_path_factory.mktemp("b"), "bore-open", 5)


@pytest.fixture(scope="module")
def motor_faults(tmp_path_factory):
    return simulate(tmp_path_factory.mktemp("m"), "motor-faults", 4)


@pytest.fixture(scope="module")
def drift(tmp_path_factory):
    return simulate(tmp_path_factory.mktemp("q"), "quality-drift", 8)


def local_day(t: int) -> date:
    return date(1970, 1, 1) + timedelta(days=(t + TZ_OFF) // 86400)


# --- the day columns against the simulator's truth -----------------------------


def test_daily_borewell_depth_within_the_sensors_resolution(bore_open):
    """Each day's min, max and 06:00 depth equal the true depth of the burst the
    chosen frame carries, within 1 cm (the frame's resolution) plus the half
    count of the ADS1115 (2.6 mm a count: rounding to the cm)."""
    run = bore_open
    bs = bursts(run.truth)
    ms = run.table.filter(pa.compute.equal(run.table["kind"], c.MEASURE))
    t = ms["t"].to_numpy().astype(np.int64)
    raw = ms["bore_depth_cm"].to_numpy().astype(np.int64)
    checked = 0
    for row in run.days:
        d = row["date"]
        sel = np.array([local_day(int(x - 1)) == d for x in t]) & (raw != 0xFFFF)
        if not sel.any():
            assert row["bore_min_m"] is None and row["bore_0600_m"] is None
            continue
        # the truth of the burst each of the day's frames carries
        true = np.array([burst_truth(bs, int(x), v / 100)
                         for x, v in zip(t[sel], raw[sel], strict=True)])  # fmt: skip
        assert row["bore_min_m"] == pytest.approx(true.min(), abs=0.011)
        assert row["bore_max_m"] == pytest.approx(true.max(), abs=0.011)
        six = (d - date(1970, 1, 1)).days * 86400 - TZ_OFF + 6 * 3600
        near = np.abs(t[sel] - six)
        if near.min() <= 1800:
            assert row["bore_0600_m"] == pytest.approx(true[near.argmin()], abs=0.011)
            checked += 1
        else:
            assert row["bore_0600_m"] is None
    assert checked >= 4


def test_a_fault_is_never_a_value_and_no_frame_is_no_value(bore_open):
    run = bore_open
    f = next(f for f in run.truth["sensors"]["faults"] if f["sensor"] == "bore")
    by = {r["date"]: r for r in run.days}
    # the day the loop was open all day long: no borewell value at all
    whole = [
        d
        for d in by
        if f["from"] <= (d - date(1970, 1, 1)).days * 86400 - TZ_OFF
        and (d - date(1970, 1, 1)).days * 86400 - TZ_OFF + 86400 <= f["to"]
    ]
    for d in {local_day(f["from"]), local_day(f["to"])} | set(whole):
        assert "bore" in by[d]["sensor_faults"]
        assert by[d]["tank_min_m"] is not None  # the other sensors still read
    for d in whole:
        assert by[d]["bore_min_m"] is None
    # the open loop reads 0 mA: a depth of install_m (45 m) if it were a value
    assert all((r["bore_max_m"] or 0) < run.truth["sensors"]["install_m"] - 1
               for r in run.days)  # fmt: skip
    # frames without their measure frames: the sensor columns are empty, not 0
    kind = run.table["kind"].to_numpy()
    rep = periods.build(run.table.filter(pa.array(kind != c.MEASURE)), run.reg)
    for r in rep.days.to_pylist():
        assert all(r[k] is None for k in measures.DAY_NAMES), r
        assert r["litres"] is not None


# --- quality: BIS 10500 and Table 11 -------------------------------------------


def truth_quality(run: Run) -> list[str | None]:
    """Per day: the class the truth decides (None: TDS within 1 mg/L of a limit
    somewhere in the day, where a probe may read either side)."""
    out: list[str | None] = []
    for ph, lo, hi in run.truth["sensors"]["quality"]:
        if not measures.PH_MIN <= ph <= measures.PH_MAX:
            out.append("not acceptable")
        elif lo - 1 > measures.TDS_ACCEPTABLE:
            out.append("permissible")
        elif hi + 1 < measures.TDS_ACCEPTABLE:
            out.append("acceptable")
        else:
            out.append(None)
    return out


def test_quality_days_and_table_11_leg_on_the_truths_days(drift):
    run = drift
    want = truth_quality(run)
    assert want.count("not acceptable") == 2 and want.count("permissible") >= 1
    got = [r["water_quality"] for r in run.days]
    for i, (w, g) in enumerate(zip(want, got, strict=True)):
        assert w is None or g == w, (i, w, g)
        assert g is not None
    # Table 11 quality leg per day: non potable exactly on the pH dip
    tb = periods.periods(run.rep.days, "day", registry=run.reg).to_pylist()
    leg = [r["quality"] for r in tb]
    assert leg == [
        "non potable" if w == "not acceptable" else "potable"
        for w in truth_quality(run)
    ]
    # a laboratory test that failed makes a period non potable whatever the
    # probes say; one that passed does not clear a failed probe day
    d0 = run.start.isoformat()
    lab = {("", "", "", "Hirapur"): [(run.start, False)]}
    tb = periods.periods(run.rep.days, "day", quality=lab, registry=run.reg)
    assert tb.to_pylist()[0]["quality"] == "non potable", d0
    ok = {("", "", "", "Hirapur"): [(run.start + timedelta(days=6), True)]}
    tb = periods.periods(run.rep.days, "day", quality=ok, registry=run.reg)
    assert tb.to_pylist()[6]["quality"] == "non potable"
    week = periods.periods(run.rep.days, "month", registry=run.reg).to_pylist()[0]
    assert week["days_not_acceptable"] == 2 and week["sensor_quality"] == "non potable"


def test_quality_alert_on_the_days_truth_says(drift):
    run = drift
    want = truth_quality(run)
    a = alerts.alerts(run.rep, quality_days=1).to_pylist()
    eps = [x for x in a if x["kind"] == "quality"]
    assert eps
    inside = set()
    for x in eps:
        a0 = local_day(int(x["since"].timestamp()))
        end = x["until"]
        n = (local_day(int(end.timestamp())) - a0).days if end else len(want)
        inside |= {(a0 - run.start).days + i for i in range(n)}
    for i, w in enumerate(want):
        if w in ("permissible", "not acceptable"):
            assert i in inside, i
        elif w == "acceptable":
            assert i not in inside, i
    # K: more consecutive days than the run has gives no alert
    longest = max(x["days"] for x in eps)
    k = int(longest) + 1
    assert not [x for x in alerts.alerts(run.rep, quality_days=k).to_pylist()
                if x["kind"] == "quality"]  # fmt: skip


# --- motor and sensor faults ------------------------------------------------------


def test_motor_relay_alerts_on_the_injected_spans_only(motor_faults, bore_open):
    run = motor_faults
    spans = {f["kind"]: (f["from"], f["to"]) for f in run.truth["sensors"]["faults"]}
    eps = [x for x in alerts.alerts(run.rep).to_pylist() if x["kind"] == "motor_relay"]
    kinds = set()
    for x in eps:
        t = int(x["since"].timestamp())
        kind = "motor_trip" if "not running" in x["what"] else "motor_bypass"
        a, b = spans[kind]
        assert a <= t <= b + 10, (x, a, b)
        kinds.add(kind)
    assert kinds == {"motor_trip", "motor_bypass"}
    # none in a village without an injected motor fault
    assert not [x for x in alerts.alerts(bore_open.rep).to_pylist()
                if x["kind"] == "motor_relay"]  # fmt: skip


def test_motor_hours_from_the_motor(motor_faults, bore_open):
    """The relay's pump hours and the motor's agree within the measure frames'
    spacing a start; on the day the motor was tripped it ran much less than
    its relay was on (the no-flow stops keep that short)."""
    for r in bore_open.days:
        assert abs(r["motor_hours"] - r["pump_hours"]) <= 0.75, r
    trip = local_day(spans_of(motor_faults, "motor_trip")[0])
    day = next(r for r in motor_faults.days if r["date"] == trip)
    assert day["motor_hours"] < day["pump_hours"]


def spans_of(run: Run, kind: str) -> tuple[int, int]:
    f = next(f for f in run.truth["sensors"]["faults"] if f["kind"] == kind)
    return f["from"], f["to"]


def test_sensor_fault_open_for_n_days(bore_open):
    run = bore_open
    a, b = next(
        (f["from"], f["to"]) for f in run.truth["sensors"]["faults"]
        if f["sensor"] == "bore"
    )  # fmt: skip
    hours = (b - a) / 3600  # 36 h
    got = [x for x in alerts.alerts(run.rep, sensor_fault_days=1).to_pylist()
           if x["kind"] == "sensor_fault"]  # fmt: skip
    (x,) = got
    assert abs(int(x["since"].timestamp()) - a) <= 900
    assert abs(int(x["until"].timestamp()) - b) <= 900
    assert x["days"] == pytest.approx(hours / 24, abs=0.02)
    assert not [x for x in alerts.alerts(run.rep, sensor_fault_days=2).to_pylist()
                if x["kind"] == "sensor_fault"]  # fmt: skip


# --- the water table ---------------------------------------------------------------


def measure_objects(depths_cm: list[int | None], start: date) -> list[dict]:
    """A boot frame and one measure frame an hour with the given 06:00 depths
    (the rest of each day 3 m deeper: pumping); None: the bore in fault."""
    t0 = (start - date(1970, 1, 1)).days * 86400 - TZ_OFF
    dev = {"device": "0a0b0c0d", "time": "net"}
    objs = [dict(dev, boot=1, seq=0, kind="boot", ts=_iso(t0), reset="power_on",
                 fw="1.0.0", interval_s=900, source_pulses_per_m3=100,
                 supply_pulses_per_m3=100)]  # fmt: skip
    seq = 1
    for d, cm in enumerate(depths_cm):
        for h in range(24):
            t = t0 + d * 86400 + h * 3600 + 60
            v = None if cm is None else cm + (0 if h <= 6 else 300)
            fault = ["bore"] if v is None else []
            objs.append(dict(dev, boot=1, seq=seq, kind="measure", ts=_iso(t),
                             bore_depth_cm=v, faults=fault))  # fmt: skip
            seq += 1
    return objs


def _iso(t: int) -> str:
    from jkproto import objects as ob

    return ob.iso(t)


REG = "device,village,population\n0a0b0c0d,Hirapur,1200\n"


def test_falling_water_table_trend(tmp_path):
    reg_path = tmp_path / "v.csv"
    reg_path.write_text(REG)
    reg = load_registry(str(reg_path))
    start = date(2026, 3, 1)
    rng = np.random.default_rng(7)
    noise = rng.integers(-15, 16, 42)
    falling = [2100 + 10 * d + int(noise[d]) for d in range(42)]  # 0.7 m a week
    steady = [2100 + int(noise[d]) for d in range(42)]
    steady[20] = 2900  # one odd morning does not make a trend
    falling[30] = None  # nor does a day in fault break one
    rep = periods.build(measure_objects(falling, start), reg)
    eps = [x for x in alerts.alerts(rep).to_pylist() if x["kind"] == "water_table"]
    (x,) = eps
    assert x["active"]
    # the first day whose 4-week window has enough days: 21 days spread
    first = local_day(int(x["since"].timestamp()) - 1)
    assert 20 <= (first - start).days <= 22, first
    rep = periods.build(measure_objects(steady, start), reg)
    assert not [x for x in alerts.alerts(rep).to_pylist() if x["kind"] == "water_table"]
    # a threshold above the fall: none
    rep = periods.build(measure_objects(falling, start), reg)
    assert not [x for x in alerts.alerts(rep, table_fall_m=0.8).to_pylist()
                if x["kind"] == "water_table"]  # fmt: skip


@pytest.mark.slow
def test_water_table_alert_in_the_decline_scenario_not_in_a_stable_one(
    tmp_path_factory,
):
    """On the simulated aquifer (Cooper-Jacob: the residual drawdown of daily
    pumping deepens the mornings too, ever slower) over two-week windows."""
    tmp = tmp_path_factory.mktemp("w")
    for name, want in (("water-table-decline", True), ("sensors", False)):
        run = simulate(tmp, name, 13)
        truth = run.truth["sensors"]["static_0600"]
        fall = (truth[-1] - truth[0]) / (len(truth) - 1) * 7
        eps = [x for x in alerts.alerts(run.rep, table_weeks=2).to_pylist()
               if x["kind"] == "water_table"]  # fmt: skip
        assert bool(eps) == want, (name, fall, eps)
        assert (fall > sensor_alerts.TABLE_FALL_M) == want


# --- the two report paths ------------------------------------------------------------


@settings(max_examples=12, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])  # fmt: skip
@given(seed=st.integers(0, 2**32 - 1), share=st.floats(0.0, 1.0))
def test_report_paths_agree_on_random_frame_subsets(bore_open, seed, share):
    """daily_bulk (vectorised, every device at once) gives the table of
    periods.build (one device at a time) when measure and event frames are
    left out at random (the device stays regular: its readings all there)."""
    tb = bore_open.table
    kind = tb["kind"].to_numpy()
    rng = np.random.default_rng(seed)
    drop = np.isin(kind, (c.MEASURE, c.EVENT, c.HEARTBEAT)) & (
        rng.random(kind.size) < share
    )
    sub = tb.filter(pa.array(~drop))
    want = periods.build(sub, bore_open.reg).days
    got = daily_bulk.days(sub, bore_open.reg)
    assert got.regular == 1
    assert got.table.equals(want)


def test_cli_daily_period_and_alerts(bore_open, capsys):
    out, reg = bore_open.out, str(bore_open.out / "villages.csv")
    log = str(out / "sd" / "log")
    assert main(["report", log, "--villages", reg, "--format", "csv"]) == 0
    head = capsys.readouterr().out.splitlines()[0].split(",")
    assert head[-len(measures.DAY_NAMES) :] == list(measures.DAY_NAMES)
    assert main(["report", log, "--villages", reg]) == 0
    text = capsys.readouterr().out
    assert "sensors (measure frames)" in text and "not acceptable" in text
    assert main(["report", log, "--villages", reg, "--period", "month"]) == 0
    assert "non potable" in capsys.readouterr().out
    args = ["report", log, "--villages", reg, "--alerts", "--sensor-fault-days", "1"]
    assert main(args) == 0
    assert "bore sensor in fault" in capsys.readouterr().out


def test_plots_only_with_measure_frames(bore_open, tmp_path):
    out, reg = bore_open.out, str(bore_open.out / "villages.csv")
    log = str(out / "sd" / "log")
    assert main(["report", log, "--villages", reg, "--plot", str(tmp_path / "a")]) == 0
    for name in sensor_plots.FILES:
        assert (tmp_path / "a" / name).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    kind = bore_open.table["kind"].to_numpy()
    days = periods.build(bore_open.table.filter(pa.array(kind != c.MEASURE)),
                         bore_open.reg).days  # fmt: skip
    assert sensor_plots.write(days, tmp_path) == []


def test_report_from_a_store_has_the_sensor_columns(bore_open, tmp_path, capsys):
    """The same rows from the store `jalkal serve` writes as from the SD log."""
    from jalkal.ingest.replay import batches, read_frames
    from jalkal.ingest.store import Store
    from jalkal.keys import load_keys

    out, reg = bore_open.out, str(bore_open.out / "villages.csv")
    db = tmp_path / "s.duckdb"
    with Store(db, load_keys(out / "keys.json")) as st:
        files, _ = read_frames((str(out / "sd"),))
        for b in batches(files, 500, False):
            st.ingest(b.data)
    args = ["--villages", reg, "--format", "csv"]
    assert main(["report", str(out / "sd" / "log"), *args]) == 0
    logs = capsys.readouterr().out
    assert main(["report", "--store", str(db), *args]) == 0
    assert capsys.readouterr().out == logs
    assert main(["report", "--store", str(db), *args, "--period", "week"]) == 0
    week = capsys.readouterr().out
    assert "non potable" in week
    lake = tmp_path / "lake"  # and from its Parquet export, on DuckDB and pyarrow
    assert main(["export", "--store", str(db), "--out", str(lake)]) == 0
    capsys.readouterr()
    assert main(["report", "--parquet", str(lake), *args]) == 0
    assert capsys.readouterr().out == logs
    assert main(["report", "--parquet", str(lake), *args, "--period", "week"]) == 0
    assert capsys.readouterr().out == week
    assert main(["report", "--parquet", str(lake), "--dask", "local", *args]) == 0
    assert capsys.readouterr().out == logs


def test_decoded_objects_give_the_same_sensor_columns(bore_open):
    """`jalkal decode`'s JSON objects (nulls for no value, fault names) read as
    the bulk table's sentinels and bit sets do."""
    objs = bulk.to_objects(bore_open.table)
    assert any(o.get("bore_depth_cm", 0) is None for o in objs)
    got = periods.build(objs, bore_open.reg).days
    assert got.equals(bore_open.rep.days)
