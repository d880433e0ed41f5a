"""The district-year report over Parquet against a plain DuckDB scan, side by side.

    python benchmarks/report.py [--devices 1000] [--days 365] [--partition month]
                                [--out DIR] [--dask] [--json]

A synthetic district: DEVICES villages (one meter each; 4 districts of 5 blocks),
each with a boot frame, a reading every 15 minutes on the grid for DAYS local days
(1,000 x 365: 35 M readings), a pump start and stop a day, and one reading in
3,000 lost (about 3 % of the days incomplete). The frames are **not encoded**: the
generator writes the Parquet export directly with numpy and pyarrow, in the
store's schema and ``jalkal export``'s layout (hive partitions by date and
device), because encoding and MAC-signing 35 M frames would only time the
generator. ``frame``, ``mac`` and ``prev`` hold placeholders; the report never
reads them.

Timed in the same process on the same files (the ratio is what counts):

  plain SUM      SELECT sum(supply_pulses) over every file: the limit
  plain scan     the same query touching every column the report reads
  report         jalkal's district-year report: DuckDB reads the frames
                 (export.load_duckdb), daysfast.days gives the daily table,
                 periods(days, "year", "district") the report
  report (Dask)  --dask: the same on a local Dask cluster (two workers)

Goal (issue 8): report <= 2x the plain SUM and <= 30 s at 1,000 x 365.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import sys
import tempfile
import time
from datetime import date, timedelta
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from jalkal.ingest.store import SCHEMA
from jalkal.registry import parse_registry
from jalkal.reports import daily_bulk as daysfast
from jalkal.reports import export as ex
from jalkal.reports.periods import periods

GOAL_RATIO = 2.0
GOAL_S = 30.0
IST = 19800  # Asia/Kolkata, seconds east of UTC
IV = 900
K = 100  # supply pulses per m3: 10 litres a pulse
D0 = date(2026, 1, 1)


def registry_csv(devices: int) -> str:
    lines = ["device,village,population,block,district,state"]
    rng = np.random.default_rng(7)
    for i in range(devices):
        pop = int(rng.integers(400, 3000))
        lines.append(
            f"{0x20000000 + i:08x},V{i:04d},{pop},B{i % 20 // 4}{i % 4},"
            f"District{i % 4},State"
        )
    return "\n".join(lines) + "\n"


def _device(i: int, days: int, pop: int, rng: np.random.Generator) -> pa.Table:
    """One device's frames in the store's schema (without the device column)."""
    t0 = int((D0 - date(1970, 1, 1)).days) * 86400 - IST  # local midnight, UTC
    n = days * 96 + 1
    rt = t0 + np.arange(n, dtype=np.int64) * IV
    # demand: a target lpcd per village, water out 06:00-09:00 and 17:00-20:00
    lpcd = rng.uniform(30, 75)
    slot = (np.arange(n) - 1) % 96  # the quarter hour the interval ended in
    on = ((slot >= 24) & (slot < 36)) | ((slot >= 68) & (slot < 80))
    inc = np.where(on, rng.poisson(lpcd * pop / 10 / 24, n), 0)
    inc[0] = 0
    total = np.cumsum(inc) + int(rng.integers(0, 1 << 31))
    keep = rng.random(n) > 0.0003
    # frames: boot, readings, a pump start and stop a day, in time order
    ev_t = np.concatenate([t0 + d * 86400 + np.array([6 * 3600 - 60, 20 * 3600 + 60])
                           for d in range(days)])  # fmt: skip
    ev_code = np.tile([1, 2], days)
    kinds = np.concatenate(([1], np.full(int(keep.sum()), 2), np.full(ev_t.size, 3)))
    ts = np.concatenate(([t0 - 120], rt[keep], ev_t))
    o = np.argsort(ts, kind="stable")
    kinds, ts = kinds[o], ts[o]
    m = kinds.size
    isr = kinds == 2
    ise = kinds == 3
    src = np.zeros(m, np.int64)
    src[isr] = total[keep]
    pump = np.zeros(m, np.int64)
    pump[isr] = np.where(inc[keep] > 0, IV, 0)
    ev = np.zeros(m, np.int64)
    ev[ise] = ev_code
    boot = kinds == 1
    cols = {
        "boot": np.ones(m, np.uint16), "seq": np.arange(m).astype(np.uint16),
        "kind": kinds.astype(np.uint8), "flags": np.full(m, 2, np.uint8),
        "t": ts.astype(np.uint32), "ts": ts.astype("datetime64[s]"),
        "prev": np.zeros(m, np.uint16), "mac": np.zeros(m, np.uint32),
        "version": np.ones(m, np.uint8), "length": np.full(m, 40, np.uint8),
    }  # fmt: skip
    out = pa.table(cols)
    extra = {
        "reset": (boot, np.ones(m, np.uint8)),
        "interval_s": (boot, np.full(m, IV, np.uint16)),
        "supply_pulses_per_m3": (boot, np.full(m, K, np.uint32)),
        "source_pulses_per_m3": (boot, np.full(m, K, np.uint32)),
        "source_pulses": (isr, src.astype(np.uint32)),
        "supply_pulses": (isr, src.astype(np.uint32)),
        "pump_s": (isr, pump.astype(np.uint16)),
        "inputs": (isr, np.where(pump > 0, 0x18, 0x10).astype(np.uint8)),
        "csq": (isr, np.full(m, 20, np.uint8)),
        "event": (ise, ev.astype(np.uint8)),
        "reason": (ise, np.zeros(m, np.uint8)),
        "value": (ise, src.astype(np.uint32)),
    }
    cols_out = []
    for f in SCHEMA:
        if f.name == "device":
            continue
        if f.name in out.column_names:
            cols_out.append(out.column(f.name).cast(f.type))
        elif f.name in extra:
            mask, vals = extra[f.name]
            cols_out.append(pa.array(vals, f.type, mask=~mask))
        elif f.name == "frame":
            cols_out.append(pa.array(np.full(m, b"", object), f.type))
        elif f.name == "received":
            cols_out.append(out.column("ts").cast(f.type))
        elif f.name == "via":
            cols_out.append(pa.array(["synthetic"] * m, f.type))
        else:
            cols_out.append(pa.nulls(m, f.type))
    names = [f.name for f in SCHEMA if f.name != "device"]
    return pa.table(cols_out, names=names)


def generate(root: Path, devices: int, days: int, partition: str) -> tuple[int, int]:
    """Write the export; returns (frames, files)."""
    rng = np.random.default_rng(1)
    pops = [int(line.split(",")[2]) for line in registry_csv(devices).splitlines()[1:]]
    frames = files = 0
    fmt = "%Y-%m-%d" if partition == "day" else "%Y-%m"
    for i in range(devices):
        tb = _device(i, days, pops[i], rng)
        frames += tb.num_rows
        # the date of each frame (UTC, as jalkal export): cut where it changes
        day = tb.column("t").to_numpy().astype(np.int64) // 86400
        keys = np.array(
            [
                (date(1970, 1, 1) + timedelta(days=int(d))).strftime(fmt)
                for d in np.unique(day)
            ]
        )
        idx = np.searchsorted(np.unique(day), day)
        key = keys[idx]
        cut = np.flatnonzero(
            np.concatenate(
                ([True], key[1:] != key[:-1]),
            )
        )
        ends = np.concatenate((cut[1:], [key.size]))
        for a, b in zip(cut.tolist(), ends.tolist(), strict=True):
            d = root / f"date={key[a]}" / f"device={0x20000000 + i:08x}"
            d.mkdir(parents=True, exist_ok=True)
            pq.write_table(tb.slice(a, b - a), d / "part-0.parquet", compression="zstd")
            files += 1
    return frames, files


def timed(fn, repeat: int = 1):
    best, out = float("inf"), None
    for _ in range(repeat):
        t = time.perf_counter()
        out = fn()
        best = min(best, time.perf_counter() - t)
    return best, out


def main(argv: list[str] | None = None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--devices", type=int, default=1000)
    ap.add_argument("--days", type=int, default=365)
    ap.add_argument("--partition", choices=("day", "month"), default="month")
    ap.add_argument("--out", help="keep the Parquet here (default: a temp folder)")
    ap.add_argument("--dask", action="store_true", help="also time the Dask path")
    ap.add_argument("--json", action="store_true")
    a = ap.parse_args(argv)
    import duckdb

    root = Path(a.out) if a.out else Path(tempfile.mkdtemp(prefix="jalkal-bench-"))
    try:
        if root.exists() and any(root.iterdir()):
            shutil.rmtree(root)
        root.mkdir(parents=True, exist_ok=True)
        t_gen, (nframes, nfiles) = timed(
            lambda: generate(root, a.devices, a.days, a.partition)
        )
        reg = parse_registry(registry_csv(a.devices))
        glob = str(root / "**" / "*.parquet")
        con = duckdb.connect()
        src = (
            f"read_parquet('{glob}', hive_partitioning = true, "
            "hive_types = {'date': VARCHAR, 'device': VARCHAR})"
        )
        cols = [c for c in daysfast.COLUMNS if c != "device"]
        scan_sql = (
            "SELECT count(device), "
            + ", ".join(f"sum({c})" for c in cols)
            + f" FROM {src}"
        )

        def report():
            tl = time.perf_counter()
            frames = ex.load_duckdb(root)
            tr = time.perf_counter()
            d = daysfast.days(frames, reg)
            td = time.perf_counter()
            tb = periods(d.table, "year", "district", registry=reg)
            tp = time.perf_counter()
            return tb, d, (tr - tl, td - tr, tp - td)

        t_sum, _ = timed(
            lambda: con.sql(f"SELECT sum(supply_pulses) FROM {src}").fetchall(), 3
        )
        t_scan, _ = timed(lambda: con.sql(scan_sql).fetchall(), 2)
        t_rep, (tb, d, parts) = timed(report)
        res = {
            "devices": a.devices, "days": a.days, "frames": nframes, "files": nfiles,
            "partition": a.partition, "generate_s": round(t_gen, 1),
            "plain_sum_s": round(t_sum, 3), "plain_scan_s": round(t_scan, 3),
            "report_s": round(t_rep, 2), "report_load_s": round(parts[0], 2),
            "report_days_s": round(parts[1], 2),
            "report_periods_s": round(parts[2], 2),
            "ratio_vs_sum": round(t_rep / t_sum, 1),
            "ratio_vs_scan": round(t_rep / t_scan, 1),
            "regular_devices": d.regular, "fallback_devices": len(d.fallback),
            "day_rows": d.table.num_rows, "report_rows": tb.num_rows,
            "cpus": os.cpu_count(), "python": platform.python_version(),
            "duckdb": duckdb.__version__,
        }  # fmt: skip
        if a.dask:
            t_dask, dd = timed(lambda: ex.days_parquet(root, reg, "dask"))
            same = dd.table.equals(d.table)
            res.update(dask_days_s=round(t_dask, 2), dask_same=same)
        if a.json:
            print(json.dumps(res))
        else:
            print(f"{nframes:,} frames of {a.devices} devices x {a.days} days in "
                  f"{nfiles:,} files (partition {a.partition}), "
                  f"generated in {t_gen:.1f} s")  # fmt: skip
            print(f"  plain SUM     {t_sum:8.3f} s   (the limit)")
            print(f"  plain scan    {t_scan:8.3f} s   (every column the report reads)")
            print(f"  report        {t_rep:8.2f} s   = load {parts[0]:.2f} + days "
                  f"{parts[1]:.2f} + periods {parts[2]:.2f}")  # fmt: skip
            print(f"  ratio         {t_rep / t_sum:8.1f} x the plain SUM, "
                  f"{t_rep / t_scan:.1f} x the plain scan "
                  f"(goal <= {GOAL_RATIO:g} x, <= {GOAL_S:g} s)")  # fmt: skip
            print(f"  devices       {d.regular} regular, {len(d.fallback)} via "
                  f"report.compute; {d.table.num_rows:,} device-days, "
                  f"{tb.num_rows} district-year rows")  # fmt: skip
            if a.dask:
                print(f"  Dask (local)  {res['dask_days_s']:8.2f} s for the daily "
                      f"table, identical: {res['dask_same']}")  # fmt: skip
        return res
    finally:
        if not a.out:
            shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main(sys.argv[1:])
