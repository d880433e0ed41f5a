"""`jalkal serve` as a process: HTTP and MQTT (a private Mosquitto) on 127.0.0.1,
bad requests, fuzzed bodies, kill -9 right after an ack, a broker killed mid-stream."""

from __future__ import annotations

import json
import socket
import subprocess
import sys
import threading
import time
import urllib.request
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from test_ingest_store import forge_mac
from uplink_util import (
    DEV,
    DEV2,
    KEY,
    KEY2,
    Mosquitto,
    Server,
    frames,
    free_port,
    keys_file,
    needs_mosquitto,
    post,
)

from jalkal.ingest.store import Store

pytestmark = needs_mosquitto


@pytest.fixture(scope="module")
def broker(tmp_path_factory):
    m = Mosquitto(tmp_path_factory.mktemp("mq")).start()
    yield m
    m.stop()


@pytest.fixture(scope="module", params=["duckdb", "postgresql"])
def server(request, tmp_path_factory, broker):
    """`jalkal serve` on each store back-end: the embedded DuckDB file and a
    PostgreSQL database of the session's private cluster (tests/pg_util.py)."""
    w = tmp_path_factory.mktemp("serve")
    if request.param == "postgresql":
        from conftest import new_database

        store = new_database(request.getfixturevalue("pg_cluster"))
    else:
        store = str(w / "store.duckdb")
    s = Server(w, store, keys_file(w / "keys.json"), "-v")  # type: ignore[arg-type]
    # the fuzzing below forges MACs by the hundred: no lockout here (the throttle
    # has tests of its own, tests/test_server_hardening.py)
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("JALKAL_THROTTLE", "1000000,1,1,1000000")
        s.start(mqtt=broker.url)
    yield s
    s.stop()


def health(url: str) -> dict:
    with urllib.request.urlopen(url + "/v1/health", timeout=10) as r:
        return json.loads(r.read())


def test_http_round_trip_duplicates_and_health(server):
    before = health(server.http)["frames"]
    fs = frames(200, boot=21)
    status, doc = post(server.http, b"".join(fs))
    assert status == 200 and doc["ok"] and doc["stored"] == 200
    assert doc["acked"] == [["0a1b2c3d", 21, 0, 199]]
    status, doc = post(server.http, b"".join(fs))
    assert status == 200 and doc["duplicate"] == 200 and doc["stored"] == 0
    h = health(server.http)
    assert h["ok"] and h["frames"] == before + 200 and h["max_body"] == 256 * 1024


def raw_request(url: str, data: bytes, timeout: float = 10) -> tuple[int, dict]:
    """Send raw bytes (a hand-made request), read the status and the JSON body."""
    host, port = url.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port)), timeout=timeout) as s:
        s.sendall(data)
        buf = b""
        while b"\r\n\r\n" not in buf:
            chunk = s.recv(65536)
            if not chunk:
                break
            buf += chunk
        head, _, rest = buf.partition(b"\r\n\r\n")
        n = int(next(
            (ln.split(b":")[1] for ln in head.split(b"\r\n")
             if ln.lower().startswith(b"content-length")), b"0",
        ))  # fmt: skip
        while len(rest) < n:
            chunk = s.recv(65536)
            if not chunk:
                break
            rest += chunk
    return int(head.split()[1]), json.loads(rest) if rest else {}


def test_bad_requests_get_a_4xx_naming_the_reason(server):
    before = health(server.http)["frames"]
    good = frames(3, boot=22)
    cases = [
        (post(server.http, b"x", path="/v2/frames"), 404, "not_found"),
        (post(server.http, b"", method="GET"), 405, "method_not_allowed"),
        (post(server.http, b"", method="PUT"), 405, "method_not_allowed"),
        (post(server.http, b"".join(good), ctype="application/json"), 415,
         "unsupported_media_type"),
        (post(server.http, b""), 400, "malformed_body"),
        (post(server.http, b"garbage" * 10), 400, "malformed_body"),
        (post(server.http, b"".join(good)[:-3]), 400, "malformed_body"),
        (post(server.http, b"".join(frames(3, device=0x77))), 403, "bad_mac"),  # wire
        (post(server.http, b"".join(map(forge_mac, good))), 403, "bad_mac"),
        (post(server.http, frames(1, boot=22, seq=2, prev=0x4242)[0]), 200, None),
        (post(server.http, good[1]), 409, "broken_chain"),  # seq 1 vs stored seq 2
        (post(server.http, frames(3, boot=22, t0=7)[2]), 409, "conflict"),
        (raw_request(server.http, b"POST /v1/frames HTTP/1.1\r\nHost: x\r\n"
                     b"Content-Type: application/octet-stream\r\n\r\n"), 411,
         "length_required"),
        (raw_request(server.http, b"POST /v1/frames HTTP/1.1\r\nHost: x\r\n"
                     b"Content-Type: application/octet-stream\r\n"
                     b"Content-Length: 10000000\r\n\r\n"), 413, "too_large"),
        (raw_request(server.http, b"POST /v1/frames HTTP/1.1\r\nHost: x\r\n"
                     b"Content-Type: application/octet-stream\r\n"
                     b"Content-Length: -4\r\n\r\n"), 400, "malformed_body"),
    ]  # fmt: skip
    for (status, doc), want, reason in cases:
        assert status == want, (doc, want)
        if reason:
            assert doc["error"] == reason and doc["ok"] is False, doc
            assert doc["stored"] == 0 and doc["message"], doc
    assert health(server.http)["frames"] == before + 1  # the one good frame
    assert post(server.http, b"".join(frames(5, boot=23)))[0] == 200


def test_oversized_body_is_refused_without_reading_it(server):
    """413 comes back before the body is sent; the server never reads 10 MB."""
    t0 = time.monotonic()
    status, doc = raw_request(
        server.http,
        b"POST /v1/frames HTTP/1.1\r\nHost: x\r\nContent-Type: "
        b"application/octet-stream\r\nContent-Length: 300000\r\n\r\n" + b"\0" * 1000,
    )
    assert status == 413 and doc["error"] == "too_large"
    assert time.monotonic() - t0 < 5
    assert health(server.http)["ok"]


@settings(max_examples=60, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])  # fmt: skip
@given(
    kind=st.sampled_from(["random", "truncated", "forged", "unknown", "conflict"]),
    blob=st.binary(max_size=600),
    cut=st.integers(1, 39),
)
def test_fuzzed_bad_bodies_store_nothing(server, kind, blob, cut):
    good = frames(4, boot=30)
    if kind == "random":
        body = blob
    elif kind == "truncated":
        body = b"".join(good)[:-cut]
    elif kind == "forged":
        body = b"".join(forge_mac(f) for f in good) + b"".join(frames(1, key=KEY2))
    elif kind == "unknown":
        body = b"".join(frames(3, device=0xDEAD0000 + cut))
    else:  # same keys as stored frames of boot 31, other bytes
        body = b"".join(frames(2, boot=31, t0=100 + cut))
    before = health(server.http)["frames"]
    status, doc = post(server.http, body)
    assert 400 <= status < 500 and doc["stored"] == 0 and doc["error"], doc
    assert health(server.http)["frames"] == before


@pytest.fixture(scope="module", autouse=True)
def _conflict_seed(server):
    post(server.http, b"".join(frames(2, boot=31)))


# --- MQTT -------------------------------------------------------------------------


class Device:
    """A board's side of MQTT: publish batches on .../up, collect acks on .../ack."""

    def __init__(self, broker_url: str, device: int):
        import paho.mqtt.client as mqtt

        self.dev = f"{device:08x}"
        self.acks: list[dict] = []
        self.cond = threading.Condition()
        self.subscribed = threading.Event()
        c = mqtt.Client(
            mqtt.CallbackAPIVersion.VERSION2, client_id=f"board-{self.dev}",
            clean_session=False, protocol=mqtt.MQTTv311,
        )  # fmt: skip
        c.on_connect = lambda cl, *a: cl.subscribe(f"jalkal/v1/{self.dev}/ack", qos=1)
        c.on_subscribe = lambda *a: self.subscribed.set()
        c.on_message = self._msg
        host, port = broker_url.removeprefix("mqtt://").split(":")
        c.connect(host, int(port))
        c.loop_start()
        assert self.subscribed.wait(10)
        self.client = c

    def _msg(self, client, userdata, msg):
        with self.cond:
            self.acks.append(json.loads(msg.payload))
            self.cond.notify_all()

    def publish(self, body: bytes) -> None:
        self.client.publish(f"jalkal/v1/{self.dev}/up", body, qos=1).wait_for_publish(
            10
        )

    def wait_acks(self, n: int, timeout: float = 20) -> list[dict]:
        with self.cond:
            assert self.cond.wait_for(lambda: len(self.acks) >= n, timeout), self.acks
            return list(self.acks)

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


def test_mqtt_round_trip_duplicates_and_rejections(server, broker):
    d = Device(broker.url, DEV2)
    try:
        fs = frames(300, DEV2, KEY2, boot=40)
        d.publish(b"".join(fs))
        d.publish(b"".join(fs[:100]))
        d.publish(b"".join(frames(2, DEV, KEY, boot=40)))  # on another device's topic
        d.publish(b"not frames")
        acks = d.wait_acks(4)
    finally:
        d.close()
    assert acks[0]["stored"] == 300 and acks[0]["acked"] == [["11223344", 40, 0, 299]]
    assert acks[1]["duplicate"] == 100 and acks[1]["stored"] == 0
    assert acks[2]["error"] == "wrong_device" and acks[2]["rejected"] == 2
    assert acks[3]["error"] == "malformed_body"


# --- crashes ----------------------------------------------------------------------


def stored_stream(db: Path) -> bytes:
    with Store(db, read_only=True) as s:
        return s.raw_stream()


def test_kill9_right_after_an_http_ack_loses_nothing_acked(tmp_path):
    s = Server(tmp_path, tmp_path / "s.duckdb", keys_file(tmp_path / "k.json")).start()
    fs = frames(4000, boot=2)
    acked: list[bytes] = []
    for i in range(0, len(fs), 500):
        status, doc = post(s.http, b"".join(fs[i : i + 500]))
        assert status == 200 and doc["stored"] == 500
        acked.extend(fs[i : i + 500])
        if len(acked) == 2500:
            s.kill9()  # the very moment the ack is in: no checkpoint, no close
            break
    stream = stored_stream(tmp_path / "s.duckdb")
    assert stream == b"".join(acked)
    # back up: the rest goes in, the acked part comes back as duplicates
    s.start()
    status, doc = post(s.http, b"".join(fs[2000:3000]))
    assert (doc["duplicate"], doc["stored"]) == (500, 500)
    s.stop()
    assert stored_stream(tmp_path / "s.duckdb") == b"".join(fs[:3000])


def test_kill9_right_after_an_mqtt_ack_and_the_session_outlives_the_server(tmp_path):
    m = Mosquitto(tmp_path / "mq").start()
    s = Server(tmp_path, tmp_path / "s.duckdb", keys_file(tmp_path / "k.json"))
    s.start(http=None, mqtt=m.url)
    d = Device(m.url, DEV)
    try:
        fs = frames(3000, boot=3)
        d.publish(b"".join(fs[:1000]))
        d.wait_acks(1)
        s.kill9()
        assert stored_stream(tmp_path / "s.duckdb") == b"".join(fs[:1000])
        # published while the server is down: the broker keeps them for its session
        d.publish(b"".join(fs[1000:2000]))
        d.publish(b"".join(fs[2000:]))
        time.sleep(0.3)
        s.start(http=None, mqtt=m.url)
        with d.cond:
            assert d.cond.wait_for(
                lambda: sum(a["stored"] for a in d.acks) == 3000, 20
            ), d.acks
            acks = list(d.acks)
        # killed before its PUBACK went out, the server may get batch 1 again from
        # the broker: acknowledged again as duplicates, stored once
        assert all(a["ok"] for a in acks)
        assert [a["stored"] for a in acks if a["stored"]] == [1000, 1000, 1000]
        assert all(a["duplicate"] == 1000 for a in acks if not a["stored"])
    finally:
        d.close()
        s.stop()
        m.stop()
    assert stored_stream(tmp_path / "s.duckdb") == b"".join(fs)


def test_broker_killed_mid_stream_replay_completes_exactly_once(tmp_path):
    m = Mosquitto(tmp_path / "mq").start()
    s = Server(tmp_path, tmp_path / "s.duckdb", keys_file(tmp_path / "k.json"))
    fs = frames(6000, boot=5) + frames(3000, DEV2, KEY2, boot=6)
    logdir = tmp_path / "sd"
    logdir.mkdir()
    (logdir / "a.jkl").write_bytes(b"".join(fs[:4000]))
    (logdir / "b.jkl").write_bytes(b"".join(fs[4000:]))
    rp = None
    try:
        s.start(http=None, mqtt=m.url)
        rp = subprocess.Popen(
            [sys.executable, "-m", "jalkal", "replay", str(logdir), "--to", m.url,
             "--batch", "300", "--rate", "3000", "--timeout", "2"],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        )  # fmt: skip
        time.sleep(1.2)
        m.kill9()
        time.sleep(1.0)
        m.start()
        out, err = rp.communicate(timeout=60)
    finally:
        if rp is not None and rp.poll() is None:
            rp.kill()
        s.stop()
        m.stop()
    assert rp.returncode == 0, err
    assert "9000 frames" in out and "0 rejected" in out
    assert "sending it again" in err  # the broker really went away mid-stream
    with Store(tmp_path / "s.duckdb", read_only=True) as st_:
        assert st_.count() == 9000
        assert st_.raw_stream() == b"".join(fs)


def test_server_errors_are_one_line(tmp_path):
    from jalkal.cli import main

    k = keys_file(tmp_path / "k.json", {DEV: KEY})
    assert main(["serve", "--store", str(tmp_path / "s"), "--keys", str(k),
                 "--http", "nonsense"]) == 1  # fmt: skip
    assert main(["serve", "--store", str(tmp_path / "s"), "--keys", str(k),
                 "--mqtt", "http://x:1"]) == 1  # fmt: skip
    port = free_port()
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", port))
        busy.listen()
        assert main(["serve", "--store", str(tmp_path / "s"), "--keys", str(k),
                     "--http", f"127.0.0.1:{port}"]) == 1  # fmt: skip


@pytest.mark.bench
def test_ingest_benchmark_runs(capsys):
    """benchmarks/ingest.py end to end on a small run (the figures are in
    docs/uplink.md; run the script itself for them)."""
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
    import ingest

    assert ingest.main(["--frames", "20000", "--repeat", "1", "--json"]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert set(doc["frames_per_s"]) == {"direct insert", "ingest() in-process",
                                        "HTTP", "MQTT"}  # fmt: skip
