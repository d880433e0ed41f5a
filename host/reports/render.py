"""The report's rows as people and programs read them: text tables, JSON, CSV,
Parquet, written whole to a file or to standard output."""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Mapping, Sequence
from datetime import date, datetime
from fractions import Fraction
from typing import IO, Any

import pyarrow as pa

from ..fileio import atomic_write
from ..registry import as_registry
from .daily import COLUMNS, RegistryLike, round_half_up


def to_json(days: Sequence[Mapping[str, Any]], columns: Sequence[str] = COLUMNS) -> str:
    return json.dumps({"days": [{k: r[k] for k in columns} for r in days]}) + "\n"


def to_csv(days: Sequence[Mapping[str, Any]], columns: Sequence[str] = COLUMNS) -> str:
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(columns)
    for r in days:
        w.writerow(
            [
                "" if r[k] is None else str(r[k]).lower() if k == "complete" else r[k]
                for k in columns
            ]
        )
    return buf.getvalue()


def groups(
    days: list[dict[str, Any]], registry: RegistryLike
) -> list[tuple[str, list[dict[str, Any]]]]:
    """Days per village (same name in another block/district is another village)."""
    reg = as_registry(registry)
    by: dict[tuple[str, ...], list[dict[str, Any]]] = {}
    labels: dict[tuple[str, ...], str] = {}
    for r in days:
        v = reg.at(r["device"], date.fromisoformat(r["date"]))
        key = (r["village"], *((v.state, v.district, v.block) if v else ()))
        by.setdefault(key, []).append(r)
        labels[key] = v.label() if v else r["village"]
    return [(labels[k], by[k]) for k in sorted(by)]


def summary(rows: list[dict[str, Any]]) -> str:
    done = [r for r in rows if r["complete"]]
    bands = {
        b: sum(r["band"] == b for r in done) for b in ("fully", "partially", "non")
    }
    total = sum(Fraction(str(r["lpcd"])) for r in done)
    mean = f"{round_half_up(Fraction(total, len(done)), 1)}" if done else "-"
    return (
        f"{len(done)} of {len(rows)} days complete; mean lpcd {mean} (complete days); "
        f"fully {bands['fully']}, partially {bands['partially']}, non {bands['non']}"
    )


def to_table(days: list[dict[str, Any]], reg: RegistryLike) -> str:
    head = (
        "device", "date", "litres", "population", "lpcd", "band", "pump hours",
        "coverage", "complete",
    )  # fmt: skip
    right = {2, 3, 4, 6, 7}
    if not days:
        return "no days to report\n"
    blocks = []
    for label, rows in groups(days, reg):
        cells = [
            (
                r["device"],
                r["date"],
                "-" if r["litres"] is None else f"{r['litres']:,.0f}",
                f"{r['population']:,}",
                "-" if r["lpcd"] is None else f"{r['lpcd']:.1f}",
                r["band"]
                or ("implausible" if r.get("implausible_litres") else "incomplete"),
                f"{r['pump_hours']:.2f}",
                f"{r['completeness']:.1%}",
                "yes" if r["complete"] else "no",
            )
            for r in sorted(rows, key=lambda r: (r["date"], r["device"]))
        ]
        blocks.append((label, rows, cells))
    width = [
        max(len(head[i]), *(len(x[i]) for _, _, cs in blocks for x in cs))
        for i in range(len(head))
    ]

    def line(cells: Sequence[str]) -> str:
        return "  ".join(
            x.rjust(width[i]) if i in right else x.ljust(width[i])
            for i, x in enumerate(cells)
        ).rstrip()

    out = []
    for label, rows, cells in blocks:
        out.append(label)
        out.append("  " + line(head))
        out.extend("  " + line(x) for x in cells)
        out.append(f"  {summary(rows)}")
        out.append("")
    return "\n".join(out)


def write_text(text: str, out: IO[str], output: str | None) -> None:
    if output is None:
        out.write(text)
        return
    atomic_write(output, lambda f: f.write(text.encode()))


def table_json(tb: pa.Table, name: str) -> str:
    """{"<name>": [rows]} with dates and times as ISO text."""

    def conv(x: Any) -> Any:
        if isinstance(x, datetime):
            return x.strftime("%Y-%m-%dT%H:%M:%SZ")
        if isinstance(x, date):
            return x.isoformat()
        return x

    rows = [{k: conv(v) for k, v in r.items()} for r in tb.to_pylist()]
    return json.dumps({name: rows}) + "\n"


def table_csv(tb: pa.Table) -> str:
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(tb.column_names)
    for r in json.loads(table_json(tb, "r"))["r"]:
        w.writerow(
            [
                "" if v is None else str(v).lower() if isinstance(v, bool) else v
                for v in r.values()
            ]
        )
    return buf.getvalue()


def emit(
    tb: pa.Table,
    name: str,
    fmt: str,
    out: IO[str],
    output: str | None,
    text: Any,
) -> None:
    if fmt == "parquet":
        import pyarrow.parquet as pq

        assert output is not None
        atomic_write(output, lambda f: pq.write_table(tb, f))
    elif fmt == "json":
        write_text(table_json(tb, name), out, output)
    elif fmt == "csv":
        write_text(table_csv(tb), out, output)
    else:
        write_text(text(), out, output)


# --- period tables -------------------------------------------------------------


def where_label(r: Mapping[str, Any], by: str = "village") -> str:
    """Village (block, district, state), or the block / district / State alone."""
    parts = {
        "village": (r.get("block"), r.get("district"), r.get("state")),
        "block": (r.get("district"), r.get("state")),
        "district": (r.get("state"),),
        "state": (),
    }[by]
    name = r.get(by) or "(none)"
    where = ", ".join(p for p in parts if p)
    return f"{name} ({where})" if where else name


def fmt_cell(x: Any, spec: str = "") -> str:
    if x is None:
        return "-"
    return format(x, spec)


def text_table(
    head: Sequence[str], cells: Sequence[Sequence[str]], right: set[int]
) -> str:
    """Columns padded to their widest cell, numbers (`right`) right-aligned. A head
    may take two lines ("supply\nhours"): its first word on the first line, so the
    table still starts with the first column's name."""
    parts = [h.split("\n") for h in head]
    depth = max(len(p) for p in parts)
    heads = [[p[i] if i < len(p) else "" for p in parts] for i in range(depth)]
    width = [
        max(*(len(h[i]) for h in heads), *(len(c[i]) for c in cells))
        for i in range(len(head))
    ]

    def line(cs: Sequence[str]) -> str:
        return "  ".join(
            x.rjust(width[i]) if i in right else x.ljust(width[i])
            for i, x in enumerate(cs)
        ).rstrip()

    return "\n".join([*(line(h) for h in heads), *(line(c) for c in cells)]) + "\n"


def to_text(tb: pa.Table, by: str = "village") -> str:
    """The period table for a terminal: one line per group and period; for a
    village its class (quantity, regularity, quality -> class), then the note."""
    rows = tb.to_pylist()
    if not rows:
        return "no periods to report\n"
    head = [
        "period", by, "days\ncomplete", "litres", "mean\nlpcd", "days\nfully",
        "days\npartially", "days\nnon", "days\nincomplete", "days\nsupplied",
        "supply\nhours", "start\nspread", "pump\nhours", "lockouts",
        "power off\nhours",
    ]  # fmt: skip
    village = by == "village"
    if village:  # a group's note says how many villages are in each class
        head += ["quantity", "regularity", "quality", "class"]
    cells = []
    for r in rows:
        cls = (
            [r[k] or "-" for k in ("quantity", "regularity", "quality")]
            + [r["functionality"] or "-"]
            if village
            else []
        )
        start = r["start_sd_min"]
        cells.append(
            (
                r["period"],
                where_label(r, by),
                f"{r['days_complete']:,}/{r['days']:,}",
                fmt_cell(r["litres"], ",.0f"),
                fmt_cell(r["mean_lpcd"], ".1f"),
                f"{r['days_fully']:,}",
                f"{r['days_partially']:,}",
                f"{r['days_non']:,}",
                f"{r['days_incomplete']:,}",
                f"{r['days_with_supply']:,}",
                fmt_cell(r["supply_hours"], ",.1f"),
                "-" if start is None else f"{start:,.0f} min",
                fmt_cell(r["pump_hours"], ",.1f"),
                f"{r['lockouts']:,}",
                fmt_cell(r["power_off_hours"], ",.1f"),
                *cls,
                r["note"] or "",
            )
        )
    return text_table([*head, "note"], cells, set(range(2, 15)))
