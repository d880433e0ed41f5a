"""A dashboard View that took long to build is published twice (host/dashboard/
source.py Live): at once with the last View's alerts, so a committed reading
reaches the pages without waiting for the alerts over every village-day, then
whole. On benchmarks/dashboard.py's synthetic villages, in `serve --dashboard`'s
arrangement (the process holds the store, the dashboard reads it)."""

from __future__ import annotations

import math
import sys
from pathlib import Path

from jalkal.dashboard.model import View, village_id
from jalkal.dashboard.source import AggregateReader, Live
from jalkal.ingest.store import Store
from jalkal.registry import parse_registry

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))


class Recording(Live):
    def __init__(self, *a, **k):  # type: ignore[no-untyped-def]
        self.seen: list[View] = []
        super().__init__(*a, **k)

    def publish(self, view: View) -> None:
        self.seen.append(view)
        super().publish(view)


def world(tmp_path: Path):  # type: ignore[no-untyped-def]
    import dashboard as bench  # benchmarks/dashboard.py

    store = tmp_path / "d.duckdb"
    reg_csv, _ = bench.fill(store, 12, 3)
    return bench, store, parse_registry(reg_csv.read_text())


def test_a_slow_rebuild_shows_the_reading_first_with_the_last_alerts(tmp_path):
    bench, store, reg = world(tmp_path)
    vid = village_id(next(iter(reg)).key())
    with Store(store) as st:
        live = Recording(AggregateReader(str(store), st), reg, "latest",
                         poll_s=3600, early_s=0.0)  # fmt: skip
        assert live.refresh() and len(live.seen) == 1  # the first: whole, once
        first = live.view
        assert not live.refresh()  # nothing new: nothing published
        bench.one_more_reading(st, [0x20000000])
        assert live.refresh()
        early, whole = live.seen[1:]
        assert live.view is whole
        assert early.alerts is first.alerts  # not computed again
        assert whole.alerts is not first.alerts
        assert early.count == whole.count == first.count + 1
        got = [v.by_id[vid]["litres_today"] for v in (first, early, whole)]
        assert got[1] == got[2] != got[0]  # the new reading, in both
        # the rest of the early View is the whole one's
        for v in whole.villages:
            e = early.by_id[v["id"]]
            assert {k: e[k] for k in e if k != "open_alerts"} == {
                k: v[k] for k in v if k != "open_alerts"
            }


def test_a_quick_rebuild_is_published_once(tmp_path):
    bench, store, reg = world(tmp_path)
    with Store(store) as st:
        live = Recording(AggregateReader(str(store), st), reg, "latest",
                         poll_s=3600, early_s=math.inf)  # fmt: skip
        live.refresh()
        bench.one_more_reading(st, [0x20000003])
        assert live.refresh()
        assert len(live.seen) == 2 and live.seen[1].alerts is not live.seen[0].alerts
