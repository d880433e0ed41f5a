"""The village registry: which village (and block, district, State, time zone and
population) each device's water goes to, and since when.

CSV, one row per device and stretch of time:

    device,village,population[,block,district,state,tz][,from,to]

``from`` and ``to`` are optional local dates (YYYY-MM-DD): the row covers the report
days D with from <= D < to (an empty cell is open). A device moved to another village
(or a village whose population was counted again) gets a second row, and every day
of its history is reported with the row that covered it. Rows of one device may not
overlap and must share a time zone (the days are cut in it). Any problem is a
JalkalError naming the line.
"""

from __future__ import annotations

import csv
import io
import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, replace
from datetime import date
from functools import lru_cache
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from .errors import JalkalError
from .fileio import read_text

DEFAULT_TZ = "Asia/Kolkata"
REQUIRED = ("device", "village", "population")
OPTIONAL = ("block", "district", "state", "tz")
DATED = ("from", "to")
_DEVICE = re.compile(r"^[0-9a-fA-F]{8}$")


@dataclass(frozen=True)
class Village:
    """One registry row. start/end: the report days it covers, [start, end); None is
    open."""

    device: str
    village: str
    population: int
    block: str = ""
    district: str = ""
    state: str = ""
    tz: str = DEFAULT_TZ
    start: date | None = None
    end: date | None = None

    def label(self) -> str:
        where = ", ".join(p for p in (self.block, self.district, self.state) if p)
        return f"{self.village} ({where})" if where else self.village

    def key(self) -> tuple[str, str, str, str]:
        """What makes a village one village: the same name in another block is
        another village."""
        return (self.state, self.district, self.block, self.village)

    def covers(self, d: date) -> bool:
        return (self.start is None or self.start <= d) and (
            self.end is None or d < self.end
        )


class Registry:
    """Registry rows by device, each device's rows sorted by start."""

    def __init__(self, rows: list[Village] | None = None):
        self.by_device: dict[str, list[Village]] = {}
        for v in rows or ():
            self.by_device.setdefault(v.device, []).append(v)
        for rs in self.by_device.values():
            rs.sort(key=lambda v: v.start or date.min)

    def __contains__(self, device: object) -> bool:
        return device in self.by_device

    def __iter__(self) -> Iterator[Village]:
        for dev in sorted(self.by_device):
            yield from self.by_device[dev]

    def __len__(self) -> int:
        return sum(len(r) for r in self.by_device.values())

    def rows(self, device: str) -> list[Village]:
        return self.by_device.get(device, [])

    def at(self, device: str, d: date) -> Village | None:
        """The row covering report day d of the device, if any."""
        for v in self.by_device.get(device, ()):
            if v.covers(d):
                return v
        return None

    def current(self) -> dict[str, Village]:
        """Device -> its latest row (the one with the latest start)."""
        return {dev: rs[-1] for dev, rs in self.by_device.items()}

    def tz(self, device: str) -> str:
        rs = self.by_device.get(device)
        return rs[0].tz if rs else DEFAULT_TZ


@lru_cache(maxsize=64)
def zone(name: str) -> ZoneInfo:
    return ZoneInfo(name)


def check_tz(name: str) -> str | None:
    """None if the zone exists, else why not."""
    try:
        zone(name)
    except (ZoneInfoNotFoundError, ValueError):
        return f"unknown time zone {name!r} (use an IANA name such as Asia/Kolkata)"
    return None


def parse_registry(text: str, name: str = "villages file") -> Registry:
    """Every row of the CSV text of a registry, checked."""
    rows: list[tuple[int, Village]] = []
    by_device: dict[str, list[tuple[int, Village]]] = {}  # a State: 50,000 rows
    header: list[str] | None = None
    reader = csv.reader(io.StringIO(text.removeprefix("\ufeff")))
    no = 0
    try:
        for row in reader:
            no = reader.line_num
            if not any(cell.strip() for cell in row):
                continue
            if header is None:
                header = [h.strip().lower() for h in row]
                _check_header(header, name, no)
                continue
            if len(row) != len(header):
                raise JalkalError(
                    f"{name} line {no}: {len(row)} fields, the header has {len(header)}"
                )
            cells = (cell.strip() for cell in row)
            v = village_of(dict(zip(header, cells, strict=True)), f"{name} line {no}")
            _check_against(v, no, by_device.setdefault(v.device, []), name)
            by_device[v.device].append((no, v))
            rows.append((no, v))
    except csv.Error as e:
        raise JalkalError(f"{name} line {reader.line_num or no}: not CSV ({e})")
    if header is None:
        raise JalkalError(
            f"{name}: empty; needs a header line device,village,population"
        )
    return Registry([v for _, v in rows])


def _span(v: Village) -> str:
    a = v.start.isoformat() if v.start else "the start"
    b = v.end.isoformat() if v.end else "open end"
    return f"[{a}, {b})"


def _check_against(
    v: Village, no: int, earlier: list[tuple[int, Village]], name: str
) -> None:
    """v against the earlier rows of its device."""
    for other_no, o in earlier:
        lo = max(v.start or date.min, o.start or date.min)
        hi = min(v.end or date.max, o.end or date.max)
        if lo < hi:
            raise JalkalError(
                f"{name} line {no}: device {v.device} is already on line {other_no} "
                f"for dates that overlap ({_span(o)} and {_span(v)}); give the rows "
                "of one device from/to dates that do not overlap"
            )
        if o.tz != v.tz:
            raise JalkalError(
                f"{name} line {no}: device {v.device} is on line {other_no} with time "
                f"zone {o.tz}, here {v.tz}; the rows of one device must share a zone "
                "(a board taken to another zone needs a new device id)"
            )


def _check_header(header: list[str], name: str, no: int) -> None:
    unknown = [h for h in header if h not in REQUIRED + OPTIONAL + DATED]
    if unknown:
        raise JalkalError(
            f"{name} line {no}: unknown column(s) {', '.join(map(repr, unknown))}; "
            f"columns are {','.join(REQUIRED)} and optionally "
            f"{','.join(OPTIONAL + DATED)}"
        )
    dup = sorted({h for h in header if header.count(h) > 1})
    if dup:
        raise JalkalError(f"{name} line {no}: column(s) repeated: {', '.join(dup)}")
    missing = [h for h in REQUIRED if h not in header]
    if missing:
        raise JalkalError(
            f"{name} line {no}: missing column(s) {', '.join(missing)} "
            f"(header needs {','.join(REQUIRED)})"
        )


def _date(text: str, col: str, where: str) -> date | None:
    if not text:
        return None
    try:
        if not re.fullmatch(r"\d{4}-\d{2}-\d{2}", text):
            raise ValueError
        return date.fromisoformat(text)
    except ValueError:
        raise JalkalError(
            f"{where}: {col} must be a date like 2026-03-01 (or empty), got {text!r}"
        )


def village_of(rec: dict[str, str], where: str) -> Village:
    dev = rec["device"]
    if not _DEVICE.match(dev):
        raise JalkalError(f"{where}: device must be 8 hex digits, got {dev!r}")
    if not rec["village"]:
        raise JalkalError(f"{where}: village name is empty")
    pop = rec["population"]
    if not pop.isdigit() or int(pop) <= 0:
        raise JalkalError(
            f"{where}: population must be a whole number above 0, got {pop!r}"
        )
    tz = rec.get("tz") or DEFAULT_TZ
    bad = check_tz(tz)
    if bad:
        raise JalkalError(f"{where}: {bad}")
    start = _date(rec.get("from", ""), "from", where)
    end = _date(rec.get("to", ""), "to", where)
    if start is not None and end is not None and end <= start:
        raise JalkalError(
            f"{where}: to ({end}) must be after from ({start}); the row covers "
            "from <= day < to"
        )
    return Village(
        device=dev.lower(),
        village=rec["village"],
        population=int(pop),
        block=rec.get("block", ""),
        district=rec.get("district", ""),
        state=rec.get("state", ""),
        tz=tz,
        start=start,
        end=end,
    )


def load_registry(path: str | Path) -> Registry:
    """Read and check a villages.csv registry."""
    p = Path(path)
    text = read_text(p, "villages file", "CSV")
    return parse_registry(text, f"villages file {p}")


def parse_villages(text: str, name: str = "villages file") -> dict[str, Village]:
    """Device id -> its latest Village from the CSV text of a registry (every row
    checked; see parse_registry for all rows with their dates)."""
    return parse_registry(text, name).current()


def load_villages(path: str | Path) -> dict[str, Village]:
    """Read and check a villages.csv registry: device -> its latest row."""
    return load_registry(path).current()


def as_registry(registry: Registry | Mapping[str, Any]) -> Registry:
    """A Registry from a Registry, or device -> Village (or a plain mapping with
    village, population and optionally block, district, state, tz)."""
    if isinstance(registry, Registry):
        return registry
    rows: list[Village] = []
    for dev, v in registry.items():
        key = dev.lower()
        if isinstance(v, Village):
            rows.append(v if v.device == key else replace(v, device=key))
            continue
        rec = {k: str(v[k]) for k in REQUIRED + OPTIONAL if k in v and k != "device"}
        rec["device"] = key
        rec.setdefault("village", "")
        rec.setdefault("population", "")
        rows.append(village_of(rec, f"registry, device {key}"))
    return Registry(rows)
