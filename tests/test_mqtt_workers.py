"""Several `jalkal serve` workers on one Mosquitto: MQTT 5 shared subscriptions
(--mqtt-share GROUP), each worker logged in with its own account from `jalkal
broker --server-user`, its own DuckDB store. Each batch goes to one worker and is
answered once; the union of what they stored is every batch; kill -9 of a worker
mid-stream loses nothing acknowledged and stores nothing twice."""

from __future__ import annotations

import os
import time
from pathlib import Path

import pytest
from uplink_util import (
    Device,
    Mosquitto,
    Server,
    frames,
    free_port,
    keys_file,
    needs_mosquitto,
)

from jalkal.cli import main
from jalkal.ingest.store import open_store

pytestmark = needs_mosquitto
GROUP = "ingest"
DEVICES = {0x0A000001 + i: bytes([i + 1]) * 32 for i in range(4)}
PER_BATCH = 3


def batches(n: int) -> dict[int, list[bytes]]:
    """n batches of PER_BATCH chained frames for every device."""
    out = {}
    for dev, key in DEVICES.items():
        fs = frames(n * PER_BATCH, device=dev, key=key)
        out[dev] = [
            b"".join(fs[i : i + PER_BATCH]) for i in range(0, len(fs), PER_BATCH)
        ]
    return out


class World:
    def __init__(self, d: Path, store: str | None = None):
        self.d = d
        self.store = store  # one PostgreSQL store for all workers, or one file each
        self.keys = keys_file(d / "keys.json", DEVICES)
        port = free_port()
        self.conf = d / "mq-conf"
        assert main(["broker", "--keys", str(self.keys), "--out", str(self.conf),
                     "--bind", "127.0.0.1", "--port", str(port),
                     "--server-user", "w1", "--server-user", "w2"]) == 0  # fmt: skip
        self.broker = Mosquitto(d / "mq", port, include_dir=self.conf).start()
        self.workers: dict[str, Server] = {}

    def worker(self, name: str) -> Server:
        wd = self.d / name
        wd.mkdir(exist_ok=True)
        where = self.store or self.d / f"{name}.duckdb"
        s = Server(wd, where, self.keys, "-v", "--mqtt-user", name,
                   "--mqtt-password-file", str(self.conf / f"{name}.password"),
                   "--mqtt-share", GROUP)  # fmt: skip
        self.workers[name] = s.start(http=None, mqtt=self.broker.url)
        return s

    def stored(self, name: str) -> list[tuple[int, int, int]]:
        with open_store(self.store or self.d / f"{name}.duckdb", read_only=True) as st:
            t = st.table(["device", "boot", "seq"])
        return list(zip(*(t[c].to_pylist() for c in ("device", "boot", "seq")),
                        strict=True))  # fmt: skip

    def stop(self) -> None:
        for s in self.workers.values():
            s.stop()
        self.broker.stop()


def wait_all(
    devs: dict[int, Device], want: dict[int, set[str]], timeout: float
) -> bool:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if all(want[d] <= devs[d].answered() for d in want):
            return True
        time.sleep(0.1)
    return False


def every_frame(n: int) -> set[tuple[int, int, int]]:
    return {(d, 1, s) for d in DEVICES for s in range(n * PER_BATCH)}


@pytest.fixture
def world(tmp_path):
    w = World(tmp_path)
    yield w
    w.stop()


def test_two_workers_share_the_batches(world):
    n = 30
    w1, w2 = world.worker("w1"), world.worker("w2")
    devs = {d: Device(world.broker.port, d, k) for d, k in DEVICES.items()}
    bs = batches(n)
    want = {d: {(1, i * PER_BATCH) for i in range(n)} for d in DEVICES}
    t0 = time.monotonic()
    try:
        for i in range(n):
            for d in DEVICES:
                devs[d].publish(bs[d][i])
        assert wait_all(devs, want, 60)
        time.sleep(0.5)  # and no answer more
        took = time.monotonic() - t0
        acks = [a for dv in devs.values() for a in dv.acks]
    finally:
        for dv in devs.values():
            dv.close()
    assert len(acks) == n * len(DEVICES)  # each batch answered once
    # every frame answered stored once, or, when w1 died between a COMMIT and its
    # answer, duplicate from its own store when the batch came back (each frame is
    # in one store exactly once: above)
    frames_sent = n * len(DEVICES) * PER_BATCH
    stored = sum(a["stored"] for a in acks)
    assert stored <= frames_sent <= stored + sum(a["duplicate"] for a in acks)
    assert not any(a["duplicate"] for a in acks)
    w1.stop()
    w2.stop()
    a, b = world.stored("w1"), world.stored("w2")
    assert a and b, (len(a), len(b))  # both had a share
    assert not set(a) & set(b) and len(a) + len(b) == len(set(a) | set(b))
    assert set(a) | set(b) == every_frame(n)
    print(f"{n * len(DEVICES)} batches over two workers in {took:.1f} s: "
          f"{len(a) // PER_BATCH} and {len(b) // PER_BATCH}")  # fmt: skip


def kill_w1_mid_stream(world: World, n: int) -> dict:
    """n rounds of a batch from every device over two workers, w1 killed -9 after
    round n // 2 and restarted 2 s later; waits until every batch is answered.
    What the devices saw: their answers before the kill, before the restart, and
    every answer."""
    world.worker("w1"), world.worker("w2")
    devs = {d: Device(world.broker.port, d, k) for d, k in DEVICES.items()}
    bs = batches(n)
    want = {d: {(1, i * PER_BATCH) for i in range(n)} for d in DEVICES}
    got: dict = {}
    try:
        for i in range(n):
            for d in DEVICES:
                devs[d].publish(bs[d][i])
            if i == n // 2:
                world.workers["w1"].kill9()  # mid-stream: some batches in flight
                got["killed"] = {d: devs[d].answered() for d in DEVICES}
        time.sleep(2.0)
        got["before"] = {d: devs[d].answered() for d in DEVICES}
        world.worker("w1")  # restarted: resumes its session, drains it
        assert wait_all(devs, want, 60), {d: len(devs[d].answered()) for d in DEVICES}
        got["acks"] = [a for dv in devs.values() for a in dv.acks]
    finally:
        for dv in devs.values():
            dv.close()
    for w in world.workers.values():
        w.stop()
    sent = n * len(DEVICES) * PER_BATCH
    acks = got["acks"]
    for d in DEVICES:  # everything answered before the kill was answered after
        assert got["killed"][d] <= got["before"][d]
    # every frame answered stored once, or, when w1 died between a COMMIT and its
    # answer, duplicate when the batch came back to it
    stored = sum(a["stored"] for a in acks)
    assert stored <= sent <= stored + sum(a["duplicate"] for a in acks)
    assert all(a["stored"] + a["duplicate"] == PER_BATCH for a in acks)
    return got


def test_kill9_of_a_worker_mid_stream_loses_nothing(world):
    """kill -9 of w1 while batches flow: Mosquitto keeps w1's session (Session
    Expiry: never) with the batches it had in flight and those queued for it since;
    w1 restarted on its store resumes the session and gets them again. Nothing
    acknowledged is lost and nothing is stored by both workers."""
    n = 40
    got = kill_w1_mid_stream(world, n)
    a, b = world.stored("w1"), world.stored("w2")
    assert not set(a) & set(b)  # none stored by both
    assert len(set(a)) == len(a) and len(set(b)) == len(b)
    assert set(a) | set(b) == every_frame(n)  # nothing lost
    acks, total = got["acks"], n * len(DEVICES)
    before = sum(len(x) for x in got["before"].values())
    print(
        f"kill -9 of w1 after {n // 2 + 1} of {n} rounds: {before} of {total} "
        f"batches answered before its restart, {len(acks)} answers in all, "
        f"{sum(x['duplicate'] > 0 for x in acks)} of them duplicates"
    )
    assert os.path.exists(world.d / "w1.duckdb")


def test_kill9_of_a_worker_on_one_postgresql_store(tmp_path, pg_url):
    """The State's layout: two MQTT workers on one PostgreSQL store, w1 killed
    mid-stream and restarted: every frame stored exactly once in the one store
    (a batch w1 had committed but not answered comes back to it and is answered
    duplicate), every batch answered."""
    world = World(tmp_path, store=pg_url)
    try:
        kill_w1_mid_stream(world, 30)
        rows = world.stored("w1")  # the one store
    finally:
        world.stop()
    assert len(rows) == len(set(rows)) and set(rows) == every_frame(30)
