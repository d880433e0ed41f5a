"""The sensor columns in `jalkal report`'s daily and period views: added to the
daily rows (JSON, CSV) and printed as a second table under the daily and period
tables, only when the input has measure frames (a scheme without sensors keeps
its report as it was). The cells (text and BIS 10500 mark) are made here once,
for the terminal and for the HTML page (html.py) alike."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import pyarrow as pa

from .daily import COLUMNS
from .measures import (
    DAY_NAMES,
    PH_MAX,
    PH_MIN,
    QUALITY,
    TDS_ACCEPTABLE,
    TDS_PERMISSIBLE,
)
from .render import to_csv, to_json

# a cell: its text and its mark ("" none; "over": outside BIS 10500's acceptable
# limit but within the permissible; "out": not acceptable; "fault": a sensor fault)
Cell = tuple[str, str]
# (head, key, decimal places; None: text) of the day's sensor columns; the
# terminal shows TEXT_DAY of them (its width), the HTML page all
DAY_VIEW: tuple[tuple[str, str, int | None], ...] = (
    ("bore min m", "bore_min_m", 2), ("bore max m", "bore_max_m", 2),
    ("bore 06:00", "bore_0600_m", 2), ("tank min m", "tank_min_m", 3),
    ("tank max m", "tank_max_m", 3), ("tank mean m", "tank_mean_m", 3),
    ("tank mean L", "tank_mean_l", 0), ("pH", "ph", 2), ("TDS mg/L", "tds_mgl", 0),
    ("EC uS/cm", "ec_us", 0), ("water C", "water_c", 2),
    ("water", "water_quality", None), ("motor h", "motor_hours", 2),
    ("pump h", "pump_hours", 2), ("faults", "sensor_faults", None),
)  # fmt: skip
TEXT_DAY = ("bore_min_m", "bore_max_m", "bore_0600_m", "tank_min_m", "tank_max_m",
            "tank_mean_m", "ph", "tds_mgl", "water_quality", "motor_hours",
            "sensor_faults")  # fmt: skip
# the same for a village-period (measures.PERIOD_FIELDS and Table 11's quality
# leg); "+2": signed; the terminal leaves out `quality` (the period table has it)
PERIOD_VIEW: tuple[tuple[str, str, int | str | None], ...] = (
    ("bore min m", "bore_min_m", 2), ("bore max m", "bore_max_m", 2),
    ("06:00 change", "bore_0600_change_m", "+2"), ("tank min m", "tank_min_m", 3),
    ("pH min", "ph_min", 2), ("pH max", "ph_max", 2), ("TDS max", "tds_max_mgl", 0),
    ("days judged", "days_quality", 0), ("permissible", "days_permissible", 0),
    ("not acceptable", "days_not_acceptable", 0),
    ("sensor quality", "sensor_quality", None),
    ("Table 11 quality", "quality", None),
    ("motor h", "motor_hours", 2), ("fault days", "days_sensor_fault", 0),
)  # fmt: skip


def has_sensors(detail: Sequence[Mapping[str, Any]]) -> bool:
    """Any day with a measure frame."""
    return any(r.get("sensor_faults") is not None for r in detail)


def fixed(x: float | None, places: int | str) -> str:
    """A number with `places` decimals ("+2": signed), one more where the value
    needs it (a median of two readings: 7.125), so that the text is the value;
    "-" for None."""
    if x is None:
        return "-"
    sign = "+" if isinstance(places, str) and places.startswith("+") else ""
    n = int(places)
    text = format(x, f"{sign}.{n}f")
    return text if float(text) == x else format(x, f"{sign}.{n + 1}f")


def mark(key: str, r: Mapping[str, Any]) -> str:
    """The BIS 10500 (or fault) mark of a day's or a period's cell."""
    v = r.get(key)
    if v is None:
        return ""
    if key in ("ph", "ph_min", "ph_max"):
        return "" if PH_MIN <= v <= PH_MAX else "out"
    if key in ("tds_mgl", "tds_max_mgl"):
        return "out" if v > TDS_PERMISSIBLE else "over" if v > TDS_ACCEPTABLE else ""
    if key == "water_quality":
        return {QUALITY[1]: "over", QUALITY[2]: "out"}.get(v, "")
    if key in ("sensor_quality", "quality"):
        return "out" if v == "non potable" else ""
    if key == "days_not_acceptable":
        return "out" if v else ""
    if key == "days_permissible":
        return "over" if v else ""
    if key in ("sensor_faults", "days_sensor_fault"):
        return "fault" if v else ""
    return ""


def cells(
    r: Mapping[str, Any], view: Sequence[tuple[str, str, int | str | None]]
) -> list[Cell]:
    """A row's cells of a view (DAY_VIEW, PERIOD_VIEW)."""
    out = []
    for _head, key, places in view:
        v = r.get(key)
        text = fixed(v, places) if places is not None else (v or "-")
        out.append((text, mark(key, r)))
    return out


def sensor_days(detail: Sequence[Mapping[str, Any]]) -> list[Mapping[str, Any]]:
    """The device-days with measure frames, by village, date and device."""
    return sorted(
        (r for r in detail if r.get("sensor_faults") is not None),
        key=lambda r: (r["village"], str(r["date"]), r["device"]),
    )


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
    view = [c for c in DAY_VIEW if c[1] in TEXT_DAY]
    head = ("village", "device", "date", *(h for h, _k, _p in view))
    rows = [
        (r["village"], r["device"], str(r["date"]), *(t for t, _m in cells(r, view)))
        for r in sensor_days(detail)
    ]
    return "sensors (measure frames)\n" + _grid(head, rows, _numbers(view, 3))


def _numbers(view: Sequence[tuple[str, str, int | str | None]], at: int) -> set[int]:
    """The grid's right-aligned columns: the view's numbers, after `at` others."""
    return {at + i for i, (_h, _k, places) in enumerate(view) if places is not None}


def _grid(head: Sequence[str], rows: Sequence[Sequence[str]], right: Any) -> str:
    width = [max(len(head[i]), *(len(x[i]) for x in rows)) for i in range(len(head))]
    right = set(right)

    def line(cells: Sequence[str]) -> str:
        return "  ".join(
            x.rjust(width[i]) if i in right else x.ljust(width[i])
            for i, x in enumerate(cells)
        ).rstrip()

    return "\n".join(["  " + line(head), *("  " + line(x) for x in rows)]) + "\n"


def sensor_periods(tb: pa.Table) -> list[dict[str, Any]]:
    """The period rows with any sensor value (a village without measure frames
    has none)."""
    counts = ("days_quality", "days_permissible", "days_not_acceptable",
              "days_sensor_fault")  # fmt: skip
    values = [k for _h, k, _p in PERIOD_VIEW if k not in (*counts, "quality")]
    return [
        r for r in tb.to_pylist()
        if any(r.get(k) is not None for k in values) or any(r.get(k) for k in counts)
    ]  # fmt: skip


def period_text(tb: pa.Table) -> str:
    """The period table's sensor columns for a terminal ("" without any)."""
    rows = sensor_periods(tb)
    if not rows:
        return ""
    view = [c for c in PERIOD_VIEW if c[1] != "quality"]
    head = ("period", "village", *(h for h, _k, _p in view))
    body = [
        (r["period"], r["village"] or "-", *(t for t, _m in cells(r, view)))
        for r in rows
    ]
    return "\nsensors (measure frames)\n" + _grid(head, body, _numbers(view, 2))
