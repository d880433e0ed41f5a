"""The store at State scale: a 4-frame upload's latency and the sustained rate of
1,000 devices uploading hourly, with 1 M, 10 M (and 100 M) frames already stored,
DuckDB and PostgreSQL side by side in one run.

    python benchmarks/ingest_scale.py [--sizes 1e6,1e7,1e8] [--devices 50000]
                                      [--uploads 300] [--hours 1] [--json] [--quick]

Pre-fill: D devices (default 50,000: a State's villages) each write a reading every
15 minutes; rows are written in time order across all devices (round r holds every
device's r-th reading, the devices in the order of their phase within the quarter
hour), as uploads arrive, not device by device. Each device has its own boot number
and a sequence number continuing from an earlier history; `prev` is the preceding
row's MAC, the decoded columns are those of a READING with plausible values, the
frame bytes have a READING's length (random bytes: pre-filled MACs do not verify).
The rows go straight into the store's schema, the same chunks into both stores:
DuckDB by INSERT of Arrow tables (the PRIMARY KEY kept), PostgreSQL by binary COPY
with the primary key dropped first and built once after the load (so its index is
tightly packed, tighter than one grown by inserts), then VACUUM ANALYZE (what
autovacuum does for a running store). The sizes grow one store: 1 M is filled, then
measured, then 9 M more rows are added for 10 M, and so on.

Measured at each size, on the same upload bodies for both back-ends: genuine signed
frames of 1,000 devices of the keys file continuing their chains from the stored rows:

  API        FrameStore.ingest of one 4-frame upload (open_store in this process),
             one after another, p50 and p99 over --uploads (after 20 not counted)
  HTTP       the same through `jalkal serve` over loopback, one keep-alive client
  sustained  1,000 devices each sending --hours hourly batches of 4 frames (one
             hour: 1,000 batches), 8 concurrent senders per worker; batches/s
             from the first byte to the last ack. DuckDB: one serve process;
             PostgreSQL: one worker, and two workers on the one store (senders
             alternate between them)

PostgreSQL is a private cluster (tests/pg_util.py) with shared_buffers 2GB,
max_wal_size 8GB, maintenance_work_mem 1GB (fsync and synchronous_commit on).
Goals (issue 18): p99 of a 4-frame upload <= 25 ms at 100 M stored frames on both,
growth <= 1.5x from 1 M to 100 M, >= 150 batches/s with two PostgreSQL workers.
"""

from __future__ import annotations

import argparse
import hashlib
import http.client
import json
import os
import platform
import queue
import signal
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "tests"))

import duckdb  # noqa: E402
import pg_util  # noqa: E402
from uplink_util import Server, keys_file  # noqa: E402

from jalkal.ingest.batch import SCHEMA  # noqa: E402
from jalkal.ingest.pgstore import COUNTS, NS, PG_TYPES  # noqa: E402
from jalkal.ingest.store import KEY_SQL, Store, open_store  # noqa: E402
from jkproto import codec as c  # noqa: E402

T0 = 1_767_225_600  # 2026-01-01T00:00:00Z: the first pre-filled round
PG_EPOCH = 946_684_800  # 2000-01-01: PostgreSQL's binary timestamps count from it
PG_SETTINGS = {"shared_buffers": "2GB", "max_wal_size": "8GB",
               "maintenance_work_mem": "1GB"}  # fmt: skip
GOAL_P99_MS, GOAL_GROWTH, GOAL_BPS = 25.0, 1.5, 150.0
WARM = 20  # uploads before the measured ones, not counted
FRAMES_PER_UPLOAD = 4
CHUNK_ROWS = 500_000
PG_BIN = {"smallint": ">i2", "integer": ">i4", "bigint": ">i8", "timestamp": ">i8"}


def reading_len() -> int:
    enc = c.Encoder(1, bytes(32), boot=1, seq=1)
    return len(enc.frame(c.READING, T0, 2, 1, 1, 1, 0x18, 124, 20))


class Fleet:
    """D devices writing a reading every 15 minutes: their phases, boots, next
    sequence numbers and the MAC (low 16 bits) of their last frame; the first
    `measured` of them are in the keys file and upload genuine signed frames."""

    def __init__(self, devices: int, measured: int, seed: int = 18):
        self.rng = np.random.default_rng(seed)
        self.n = devices
        self.ids = (0x20000000 + np.arange(devices)).astype(np.uint32)
        self.phase = self.rng.integers(0, 900, devices)
        self.order = np.argsort(self.phase, kind="stable")
        self.boot = self.rng.integers(1, 9, devices).astype(np.uint16)
        self.seq = self.rng.integers(1, 3000, devices).astype(np.int64)
        self.mac16 = self.rng.integers(0, 65536, devices).astype(np.uint16)
        self.round = 0  # pre-filled rounds so far
        self.rows = 0
        self.length = reading_len()
        self.measured = min(measured, devices)
        self.keys = {
            int(d): hashlib.sha256(b"jalkal-bench-%d" % d).digest()
            for d in self.ids[: self.measured]
        }
        self.ahead = np.zeros(devices, np.int64)  # measured frames past the round

    def chunk(self, rounds: int) -> dict[str, np.ndarray]:
        """The next `rounds` rounds of every device, in time order."""
        d, r0, rng = self.n, self.round, self.rng
        n = rounds * d
        idx = np.tile(self.order, rounds)
        r = np.repeat(np.arange(rounds, dtype=np.int64), d)
        mac = rng.integers(0, 2**32, n, dtype=np.uint32)
        m16 = (mac & 0xFFFF).astype(np.uint16).reshape(rounds, d)
        prev = np.empty_like(m16)
        prev[0] = self.mac16[self.order]
        prev[1:] = m16[:-1]
        seq = self.seq[idx] + r
        if seq.max() > 0xFFFF:
            raise SystemExit("sequence numbers past 65535: use more devices")
        t = T0 + 900 * (r0 + r) + self.phase[idx]
        frame = rng.integers(0, 256, (n, self.length), dtype=np.uint8)
        frame[:, 0] = c.SYNC
        cols = {
            "device": self.ids[idx], "boot": self.boot[idx],
            "seq": seq.astype(np.uint16), "kind": np.full(n, c.READING, np.uint8),
            "flags": np.full(n, 2, np.uint8), "t": t.astype(np.uint32), "ts": t,
            "prev": prev.reshape(-1), "mac": mac, "version": np.ones(n, np.uint8),
            "length": np.full(n, self.length, np.uint8),
            "source_pulses": rng.integers(0, 400, n).astype(np.uint32),
            "supply_pulses": rng.integers(0, 300, n).astype(np.uint32),
            "pump_s": rng.integers(0, 901, n).astype(np.uint16),
            "inputs": np.full(n, 0x18, np.uint8),
            "supply_dv": rng.integers(110, 140, n).astype(np.uint8),
            "csq": rng.integers(8, 32, n).astype(np.uint8),
            "frame": frame,
            "received": (t // 3600 + 1) * 3600 + rng.integers(0, 300, n),
        }  # fmt: skip
        self.seq += rounds
        self.mac16[self.order] = m16[-1]
        self.round += rounds
        self.rows += n
        self.ahead[:] = 0
        return cols

    def upload(self, i: int, frames: int = FRAMES_PER_UPLOAD) -> bytes:
        """The next `frames` readings of measured device i, signed and chained to
        its last stored frame."""
        dev = int(self.ids[i])
        enc = c.Encoder(dev, self.keys[dev], boot=int(self.boot[i]),
                        seq=int(self.seq[i]), prev=int(self.mac16[i]))  # fmt: skip
        out = []
        for k in range(frames):
            t = T0 + 900 * (self.round + self.ahead[i] + k) + int(self.phase[i])
            out.append(bytes(enc.frame(c.READING, t, 2, 3 * k, 2 * k, 120, 0x18,
                                       124, 20)))  # fmt: skip
        self.seq[i] = enc.seq
        self.mac16[i] = enc.prev
        self.ahead[i] += frames
        return b"".join(out)


# --- writing the pre-fill ------------------------------------------------------------


def arrow_chunk(cols: dict[str, np.ndarray]) -> pa.Table:
    n = len(cols["device"])
    out: dict[str, Any] = {}
    for f in SCHEMA:
        v = cols.get(f.name)
        if f.name == "frame":
            ln = v.shape[1]
            offs = pa.py_buffer((np.arange(n + 1, dtype=np.int32) * ln).tobytes())
            out[f.name] = pa.Array.from_buffers(
                pa.binary(), n, [None, offs, pa.py_buffer(v.tobytes())]
            )
        elif f.name == "via":
            out[f.name] = pa.DictionaryArray.from_arrays(
                pa.array(np.zeros(n, np.int8)), pa.array(["http"])
            ).cast(pa.string())
        elif v is None:
            out[f.name] = pa.nulls(n, f.type)
        elif f.type == pa.timestamp("s"):
            out[f.name] = pa.array(v.astype("datetime64[s]"), f.type)
        else:
            out[f.name] = pa.array(v.astype(f.type.to_pandas_dtype()), f.type)
    return pa.table(out, schema=SCHEMA)


def pg_copy_records(cols: dict[str, np.ndarray]) -> bytes:
    """PostgreSQL binary COPY rows (fixed width: every row a READING)."""
    n = len(cols["device"])
    fields: list[tuple] = [("nf", ">i2")]
    for f in SCHEMA:
        fields.append((f.name + "_n", ">i4"))
        if f.name not in cols and f.name != "via":
            continue
        pg = PG_TYPES[f.type]
        if pg == "bytea":
            fields.append((f.name, "u1", (cols[f.name].shape[1],)))
        elif pg == "text":
            fields.append((f.name, "S4"))
        else:
            fields.append((f.name, PG_BIN[pg]))
    rec = np.zeros(n, np.dtype(fields))
    rec["nf"] = len(SCHEMA)
    for f in SCHEMA:
        name = f.name
        if name == "via":
            rec[name + "_n"], rec[name] = 4, b"http"
        elif name not in cols:
            rec[name + "_n"] = -1
        elif name == "frame":
            rec[name + "_n"] = cols[name].shape[1]
            rec[name] = cols[name]
        else:
            v = cols[name]
            if PG_TYPES[f.type] == "timestamp":
                v = (v.astype(np.int64) - PG_EPOCH) * 1_000_000
            rec[name + "_n"] = rec.dtype[name].itemsize
            rec[name] = v
    return rec.tobytes()


class DuckFill:
    name = "DuckDB"

    def __init__(self, path: Path):
        self.path = path
        Store(path).close()  # the store's schema, as jalkal makes it
        self.seconds = 0.0

    def where(self) -> str:
        return str(self.path)

    def begin(self) -> None:
        self.con = duckdb.connect(str(self.path))

    def add(self, cols: dict[str, np.ndarray]) -> None:
        t0 = time.perf_counter()
        tb = arrow_chunk(cols)
        self.con.register("jalkal_chunk", tb)
        self.con.execute(f"INSERT INTO frames BY NAME SELECT *, {KEY_SQL} AS frame_key "
                         "FROM jalkal_chunk")  # fmt: skip
        self.con.unregister("jalkal_chunk")
        self.seconds += time.perf_counter() - t0

    def end(self) -> dict[str, float]:
        t0 = time.perf_counter()
        self.con.execute("CHECKPOINT")
        self.con.close()
        self.seconds += time.perf_counter() - t0
        size = sum(
            p.stat().st_size for p in self.path.parent.glob(self.path.name + "*")
        )
        return {"load_s": self.seconds, "bytes": size}


class PgFill:
    name = "PostgreSQL"

    def __init__(self, pg: pg_util.PrivatePostgres):
        import psycopg

        self.pg = pg
        with psycopg.connect(pg.url, autocommit=True) as con:
            for k, v in PG_SETTINGS.items():
                con.execute(f"ALTER SYSTEM SET {k} = '{v}'")
        pg.stop()
        pg.restart()
        open_store(pg.url).close()  # the store's schema, as jalkal makes it
        self.seconds = 0.0

    def where(self) -> str:
        return self.pg.url

    def begin(self) -> None:
        import psycopg

        self.con = psycopg.connect(self.pg.url, autocommit=True)
        self.con.execute(f"ALTER TABLE {NS}.frames DROP CONSTRAINT frames_pkey")
        self.names = ", ".join(f'"{f.name}"' for f in SCHEMA)
        self.copy_s = 0.0

    def add(self, cols: dict[str, np.ndarray]) -> None:
        t0 = time.perf_counter()
        data = pg_copy_records(cols)
        sql = f"COPY {NS}.frames ({self.names}) FROM STDIN (FORMAT BINARY)"
        with self.con.cursor() as cur, cur.copy(sql) as cp:
            cp.write(b"PGCOPY\n\xff\r\n\x00" + bytes(8))
            view = memoryview(data)
            for i in range(0, len(view), 8 << 20):
                cp.write(view[i : i + (8 << 20)])
            cp.write(b"\xff\xff")
        self.copy_s += time.perf_counter() - t0

    def end(self) -> dict[str, float]:
        t0 = time.perf_counter()
        self.con.execute(f"ALTER TABLE {NS}.frames ADD PRIMARY KEY (device, boot, seq)")
        t1 = time.perf_counter()
        self.con.execute(f"VACUUM ANALYZE {NS}.frames")
        t2 = time.perf_counter()
        size = self.con.execute(
            f"SELECT pg_total_relation_size('{NS}.frames')"
        ).fetchone()
        # the count kept beside the frames (pgstore.counts_sql), as if they had come
        # through jalkal: rows written straight in are not in it
        self.con.execute(f"DELETE FROM {NS}.{COUNTS}")
        self.con.execute(f"INSERT INTO {NS}.{COUNTS} SELECT 'base', count(*) "
                         f"FROM {NS}.frames")  # fmt: skip
        self.con.close()
        self.seconds += self.copy_s + t2 - t0
        return {"load_s": self.seconds, "copy_s": self.copy_s, "index_s": t1 - t0,
                "vacuum_s": t2 - t1, "bytes": int(size[0]) if size else 0}  # fmt: skip


# --- measuring ---------------------------------------------------------------------


def pct(xs: list[float], q: float) -> float:
    return float(np.percentile(np.array(xs) * 1000, q))


def check(doc: dict, what: str) -> None:
    if doc.get("stored") != FRAMES_PER_UPLOAD:
        raise SystemExit(f"{what}: upload not stored: {str(doc)[:400]}")


def api_latency(where: str, keys: dict[str, bytes], bodies: list[bytes]) -> list:
    out = []
    with open_store(where, keys) as st:
        for body in bodies:
            t0 = time.perf_counter()
            r = st.ingest(body, via="bench")
            out.append(time.perf_counter() - t0)
            check({"stored": r.stored}, "API")
    return out[WARM:]


def post(conn: http.client.HTTPConnection, body: bytes) -> dict:
    conn.request("POST", "/v1/frames", body=body,
                 headers={"Content-Type": "application/octet-stream"})  # fmt: skip
    r = conn.getresponse()
    return dict(json.loads(r.read()))


def connect(url: str) -> http.client.HTTPConnection:
    host, port = url.removeprefix("http://").split(":")
    return http.client.HTTPConnection(host, int(port), timeout=120)


def http_latency(url: str, bodies: list[bytes]) -> list:
    conn = connect(url)
    out = []
    for body in bodies:
        t0 = time.perf_counter()
        doc = post(conn, body)
        out.append(time.perf_counter() - t0)
        check(doc, "HTTP")
    conn.close()
    return out[WARM:]


def sustained(urls: list[str], bodies: list[bytes], senders: int) -> dict:
    q: queue.Queue = queue.Queue()
    for b in bodies:
        q.put(b)
    lat: list[float] = []
    errors: list[str] = []

    def sender(url: str) -> None:
        conn = connect(url)
        while True:
            try:
                body = q.get_nowait()
            except queue.Empty:
                break
            t0 = time.perf_counter()
            doc = post(conn, body)
            lat.append(time.perf_counter() - t0)
            if doc.get("stored") != FRAMES_PER_UPLOAD:
                errors.append(str(doc)[:400])
        conn.close()

    threads = [
        threading.Thread(target=sender, args=(urls[i % len(urls)],))
        for i in range(senders * len(urls))
    ]
    t0 = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    dt = time.perf_counter() - t0
    if errors:
        raise SystemExit(f"sustained: {len(errors)} batches not stored: {errors[0]}")
    return {"batches": len(bodies), "seconds": dt, "bps": len(bodies) / dt,
            "p50_ms": pct(lat, 50), "p99_ms": pct(lat, 99)}  # fmt: skip


def hourly(fleet: Fleet, hours: int) -> list[bytes]:
    """Every measured device's next `hours` hourly batches, hour by hour."""
    return [fleet.upload(i) for _ in range(hours) for i in range(fleet.measured)]


def measure(
    backend: Any, tmp: Path, kf: Path, keys: dict[str, bytes], lat_api: list,
    lat_http: list, runs: list[tuple[int, list[bytes]]], senders: int,
) -> dict:  # fmt: skip
    api = api_latency(backend.where(), keys, lat_api)
    res: dict[str, Any] = {"api_p50_ms": pct(api, 50), "api_p99_ms": pct(api, 99)}
    servers: list[Server] = []
    try:
        for workers, bodies in runs:
            while len(servers) < workers:
                d = tmp / f"serve{len(servers)}"
                d.mkdir(exist_ok=True)
                servers.append(Server(d, backend.where(), kf).start(timeout=300))  # type: ignore[arg-type]
                settled(servers[-1], backend.where())
            if "http_p50_ms" not in res:
                h = http_latency(str(servers[0].http), lat_http)
                res["http_p50_ms"], res["http_p99_ms"] = pct(h, 50), pct(h, 99)
            urls = [str(s.http) for s in servers[:workers]]
            res[f"sustained_{workers}"] = sustained(urls, bodies, senders)
    finally:
        for s in servers:
            s.stop()
    with open_store(backend.where(), read_only=True) as st:
        res["stored_after"] = st.count()
    return res


def settled(srv: Server, where: str, timeout: float = 900.0) -> None:
    """A PostgreSQL worker reads the devices' last-heard times from the store in
    the background when it starts (/metrics; its log says when it is done):
    measure the steady state after it, as a State's workers run."""
    if "://" not in where:
        return
    end = time.monotonic() + timeout
    while "metrics: last heard of" not in srv.err.read_text():
        if time.monotonic() > end:
            raise RuntimeError(f"no last-heard read in {timeout:.0f} s: {srv.err}")
        time.sleep(0.2)


def same_tables(backends: list[Any]) -> bool:
    """Both stores hold the same rows (the pre-fill of each is equal)."""
    tables = []
    for b in backends:
        with open_store(b.where(), read_only=True) as st:
            tables.append(st.table())
    a, b = tables  # DuckDB gives its TIMESTAMPs as microseconds
    return bool(a.cast(b.schema).equals(b))


def parse_sizes(text: str) -> list[int]:
    return sorted(int(float(x)) for x in text.split(",") if x.strip())


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--sizes", default="1e6,1e7", help="stored frames, e.g. 1e6,1e7,1e8")
    p.add_argument("--devices", type=int, default=50_000, help="devices in the store")
    p.add_argument("--measured", type=int, default=1000, help="devices uploading")
    p.add_argument("--uploads", type=int, default=300, help="latency samples")
    p.add_argument("--hours", type=int, default=1, help="hourly batches per device")
    p.add_argument("--senders", type=int, default=8, help="HTTP senders per worker")
    p.add_argument("--backends", default="duckdb,postgresql")
    p.add_argument("--quick", action="store_true", help="a tiny run (the tests)")
    p.add_argument("--json", action="store_true")
    a = p.parse_args(argv)
    if a.quick:
        a.sizes, a.devices, a.measured, a.uploads, a.hours, a.senders = (
            "2000,6000", 100, 50, 10, 1, 4)  # fmt: skip
    sizes = parse_sizes(a.sizes)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))  # clean up on kill
    want = a.backends.split(",")
    skipped: dict[str, str] = {}
    if "postgresql" in want and (why := pg_util.available()):
        want.remove("postgresql")
        skipped["PostgreSQL"] = why
    fleet = Fleet(a.devices, a.measured)
    hexkeys = {f"{d:08x}": k for d, k in fleet.keys.items()}
    res: dict[str, Any] = {
        "env": {"python": platform.python_version(), "duckdb": duckdb.__version__,
                "cpu_count": os.cpu_count(), "date": time.strftime("%Y-%m-%d"),
                "pg_settings": PG_SETTINGS},  # fmt: skip
        "devices": a.devices, "measured": fleet.measured, "uploads": a.uploads,
        "hours": a.hours, "senders": a.senders, "skipped": skipped,
        "sizes": {}, "prefill": {},
    }  # fmt: skip
    t_start = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="jalkal-scale-") as d:
        tmp = Path(d)
        kf = keys_file(tmp / "keys.json", fleet.keys)
        pg = pg_util.PrivatePostgres() if "postgresql" in want else None
        try:
            backends: list[Any] = []
            if "duckdb" in want:
                backends.append(DuckFill(tmp / "frames.duckdb"))
            if pg is not None:
                pg.start()
                backends.append(PgFill(pg))
            for size in sizes:
                rounds = -(-(size - fleet.rows) // a.devices)
                gen = 0.0
                for b in backends:
                    b.begin()
                step = max(1, CHUNK_ROWS // a.devices)
                while rounds > 0:
                    t0 = time.perf_counter()
                    cols = fleet.chunk(min(step, rounds))
                    gen += time.perf_counter() - t0
                    rounds -= step
                    for b in backends:
                        b.add(cols)
                fill = {"rows": fleet.rows, "generate_s": gen}
                for b in backends:
                    fill[b.name] = b.end()
                res["prefill"][str(size)] = fill
                if a.quick and len(backends) == 2 and size == sizes[0]:
                    res["same_prefill"] = same_tables(backends)
                lat_api = [fleet.upload(i % fleet.measured)
                           for i in range(WARM + a.uploads)]  # fmt: skip
                lat_http = [fleet.upload((i + a.uploads) % fleet.measured)
                            for i in range(WARM + a.uploads)]  # fmt: skip
                per: dict[str, Any] = {}
                for b in backends:
                    ws = [1, 2] if b.name == "PostgreSQL" else [1]
                    runs = [(w, hourly(fleet, a.hours)) for w in ws]
                    per[b.name] = measure(b, tmp, kf, hexkeys, lat_api, lat_http,
                                          runs, a.senders)  # fmt: skip
                res["sizes"][str(size)] = per
                if not a.json:
                    print(f"# {size:,} frames done at "
                          f"{time.perf_counter() - t_start:.0f} s: "
                          f"{json.dumps({'prefill': fill, 'figures': per})}",
                          flush=True)  # fmt: skip
        finally:
            if pg is not None:
                pg.__exit__()
    res["seconds"] = time.perf_counter() - t_start
    res["goals"] = goals(res, sizes)
    if a.json:
        print(json.dumps(res))
    else:
        print_table(res, sizes)
    return 0


def goals(res: dict, sizes: list[int]) -> dict:
    lo, hi = str(sizes[0]), str(sizes[-1])
    out: dict[str, Any] = {"at": int(hi), "from": int(lo)}
    for name, per in res["sizes"][hi].items():
        p99 = per["http_p99_ms"]
        g = p99 / res["sizes"][lo][name]["http_p99_ms"]
        out[name] = {"http_p99_ms": p99, "p99_ok": p99 <= GOAL_P99_MS,
                     "growth": g, "growth_ok": g <= GOAL_GROWTH}  # fmt: skip
        if "sustained_2" in per:
            bps = per["sustained_2"]["bps"]
            out[name].update(bps_2=bps, bps_ok=bps >= GOAL_BPS)
    return out


def print_table(res: dict, sizes: list[int]) -> None:
    env = res["env"]
    print(
        f"\npython {env['python']}  duckdb {env['duckdb']}  cpus {env['cpu_count']}  "
        f"{env['date']}; {res['devices']:,} devices in the store, "
        f"{res['measured']} uploading, {res['uploads']} latency samples, "
        f"{res['hours']} hourly batches per device, {res['senders']} senders/worker"
    )
    for name, why in res["skipped"].items():
        print(f"{name}: not run ({why})")
    print(f"\n{'stored':>12} {'back-end':11}{'API p50/p99 ms':>16}"
          f"{'HTTP p50/p99 ms':>17}{'batches/s 1 w':>15}{'2 w':>8}")  # fmt: skip
    for size in sizes:
        for name, r in res["sizes"][str(size)].items():
            two = r.get("sustained_2")
            print(
                f"{size:>12,} {name:11}"
                f"{r['api_p50_ms']:>8.1f}/{r['api_p99_ms']:<7.1f}"
                f"{r['http_p50_ms']:>9.1f}/{r['http_p99_ms']:<7.1f}"
                f"{r['sustained_1']['bps']:>15.0f}"
                f"{two['bps'] if two else float('nan'):>8.0f}"
            )
    lo, hi = str(sizes[0]), str(sizes[-1])
    if lo != hi:
        print(f"\ngrowth {int(hi):,} / {int(lo):,}:")
        for name in res["sizes"][hi]:
            a, b = res["sizes"][lo][name], res["sizes"][hi][name]
            print(
                f"  {name:11} API p99 {b['api_p99_ms'] / a['api_p99_ms']:.2f}x, "
                f"HTTP p99 {b['http_p99_ms'] / a['http_p99_ms']:.2f}x, "
                f"batches/s {b['sustained_1']['bps'] / a['sustained_1']['bps']:.2f}x"
            )
    print("\npre-fill:")
    for size, f in res["prefill"].items():
        parts = [f"generate {f['generate_s']:.0f} s"]
        for name in ("DuckDB", "PostgreSQL"):
            if name in f:
                x = f[name]
                extra = (f" (COPY {x['copy_s']:.0f} s, key {x['index_s']:.0f} s, "
                         f"VACUUM ANALYZE {x['vacuum_s']:.0f} s)"
                         if "copy_s" in x else "")  # fmt: skip
                parts.append(f"{name} {x['load_s']:.0f} s{extra}, "
                             f"{x['bytes'] / 1e9:.2f} GB")  # fmt: skip
        print(f"  to {int(size):,} rows: " + "; ".join(parts))
    g = res["goals"]
    print(f"\ngoals at {g['at']:,} stored frames (issue 18 asks them at 100,000,000):")
    for name, x in g.items():
        if not isinstance(x, dict):
            continue
        line = (
            f"  {name:11} HTTP p99 {x['http_p99_ms']:.1f} ms "
            f"{'meets' if x['p99_ok'] else 'MISSES'} <= {GOAL_P99_MS:.0f} ms; "
            f"growth {x['growth']:.2f}x "
            f"{'meets' if x['growth_ok'] else 'MISSES'} <= {GOAL_GROWTH}x"
        )
        if "bps_2" in x:
            line += (
                f"; 2 workers {x['bps_2']:.0f} batches/s "
                f"{'meets' if x['bps_ok'] else 'MISSES'} >= {GOAL_BPS:.0f}"
            )
        print(line)  # fmt: skip
    print(f"\nwhole run {res['seconds']:.0f} s")


if __name__ == "__main__":
    sys.exit(main())
