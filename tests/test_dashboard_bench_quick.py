"""benchmarks/dashboard.py on tiny sizes (the figures are in docs/dashboard.md;
run the script itself for them): every measurement made and the goals judged."""

from __future__ import annotations

import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))


def test_dashboard_bench_quick(capsys):
    import dashboard

    assert dashboard.main(["--quick", "--json"]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert (doc["villages"], doc["days"], doc["state_villages"]) == (12, 20, 2000)
    ag = doc["aggregates"]
    # every device aggregated (a row for each local day and the evening before),
    # then only the ten that got a new reading
    assert ag["devices"] == 12 and ag["day_rows"] == 12 * 21
    assert ag["update_devices"] == 10
    r = doc["report"]
    assert r["plain_sum_s"] > 0 and r["report_s"] > 0 and r["ratio"] > 0
    assert r["report_from_frames_s"] > 0
    for part, names in (
        ("district", ("district_page", "block_page", "village_page", "village_api")),
        ("state", ("state_summary", "state_api", "district_summary")),
    ):
        for n in names:
            assert 0 < doc[part][n]["p50_ms"] <= doc[part][n]["p95_ms"], (part, n)
            assert doc[part][n]["bytes"] > 200
    # a committed reading reached the village's API page, after a View rebuild
    assert 0 < doc["live"]["frame_to_page_s"] < 60 and doc["live"]["view_build_s"] > 0
    assert set(doc["goals"]) == {
        "district_page_ok", "village_page_ok", "state_summary_ok", "report_ratio_ok",
        "live_ok",
    }  # fmt: skip
