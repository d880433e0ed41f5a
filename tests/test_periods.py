"""Period reports and the JJM functionality class (host/periods.py), the registry's
from/to dates (host/registry.py) and clock fix-ups, checked against the simulator's
ground truth and against hand-made daily tables."""

from __future__ import annotations

import json
import math
from datetime import date, timedelta
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from test_report import D0, DAY, IV, NET, NONE, Log, day_pulses

from jalkal.cli import main
from jalkal.decode import bulk
from jalkal.errors import JalkalError
from jalkal.registry import Registry, Village, parse_registry
from jalkal.reports.daily import band_of
from jalkal.reports.periods import DAY_COLUMNS, PERIOD_COLUMNS, build, periods
from jalkal.reports.quality import parse_quality
from jalkal.reports.sources import decode_sources
from jkproto import codec as c
from jksim import scenario
from jksim.village import simulate

# demand per village: each side of 40 and 55 lpcd
TARGETS = {"Chandpur": 38, "Dhanpur": 42, "Kesarpur": 50, "Lalpur": 58}
POP = 1000
START = "2026-03-22"  # two weeks across the end of March
SIM_DAYS = 14
LPP = 10.0  # litres a pulse on the supply meter


@pytest.fixture(scope="module")
def four(tmp_path_factory):
    """Four villages simulated (the real firmware, normal scenario), their frames in
    one table, one registry, and the truth per village."""
    root = tmp_path_factory.mktemp("four")
    tables, truth, lines = [], {}, ["device,village,population,block,district,state"]
    for i, (name, lpcd) in enumerate(TARGETS.items()):
        raw = {
            "start": START, "days": SIM_DAYS, "seed": 11 + i,
            "village": {"name": name, "population": POP}, "demand": {"lpcd": lpcd},
        }  # fmt: skip
        out = root / name
        simulate(scenario.normalize(raw, name), out)
        t = json.loads((out / "truth.json").read_text())["villages"][0]
        truth[name] = t
        block = "Kotra" if i < 2 else "Pusaur"
        lines.append(f"{t['device']},{name},{POP},{block},Raigarh,Chhattisgarh")
        tb, _ = decode_sources([str(out / "sd")], str(out / "keys.json"))
        tables.append(tb)
    reg = parse_registry("\n".join(lines) + "\n")
    (root / "villages.csv").write_text("\n".join(lines) + "\n")
    return pa.concat_tables(tables), reg, truth, root


def _truth_band(litres: float) -> set[str]:
    """The band of a truth day; both bands when a pulse's worth of litres could
    move it across an edge (the meter counts whole pulses)."""
    lpcd = litres / POP
    out = {band_of(math.floor(lpcd * 10 + 0.5) / 10)}
    for edge in (40.0, 55.0):
        if abs(lpcd - edge) <= LPP / POP + 0.05:
            out |= {band_of(edge - 0.1), band_of(edge), band_of(edge + 0.1)}
    return out


def test_days_table_matches_truth(four):
    frames, reg, truth, _ = four
    rep = build(frames, reg)
    assert rep.days.column_names == list(DAY_COLUMNS)
    rows = rep.days.to_pylist()
    for name, t in truth.items():
        mine = {r["date"].isoformat(): r for r in rows if r["village"] == name}
        want = {d["date"]: d for d in t["days"]}
        done = [d for d in want if mine.get(d, {}).get("complete")]
        # a normal run: every day after the first (no midnight reading) complete
        assert len(done) >= SIM_DAYS - 1, name
        for d in done:
            assert abs(mine[d]["litres"] - want[d]["litres"]) <= LPP, (name, d)
            assert mine[d]["band"] in _truth_band(want[d]["litres"]), (name, d)
            assert mine[d]["power_off_hours"] == 0 and mine[d]["lockouts"] == 0
            assert mine[d]["supply_hours"] == 24.0


def test_monthly_bands_exactly_as_truth(four):
    frames, reg, truth, _ = four
    rep = build(frames, reg)
    tb = periods(rep.days, "month", "village", registry=reg)
    assert tb.column_names == list(PERIOD_COLUMNS)
    got = {(r["village"], r["period"]): r for r in tb.to_pylist()}
    assert {p for _v, p in got} == {"2026-03", "2026-04"}
    for name, t in truth.items():
        complete = {
            r["date"].isoformat()
            for r in rep.days.to_pylist()
            if r["village"] == name and r["complete"]
        }
        for month in ("2026-03", "2026-04"):
            r = got[(name, month)]
            days = [d for d in t["days"] if d["date"].startswith(month)]
            done = [d for d in days if d["date"] in complete]
            assert r["days_complete"] == len(done)
            assert r["days"] == (31 if month == "2026-03" else 30)
            assert r["days_incomplete"] == r["days"] - len(done)
            counts = {b: 0 for b in ("fully", "partially", "non")}
            unsure = 0
            for d in done:
                bands = _truth_band(d["litres"])
                if len(bands) == 1:
                    counts[bands.pop()] += 1
                else:
                    unsure += 1
            assert unsure <= 1, (name, month)  # the simulation's noise, not ours
            got_counts = {b: r[f"days_{b}"] for b in counts}
            assert sum(got_counts.values()) == len(done)
            for b in counts:
                assert counts[b] <= got_counts[b] <= counts[b] + unsure, (name, month)
            # litres and mean lpcd over complete days, as truth has them
            lit = sum(d["litres"] for d in done)
            assert abs(r["litres"] - lit) <= 2 * LPP * len(done)
            if done:
                assert abs(r["mean_lpcd"] - lit / POP / len(done)) <= 0.1
            # two weeks of a month: never enough for a class
            assert r["functionality"] is None
            assert r["note"].startswith(f"insufficient data: {len(done)} of ")


def test_complete_weeks_classed_as_truth(four):
    frames, reg, truth, _ = four
    tb = periods(build(frames, reg).days, "week", "village", min_complete=0.5)
    full = [r for r in tb.to_pylist() if r["days_complete"] == 7]
    assert len(full) == 4
    for r in full:  # a complete week's mean lpcd lands in the band truth gives
        t = truth[r["village"]]["days"]
        week = [d["litres"] for d in t if r["start"].isoformat() <= d["date"]
                and d["date"] < r["end"].isoformat()]  # fmt: skip
        assert len(week) == 7
        assert r["quantity"] in _truth_band(sum(week) / 7), r
        assert r["regularity"] == "fully" and r["quality"] == "not measured"
        assert r["functionality"] == r["quantity"]


def _year_of(days: list[dict], year: int = 2026) -> list[dict]:
    """A year of daily rows made by repeating a village's simulated complete days
    (the fast path: a few weeks simulated, the class logic run on a year)."""
    src = [r for r in days if r["complete"]]
    out = []
    d = date(year, 1, 1)
    i = 0
    while d.year == year:
        r = dict(src[i % len(src)])
        r["date"] = d
        out.append(r)
        d += timedelta(days=1)
        i += 1
    return out


def test_yearly_class_exactly_as_truth(four):
    frames, reg, truth, _ = four
    rows = build(frames, reg).days.to_pylist()
    year_rows = []
    want = {}
    for name, t in truth.items():
        mine = _year_of([r for r in rows if r["village"] == name])
        year_rows += mine
        # truth: the same days' truth litres, repeated the same way
        tl = {d["date"]: d["litres"] for d in t["days"]}
        src = [r for r in rows if r["village"] == name and r["complete"]]
        lit = [tl[src[i % len(src)]["date"].isoformat()] for i in range(len(mine))]
        mean = sum(lit) / POP / len(lit)
        want[name] = band_of(math.floor(mean * 10 + 0.5) / 10)
    tb = periods(year_rows, "year", "village")
    for r in tb.to_pylist():
        assert r["period"] == "2026" and r["days"] == 365 and r["days_complete"] == 365
        assert r["quantity"] == want[r["village"]], r
        assert r["regularity"] == "fully" and r["months_with_supply"] == 12
        assert r["functionality"] == want[r["village"]]
        assert r["note"] == "over 365 complete days of 365; quality not measured"
    # the villages sit on each side of 40 and 55 lpcd
    assert set(want.values()) == {"non", "partially", "fully"}
    # 212 complete days of 365: no class, and it says why
    short = [dict(r) for r in year_rows if r["village"] == "Lalpur"]
    for r in short[212:]:
        r.update(complete=False, lpcd=None, band=None)
    (r,) = periods(short, "year").to_pylist()
    assert r["functionality"] is None and r["quantity"] is None
    assert r["note"] == "insufficient data: 212 of 365 days complete (needs 329)"
    assert r["villages_insufficient"] == 1


# --- the class rules on hand-made days ----------------------------------------------


def _day(d: date, lpcd: float | None, village: str = "A", block: str = "B1",
         pop: int = 100, supply: bool = True) -> dict:  # fmt: skip
    litres = None if lpcd is None else lpcd * pop
    return {
        "village": village, "device": f"{abs(hash(village)) % 2**32:08x}",
        "date": d, "litres": litres, "population": pop, "lpcd": lpcd,
        "band": None if lpcd is None else band_of(lpcd), "pump_hours": 1.0,
        "completeness": 1.0 if lpcd is not None else 0.5,
        "complete": lpcd is not None, "block": block, "district": "D", "state": "S",
        "tz": "Asia/Kolkata", "supply_hours": 5.0 if supply else 0.0,
        "supply_start_min": 360 if supply else None, "lockouts": 0,
        "power_off_hours": 0.0, "faults_raised": 0, "night_min_lph": None,
    }  # fmt: skip


def _year(lpcd: float, dry_months: tuple[int, ...] = (), **kw) -> list[dict]:
    out = []
    d = date(2026, 1, 1)
    while d.year == 2026:
        dry = d.month in dry_months
        out.append(_day(d, 0.0 if dry else lpcd, supply=not dry, **kw))
        d += timedelta(days=1)
    return out


@pytest.mark.parametrize(
    "lpcd, band",
    [(40.0, "non"), (40.1, "partially"), (54.9, "partially"), (55.0, "fully"),
     (39.9, "non"), (0.0, "non")],
)  # fmt: skip
def test_band_edges(lpcd, band):
    assert band_of(lpcd) == band
    (r,) = periods([_day(date(2026, 3, 1), lpcd)], "day").to_pylist()
    assert r["quantity"] == band and r[f"days_{band}"] == 1


def test_regularity_by_months_with_supply():
    def cls(dry):
        (r,) = periods(_year(60.0, dry), "year").to_pylist()
        return r["regularity"], r["months_with_supply"], r["functionality"]

    assert cls(()) == ("fully", 12, "fully")
    # one dry day in an otherwise supplied year: supplied 12 months, not daily
    one = _year(60.0)
    one[40] = _day(one[40]["date"], 0.0, supply=False)
    (r,) = periods(one, "year").to_pylist()
    assert (r["regularity"], r["months_with_supply"]) == ("partially", 12)
    assert r["days_with_supply"] == 364 and r["functionality"] == "partially"
    assert cls((1, 2, 3)) == ("partially", 9, "partially")  # 9 of 12 months
    r4 = periods(_year(60.0, (1, 2, 3, 4)), "year").to_pylist()[0]
    assert (r4["regularity"], r4["months_with_supply"]) == ("non", 8)
    assert r4["functionality"] == "non"  # the worst of quantity and regularity


def test_incomplete_days_are_never_low_supply():
    rows = _year(60.0)
    for r in rows[:20]:  # 20 days with no data: unknown, not dry, not low
        r.update(complete=False, lpcd=None, band=None, litres=None, supply_hours=0.0)
    (r,) = periods(rows, "year").to_pylist()
    assert r["days_non"] == 0 and r["days_incomplete"] == 20
    assert r["days_complete"] == 345 and r["functionality"] == "fully"


def test_quality_input():
    q = parse_quality("village,date,potable\nA,2026-05-02,no\nA,2026-08-01,yes\n")
    (r,) = periods(_year(60.0), "year", quality=q).to_pylist()
    assert r["quality"] == "non potable" and r["functionality"] == "non"
    assert "quality not measured" not in r["note"]
    months = {
        x["period"]: x for x in periods(_year(60.0), "month", quality=q).to_pylist()
    }
    assert months["2026-08"]["quality"] == "potable"
    assert months["2026-08"]["functionality"] == "fully"
    assert months["2026-01"]["quality"] == "not measured"
    with pytest.raises(JalkalError, match="potable must be yes or no"):
        parse_quality("village,date,potable\nA,2026-05-02,maybe\n")


def test_groups_sum_villages():
    rows = (
        _year(60.0, village="A", block="B1", pop=100)
        + _year(30.0, village="B", block="B1", pop=300)
        + _year(50.0, village="C", block="B2", pop=100)
    )
    blocks = {r["block"]: r for r in periods(rows, "year", "block").to_pylist()}
    b1 = blocks["B1"]
    assert (b1["villages"], b1["days"], b1["days_complete"]) == (2, 730, 730)
    assert b1["mean_lpcd"] == 37.5  # (60*100 + 30*300) / 400 person-days a day
    assert (b1["villages_fully"], b1["villages_non"]) == (1, 1)
    assert b1["days_fully"] == 365 and b1["days_non"] == 365
    assert b1["village"] is None and b1["district"] == "D"
    assert b1["note"] == "2 villages: 1 fully, 0 partially, 1 non, 0 insufficient data"
    (st,) = periods(rows, "year", "state").to_pylist()
    assert st["villages"] == 3 and st["block"] is None and st["district"] is None
    assert st["villages_partially"] == 1
    weeks = periods(rows, "week", "district").to_pylist()
    assert weeks[0]["period"] == "2026-W01" and weeks[0]["start"] == date(2025, 12, 29)
    assert weeks[0]["days"] == 3 * 7 and weeks[0]["days_complete"] == 3 * 4


# --- the registry's from/to dates ---------------------------------------------------

KEY = bytes(range(32))


def _two_villages_log():
    log = Log()
    log.boot(D0 - 300)
    log.reading(D0, 0)
    total = 0
    for d in range(6):
        total = day_pulses(log, d, total, 2750 if d < 3 else 2000)
    return log


def test_device_moved_between_villages_keeps_its_history():
    reg = parse_registry(
        "device,village,population,from,to\n"
        "0a1b2c3d,Rampur,500,,2026-03-04\n"
        "0a1b2c3d,Sonpur,400,2026-03-04,\n"
    )
    rep = build(_two_villages_log().table(), reg)
    by = {r["date"].isoformat(): r for r in rep.days.to_pylist()}
    assert by["2026-03-03"]["village"] == "Rampur" and by["2026-03-03"]["lpcd"] == 55.0
    assert by["2026-03-04"]["village"] == "Sonpur" and by["2026-03-04"]["lpcd"] == 50.0
    assert by["2026-03-04"]["population"] == 400
    m = {r["village"]: r for r in periods(rep.days, "month", registry=reg).to_pylist()}
    assert m["Rampur"]["days"] == 3 and m["Rampur"]["days_complete"] == 3
    assert m["Sonpur"]["days"] == 28 and m["Sonpur"]["days_complete"] == 3


def test_days_outside_every_row_are_left_out():
    reg = parse_registry(
        "device,village,population,from\n0a1b2c3d,Rampur,500,2026-03-03\n"
    )
    rep = build(_two_villages_log().table(), reg)
    assert min(r["date"] for r in rep.days.to_pylist()) == date(2026, 3, 3)
    assert any("outside its registry rows" in n for n in rep.notes)


@pytest.mark.parametrize(
    "text, msg",
    [
        ("0a1b2c3d,A,5,2026-03-01,\n0a1b2c3d,B,5,2026-02-01,2026-03-02\n",
         "line 3: device 0a1b2c3d is already on line 2 for dates that overlap"),
        ("0a1b2c3d,A,5,,\n0a1b2c3d,B,5,,\n", "line 3: device 0a1b2c3d is already on"),
        ("0a1b2c3d,A,5,2026-3-1,\n", "line 2: from must be a date like 2026-03-01"),
        ("0a1b2c3d,A,5,2026-03-05,2026-03-05\n", "to (2026-03-05) must be after from"),
        ("0a1b2c3d,A,5,2026-02-30,\n", "from must be a date"),
    ],
)  # fmt: skip
def test_bad_registry_dates(text, msg):
    with pytest.raises(JalkalError) as e:
        parse_registry("device,village,population,from,to\n" + text, "v.csv")
    assert msg in str(e.value)


def test_rows_of_one_device_share_a_zone():
    with pytest.raises(JalkalError, match="must share a zone"):
        parse_registry(
            "device,village,population,from,to,tz\n"
            "0a1b2c3d,A,5,,2026-03-01,Asia/Kolkata\n"
            "0a1b2c3d,B,5,2026-03-01,,Asia/Kathmandu\n"
        )


def test_adjacent_rows_do_not_overlap():
    reg = parse_registry(
        "device,village,population,from,to\n"
        "0a1b2c3d,A,5,,2026-03-01\n0a1b2c3d,B,6,2026-03-01,\n"
    )
    assert reg.at("0a1b2c3d", date(2026, 2, 28)).village == "A"
    assert reg.at("0a1b2c3d", date(2026, 3, 1)).village == "B"
    assert isinstance(reg, Registry) and len(reg) == 2


# --- clock fix-ups ------------------------------------------------------------------


def test_frames_before_the_clock_are_placed_from_the_clock_frame():
    """A board without a clock boots at 23:50 local (uptime 0), writes readings every
    15 minutes of uptime, and learns the time at uptime 30000 s: every earlier frame
    of the boot goes where it happened."""
    boot_utc = D0 - 600
    log = Log()
    log.boot(0, tq=NONE)
    total = 0
    for up in range(600, 30000, IV):  # on the grid: boot_utc + up = D0 + k*IV
        total += 25
        log.reading(up, total, 100, tq=NONE)
    log.buf += log.enc.frame(c.CLOCK, boot_utc + 30000, NET, NET, 30000, 0)
    t = boot_utc + 30000
    t = t - t % IV + IV
    while t <= D0 + 2 * DAY:
        total += 25
        log.reading(t, total, 100)
        t += IV
    rep = build(log.table(), {"0a1b2c3d": Village("0a1b2c3d", "Rampur", 500)})
    assert rep.result.placed == 1 + 33 and rep.unplaced.num_rows == 0
    by = {r["date"].isoformat(): r for r in rep.days.to_pylist()}
    r = by["2026-03-01"]
    assert r["complete"] and r["litres"] == 96 * 250.0 and r["lpcd"] == 48.0
    assert any("placed on the timeline" in n for n in rep.notes)


def test_frames_no_clock_frame_can_place_are_listed_not_guessed():
    log = Log()
    log.boot(D0 - 300)
    total = day_pulses(log, 0, 0, 2750)
    log.reboot(2)  # a boot that never learned the time
    log.boot(0, tq=NONE)
    for up in range(900, 9000, IV):
        total += 10
        log.reading(up, total, tq=NONE)
    log.reboot(3)
    log.boot(D0 + DAY + 20000)
    log.reading(D0 + DAY + 20700, total + 500)
    rep = build(log.table(), {"0a1b2c3d": Village("0a1b2c3d", "Rampur", 500)})
    (u,) = rep.unplaced.to_pylist()
    assert (u["device"], u["boot"], u["frames"], u["readings"]) == (
        "0a1b2c3d",
        2,
        10,
        9,
    )
    assert (u["first_seq"], u["last_seq"]) == (0, 9)
    assert any("not placed" in n for n in rep.notes)
    by = {r["date"].isoformat(): r for r in rep.days.to_pylist()}
    assert not by["2026-03-02"]["complete"] and by["2026-03-02"]["band"] is None


def test_simulated_board_without_clock_is_reported_unplaced(tmp_path):
    sc = scenario.normalize({"days": 1, "fault": [{"kind": "clock_unset"}]}, "nc")
    simulate(sc, tmp_path)
    tb, _ = decode_sources([str(tmp_path / "sd")], str(tmp_path / "keys.json"))
    rep = build(tb, parse_registry((tmp_path / "villages.csv").read_text()))
    assert rep.days.num_rows == 0 and rep.result.placed == 0
    (u,) = rep.unplaced.to_pylist()
    assert u["frames"] == tb.num_rows and u["readings"] >= 95


# --- the command ----------------------------------------------------------------------


def test_cli_period_formats(four, tmp_path, capsys):
    _frames, _reg, _truth, root = four
    srcs = [str(root / n / "sd") for n in TARGETS]
    keys = tmp_path / "keys.json"
    merged: dict = {"devices": {}}
    for n in TARGETS:
        merged["devices"].update(
            json.loads((root / n / "keys.json").read_text())["devices"]
        )
    keys.write_text(json.dumps(merged))
    base = [
        "report",
        *srcs,
        "--villages",
        str(root / "villages.csv"),
        "--keys",
        str(keys),
    ]
    assert main([*base, "--period", "month", "--by", "block", "--format", "json"]) == 0
    js = json.loads(capsys.readouterr().out)["periods"]
    assert [(r["period"], r["block"]) for r in js] == [
        ("2026-03", "Kotra"), ("2026-03", "Pusaur"), ("2026-04", "Kotra"),
        ("2026-04", "Pusaur"),
    ]  # fmt: skip
    assert js[0]["start"] == "2026-03-01" and js[0]["villages"] == 2
    out = tmp_path / "p.parquet"
    assert main([*base, "--period", "year", "--format", "parquet", "-o", str(out)]) == 0
    tb = pq.read_table(out)
    assert tb.column_names == list(PERIOD_COLUMNS) and tb.num_rows == 4
    assert main([*base, "--period", "week"]) == 0
    text = capsys.readouterr().out
    assert (
        text.startswith("period ") and "Chandpur (Kotra, Raigarh, Chhattisgarh)" in text
    )
    assert main([*base, "--period", "week", "--format", "csv"]) == 0
    assert capsys.readouterr().out.startswith(",".join(PERIOD_COLUMNS[:5]))
    assert main([*base, "--format", "parquet"]) == 1
    assert "needs -o FILE" in capsys.readouterr().err
    days = tmp_path / "d.parquet"
    assert main([*base, "--format", "parquet", "-o", str(days)]) == 0
    assert pq.read_table(days).column_names == list(DAY_COLUMNS)


def test_objects_and_tables_agree():
    log = _two_villages_log()
    reg = {"0a1b2c3d": Village("0a1b2c3d", "Rampur", 500)}
    a = build(log.table(), reg).days
    b = build(bulk.to_objects(log.table()), reg).days
    assert a.equals(b)


def test_store_path_unused_names_are_fine(tmp_path):
    # a registry file with dated rows goes through the CLI's daily report too
    v = tmp_path / "v.csv"
    v.write_text("device,village,population,from,to\n0a1b2c3d,R,500,2026-03-02,\n")
    f = tmp_path / "log.bin"
    f.write_bytes(bytes(_two_villages_log().buf))
    assert main(["report", str(f), "--villages", str(v), "--format", "csv"]) == 0


_ = Path
