"""Water-quality tests (village, date, potable) for the JJM functionality class: a
period is functional only with potable water where it was measured."""

from __future__ import annotations

import csv
import io
from collections.abc import Mapping
from datetime import date
from pathlib import Path

from ..errors import JalkalError
from ..fileio import read_text


def load_quality(path: str | Path) -> dict[tuple[str, ...], list[tuple[date, bool]]]:
    """A water-quality CSV: village,date,potable[,block,district,state] (potable:
    yes/no). Returns (state, district, block, village) -> [(date, potable)]."""
    p = Path(path)
    text = read_text(p, "quality file", "CSV")
    return parse_quality(text, f"quality file {p}")


def parse_quality(
    text: str, name: str = "quality file"
) -> dict[tuple[str, ...], list[tuple[date, bool]]]:
    out: dict[tuple[str, ...], list[tuple[date, bool]]] = {}
    rd = csv.DictReader(io.StringIO(text.removeprefix("\ufeff")))
    fields = [f.strip().lower() for f in rd.fieldnames or []]
    missing = {"village", "date", "potable"} - set(fields)
    if missing:
        raise JalkalError(
            f"{name}: needs columns village,date,potable (and optionally "
            f"block,district,state); missing {', '.join(sorted(missing))}"
        )
    for row in rd:
        r = {k.strip().lower(): (v or "").strip() for k, v in row.items() if k}
        where = f"{name} line {rd.line_num}"
        try:
            d = date.fromisoformat(r["date"])
        except ValueError:
            raise JalkalError(
                f"{where}: date must be like 2026-03-01, got {r['date']!r}"
            )
        pot = r["potable"].lower()
        if pot not in ("yes", "no", "true", "false", "1", "0"):
            raise JalkalError(f"{where}: potable must be yes or no, got {pot!r}")
        key = (r.get("state", ""), r.get("district", ""), r.get("block", ""))
        out.setdefault((*key, r["village"]), []).append(
            (d, pot in ("yes", "true", "1"))
        )
    return out


def quality_of(
    quality: Mapping[tuple[str, ...], list[tuple[date, bool]]] | None,
    key: tuple[str, str, str, str],
    a: date,
    b: date,
) -> str:
    if not quality:
        return "not measured"
    tests = quality.get(key)
    if tests is None:  # a quality file without block/district/state
        tests = quality.get(("", "", "", key[3]))
    got = [ok for d, ok in tests or () if a <= d < b]
    if not got:
        return "not measured"
    return "potable" if all(got) else "non potable"
