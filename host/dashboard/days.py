"""A village's daily lpcd of the last DAYS_SHOWN days (the village page's chart
and table): the report's `--period day` rows of that village, made when a page
first asks for them."""

from __future__ import annotations

import threading
from datetime import date, timedelta
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc

from ..registry import Registry
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
        key = pc.binary_join_element_wise(
            *(pc.fill_null(days[c], "") for c in ("state", "district", "block")),
            days["village"], "\x1f",
        )  # fmt: skip
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
        key, today = self.shown[vid]
        a, b = self.where.get("\x1f".join(key), (0, 0))
        rows = periods(self.days.slice(a, b - a), "day", "village", registry=self.reg)
        first = today - timedelta(days=DAYS_SHOWN)
        out = [
            {
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
            for r in sorted(rows.to_pylist(), key=lambda r: r["start"])
            if first <= r["start"] < today
        ]
        with self.lock:
            self[vid] = out
        return out
