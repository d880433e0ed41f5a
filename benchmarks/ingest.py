"""Frames stored per second: HTTP batches and MQTT on loopback, beside the limit.

    python benchmarks/ingest.py [--frames N] [--devices D] [--batch B] [--clients K]
                                [--repeat R] [--json]

All in one run, on the same frames (D devices, chained and signed, N in all):

  direct insert     Store.insert_decoded: the frames decoded by bulk.decode and
                    inserted into the store's table (same schema, PRIMARY KEY) in ONE
                    transaction, no checks: the limit
  ingest()          Store.ingest per batch in this process: decode, MAC checks,
                    duplicate/chain checks against the store, insert, COMMIT (fsync)
  HTTP              `jalkal serve` in its own process; K client threads POST batches
                    of B frames over keep-alive connections; each waits for its ack
  MQTT              the same server subscribed to a private Mosquitto; one client
                    publishes every batch (QoS 1) on its device's topic and waits for
                    all the acks

Each figure is N / wall time from the first byte sent to the last ack (best of R),
into a fresh store file. Goal: HTTP >= 25 % of the direct insert rate.
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import platform
import queue
import sys
import tempfile
import threading
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "tests"))

import duckdb  # noqa: E402
from uplink_util import Mosquitto, Server, frames, keys_file  # noqa: E402

from jalkal.decode import bulk  # noqa: E402
from jalkal.ingest.store import Store  # noqa: E402

GOAL_HTTP = 0.25


def make_frames(n: int, devices: int) -> tuple[dict[int, bytes], list[list[bytes]]]:
    """Per device: its key and its frames (chained, one boot)."""
    keys = {0x10000000 + d: bytes([d + 1] * 32) for d in range(devices)}
    per = -(-n // devices)
    logs = []
    left = n
    for dev, key in keys.items():
        k = min(per, left)
        logs.append(frames(k, device=dev, key=key, boot=1))
        left -= k
    return keys, logs


def make_batches(logs: list[list[bytes]], size: int) -> list[tuple[int, bytes, int]]:
    """(device, body, frames): consecutive frames of one device, round robin over
    devices (as many boards uploading at once)."""
    per_dev = [
        [(i, b"".join(log[j : j + size]), len(log[j : j + size]))
         for j in range(0, len(log), size)]
        for i, log in enumerate(logs)
    ]  # fmt: skip
    out = []
    for r in range(max(len(p) for p in per_dev)):
        for p in per_dev:
            if r < len(p):
                out.append(p[r])
    return out


def fresh(tmp: Path, name: str) -> Path:
    p = tmp / f"{name}.duckdb"
    for f in (p, Path(str(p) + ".wal")):
        f.unlink(missing_ok=True)
    return p


def run_direct(tmp: Path, keys: dict[int, bytes], body: bytes) -> float:
    hexkeys = {f"{d:08x}": k for d, k in keys.items()}
    tb = bulk.decode(body).table
    with Store(fresh(tmp, "direct"), hexkeys) as st:
        t0 = time.perf_counter()
        st.insert_decoded(tb, body)
        dt = time.perf_counter() - t0
        assert st.count() == tb.num_rows
    return dt


def run_ingest(tmp: Path, keys: dict[int, bytes], batches: list) -> float:
    hexkeys = {f"{d:08x}": k for d, k in keys.items()}
    with Store(fresh(tmp, "ingest"), hexkeys) as st:
        t0 = time.perf_counter()
        for _i, body, nf in batches:
            r = st.ingest(body)
            assert r.stored == nf, r.to_json()
        return time.perf_counter() - t0


def run_http(url: str, batches: list, clients: int) -> float:
    host, port = url.removeprefix("http://").split(":")
    q: queue.Queue = queue.Queue()
    for b in batches:
        q.put(b)
    errors: list[str] = []

    def worker() -> None:
        conn = http.client.HTTPConnection(host, int(port), timeout=120)
        while True:
            try:
                _i, body, nf = q.get_nowait()
            except queue.Empty:
                break
            hdr = {"Content-Type": "application/octet-stream"}
            conn.request("POST", "/v1/frames", body=body, headers=hdr)
            r = conn.getresponse()
            doc = json.loads(r.read())
            if r.status != 200 or doc["stored"] != nf:
                errors.append(str(doc)[:300])
        conn.close()

    threads = [threading.Thread(target=worker) for _ in range(clients)]
    t0 = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    dt = time.perf_counter() - t0
    if errors:
        raise SystemExit(f"HTTP ingest failed: {errors[0]}")
    return dt


def run_mqtt(broker_url: str, batches: list, devs: list[int]) -> float:
    import paho.mqtt.client as mqtt

    done = threading.Semaphore(0)
    bad: list[str] = []
    want = {f"{zb:08x}" for zb in devs}

    def on_message(client, userdata, msg):  # type: ignore[no-untyped-def]
        doc = json.loads(msg.payload)
        if doc.get("rejected") or doc.get("error"):
            bad.append(str(doc)[:300])
        done.release()

    sub = threading.Event()
    c = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id="bench-ingest",
                    protocol=mqtt.MQTTv311)  # fmt: skip
    c.max_inflight_messages_set(64)
    c.on_message = on_message
    c.on_subscribe = lambda *a: sub.set()
    host, port = broker_url.removeprefix("mqtt://").split(":")
    c.connect(host, int(port))
    c.loop_start()
    c.subscribe("jalkal/v1/+/ack", qos=1)
    assert sub.wait(10)
    assert want
    t0 = time.perf_counter()
    for i, body, _nf in batches:
        c.publish(f"jalkal/v1/{devs[i]:08x}/up", body, qos=1)
    for _ in batches:
        if not done.acquire(timeout=120):
            raise SystemExit("MQTT ingest: acks missing")
    dt = time.perf_counter() - t0
    c.disconnect()
    c.loop_stop()
    if bad:
        raise SystemExit(f"MQTT ingest failed: {bad[0]}")
    return dt


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--frames", type=int, default=200_000)
    p.add_argument("--devices", type=int, default=20)
    p.add_argument("--batch", type=int, default=5000, help="frames per batch")
    p.add_argument("--clients", type=int, default=2, help="HTTP client threads")
    p.add_argument("--repeat", type=int, default=3)
    p.add_argument("--json", action="store_true")
    a = p.parse_args(argv)
    keys, logs = make_frames(a.frames, a.devices)
    devs = list(keys)
    body = b"".join(b"".join(log) for log in logs)
    batches = make_batches(logs, a.batch)
    n = sum(len(log) for log in logs)
    times: dict[str, float] = {}
    with tempfile.TemporaryDirectory(prefix="jalkal-bench-") as d:
        tmp = Path(d)
        kf = keys_file(tmp / "keys.json", keys)
        broker = Mosquitto(tmp / "mq").start()
        try:
            for _ in range(a.repeat):
                for name, fn in (
                    ("direct insert", lambda: run_direct(tmp, keys, body)),
                    ("ingest() in-process", lambda: run_ingest(tmp, keys, batches)),
                ):
                    times[name] = min(times.get(name, float("inf")), fn())
                for via in ("HTTP", "MQTT"):
                    db = fresh(tmp, via)
                    srv = Server(tmp, db, kf)
                    if via == "HTTP":
                        srv.start()
                        assert srv.http
                        dt = run_http(srv.http, batches, a.clients)
                    else:
                        srv.start(http=None, mqtt=broker.url)
                        dt = run_mqtt(broker.url, batches, devs)
                    srv.stop()
                    con = duckdb.connect(str(db), read_only=True)
                    stored = con.execute("SELECT count(*) FROM frames").fetchall()[0][0]
                    con.close()
                    assert stored == n, (via, stored, n)
                    times[via] = min(times.get(via, float("inf")), dt)
        finally:
            broker.stop()
    fps = {k: n / v for k, v in times.items()}
    limit = fps["direct insert"]
    res = {
        "env": {"python": platform.python_version(), "duckdb": duckdb.__version__,
                "cpu_count": os.cpu_count()},  # fmt: skip
        "frames": n, "devices": a.devices, "batch": a.batch, "clients": a.clients,
        "bytes": len(body), "repeat": a.repeat,
        "frames_per_s": fps,
        "vs_direct": {k: v / limit for k, v in fps.items()},
        "goal_http_vs_direct": GOAL_HTTP,
    }  # fmt: skip
    if a.json:
        print(json.dumps(res))
        return 0
    env = res["env"]
    print(
        f"python {env['python']}  duckdb {env['duckdb']}  cpus {env['cpu_count']}; "
        f"{n} frames ({len(body) / 1e6:.1f} MB) from {a.devices} devices, "
        f"batches of {a.batch}, {a.clients} HTTP clients, best of {a.repeat}"
    )
    print(f"{'':24}{'frames/s':>12}{'vs direct':>12}")
    for k, v in fps.items():
        print(f"{k:24}{v:12,.0f}{v / limit:12.3f}")
    ok = fps["HTTP"] / limit >= GOAL_HTTP
    print(
        f"HTTP / direct = {fps['HTTP'] / limit:.2f}: "
        f"{'meets' if ok else 'MISSES'} the {GOAL_HTTP:.2f} goal"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
