"""Frame streams to objects and tables, and objects back to frames: what `jalkal
decode` and `jalkal encode` do, for any command that reads frame files."""

from __future__ import annotations

import json
import sys
from collections.abc import Iterator, Sequence
from typing import IO, Any

from jkproto import codec
from jkproto import objects as ob

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
    return tables, stats, bool(sg)


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


def write_table(objs: list[dict[str, Any]], fmt: str, out: str | None) -> None:
    import pyarrow as pa
    import pyarrow.compute as pc
    import pyarrow.csv as pcsv
    import pyarrow.parquet as pq

    cols = columns()
    rows = []
    for o in objs:
        r = dict(o)
        if "inputs" in r:
            r["inputs"] = "|".join(r["inputs"])
        rows.append(r)
    data = {c: [r.get(c) for r in rows] for c in cols}
    arrays = {}
    for c, vals in data.items():
        arr = pa.array(vals)
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
    """Frames for decoded objects; with keys, MACs are computed and prev chained."""
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
