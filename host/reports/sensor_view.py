"""The sensor columns in `jalkal report`'s daily and period views: added to the
daily rows (JSON, CSV) and printed as a second table under the daily and period
tables, only when the input has measure frames (a scheme without sensors keeps
its report as it was)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import pyarrow as pa

from .daily import COLUMNS
from .measures import DAY_NAMES
from .render import to_csv, to_json


def has_sensors(detail: Sequence[Mapping[str, Any]]) -> bool:
    """Any day with a measure frame."""
    return any(r.get("sensor_faults") is not None for r in detail)


def _num(x: float | None, spec: str) -> str:
    return "-" if x is None else format(x, spec)


def daily_text(text: str, fmt: str, detail: Sequence[Mapping[str, Any]]) -> str:
    """The daily view (text as render.py made it) with the sensor columns: in
    each JSON and CSV row, or as a table below the terminal's."""
    if not has_sensors(detail):
        return text
    keys = (*COLUMNS, *DAY_NAMES)
    if fmt == "json":
        return to_json(detail, keys)
    if fmt == "csv":
        return to_csv(detail, keys)
    return text + "\n" + sensor_table(detail)


def sensor_table(detail: Sequence[Mapping[str, Any]]) -> str:
    """The sensors' day columns for a terminal, one line per device and day."""
    head = (
        "village", "device", "date", "bore min m", "bore max m", "bore 06:00",
        "tank min m", "tank max m", "tank mean m", "pH", "TDS mg/L", "water",
        "motor h", "faults",
    )  # fmt: skip
    rows = [
        (
            r["village"], r["device"], str(r["date"]),
            _num(r["bore_min_m"], ".2f"), _num(r["bore_max_m"], ".2f"),
            _num(r["bore_0600_m"], ".2f"), _num(r["tank_min_m"], ".2f"),
            _num(r["tank_max_m"], ".2f"), _num(r["tank_mean_m"], ".2f"),
            _num(r["ph"], ".2f"), _num(r["tds_mgl"], ".0f"),
            r["water_quality"] or "-", _num(r["motor_hours"], ".2f"),
            r["sensor_faults"] or "-",
        )
        for r in sorted(detail, key=lambda r: (r["village"], str(r["date"])))
        if r.get("sensor_faults") is not None
    ]  # fmt: skip
    return "sensors (measure frames)\n" + _grid(head, rows, range(3, 11))


def _grid(head: Sequence[str], rows: Sequence[Sequence[str]], right: Any) -> str:
    width = [max(len(head[i]), *(len(x[i]) for x in rows)) for i in range(len(head))]
    right = set(right)

    def line(cells: Sequence[str]) -> str:
        return "  ".join(
            x.rjust(width[i]) if i in right else x.ljust(width[i])
            for i, x in enumerate(cells)
        ).rstrip()

    return "\n".join(["  " + line(head), *("  " + line(x) for x in rows)]) + "\n"


def period_text(tb: pa.Table) -> str:
    """The period table's sensor columns for a terminal ("" without any)."""
    rows = [r for r in tb.to_pylist() if r.get("days_quality") or r.get("bore_min_m")]
    if not rows:
        return ""
    head = (
        "period", "village", "bore min m", "bore max m", "06:00 change",
        "pH min", "pH max", "TDS max", "days judged", "permissible",
        "not acceptable", "sensor quality", "motor h", "fault days",
    )  # fmt: skip
    cells = [
        (
            r["period"], r["village"] or "-", _num(r["bore_min_m"], ".2f"),
            _num(r["bore_max_m"], ".2f"), _num(r["bore_0600_change_m"], "+.2f"),
            _num(r["ph_min"], ".2f"), _num(r["ph_max"], ".2f"),
            _num(r["tds_max_mgl"], ".0f"), str(r["days_quality"]),
            str(r["days_permissible"]), str(r["days_not_acceptable"]),
            r["sensor_quality"] or "-", _num(r["motor_hours"], ".2f"),
            str(r["days_sensor_fault"]),
        )
        for r in rows
    ]  # fmt: skip
    return "\nsensors (measure frames)\n" + _grid(head, cells, range(2, 13))
