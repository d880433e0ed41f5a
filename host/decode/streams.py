"""Frame streams to objects and tables, and objects back to frames: what `jalkal
decode` and `jalkal encode` do, for any command that reads frame files."""

from __future__ import annotations

import json
import sys
from collections import Counter
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

import numpy as np

from jkproto import codec
from jkproto import objects as ob

from ..console import plural, progress
from ..errors import JalkalError
from ..fileio import atomic_write, input_files, read_bytes
from ..keys import load_keys, signers
from . import bulk


def stats_line(st: dict[str, int]) -> str:
    return (
        f"decode: {st['frames']} frames, {st['bytes']} bytes read, "
        f"{st['skipped_bytes']} bytes skipped in {st['skipped_runs']} runs, "
        f"{st['crc_errors']} CRC failures, {st['truncated']} truncated, "
        f"{st['unknown_version']} unknown version, {st['malformed']} malformed, "
        f"{st['chain_breaks']} chain breaks, {st['mac_failures']} MAC failures, "
        f"{st['unknown_devices']} from unknown devices"
    )


def problems_line(st: dict[str, int]) -> str | None:
    parts = []
    if st["skipped_bytes"]:
        parts.append(
            f"skipped {st['skipped_bytes']} bytes of garbage in {st['skipped_runs']} "
            f"places ({st['crc_errors']} CRC failures, {st['truncated']} truncated)"
        )
    for key, label in (
        ("unknown_version", "frames of an unknown version (kept raw)"),
        ("malformed", "malformed frames (kept raw)"),
        ("chain_breaks", "chain breaks"),
        ("mac_failures", "MAC failures"),
        ("unknown_devices", "frames from devices not in the keys file"),
    ):
        if st[key]:
            parts.append(f"{st[key]} {label}")
    return "decode: " + "; ".join(parts) if parts else None


def decode_tables(
    paths: Sequence[str], keys: str | None
) -> tuple[list[Any], dict[str, int], bool]:
    """bulk.decode tables of every input file, as one stream (the chain runs across
    files), the counts of what was skipped, and whether MACs were checked (a keys
    file with devices in it)."""
    sg = signers(load_keys(keys)) if keys else None
    state = bulk.ChainState()
    stats = ob.new_stats()
    tables = [
        bulk.decode(read_bytes(f), sg, state, stats).table
        for f in input_files(tuple(paths))
    ]
    return tables, stats, sg is not None


@dataclass
class Repeat:
    """A file whose frames an earlier-decided file of the stream holds too."""

    copy: Path
    original: Path
    frames: int  # frames of copy that original holds as well
    whole: bool  # every frame of copy is in original: copy is left out


@dataclass
class Stream:
    """The files of one stream, decoded, with what was left out and why."""

    tables: list[Any]  # bulk.decode tables of `files`, in stream order
    stats: dict[str, int]
    verified: bool  # MACs were checked (a keys file was given)
    files: list[Path] = field(default_factory=list)  # decoded
    frameless: list[Path] = field(default_factory=list)  # bytes but no frame
    empty: list[Path] = field(default_factory=list)  # no bytes at all
    repeats: list[Repeat] = field(default_factory=list)


BIG = 16 << 20  # bytes of input worth a progress bar (about half a second's work)


def read_stream(paths: Sequence[str], keys: str | None) -> Stream:
    """Every input file decoded as one stream (the chain runs across files), with
    copies recognised: frames are unique by (device, boot, seq), so a file whose
    frames (the same bytes) all appear in another input (a log copied to a backup
    folder, a copy made before the day ended) is left out, keeping of identical
    copies the one that sits where its frames' chain continues. Files that share
    only some frames are both decoded (the day rules count a frame once) and
    named in `repeats`."""
    files = input_files(tuple(paths))
    sg = signers(load_keys(keys)) if keys is not None else None
    out = Stream([], ob.new_stats(), sg is not None)
    data = [read_bytes(f) for f in files]
    found: list[FileFrames] = []
    none: set[int] = set()  # files without a frame
    size = sum(len(b) for b in data)
    label = f"reading {plural(len(files), 'file')}, {size:,} bytes"
    big = None if size >= BIG else False  # a terminal and a big input: a bar
    with progress(label, 2 * size, enabled=big, label_alone=False) as done:
        for i, (f, buf) in enumerate(zip(files, data, strict=True)):
            tb = bulk.decode(buf).table
            if tb.num_rows == 0:
                (out.frameless if buf else out.empty).append(f)
                none.add(i)
            found.append(FileFrames.of(tb, buf))
            done(len(buf))
        skip = _repeats(files, found, out.repeats) | none
        state = bulk.ChainState()
        for i, f in enumerate(files):
            if i not in skip:  # MACs checked and the chain followed
                out.tables.append(bulk.decode(data[i], sg, state, out.stats).table)
                out.files.append(f)
            done(len(data[i]))
    return out


@dataclass
class FileFrames:
    """A file's decoded frames by key (device << 32 | boot << 16 | seq): unique,
    sorted, with where each one's bytes are."""

    keys: np.ndarray
    offset: np.ndarray
    length: np.ndarray
    buf: bytes
    spans: dict[int, tuple[int, int]]  # (device, boot) -> (lowest, highest seq)

    @classmethod
    def of(cls, tb: Any, buf: bytes) -> FileFrames:
        import pyarrow.compute as pc

        if tb.num_rows == 0:
            z = np.zeros(0, np.int64)
            return cls(z.astype(np.uint64), z, z, buf, {})
        good = tb.filter(pc.equal(tb.column("status").cast("string"), "ok"))

        def col(name: str) -> np.ndarray:
            return np.asarray(good.column(name).to_numpy(), np.uint64)

        k = (col("device") << np.uint64(32)) | (col("boot") << np.uint64(16))
        k |= col("seq")
        k, first = np.unique(k, return_index=True)
        off = np.asarray(good.column("offset").to_numpy(), np.int64)[first]
        ln = np.asarray(good.column("length").to_numpy(), np.int64)[first]
        return cls(k, off, ln, buf, _spans(k))

    def frame(self, i: int) -> bytes:
        a = int(self.offset[i])
        return self.buf[a : a + int(self.length[i])]


def _spans(k: np.ndarray) -> dict[int, tuple[int, int]]:
    """(device, boot) -> (lowest seq, highest seq) of a file's frame keys."""
    if k.size == 0:
        return {}
    hi = k >> np.uint64(16)
    starts = np.flatnonzero(np.r_[True, hi[1:] != hi[:-1]])
    ends = np.r_[starts[1:], k.size] - 1
    seq = (k & np.uint64(0xFFFF)).astype(np.int64)
    return {
        int(hi[a]): (int(seq[a]), int(seq[b]))
        for a, b in zip(starts.tolist(), ends.tolist(), strict=True)
    }


def _shared(found: list[FileFrames]) -> Counter[tuple[int, int]]:
    """(i, j) -> frames files i and j both hold, byte for byte (both orders)."""
    shared: Counter[tuple[int, int]] = Counter()
    if len(found) < 2:
        return shared
    allk = np.concatenate([f.keys for f in found])
    fid = np.concatenate([np.full(f.keys.size, i) for i, f in enumerate(found)])
    pos = np.concatenate([np.arange(f.keys.size) for f in found])
    o = np.argsort(allk, kind="stable")
    allk, fid, pos = allk[o], fid[o], pos[o]
    same = np.zeros(allk.size, bool)
    same[1:] = allk[1:] == allk[:-1]
    if not same.any():
        return shared
    starts = np.flatnonzero(~same)
    ends = np.r_[starts[1:], allk.size]
    multi = ends - starts > 1
    groups: Counter[tuple[int, ...]] = Counter()
    for a, b in zip(starts[multi].tolist(), ends[multi].tolist(), strict=True):
        copies: dict[bytes, list[int]] = {}  # the same key, the same bytes
        for i, p in zip(fid[a:b].tolist(), pos[a:b].tolist(), strict=True):
            copies.setdefault(found[i].frame(p), []).append(i)
        groups.update(tuple(g) for g in copies.values() if len(g) > 1)
    for g, n in groups.items():
        for i in g:
            for j in g:
                if i != j:
                    shared[(i, j)] += n
    return shared


def _repeats(
    files: list[Path], found: list[FileFrames], repeats: list[Repeat]
) -> set[int]:
    """The files left out because another input holds all their frames; every
    repeat (whole or partial) is added to `repeats`."""
    shared = _shared(found)
    size = [f.keys.size for f in found]
    spans = [f.spans for f in found]
    covered_by: dict[int, list[int]] = {}  # file -> the files holding all of it
    for (i, j), n in sorted(shared.items()):
        if n == size[j]:
            covered_by.setdefault(j, []).append(i)
    keeper: dict[int, int] = {}  # identical files -> the one decoded
    for j, cov in sorted(covered_by.items()):
        twins = [i for i in cov if size[i] == size[j]]
        if twins and j not in keeper:
            group = sorted([j, *twins])
            best = max(group, key=lambda p: (_links(p, group, spans), -p))
            keeper.update(dict.fromkeys(group, best))
    left: dict[int, int] = {}  # file -> the file that holds its frames
    for j, cov in sorted(covered_by.items()):
        bigger = [i for i in cov if size[i] > size[j]]
        if bigger:
            big = max(bigger, key=lambda i: (size[i], -i))
            left[j] = keeper.get(big, big)
        elif keeper.get(j, j) != j:
            left[j] = keeper[j]
    for j in sorted(left):
        repeats.append(Repeat(files[j], files[left[j]], size[j], True))
    for (i, j), n in sorted(shared.items()):
        if i < j and i not in left and j not in left:
            repeats.append(Repeat(files[j], files[i], n, False))
    return set(left)


def _links(p: int, group: list[int], spans: list[dict[int, tuple[int, int]]]) -> int:
    """How many of file p's (device, boot) runs continue the nearest other file's
    before it or are continued by the nearest one after it (seq + 1): where in
    the stream a copy belongs."""
    n = 0
    for db, (lo, hi) in spans[p].items():
        before = [q for q in range(p) if q not in group and db in spans[q]]
        after = [
            q for q in range(p + 1, len(spans)) if q not in group and db in spans[q]
        ]
        if before and spans[before[-1]][db][1] + 1 == lo:
            n += 1
        if after and spans[after[0]][db][0] == hi + 1:
            n += 1
    return n


def decode_paths(
    paths: tuple[str, ...], keys: str | None
) -> tuple[list[dict[str, Any]], dict[str, int]]:
    """All frames of the inputs, as one stream (the chain runs across files)."""
    tables, stats, _verified = decode_tables(paths, keys)
    objs: list[dict[str, Any]] = []
    for t in tables:
        objs.extend(bulk.to_objects(t))
    return objs, stats


# column order for csv / parquet: every key decode can print
def columns() -> list[str]:
    cols = ["device", "boot", "seq", "kind", "ts", "uptime_s", "time", "xflags"]
    for fields in ob.FIELDS.values():
        for name, _t in fields:
            if name not in cols:
                cols.append(name)
    tail = "extra payload prev mac chain verified version error raw"
    return cols + tail.split()


def named_columns() -> set[str]:
    """The columns whose values are names from a code table (and `time`)."""
    out = {"kind", "time"}
    for fields in ob.FIELDS.values():
        out.update(name for name, t in fields if isinstance(t, tuple))
    return out


def _column(pa: Any, vals: list[Any], text: bool) -> Any:
    """One column of write_table. A name column is always text, and a code this
    reader's tables do not know (a kind or code-table entry newer than it: SPEC
    "Versions and evolution") is its decimal number there; any other column whose
    values mix types is text too, rather than no table at all."""
    if text:
        return pa.array([None if v is None else str(v) for v in vals], pa.string())
    try:
        return pa.array(vals)
    except (pa.ArrowInvalid, pa.ArrowTypeError):
        return pa.array([None if v is None else str(v) for v in vals], pa.string())


def write_table(objs: list[dict[str, Any]], fmt: str, out: str | None) -> None:
    import pyarrow as pa
    import pyarrow.compute as pc
    import pyarrow.csv as pcsv
    import pyarrow.parquet as pq

    cols = columns()
    rows = []
    for o in objs:
        r = dict(o)
        for k in ("inputs", "faults"):  # bit sets: names joined by "|"
            if k in r:
                r[k] = "|".join(str(x) for x in r[k])
        rows.append(r)
    data = {c: [r.get(c) for r in rows] for c in cols}
    arrays = {}
    named = named_columns()
    for c, vals in data.items():
        arr = _column(pa, vals, c in named)
        if pa.types.is_null(arr.type):
            arr = arr.cast(pa.string())
        if c in ("ts", "start") and fmt == "parquet":
            arr = pc.strptime(arr, format="%Y-%m-%dT%H:%M:%SZ", unit="s").cast(
                pa.timestamp("s", tz="UTC")
            )
        arrays[c] = arr
    table = pa.table(arrays)
    if fmt == "parquet":
        if out is None:
            raise JalkalError("--format parquet needs -o FILE")
        atomic_write(out, lambda f: pq.write_table(table, f))
    elif out is None:
        buf = pa.BufferOutputStream()
        pcsv.write_csv(table, buf)
        sys.stdout.write(buf.getvalue().to_pybytes().decode())
    else:
        atomic_write(out, lambda f: pcsv.write_csv(table, f))


def read_objects(stream: IO[str], name: str) -> Iterator[tuple[int, dict[str, Any]]]:
    try:
        yield from _read_objects(stream, name)
    except UnicodeDecodeError:
        raise JalkalError(f"{name}: not text (JSON Lines expected; binary frames?)")


def _read_objects(stream: IO[str], name: str) -> Iterator[tuple[int, dict[str, Any]]]:
    for no, line in enumerate(stream, 1):
        if not line.strip():
            continue
        try:
            o = json.loads(line)
        except json.JSONDecodeError as e:
            raise JalkalError(f"{name} line {no}: not JSON ({e.msg})")
        if not isinstance(o, dict):
            raise JalkalError(f"{name} line {no}: needs a JSON object")
        yield no, o


def encode_objects(
    items: Iterator[tuple[int, dict[str, Any]]],
    sg: dict[str, codec.Signer] | None,
    name: str,
) -> bytes:
    """FileFrames for decoded objects; with keys, MACs are computed and prev chained."""
    out = bytearray()
    last: dict[tuple[str, int], bytes] = {}
    for no, o in items:
        try:
            signer = sg.get(o.get("device", "")) if sg else None
            if sg is not None and signer is None and "mac" not in o and "raw" not in o:
                raise codec.FrameError(
                    f"device {o.get('device')!r} has no key in the keys file "
                    "and the object has no mac"
                )
            k = (o.get("device"), o.get("boot"))
            prev = last.get(k) if o.get("seq") != 0 else None  # type: ignore[arg-type]
            frame = ob.from_obj(o, signer, prev)
        except codec.FrameError as e:
            raise JalkalError(f"{name} line {no}: {e}")
        if "raw" not in o:
            last[k] = frame[-8:-6]  # type: ignore[index]
        out += frame
    return bytes(out)
