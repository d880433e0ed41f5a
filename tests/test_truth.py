"""The report against the simulator's ground truth: every complete day's litres equal
the truth within one pulse, and the days marked incomplete are the ones the faults
touched (and only those)."""

import json

import pytest

from jalkal.registry import load_villages
from jalkal.reports.daily import daily
from jalkal.reports.sources import decode_sources
from jksim import scenario
from jksim.village import simulate


def _report(out):
    table, _stats = decode_sources([str(out / "sd")], str(out / "keys.json"))
    return daily(table, load_villages(out / "villages.csv"))


def _outage_days(sc):
    """Local dates an outage (power cut, no clock) touched, with 15 min of slack."""
    touched = set()
    start, tz = sc["start_utc"], sc["tz_offset_min"] * 60
    import datetime as dt

    for f in sc["fault"]:
        if f["kind"] == "clock_unset":
            return None  # every day: frames carry no time
        if f["kind"] != "power_cut":
            continue
        a = start + f["at_s"] - 900  # the last reading before the cut
        b = start + f["at_s"] + int(f["hours"] * 3600)
        for t in range(a, b + 1, 900):
            touched.add(dt.datetime.utcfromtimestamp(t + tz).date().isoformat())
    return touched


def check(name, seed, days, tmp_path):
    sc = scenario.load(name, days=days, seed=seed)
    simulate(sc, tmp_path)
    truth = json.loads((tmp_path / "truth.json").read_text())["villages"][0]
    lpp = sc["scheme"]["litres_per_pulse"]
    got = {d["date"]: d for d in _report(tmp_path)}
    want = {d["date"]: d for d in truth["days"]}
    assert set(got) <= set(want)
    outage = _outage_days(sc)
    for date, t in want.items():
        r = got.get(date)
        complete = r is not None and r["complete"]
        if complete:
            assert abs(r["litres"] - t["litres"]) <= lpp, (name, seed, date)
            assert r["band"] in ("fully", "partially", "non")
        else:
            assert r is None or (r["lpcd"] is None and r["band"] is None)
        if outage is None:
            continue
        if complete:
            assert date not in outage or not _strictly_inside(sc, date), (name, date)
        else:
            # no fault near this day: nothing may be missing
            assert date in outage, (name, seed, date, r)
    return got, want


def _strictly_inside(sc, date):
    """True when a power cut lies wholly inside the local day (must be incomplete)."""
    import datetime as dt

    tz = sc["tz_offset_min"] * 60
    for f in sc["fault"]:
        if f["kind"] != "power_cut":
            continue
        a = sc["start_utc"] + f["at_s"]
        b = a + int(f["hours"] * 3600)
        da = dt.datetime.utcfromtimestamp(a + tz).date().isoformat()
        db = dt.datetime.utcfromtimestamp(b + tz).date().isoformat()
        if da == date == db and (a + tz) % 86400 > 900:
            return True
    return False


@pytest.mark.parametrize("name", scenario.BUILTINS)
@pytest.mark.parametrize("seed", [1, 2])
def test_report_matches_truth(name, seed, tmp_path):
    got, want = check(name, seed, 5, tmp_path)
    if name != "power-cuts":
        # no data fault: every day is complete (an SD swap is caught up from flash)
        assert all(d["complete"] for d in got.values()), name
        assert len(got) == len(want)


@pytest.mark.slow
@pytest.mark.parametrize("name", scenario.BUILTINS)
@pytest.mark.parametrize("seed", range(1, 21))
def test_report_matches_truth_20_seeds(name, seed, tmp_path):
    check(name, seed, 10, tmp_path)


def test_no_clock_means_no_day_is_called_complete(tmp_path):
    f = tmp_path / "s.toml"
    f.write_text('days = 2\n[[fault]]\nkind = "clock_unset"\n')
    sc = scenario.load(str(f))
    simulate(sc, tmp_path / "o")
    assert all(not d["complete"] for d in _report(tmp_path / "o"))
