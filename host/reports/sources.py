"""Where a report's frames come from: frame files (decoded as one stream) or the
ingest store. Either way the result is the Arrow table of the columns the day rules
read (frames.TABLE_COLUMNS), with what the reader must be told about the input:
copies left out, files that hold no frames, frames no key could verify."""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from jkproto import objects as ob

from ..decode.streams import Stream, read_stream
from ..errors import JalkalError
from . import live
from .frames import TABLE_COLUMNS

MAX_NAMED = 10  # copies or frameless files named one by one; the rest counted


@dataclass
class Sources:
    """A report's frames and what to say about them."""

    table: pa.Table  # TABLE_COLUMNS (+ verified when a keys file was given)
    stats: dict[str, int]
    notes: list[str] = field(default_factory=list)  # one line each, for stderr
    devices: set[str] = field(default_factory=set)  # devices with frames in it
    # frames that failed verification which `notes` already account for (a
    # device missing from the keys file, or none of a device's frames verified)
    explained: int = 0


def read_sources(paths: Sequence[str], keys: str | None) -> Sources:
    """The report's columns of every frame of the inputs, as one stream, and the
    notes: copies counted once, files without frames, devices the keys file
    cannot verify, or that frames were not verified at all (no keys file). Raises
    JalkalError when no input holds a frame."""
    st = read_stream(paths, keys)
    if not st.tables:
        raise JalkalError(_no_frames(st))
    cols = TABLE_COLUMNS + (["verified"] if st.verified else [])
    table = pa.concat_tables([t.select(cols) for t in st.tables])
    src = Sources(table, st.stats)
    for r in st.repeats[:MAX_NAMED]:
        if r.whole:
            src.notes.append(
                f"{r.copy} repeats the frames of {r.original}: counted once"
            )
        else:
            src.notes.append(
                f"{r.copy} repeats {r.frames} frames of {r.original}: counted once"
            )
    if len(st.repeats) > MAX_NAMED:
        src.notes.append(
            f"and {len(st.repeats) - MAX_NAMED} more files repeat frames of other "
            "inputs: each frame counted once"
        )
    for f in st.frameless[:MAX_NAMED]:
        src.notes.append(f"{f} holds no jalkal frames: skipped")
    if len(st.frameless) > MAX_NAMED:
        src.notes.append(
            f"and {len(st.frameless) - MAX_NAMED} more files hold no jalkal "
            "frames: skipped"
        )
    ok = _ok(table)
    dev = table.column("device").to_numpy()
    src.devices = {ob.device_str(d) for d in np.unique(dev[ok]).tolist()}
    if keys is None:
        src.notes.append(
            "frames were not verified (no --keys): a forged or altered frame "
            "would be counted; give the keys file to count only the devices' own"
        )
    else:
        _key_notes(src, table, ok, keys)
    return src


def decode_sources(
    paths: Sequence[str], keys: str | None
) -> tuple[pa.Table, dict[str, int]]:
    """The report's columns of every frame of the inputs, as one stream (copies
    of a file counted once)."""
    src = read_sources(paths, keys)
    return src.table, src.stats


def _ok(table: pa.Table) -> np.ndarray:
    st = pc.equal(table.column("status").cast(pa.string()), "ok")
    return np.asarray(pc.fill_null(st, False).to_numpy(zero_copy_only=False), bool)


def _no_frames(st: Stream) -> str:
    bad = st.frameless + st.empty
    hint = "is it a .jkl log or an export (read with --parquet DIR)?"
    if len(bad) == 1:
        f = bad[0]
        return f"{f} is empty: no frames to report" if f in st.empty else (
            f"{f} holds no jalkal frames: {hint}"
        )  # fmt: skip
    names = ", ".join(str(f) for f in bad[:3]) + (", ..." if len(bad) > 3 else "")
    return f"none of the {len(bad)} input files holds jalkal frames ({names}): {hint}"


def _key_notes(src: Sources, table: pa.Table, ok: np.ndarray, keys: str) -> None:
    """Devices the keys file cannot verify: not in it, or not one frame passed."""
    from ..keys import load_keys

    known = set(load_keys(keys))
    dev = table.column("device").to_numpy()[ok]
    ver = table.column("verified").to_numpy(zero_copy_only=False)[ok].astype(bool)
    devs, inv = np.unique(dev, return_inverse=True)
    frames = np.bincount(inv, minlength=devs.size)
    good = np.bincount(inv, weights=ver, minlength=devs.size)
    for d, n, v in zip(devs.tolist(), frames.tolist(), good.tolist(), strict=True):
        name = ob.device_str(d)
        if name not in known:
            src.notes.append(
                f"device {name} is not in {keys}: its {n} frames cannot be "
                "verified and are not counted"
            )
        elif v == 0:
            src.notes.append(
                f"device {name}: none of its {n} frames passed the MAC check with "
                f"its key in {keys} (a key from another keys file?): not counted"
            )
        else:
            continue
        src.explained += n


def load_store(path: str, note: Callable[[str], None] | None = None) -> pa.Table:
    """The report's columns of every frame in a store (jalkal serve's DuckDB file),
    in (device, boot, seq) order: the order each device wrote them. Every stored
    frame passed its MAC check when it was ingested. A file a running server holds
    is read through that server (live.py): its snapshot holds every frame it
    committed before this call; note(line) says so."""
    cols = [x for x in TABLE_COLUMNS if x != "status"]
    tb = store_snapshot(path, cols, note)
    if tb is not None:
        return tb
    from ..ingest.store import open_store

    with opened(path):
        with open_store(path, read_only=True) as st:
            return st.table(cols)


def store_snapshot(
    path: str | Path, columns: list[str] | None, note: Callable[[str], None] | None
) -> pa.Table | None:
    """The snapshot of a store file a running `jalkal serve` holds (columns: all
    without), None when no running server holds it."""
    if "://" in str(path):  # a database server: read directly
        return None
    got = live.read(path, columns)
    if got is None:
        return None
    if note is not None:
        note(got[1])
    return got[0]


@contextmanager
def opened(path: str | Path) -> Iterator[None]:
    """Opening a store file: a lock held by a process with no sidecar file gets
    the hint how to report while a server runs."""
    try:
        yield
    except JalkalError as e:
        if "in use by another process" in str(e):
            raise JalkalError(str(e) + live.busy_hint(path)) from None
        raise
