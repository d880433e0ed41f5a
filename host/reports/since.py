"""`jalkal export --since DATE`: keep a Parquet export current, incrementally.

    jalkal export --store DB --out DIR --since DATE [--partition day|month]

The partitions (date, device) that hold a frame the store received (``received``,
UTC) from DATE on are the candidates: new days, and old days that got late frames
(a board's backlog after an outage). Each candidate is compared with the export's
file of that partition by the frames' keys and MACs (a stored frame never changes:
the same key with other bytes is refused at ingest, so equal keys and MACs mean
equal rows): equal ones are left alone, new and changed ones are written whole into
a folder beside DIR and moved into place one file at a time (``os.replace``: a
reader sees the old file or the new one, never a part). Partitions without a frame
received since DATE are not looked at. Running it twice writes nothing the second
time. A store a running server holds is read from its snapshot (live.py)."""

from __future__ import annotations

import shutil
from datetime import date, datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa

from ..errors import JalkalError
from .export import (
    FORMATS,
    PARTS,
    Exported,
    Note,
    not_export,
    shared,
    sql_path,
    store_frames,
    workdir,
)

NULL_DATE = "__HIVE_DEFAULT_PARTITION__"  # DuckDB's folder for a null date


def parse_since(text: str) -> str:
    """--since as the UTC time DuckDB compares with `received`: a date (its 00:00
    UTC) or an ISO time (2026-03-31T12:00Z)."""
    try:
        if len(text) == 10:
            return date.fromisoformat(text).isoformat() + " 00:00:00"
        t = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        raise JalkalError(
            f"--since must be a date like 2026-03-31 or a UTC time like "
            f"2026-03-31T12:00Z, got {text!r}"
        )
    if t.tzinfo is not None:
        t = t.astimezone(timezone.utc).replace(tzinfo=None)
    return t.isoformat(sep=" ")


def layout(root: Path) -> str | None:
    """'day' or 'month' by the export's date folders; None when it has none."""
    for p in root.glob("date=*"):
        d = p.name.split("=", 1)[1]
        if d != NULL_DATE:
            return "day" if len(d) == 10 else "month"
    return None


def _lake_keys(folder: Path) -> np.ndarray | None:
    """(boot, seq, mac) of a partition's frames as one sorted uint64 array each
    row, None when the export has no file there."""
    import pyarrow.parquet as pq

    files = sorted(folder.glob("part-*.parquet")) if folder.is_dir() else []
    if not files:
        return None
    tb = pa.concat_tables(
        [pq.read_table(f, columns=["boot", "seq", "mac"]) for f in files]
    )
    return np.sort(_key(tb))


def _key(tb: pa.Table) -> np.ndarray:
    boot = tb.column("boot").to_numpy().astype(np.uint64)
    seq = tb.column("seq").to_numpy().astype(np.uint64)
    mac = tb.column("mac").to_numpy().astype(np.uint64)
    return (boot << np.uint64(48)) | (seq << np.uint64(32)) | mac


def export_since(
    store: str | Path,
    out: str | Path,
    since: str,
    partition: str = "day",
    note: Note | None = None,
) -> Exported:
    """Bring the export at OUT up to date with the frames received since `since`
    (a date or UTC time): new and changed partitions written, equal ones left.
    OUT may be new (it then holds only those partitions: make the first export
    without --since). Exported.files: partitions written, .new of them new,
    .unchanged: candidates that were equal already, .frames: frames written."""
    import duckdb

    from ..ingest.store import SCHEMA, is_postgres, open_store

    if partition not in PARTS:
        raise JalkalError(f"--partition must be day or month, got {partition!r}")
    when = parse_since(since)
    dst = Path(out)
    if dst.exists() or dst.is_symlink():
        other = not_export(dst)
        if other is not None:
            raise JalkalError(
                f"{dst} exists and is not a jalkal export ({other}); --since "
                "updates an earlier export: give its folder"
            )
        have = layout(dst)
        if have is not None and have != partition:
            raise JalkalError(
                f"{dst} is partitioned by {have}: give --partition {have}"
            )
    fmt = FORMATS[partition]
    rest = ", ".join(f'f."{c}"' for c in SCHEMA.names if c != "device")
    sql = (
        f"WITH c AS (SELECT DISTINCT strftime(ts, '{fmt}') AS d, device AS v "
        "FROM frames WHERE received >= CAST(? AS TIMESTAMP)) "
        f"SELECT {rest}, printf('%08x', f.device) AS device, "
        f"strftime(f.ts, '{fmt}') AS date FROM frames f WHERE EXISTS (SELECT 1 "
        f"FROM c WHERE c.d IS NOT DISTINCT FROM strftime(f.ts, '{fmt}') AND "
        "c.v = f.device) ORDER BY date, device, boot, seq"
    )
    try:
        if is_postgres(store):  # the touched partitions' frames, read in PostgreSQL
            with open_store(store, read_only=True) as st:
                got = st.frames_since(when, partition)  # type: ignore[attr-defined]
            con = duckdb.connect()
            con.register("frames", got)
            rows = con.sql(sql, params=[when]).to_arrow_table()
            con.close()
        else:
            with store_frames(store, note) as (con, lock), lock:
                rows = con.sql(sql, params=[when]).to_arrow_table()
    except duckdb.Error as e:
        raise JalkalError(f"export to {dst}: {str(e).splitlines()[0]}")
    parts = _partitions(rows)
    keys = _key(rows) if rows.num_rows else np.zeros(0, np.uint64)
    write = np.zeros(rows.num_rows, bool)
    new = unchanged = files = 0
    devices: set[str] = set()
    for d, v, lo, hi in parts:
        old = _lake_keys(dst / f"date={d or NULL_DATE}" / f"device={v}")
        if old is not None and np.array_equal(old, np.sort(keys[lo:hi])):
            unchanged += 1
            continue
        write[lo:hi] = True
        files += 1
        new += old is None
        devices.add(v)
    n = int(write.sum())
    if n:
        _write(rows.filter(pa.array(write)), dst)
    return Exported(
        frames=n, devices=len(devices), files=files, out=dst, unchanged=unchanged,
        new=new,
    )  # fmt: skip


def _partitions(rows: pa.Table) -> list[tuple[str | None, str, int, int]]:
    """(date, device, first row, end row) of each partition of rows, which are
    sorted by date then device."""
    if rows.num_rows == 0:
        return []
    d = rows.column("date").to_pylist()
    v = rows.column("device").to_pylist()
    out, lo = [], 0
    for i in range(1, len(d) + 1):
        if i == len(d) or d[i] != d[lo] or v[i] != v[lo]:
            out.append((d[lo], v[lo], lo, i))
            lo = i
    return out


def _write(rows: pa.Table, dst: Path) -> None:
    """The partitions of rows written beside dst, then each file moved into dst
    over the earlier one (and any other part file of that partition removed)."""
    import duckdb

    dst_new = not dst.exists()
    if dst_new:
        try:
            dst.mkdir()
        except OSError as e:
            raise JalkalError(f"cannot write {dst}: {e.strerror or e}")
    work = workdir(dst)
    tmp = work / "new"
    con: Any = duckdb.connect()
    try:
        con.register("rows", rows)
        con.execute(
            "COPY (SELECT * FROM rows ORDER BY date, device, boot, seq) "
            f"TO '{sql_path(tmp)}' (FORMAT PARQUET, PARTITION_BY (date, device), "
            "FILENAME_PATTERN 'part-{i}', COMPRESSION zstd)"
        )
        shared(work, tmp)
        for f in sorted(tmp.rglob("*.parquet")):
            rel = f.relative_to(tmp)
            target = dst / rel
            target.parent.mkdir(parents=True, exist_ok=True)
            f.replace(target)
            for other in target.parent.glob("part-*.parquet"):
                if other.name != target.name:
                    other.unlink()
    except duckdb.Error as e:
        raise JalkalError(f"export to {dst}: {str(e).splitlines()[0]}")
    except OSError as e:
        raise JalkalError(f"cannot write {dst}: {e.strerror or e}")
    finally:
        con.close()
        shutil.rmtree(work, ignore_errors=True)
