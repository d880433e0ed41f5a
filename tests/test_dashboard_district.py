"""Every number of the dashboard against `jalkal report` on the 1,000-device
synthetic district (benchmarks/report.py's generator, written into a store as
benchmarks/dashboard.py does: 4 districts of 5 blocks, one meter a village, a
reading every 15 minutes, one in 3,000 lost), over a few days: each village's
days, yesterday's lpcd and band, this month's mean, the block lists, the alerts,
the district periods and the State summary's counts."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import pytest
from test_dashboard import cells, lp, village_page_shows
from test_dashboard_support import PASSWORD, Dashboard, logged_in

from jalkal.dashboard.users import add_user

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))

VILLAGES = 1000
DAYS = 4


@pytest.fixture(scope="module")
def district(tmp_path_factory):
    import dashboard as bench  # benchmarks/dashboard.py

    d = tmp_path_factory.mktemp("district")
    store = d / "district.duckdb"
    reg_csv, _ = bench.fill(store, VILLAGES, DAYS)
    users = d / "users.json"
    add_user(users, "viewer", "viewer", PASSWORD)
    add_user(users, "admin", "admin", PASSWORD)
    w = SimpleNamespace(store=store, villages=reg_csv, users=users)
    w.daily = report(w)["days"]  # the first report keeps the aggregates
    dash = Dashboard(store, reg_csv, users, "--as-of", "latest").start()
    yield w, dash
    dash.stop()


def report(w: SimpleNamespace, *args: str) -> dict:
    out = subprocess.run(
        [sys.executable, "-m", "jalkal", "report", "--store", str(w.store),
         "--villages", str(w.villages), "--format", "json", *args],
        capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    assert out.returncode == 0, out.stderr
    return json.loads(out.stdout)


def test_every_number_is_the_reports_on_1000_villages(district):
    w, dash = district
    c = logged_in(dash.url, "admin")
    pday = report(w, "--period", "day")["periods"]
    pmonth = report(w, "--period", "month")["periods"]
    pdist = report(w, "--period", "month", "--by", "district")["periods"]
    alerts = report(w, "--alerts")["alerts"]
    villages = c.get_json("/v1/villages")["villages"]
    assert len(villages) == VILLAGES
    daily: dict[str, dict] = {}
    for r in w.daily:
        daily.setdefault(r["village"], {})[r["date"]] = r
    by_day = {(r["village"], r["period"]): r for r in pday}
    by_month = {(r["village"], r["period"]): r for r in pmonth}
    compared = 0
    for i, v in enumerate(villages):
        rows = daily[v["village"]]
        days = c.get_json(f"/v1/villages/{v['id']}/days")["days"]
        assert days and len(days) == len([d for d in rows if d < v["today"]])
        for d in days:
            r, p = rows[d["date"]], by_day[(v["village"], d["date"])]
            assert (d["lpcd"], d["band"], d["complete"]) == (
                r["lpcd"], r["band"], r["complete"],
            ), d  # fmt: skip
            assert d["lpcd"] == p["mean_lpcd"] and d["litres"] == p["litres"]
            compared += 1
        y = by_day[(v["village"], v["yesterday"]["date"])]
        assert (v["yesterday"]["lpcd"], v["yesterday"]["band"]) == (
            y["mean_lpcd"], y["quantity"],
        )  # fmt: skip
        m = by_month[(v["village"], v["month"]["period"])]
        assert v["month"]["mean_lpcd"] == m["mean_lpcd"]
        assert v["month"]["days_complete"] == m["days_complete"]
        if i % 50 == 0:  # the village page shows the same (20 of them)
            village_page_shows(c, v["id"], days)
    assert compared >= VILLAGES * (DAYS - 1)
    # the 20 block lists: yesterday's lpcd and band, this month's mean
    blocks = {(v["district"], v["block"]) for v in villages}
    assert len(blocks) == 20
    listed = 0
    for district_name, block in sorted(blocks):
        st, _h, html = c.get(
            f"/villages?state=State&district={district_name}&block={block}"
        )
        assert st == 200
        for row in cells(html, "villages"):
            v = next(x for x in villages if x["village"] == row[0])
            y = by_day[(v["village"], v["yesterday"]["date"])]
            assert row[6] == lp(y["mean_lpcd"]), row
            assert row[7] == (y["quantity"] or "incomplete")
            assert row[8] == lp(v["month"]["mean_lpcd"])
            listed += 1
    assert listed == VILLAGES
    # the alerts (lost readings make some), and open ones counted per village
    assert c.get_json("/v1/alerts")["alerts"] == alerts
    for v in villages:
        assert v["open_alerts"] == sum(
            1 for a in alerts if a["active"] and a["device"] in v["devices"]
        )
    # the district periods are the report's rows, and the State's summary adds up
    assert c.get_json("/v1/periods?period=month&by=district")["periods"] == pdist
    s = c.get_json("/v1/summary?state=State")
    assert sorted(r["name"] for r in s["rows"]) == [f"District{i}" for i in range(4)]
    for r in s["rows"]:
        mine = [v for v in villages if v["district"] == r["name"]]
        assert r["villages"] == len(mine) == VILLAGES // 4
        for b, n in r["band"].items():
            assert n == sum(1 for v in mine if v["month"]["band"] == b)
        for k, n in r["status"].items():
            assert n == sum(1 for v in mine if v["status"] == k)
    # and the period report's district months equal the villages' months summed
    for r in pdist:
        mine = [x for x in pmonth if x["district"] == r["district"]
                and x["period"] == r["period"]]  # fmt: skip
        assert r["villages"] == len(mine)
        assert r["litres"] == round(sum(x["litres"] for x in mine), 1)
