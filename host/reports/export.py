"""The store as Parquet, and the report over that Parquet on DuckDB or on Dask.

    jalkal export --store DB --out DIR [--partition day|month] [--overwrite]

writes every stored frame (raw bytes and decoded columns, the store's schema) to
hive-style partitions by date and device:

    DIR/date=2026-03-01/device=0a1b2c3d/part-0.parquet

``date`` is the UTC date of the frame's time (``ts``; ``--partition month`` makes
it ``2026-03``: twelve files a device-year instead of 365), ``device`` the device id
in 8 hex digits. Frames without a clock (``ts`` null) go to
``date=__HIVE_DEFAULT_PARTITION__`` (read back as null). Inside a file, rows are in
(boot, seq) order. The device column lives in the path only; readers get it back
from the path (DuckDB ``hive_partitioning``, pyarrow ``partitioning="hive"``).
``--overwrite`` replaces DIR only when it is an earlier export (those partitions
and nothing else); anything else at DIR is refused, overwrite or not.

``jalkal report --parquet DIR`` reads that with DuckDB (only the registry's devices:
the partition paths prune the rest) and ``--dask ADDRESS`` (or ``local``) runs the
same report on a Dask cluster: one task per batch of devices reads its devices'
files and computes their days. Both then call the same daily code
(``daily_bulk.days``, which falls back to ``daily.compute`` for any device that is
not regular) and the same period code (``periods.periods``), so the engines cannot
drift apart.
"""

from __future__ import annotations

import os
import shutil
import stat
import sys
import tempfile
import threading
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa

from ..console import progress
from ..errors import JalkalError
from ..registry import Registry
from . import daily, daily_bulk, measures, periods
from .plausible import DEFAULT_MAX_FLOW_M3H
from .sources import opened, store_snapshot

PARTS = ("day", "month")
FORMATS = {"day": "%Y-%m-%d", "month": "%Y-%m"}
Note = Callable[[str], None]


@dataclass
class Exported:
    frames: int
    devices: int
    files: int
    out: Path
    unchanged: int = 0  # --since: partitions left as they were
    new: int = 0  # --since: partitions that were not in the export before


@contextmanager
def store_frames(store: str | Path, note: Note | None) -> Iterator[tuple[Any, Any]]:
    """A DuckDB connection with the store's `frames` and the lock to use it under:
    the store file itself, or (held by a running server) its snapshot in memory."""
    import duckdb

    from ..ingest.store import open_store

    tb = store_snapshot(store, None, note)
    if tb is not None:
        con = duckdb.connect()
        try:
            con.register("frames", tb)
            yield con, threading.Lock()
        finally:
            con.close()
        return
    with opened(store):
        st = open_store(store, read_only=True)
    try:
        yield st.con, st.lock
    finally:
        st.close()


def export(
    store: str | Path,
    out: str | Path,
    partition: str = "day",
    overwrite: bool = False,
    note: Note | None = None,
) -> Exported:
    """Write the store's frames to OUT as Parquet partitioned by date and device.

    The files are written into a temporary folder beside OUT and moved into place
    at the end, so OUT is never half written. An existing OUT is replaced (as a
    whole) only with overwrite and only when it is an earlier export: hive
    partitions date=*/device=*/part-*.parquet and nothing else (an empty folder
    too). Anything else is refused, overwrite or not. A store a running server
    holds is read from its snapshot; note(line) says so (since.py: --since)."""
    import duckdb

    from ..ingest.store import SCHEMA

    if partition not in PARTS:
        raise JalkalError(f"--partition must be day or month, got {partition!r}")
    dst = Path(out)
    if dst.exists() or dst.is_symlink():
        other = not_export(dst)
        if other is not None:
            raise JalkalError(
                f"{dst} exists and is not a jalkal export ({other}); export only "
                "writes a new folder or replaces an earlier export: give another "
                "--out"
            )
        if not overwrite:
            raise JalkalError(f"{dst} exists; give --overwrite to replace it")
    with store_frames(store, note) as (con, lock):
        work = workdir(dst)
        tmp = work / "new"
        with lock:
            n = _one(con, "SELECT count(*) FROM frames")
        rest = ", ".join(f'"{c}"' for c in SCHEMA.names if c != "device")
        sql = (
            f"COPY (SELECT {rest}, printf('%08x', device) AS device, "
            f"strftime(ts, '{FORMATS[partition]}') AS date FROM frames "
            "ORDER BY date, device, boot, seq) "
            f"TO '{sql_path(tmp)}' (FORMAT PARQUET, PARTITION_BY (date, device), "
            "FILENAME_PATTERN 'part-{i}', COMPRESSION zstd)"
        )
        try:
            with lock:
                _copy(con, sql, f"exporting {n:,} frames")
                devices = _one(con, "SELECT count(DISTINCT device) FROM frames")
        except duckdb.Error as e:
            shutil.rmtree(work, ignore_errors=True)
            raise JalkalError(f"export to {dst}: {str(e).splitlines()[0]}")
    old = work / "old"
    try:
        tmp.mkdir(exist_ok=True)  # an empty store: an empty export
        shared(work, tmp)
        files = sum(1 for _ in tmp.rglob("*.parquet"))
        if dst.exists():
            dst.rename(old)
        tmp.rename(dst)
    except OSError as e:
        if old.exists() and not dst.exists():
            old.rename(dst)  # the earlier export back in its place
        raise JalkalError(f"cannot write {dst}: {e.strerror or e}")
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return Exported(frames=n, devices=devices, files=files, out=dst)


def _one(con: Any, sql: str) -> int:
    return int(con.execute(sql).fetchall()[0][0])


def _copy(con: Any, sql: str, label: str) -> None:
    """Run the COPY; on a terminal, with a bar and the time left from DuckDB's own
    progress of the query (read from this thread while another one runs it)."""
    if not sys.stderr.isatty():
        con.execute(sql)
        return
    failed: list[BaseException] = []

    def work() -> None:
        try:
            con.execute(sql)
        except BaseException as e:  # handed to the caller's thread
            failed.append(e)

    t = threading.Thread(target=work, daemon=True)
    with progress(label, 100.0, label_alone=False) as advance:
        t.start()
        shown = 0.0
        while t.is_alive():
            t.join(0.2)
            done = con.query_progress()  # percent; -1 before it starts
            if done > shown:
                advance(done - shown)
                shown = done
        advance(100.0 - shown)
    if failed:
        raise failed[0]


def not_export(root: Path) -> str | None:
    """None when root is what export writes (or an empty folder); otherwise the
    first thing that says it is not."""
    if root.is_symlink() or not root.is_dir():
        return "not a folder"
    try:
        for p in root.rglob("*"):
            rel = p.relative_to(root).parts
            depth, name = len(rel), rel[-1]
            if depth < 3:  # date=… then device=… folders
                ok = p.is_dir() and name.startswith(("date=", "device=")[depth - 1])
            else:  # their part files
                ok = depth == 3 and p.is_file() and name.startswith("part-")
                ok = ok and name.endswith(".parquet")
            if p.is_symlink() or not ok:
                return f"it holds {'/'.join(rel)}"
    except OSError as e:
        return f"cannot read it: {e.strerror or e}"
    return None


def shared(work: Path, root: Path) -> None:
    """Give root and the folders under it the mode a new folder gets here (0777
    less the umask, as mkdir gives; DuckDB makes its partition folders 0755)."""
    probe = work / "probe"
    probe.mkdir(0o777)
    want = stat.S_IMODE(probe.stat().st_mode)
    probe.rmdir()
    for d in (root, *(p for p in root.rglob("*") if p.is_dir())):
        os.chmod(d, want)


def workdir(dst: Path) -> Path:
    """A new folder beside dst (so the final renames stay on one file system)."""
    if not dst.parent.is_dir():
        raise JalkalError(
            f"cannot write {dst}: folder {dst.parent} does not exist; create it first"
        )
    try:
        return Path(tempfile.mkdtemp(prefix=f".{dst.name}.", dir=dst.parent))
    except OSError as e:
        raise JalkalError(f"cannot write {dst}: {e.strerror or e}")


def sql_path(p: Path) -> str:
    return str(p).replace("'", "''")


# --- reading -------------------------------------------------------------------------


def devices_in(root: str | Path) -> list[str]:
    """The device ids (8 hex digits) that have files under root."""
    base = Path(root)
    if not base.is_dir():
        raise JalkalError(f"{base}: no such folder (a jalkal export)")
    found = {
        p.name.split("=", 1)[1].lower()
        for p in base.glob("*=*/device=*")
        if p.is_dir() and p.name.startswith("device=")
    }
    return sorted(found)


def _glob(root: str | Path) -> str:
    return sql_path(Path(root) / "**" / "*.parquet")


def load_duckdb(root: str | Path, devices: Sequence[str] | None = None) -> pa.Table:
    """The report's frame columns of the given devices (all without), read by
    DuckDB from an export, in (device, boot, seq) order like Store.table()."""
    import duckdb

    have = devices_in(root)
    want = have if devices is None else sorted(set(have) & {d.lower() for d in devices})
    if not want:
        return _empty()
    # the files of each device in date order: DuckDB keeps the order of a list
    # (no sort of every row); the order is checked below and fixed if need be
    paths = [
        p
        for d in want
        for p in sorted(
            Path(root).glob(f"*=*/device={d}/*.parquet"), key=lambda p: p.parts[-3]
        )
    ]
    files = [sql_path(p) for p in paths]
    cols = ", ".join(f'"{c}"' for c in columns(paths) if c != "device")
    sql = (
        f"SELECT CAST('0x' || device AS UINTEGER) AS device, {cols} "
        f"FROM read_parquet([{', '.join(repr(f) for f in files)}], "
        "hive_partitioning = true, union_by_name = true, "
        "hive_types = {'date': VARCHAR, 'device': VARCHAR})"
    )
    con = duckdb.connect()
    try:
        tb = con.sql(sql).to_arrow_table()
    except duckdb.Error as e:
        raise JalkalError(f"{root}: {str(e).splitlines()[0]}")
    finally:
        con.close()
    return _in_order(tb)


def columns(files: Sequence[Path]) -> list[str]:
    """The report's columns: daily_bulk.COLUMNS, and the measure frame's when the
    export has them (one written before the measure frame has not)."""
    import pyarrow.parquet as pq

    have = set(pq.read_schema(files[0]).names) if files else set()
    return [*daily_bulk.COLUMNS, *(x for x in measures.FRAME_COLUMNS if x in have)]


def _in_order(tb: pa.Table) -> pa.Table:
    """tb in (device, boot, seq) order (a stable sort only when it is not)."""
    dev = tb.column("device").to_numpy().astype(np.int64)
    boot = tb.column("boot").to_numpy().astype(np.int64)
    seq = tb.column("seq").to_numpy().astype(np.int64)
    key = (dev << 32) | (boot << 16) | seq
    if key.size < 2 or bool((key[1:] >= key[:-1]).all()):
        return tb
    return tb.take(pa.array(np.argsort(key, kind="stable")))


def load_arrow(root: str | Path, devices: Sequence[str]) -> pa.Table:
    """The same as load_duckdb, read with pyarrow (what a Dask worker runs)."""
    import pyarrow.dataset as ds

    files = sorted(
        str(p) for d in devices for p in Path(root).glob(f"*=*/device={d}/*.parquet")
    )
    if not files:
        return _empty()
    part = ds.partitioning(
        pa.schema([("date", pa.string()), ("device", pa.string())]), flavor="hive"
    )
    data = ds.dataset(
        files, format="parquet", partitioning=part, partition_base_dir=str(root)
    )
    tb = data.to_table(columns=columns([Path(files[0])]))
    dev = np.array([int(x, 16) for x in tb.column("device").to_pylist()], np.uint32)
    return _in_order(tb.set_column(0, "device", pa.array(dev)))


def _empty() -> pa.Table:
    from ..ingest.store import SCHEMA

    return pa.schema([SCHEMA.field(c) for c in daily_bulk.COLUMNS]).empty_table()


def _batch(
    root: str, devices: list[str], reg: Registry, max_flow_m3h: float
) -> daily_bulk.Days:
    """One Dask task: its devices' files read with pyarrow, their days."""
    return daily_bulk.days(load_arrow(root, devices), reg, max_flow_m3h)


def days_parquet(
    root: str | Path,
    registry: Registry,
    engine: str = "duckdb",
    scheduler: str | None = None,
    batch: int | None = None,
    processes: bool = True,
    max_flow_m3h: float = DEFAULT_MAX_FLOW_M3H,
) -> daily_bulk.Days:
    """The daily table of the registry's devices over an export.

    engine "duckdb": one DuckDB query reads the frames, daily_bulk.days computes.
    engine "dask": tasks of `batch` devices on a Dask cluster (scheduler: its
    address, or None/"local" for a local cluster of two workers, separate
    processes unless processes is False), the parts put together."""
    want = sorted(set(devices_in(root)) & {v.device.lower() for v in registry})
    if engine == "duckdb":
        return daily_bulk.days(load_duckdb(root, want), registry, max_flow_m3h)
    if engine != "dask":
        raise JalkalError(f"engine must be duckdb or dask, got {engine!r}")
    try:
        import dask
        from dask.distributed import Client, LocalCluster
    except ImportError:
        raise JalkalError("--dask needs dask: pip install 'jalkal[scale]'")
    local = scheduler in (None, "local")
    cluster = (
        LocalCluster(
            n_workers=2,
            threads_per_worker=1,
            processes=processes,
            # scheduler, workers (as processes) and dashboard: this machine only
            **({"host": "127.0.0.1"} if processes else {}),
            dashboard_address="127.0.0.1:0",
        )
        if local
        else None
    )
    try:
        with Client(cluster if cluster is not None else scheduler) as client:
            size = batch or max(1, -(-len(want) // (4 * max(1, _workers(client)))))
            parts = [want[i : i + size] for i in range(0, len(want), size)]
            tasks = [
                dask.delayed(_batch)(str(root), p, registry, max_flow_m3h)
                for p in parts
            ]
            got = dask.compute(*tasks, scheduler=client)
    finally:
        if cluster is not None:
            cluster.close()
    return merge(list(got))


def _workers(client: Any) -> int:
    try:
        return len(client.scheduler_info()["workers"])
    except Exception:  # pragma: no cover - an odd scheduler: one batch per device
        return 1


def merge(parts: list[daily_bulk.Days]) -> daily_bulk.Days:
    """Days of disjoint device sets as one (rows sorted, notes in report order)."""
    if not parts:
        return daily_bulk.Days(periods.DAY_SCHEMA.empty_table())
    tb = pa.concat_tables([p.table for p in parts]).sort_by(
        [("village", "ascending"), ("date", "ascending"), ("device", "ascending")]
    )
    out = daily_bulk.Days(tb)
    for p in parts:
        out.unknown.update(p.unknown)
        out.regular += p.regular
        out.fallback += p.fallback
        out.head += p.head
        out.outside.update(p.outside)
        out.placed += p.placed
        out.unplaced += p.unplaced
    return out


def build_parquet(
    root: str | Path,
    registry: Registry,
    engine: str = "duckdb",
    scheduler: str | None = None,
    timeline: bool = False,
    max_flow_m3h: float = DEFAULT_MAX_FLOW_M3H,
) -> periods.Report:
    """periods.Report of the registry's devices over an export: the daily table
    from days_parquet (timeline False), or build() over the frames read by DuckDB
    when the timeline is needed (alerts: events, last frames)."""
    if timeline:
        want = [v.device for v in registry]
        return periods.build(load_duckdb(root, want), registry, max_flow_m3h)
    d = days_parquet(root, registry, engine, scheduler, max_flow_m3h=max_flow_m3h)
    res = daily.DailyResult(days=[], unknown=d.unknown, notes=d.notes)
    res.detail = d.table.to_pylist()  # the sensor columns' view reads it
    rows = d.table.select(list(daily.COLUMNS)).to_pylist()
    for r in rows:
        r["date"] = r["date"].isoformat()
    res.days = rows
    return periods.Report(days=d.table, registry=registry, result=res)
