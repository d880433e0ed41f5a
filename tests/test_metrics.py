"""GET /healthz and GET /metrics of `jalkal serve`: a real server scraped after
known uploads, the exposition read with prometheus_client's own parser; two
servers in one process keep their own registries; JSON logs."""

from __future__ import annotations

import http.client
import json
import threading
import time
from pathlib import Path

import numpy as np
import pytest
from uplink_util import DEV, DEV2, KEY, Server, frames, keys_file

from jalkal.ingest import metrics as mt
from jalkal.ingest.ack import IngestResult
from jalkal.ingest.httpd import IngestHTTPServer
from jalkal.ingest.log import Log
from jalkal.ingest.store import MAX_BODY, Store, open_store

prometheus_client = pytest.importorskip("prometheus_client")
from prometheus_client.parser import text_string_to_metric_families  # noqa: E402

OTHER = 0x5EED0001  # not in the keys file


def request(url: str, method: str, path: str, body: bytes = b"") -> tuple[int, bytes]:
    host, port = url.removeprefix("http://").split(":")
    conn = http.client.HTTPConnection(host, int(port), timeout=10)
    try:
        headers = {"Content-Type": "application/octet-stream"}
        conn.request(method, path, body=body or None, headers=headers)
        r = conn.getresponse()
        return r.status, r.read()
    finally:
        conn.close()


def scrape(url: str, query: str = "") -> dict[tuple[str, tuple], float]:
    """{(sample name, sorted labels): value} of GET /metrics."""
    status, body = request(url, "GET", "/metrics" + query)
    assert status == 200, body
    out = {}
    for fam in text_string_to_metric_families(body.decode()):
        for s in fam.samples:
            out[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return out


@pytest.fixture
def server(tmp_path, store_where):
    keys = keys_file(tmp_path / "keys.json")
    s = Server(tmp_path, store_where, keys, "-v", "--log-format", "json")  # type: ignore[arg-type]
    s.start()
    yield s
    s.stop()


def pg_bytes(url: str) -> int:
    """The jalkal schema's tables with their indexes, as PostgreSQL counts them."""
    import psycopg

    with psycopg.connect(url) as c:
        row = c.execute(
            "SELECT sum(pg_total_relation_size(c.oid)) FROM pg_class c JOIN "
            "pg_namespace n ON n.oid = c.relnamespace WHERE n.nspname = 'jalkal' "
            "AND c.relkind = 'r'"
        ).fetchone()
    assert row is not None
    return int(row[0])


def test_scrape_after_known_uploads(server):
    url = server.http
    fr = frames(6)
    assert request(url, "POST", "/v1/frames", b"".join(fr[:4]))[0] == 200
    assert request(url, "POST", "/v1/frames", b"".join(fr[2:6]))[0] == 200  # 2 dup
    bad = bytearray(frames(3, device=DEV2, key=KEY)[2])  # DEV2 signed with DEV's key
    assert request(url, "POST", "/v1/frames", bytes(bad))[0] == 403
    assert request(url, "POST", "/v1/frames", frames(1, device=OTHER)[0])[0] == 403
    assert request(url, "POST", "/v1/frames", b"\x00garbage")[0] == 400
    m = scrape(url)
    assert m[("jalkal_frames_stored_total", (("transport", "http"),))] == 6
    assert m[("jalkal_frames_duplicate_total", (("transport", "http"),))] == 2
    assert m[("jalkal_frames_rejected_total", (("reason", "bad_mac"),))] == 1
    assert m[("jalkal_frames_rejected_total", (("reason", "unknown_device"),))] == 1
    assert m[("jalkal_frames_rejected_total", (("reason", "conflict"),))] == 0
    ok = (("outcome", "ok"), ("transport", "http"))
    assert m[("jalkal_batches_total", ok)] == 2
    refused = (("outcome", "rejected"), ("transport", "http"))
    assert m[("jalkal_batches_total", refused)] == 2
    batches = sum(v for (n, _), v in m.items() if n == "jalkal_batches_total")
    assert batches == 5
    count = m[("jalkal_batch_seconds_count", (("transport", "http"),))]
    assert count == 5
    inf = m[("jalkal_batch_seconds_bucket", (("le", "+Inf"), ("transport", "http")))]
    assert inf == 5 and m[("jalkal_batch_seconds_sum", (("transport", "http"),))] > 0
    assert m[("jalkal_store_frames", ())] == 6
    if "://" in str(server.store):  # PostgreSQL: the jalkal schema's tables
        assert m[("jalkal_store_bytes", ())] == pg_bytes(str(server.store)) > 0
    else:  # the file and its write-ahead log
        assert m[("jalkal_store_bytes", ())] >= Path(server.store).stat().st_size > 0
    assert m[("jalkal_devices", ())] == 2
    # DEV heard just now; DEV2 never (its only frame failed its MAC)
    assert m[("jalkal_devices_silent", (("over", "1h"),))] == 1
    assert m[("jalkal_devices_silent", (("over", "never"),))] == 1
    assert m[("jalkal_throttle_failed_macs_total", ())] == 1
    assert m[("jalkal_keys_reloads_total", (("result", "ok"),))] == 0
    assert 0 < time.time() - m[("jalkal_keys_loaded_timestamp_seconds", ())] < 120
    assert m[("jalkal_http_connections", ())] >= 1
    # no per-device series unless asked for
    assert not any(n.startswith("jalkal_device_last") for n, _ in m)
    m = scrape(url, "?device=all")
    age = m[("jalkal_device_last_heard_age_seconds", (("device", f"{DEV:08x}"),))]
    assert 0 <= age < 60
    assert len([n for n, _ in m if n == "jalkal_device_last_heard_age_seconds"]) == 1
    m = scrape(url, f"?device={DEV2:08x}&device=NOTHEX")
    assert not any(n == "jalkal_device_last_heard_age_seconds" for n, _ in m)
    assert request(url, "GET", "/healthz") == (200, b"ok\n")
    # the structured log: one JSON object a line, a batch with its fields
    server.stop()
    docs = [json.loads(ln) for ln in server.err.read_text().splitlines() if ln]
    b = [d for d in docs if d["event"] == "batch"]
    assert len(b) == 5
    first = b[0]
    want = {"time", "level", "event", "transport", "source", "device", "frames",
            "stored", "duplicate", "rejected", "reasons", "ms"}  # fmt: skip
    assert want <= set(first)
    assert (first["transport"], first["source"], first["device"]) == (
        "http", "127.0.0.1", f"{DEV:08x}")  # fmt: skip
    assert (first["frames"], first["stored"], first["level"]) == (4, 4, "info")
    assert b[1]["duplicate"] == 2 and b[1]["stored"] == 2
    assert b[2]["reasons"] == {"bad_mac": 1} and b[2]["level"] == "warning"
    assert b[4]["reasons"] == {"malformed_body": 1}
    assert first["time"].endswith("Z") and isinstance(first["ms"], float)


def test_metrics_silent_counts_from_the_store_at_start(tmp_path, store_where):
    """Last heard is read from the store when the server starts."""
    keys = keys_file(tmp_path / "keys.json")
    with open_store(store_where, {f"{DEV:08x}": KEY}) as st:
        assert st.ingest(b"".join(frames(3))).stored == 3
    s = Server(tmp_path, store_where, keys).start()  # type: ignore[arg-type]
    try:
        end = time.monotonic() + 10
        while True:
            m = scrape(s.http)
            if m[("jalkal_devices_silent", (("over", "never"),))] == 1:
                break
            assert time.monotonic() < end, m
            time.sleep(0.1)
        assert m[("jalkal_devices_silent", (("over", "1h"),))] == 1  # DEV2 only
        assert m[("jalkal_frames_stored_total", (("transport", "http"),))] == 0
    finally:
        s.stop()


def _server(st: Store) -> tuple[IngestHTTPServer, str]:
    httpd = IngestHTTPServer(("127.0.0.1", 0), Log(-1), MAX_BODY)
    httpd.store, httpd.metrics = st, mt.Metrics()
    httpd.metrics.store = st
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    return httpd, f"http://127.0.0.1:{httpd.server_address[1]}"


def test_healthz_follows_the_store_and_registries_are_apart(tmp_path):
    a = Store(tmp_path / "a.duckdb", {f"{DEV:08x}": KEY})
    b = Store(tmp_path / "b.duckdb", {f"{DEV:08x}": KEY})
    (ha, ua), (hb, ub) = _server(a), _server(b)
    try:
        res = a.ingest(b"".join(frames(2)), via="http")
        ha.metrics.batch("http", res)
        assert scrape(ua)[("jalkal_frames_stored_total", (("transport", "http"),))] == 2
        assert scrape(ub)[("jalkal_frames_stored_total", (("transport", "http"),))] == 0
        assert request(ua, "GET", "/healthz") == (200, b"ok\n")
        a.failure = "the store failed: disk full"  # as a failed COMMIT leaves it
        status, body = request(ua, "GET", "/healthz")
        assert status == 503 and b"disk full" in body
        a.failure = None
        assert request(ua, "GET", "/healthz")[0] == 200
        b.close()  # the store is gone
        status, body = request(ub, "GET", "/healthz")
        assert status == 503 and body.startswith(b"store_error")
    finally:
        for h in (ha, hb):
            h.shutdown()
            h.server_close()
        a.close()


def test_batch_outcomes():
    r = IngestResult(body_bytes=1, body_crc32=0)
    r.outcome = np.array([0, 1], np.int8)
    assert mt.outcome(r) == "ok"
    r.outcome = np.array([0, 3], np.int8)
    assert mt.outcome(r) == "partial"
    r.outcome = np.array([3], np.int8)
    assert mt.outcome(r) == "rejected"
    r.error = "throttled"
    assert mt.outcome(r) == "throttled"


def test_text_log_unchanged(tmp_path, capsys):
    log = Log(1)
    r = IngestResult(body_bytes=10, body_crc32=0)
    r.outcome = np.array([0], np.int8)
    log.batch("http", "127.0.0.1", r)
    err = capsys.readouterr().err
    want = "serve: http 127.0.0.1: 10 B, 1 frames, 1 stored, 0 duplicate, 0 rejected"
    assert err == want + " in 0.0 ms\n", err


def test_workers_on_one_postgresql_store_see_what_the_others_heard(
    tmp_path, pg_url, monkeypatch
):
    """Two workers on one PostgreSQL store: a device heard by one is heard on the
    other's /metrics too (each reads the store's newly received frames every
    $JALKAL_HEARD_REFRESH seconds), so any one worker's silence gauges hold for the
    whole service."""
    monkeypatch.setenv("JALKAL_HEARD_REFRESH", "0.3")
    keys = keys_file(tmp_path / "keys.json")
    a_dir, b_dir = tmp_path / "a", tmp_path / "b"
    a_dir.mkdir(), b_dir.mkdir()
    a = Server(a_dir, pg_url, keys).start()  # type: ignore[arg-type]
    b = Server(b_dir, pg_url, keys).start()  # type: ignore[arg-type]
    try:
        never = (("over", "never"),)
        for s in (a, b):  # nothing stored yet: both devices never heard
            assert scrape(s.http)[("jalkal_devices_silent", never)] == 2
        assert request(b.http, "POST", "/v1/frames", b"".join(frames(4)))[0] == 200
        assert scrape(b.http)[("jalkal_devices_silent", never)] == 1  # B answered
        m = scrape(a.http)
        assert m[("jalkal_frames_stored_total", (("transport", "http"),))] == 0
        end = time.monotonic() + 20
        while m[("jalkal_devices_silent", never)] != 1:  # A reads it from the store
            assert time.monotonic() < end, m
            time.sleep(0.1)
            m = scrape(a.http)
        assert m[("jalkal_devices_silent", (("over", "1h"),))] == 1  # DEV2 only
        got = scrape(a.http, "?device=all")
        age = got[("jalkal_device_last_heard_age_seconds", (("device", f"{DEV:08x}"),))]
        assert 0 <= age < 60
        assert m[("jalkal_store_frames", ())] == 4
    finally:
        a.stop()
        b.stop()


def test_a_postgresql_worker_starts_from_the_last_days(tmp_path, pg_url):
    """A worker on PostgreSQL reads the frames received in the last 8 days when it
    starts (not the whole table): a device heard only 30 days ago is silent for
    more than 7 days but not "never" heard, and has no age until it is heard."""
    import psycopg

    keys = keys_file(tmp_path / "keys.json")
    with open_store(pg_url, {f"{DEV:08x}": KEY}) as st:
        assert st.ingest(b"".join(frames(3))).stored == 3
    with psycopg.connect(pg_url, autocommit=True) as c:
        c.execute("UPDATE jalkal.frames SET received = received - interval '30 days'")
    s = Server(tmp_path, pg_url, keys).start()  # type: ignore[arg-type]
    try:
        end = time.monotonic() + 10
        while "metrics: last heard of" not in s.err.read_text():
            assert time.monotonic() < end, s.err.read_text()
            time.sleep(0.1)
        assert "last heard of 0 devices" in s.err.read_text()
        assert "1 more heard before" in s.err.read_text()
        m = scrape(s.http, "?device=all")
        assert m[("jalkal_devices_silent", (("over", "never"),))] == 1  # DEV2
        assert m[("jalkal_devices_silent", (("over", "7d"),))] == 2
        assert not any(n == "jalkal_device_last_heard_age_seconds" for n, _ in m)
        assert request(s.http, "POST", "/v1/frames", frames(4)[3])[0] == 200
        m = scrape(s.http, "?device=all")
        assert m[("jalkal_devices_silent", (("over", "1h"),))] == 1  # DEV2
        age = m[("jalkal_device_last_heard_age_seconds", (("device", f"{DEV:08x}"),))]
        assert 0 <= age < 60
    finally:
        s.stop()
