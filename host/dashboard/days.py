"""A village's daily lpcd of the last DAYS_SHOWN days (the village page's chart
and table): the report's `--period day` rows of that village, made for its whole
block when a page first asks for one of them."""

from __future__ import annotations

import threading
from datetime import date, timedelta
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc

from ..registry import Registry
from ..reports.period_sql import village_key
from ..reports.periods import periods

DAYS_SHOWN = 90


def days_from(days: pa.Table, first: date) -> pa.Table:
    """The day rows from `first` on."""
    return days.filter(pc.greater_equal(days["date"], pa.scalar(first)))


class ChartDays(dict[str, list[dict[str, Any]]]):
    """Village id -> its `--period day` rows of the DAYS_SHOWN days before today,
    made when first asked for (a State's villages x 90 days would take the View
    minutes to make, and a page shows one village)."""

    def __init__(self, days: pa.Table, reg: Registry):
        super().__init__()
        self.reg = reg
        self.shown: dict[str, tuple[tuple[str, str, str, str], date]] = {}
        self.lock = threading.Lock()
        # each village's rows: one sort, then a slice per village
        key = village_key(days)
        order = pc.sort_indices(key)
        self.days = days.take(order)
        keys = key.take(order).to_pylist()
        self.where: dict[str, tuple[int, int]] = {}
        for i, k in enumerate(keys):
            a, _ = self.where.get(k, (i, i))
            self.where[k] = (a, i + 1)

    def get(  # type: ignore[override]
        self, vid: str, default: list[dict[str, Any]] | None = None
    ) -> list[dict[str, Any]]:
        with self.lock:
            if vid in self:
                return self[vid]
        if vid not in self.shown:
            return default if default is not None else []
        # the rows of every village of its block at once (the keys are sorted,
        # so a block's villages are one slice): one periods() call a block
        key = self.shown[vid][0]
        block = "\x1f".join(key[:3]) + "\x1f"
        spans = [ab for k, ab in self.where.items() if k.startswith(block)]
        mine = {"\x1f".join(k): v for v, (k, _t) in self.shown.items()
                if k[:3] == key[:3]}  # fmt: skip
        got: dict[str, list[dict[str, Any]]] = {v: [] for v in mine.values()}
        if spans:
            a, b = min(x for x, _ in spans), max(y for _, y in spans)
            tb = periods(self.days.slice(a, b - a), "day", "village", registry=self.reg)
            for r in sorted(tb.to_pylist(), key=lambda r: r["start"]):
                v = mine.get("\x1f".join(r[c] or "" for c in KEY))
                today = self.shown[v][1] if v else None
                if today and today - timedelta(days=DAYS_SHOWN) <= r["start"] < today:
                    got[v].append(_chart_row(r))  # type: ignore[index]
        with self.lock:
            for v, out in got.items():
                self.setdefault(v, out)
            return self[vid]


KEY = ("state", "district", "block", "village")


def _chart_row(r: dict[str, Any]) -> dict[str, Any]:
    return {
        "date": r["start"].isoformat(),
        "lpcd": r["mean_lpcd"],
        "band": r["quantity"],
        "litres": r["litres"],
        "complete": bool(r["days_complete"]),
        "completeness": r["completeness"],
        "pump_hours": r["pump_hours"],
        "lockouts": r["lockouts"],
        "faults_raised": r["faults_raised"],
    }
