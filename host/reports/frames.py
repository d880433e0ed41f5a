"""Frames to the columns the day rules read: one numpy array per field, in stream
order, from a bulk-decoded Arrow table or from the objects `jalkal decode` prints."""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, TypeAlias

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from jkproto import codec as c
from jkproto import objects as ob

from ..errors import JalkalError
from . import measures

Frames: TypeAlias = "pa.Table | Sequence[Mapping[str, Any]]"


@dataclass
class Cols:
    """The fields the report needs, one numpy array each, in stream order."""

    device: np.ndarray
    boot: np.ndarray
    seq: np.ndarray
    kind: np.ndarray
    flags: np.ndarray
    t: np.ndarray
    supply: np.ndarray
    pump_s: np.ndarray
    interval_s: np.ndarray
    kfactor: np.ndarray
    gap_start: np.ndarray
    gap_seconds: np.ndarray
    reset: np.ndarray
    event: np.ndarray
    reason: np.ndarray
    value: np.ndarray
    inputs: np.ndarray
    at_uptime: np.ndarray
    ok: np.ndarray  # a decoded v1 frame
    verified: np.ndarray  # False only when a MAC check failed
    measure: np.ndarray  # n x measures.FRAME_COLUMNS, measures.NULL = no value

    def take(self, idx: np.ndarray) -> Cols:
        return Cols(**{k: getattr(self, k)[idx] for k in self.__dataclass_fields__})

    def __len__(self) -> int:
        return int(self.device.size)


_TABLE_COLUMNS = {
    "device": "device", "boot": "boot", "seq": "seq", "kind": "kind",
    "flags": "flags", "t": "t", "supply": "supply_pulses", "pump_s": "pump_s",
    "interval_s": "interval_s", "kfactor": "supply_pulses_per_m3",
    "gap_start": "start", "gap_seconds": "seconds", "reset": "reset",
    "event": "event", "reason": "reason", "value": "value", "inputs": "inputs",
    "at_uptime": "at_uptime_s",
}  # fmt: skip
# the bulk table's columns the report reads (the CLI keeps only these)
TABLE_COLUMNS = [*_TABLE_COLUMNS.values(), *measures.FRAME_COLUMNS, "status"]


def from_table(tb: pa.Table) -> Cols:
    n = tb.num_rows
    names = set(tb.column_names)
    need = {"device", "kind", "flags", "t"} - names
    if need:
        raise JalkalError(f"frames table lacks column(s) {', '.join(sorted(need))}")

    def col(name: str) -> np.ndarray:
        if name not in names:
            return np.zeros(n, np.int64)
        return np.asarray(pc.fill_null(tb.column(name), 0).to_numpy(), np.int64)

    vals = {k: col(name) for k, name in _TABLE_COLUMNS.items()}
    if "status" in names:
        st = tb.column("status").cast(pa.string())
        ok = np.asarray(pc.fill_null(pc.equal(st, "ok"), False).to_numpy(), bool)
    else:
        ok = np.ones(n, bool)
    if "verified" in names:
        ver = np.asarray(
            pc.fill_null(tb.column("verified"), False).to_numpy(zero_copy_only=False),
            bool,
        )
    else:
        ver = np.ones(n, bool)
    return Cols(ok=ok, verified=ver, measure=measures.from_table(tb), **vals)


def from_objects(objs: Iterable[Mapping[str, Any]]) -> Cols:
    """Objects as `jalkal decode` prints them (bulk.to_objects / objects.to_obj)."""
    keys = [*_TABLE_COLUMNS, "ok", "verified"]
    rows: dict[str, list[Any]] = {k: [] for k in keys}
    mrows: list[list[int]] = []
    for no, o in enumerate(objs):
        try:
            r = _object_row(o)
        except (c.FrameError, KeyError, TypeError, ValueError) as e:
            raise JalkalError(f"frame object {no}: {e}")
        for k in keys:
            rows[k].append(r.get(k, 0))
        mrows.append(measures.object_row(o) if r.get("ok") else measures.object_row({}))
    arr = {k: np.asarray(v, np.int64) for k, v in rows.items()}
    m = np.asarray(mrows, np.int64).reshape(len(mrows), len(measures.FRAME_COLUMNS))
    return Cols(
        ok=arr.pop("ok").astype(bool), verified=arr.pop("verified").astype(bool),
        measure=m, **arr,
    )  # fmt: skip


def _code(table: tuple[str, ...], v: Any) -> int:
    if isinstance(v, int):
        return v
    return table.index(v)


def _object_row(o: Mapping[str, Any]) -> dict[str, Any]:
    if "raw" in o or "device" not in o:  # unknown version / malformed: kept raw
        return {"ok": 0, "verified": 1}
    ts = o.get("ts")
    tq = _code(ob.TIME, o.get("time", "none" if ts is None else "net"))
    start = o.get("start")
    return {
        "device": ob.parse_device(o["device"]),
        "boot": o.get("boot", 0),
        "seq": o.get("seq", 0),
        "kind": _code(ob.KINDS, o["kind"]),
        "flags": tq,
        "t": ob.parse_iso(ts) if ts is not None else o.get("uptime_s", 0),
        "supply": o.get("supply_pulses") or 0,
        "pump_s": o.get("pump_s") or 0,
        "interval_s": o.get("interval_s") or 0,
        "kfactor": o.get("supply_pulses_per_m3") or 0,
        "gap_start": ob.parse_iso(start) if start else 0,
        "gap_seconds": o.get("seconds") or 0,
        "reset": _code(ob.RESET, o.get("reset") or 0),
        "event": _code(ob.EVENTS, o.get("event") or 0),
        "reason": _code(ob.REASONS, o.get("reason") or 0),
        "value": o.get("value") or 0,
        "inputs": sum(1 << ob.INPUTS.index(x) for x in o.get("inputs") or ()),
        "at_uptime": o.get("at_uptime_s") or 0,
        "ok": 1,
        "verified": 0 if o.get("verified") is False else 1,
    }


def columns(frames: Frames) -> Cols:
    if isinstance(frames, pa.Table):
        return from_table(frames)
    return from_objects(frames)
