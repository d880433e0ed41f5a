"""The PostgreSQL store (jalkal.ingest.pgstore) where it differs from the DuckDB
file: several writers at once, the schema it owns, a lost connection, readers'
snapshots, and errors that name the server but never its password. (The store's
semantics on both back-ends: tests/test_ingest_store.py.)"""

from __future__ import annotations

import json
import subprocess
import sys
import threading
from pathlib import Path

import pyarrow as pa
import pytest
from uplink_util import DEV, DEV2, KEY, KEY2, frames, free_port, post

from jalkal.errors import JalkalError
from jalkal.ingest.httpd import IngestHTTPServer
from jalkal.ingest.log import Log
from jalkal.ingest.pgstore import masked
from jalkal.ingest.store import MAX_BODY, open_store

psycopg = pytest.importorskip("psycopg")
KEYS = {f"{DEV:08x}": KEY, f"{DEV2:08x}": KEY2}
REPO = Path(__file__).resolve().parents[1]


def with_password(url: str, pw: str = "s3cret-pw") -> str:
    """The URL with a password (the private cluster trusts loopback: ignored)."""
    return url.replace("://jalkal@", f"://jalkal:{pw}@")


def test_masked_url():
    assert masked("postgresql://u:pw@h:5/db") == "postgresql://u:***@h:5/db"
    assert masked("postgres://h/db?password=pw&sslmode=require") == (
        "postgres://h/db?password=***&sslmode=require"
    )
    assert masked("postgresql://u@h/db") == "postgresql://u@h/db"


def test_unreachable_at_start_names_host_and_port_not_the_password():
    port = free_port()
    url = f"postgresql://jalkal:s3cret-pw@127.0.0.1:{port}/x?connect_timeout=3"
    with pytest.raises(JalkalError) as e:
        open_store(url, KEYS)
    msg = str(e.value)
    assert f"cannot connect to PostgreSQL at 127.0.0.1:{port}" in msg, msg
    assert "s3cret-pw" not in msg and "jalkal:***@" in msg


def test_schema_is_its_own_and_versioned(pg_cluster, pg_url):
    with psycopg.connect(pg_url, autocommit=True) as conn:
        conn.execute("CREATE TABLE public.theirs (a int)")
        conn.execute("INSERT INTO public.theirs VALUES (7)")
    with pytest.raises(JalkalError, match="not a jalkal store"):
        open_store(pg_url, read_only=True)
    with open_store(pg_url, KEYS) as st:  # beside their table, in schema jalkal
        assert st.ingest(b"".join(frames(3))).stored == 3
    with psycopg.connect(pg_url, autocommit=True) as conn:
        assert conn.execute("SELECT a FROM public.theirs").fetchall() == [(7,)]
        cols = dict(conn.execute(
            "SELECT column_name, data_type FROM information_schema.columns "
            "WHERE table_schema = 'jalkal' AND table_name = 'frames'"
        ).fetchall())  # fmt: skip
        conn.execute("UPDATE jalkal.jalkal_meta SET value = '99'")
    assert cols["device"] == "bigint" and cols["frame"] == "bytea"
    assert cols["ts"] == "timestamp without time zone" and cols["boot"] == "integer"
    with pytest.raises(JalkalError, match="schema version 99.*newer jalkal"):
        open_store(pg_url, KEYS)
    other = pg_url.rsplit("/", 1)[0] + "/" + "postgres"
    with psycopg.connect(other, autocommit=True) as conn:
        conn.execute("CREATE SCHEMA IF NOT EXISTS jalkal")
        conn.execute("CREATE TABLE IF NOT EXISTS jalkal.mine (a int)")
    with pytest.raises(JalkalError, match="not a jalkal store.*left as it is"):
        open_store(other, KEYS)


def test_two_writers_same_batches_at_once_store_once_and_both_ack(pg_url):
    a, b = open_store(pg_url, KEYS), open_store(pg_url, KEYS)
    fs = frames(400) + frames(200, DEV2, KEY2, boot=3)
    rounds = [b"".join(fs[i : i + 40]) for i in range(0, 400, 40)] + [
        b"".join(fs[400 + i : 440 + i]) for i in range(0, 200, 40)
    ]
    results: dict[str, list] = {"a": [], "b": []}

    def send(name, st, gate):
        for body in rounds:
            gate.wait()
            results[name].append(st.ingest(body))

    gate = threading.Barrier(2)
    ts = [threading.Thread(target=send, args=(n, s, gate)) for n, s in
          (("a", a), ("b", b))]  # fmt: skip
    for t in ts:
        t.start()
    for t in ts:
        t.join(60)
    for ra, rb, body in zip(results["a"], results["b"], rounds, strict=True):
        for r in (ra, rb):
            assert r.error is None and r.rejected == 0 and r.acked == len(r.outcome)
            assert r.to_json()["acked_bytes"] == len(body)
        assert ra.stored + rb.stored == len(ra.outcome)  # one of them stored each
    assert a.count() == 600
    assert a.raw_stream() == b"".join(fs[:400] + fs[400:])
    # other bytes under the same keys at once: one is stored, the other conflicts
    x = frames(3, seq=400, prev=_mac16(fs[399]))
    y = frames(3, seq=400, prev=_mac16(fs[399]), t0=1_800_000_000)
    got: list = []
    gate = threading.Barrier(2)

    def one(st, body):
        gate.wait()
        got.append(st.ingest(body))

    ts = [threading.Thread(target=one, args=(s, b"".join(f))) for s, f in
          ((a, x), (b, y))]  # fmt: skip
    for t in ts:
        t.start()
    for t in ts:
        t.join(60)
    outcomes = sorted(
        (r.stored, r.to_json()["reasons"].get("conflict", 0)) for r in got
    )
    assert outcomes == [(0, 3), (3, 0)]
    assert a.count() == 603
    a.close()
    b.close()


def _mac16(f: bytes) -> int:
    return int.from_bytes(f[-8:-4], "little") & 0xFFFF


def test_future_boot_reads_the_boots_another_worker_stored(pg_url):
    a, b = open_store(pg_url, KEYS), open_store(pg_url, KEYS)
    assert a.ingest(b"".join(frames(2, boot=1))).stored == 2
    assert b.ingest(b"".join(frames(2, boot=1000))).stored == 2  # b: 999 ahead
    # a last saw boot 1: 1999 ahead of that, 999 ahead of what the store holds
    r = a.ingest(b"".join(frames(2, boot=1999)))
    assert r.stored == 2, r.to_json()
    r = a.ingest(b"".join(frames(2, boot=4000)))  # still too far ahead
    assert r.to_json()["reasons"] == {"future_boot": 2}
    a.close()
    b.close()


def test_reader_sees_one_snapshot_while_writers_write(pg_url):
    fs = frames(300)
    with open_store(pg_url, KEYS) as w:
        w.ingest(b"".join(fs[:100]))
        with open_store(pg_url, read_only=True) as r:
            assert r.count() == 100
            w.ingest(b"".join(fs[100:200]))
            assert r.count() == 100 and r.table(["seq"]).num_rows == 100
            assert r.con.execute("SELECT count(*) FROM frames").fetchone() == (100,)
        with open_store(pg_url, read_only=True) as r:
            assert r.count() == 200


def test_commit_survives_kill9_right_after_ingest(pg_url):
    code = (
        "import os, sys; sys.path.insert(0, 'tests')\n"
        "from uplink_util import frames, KEY, DEV\n"
        "from jalkal.ingest.store import open_store\n"
        f"s = open_store({pg_url!r}, {{'{DEV:08x}': KEY}})\n"
        "r = s.ingest(b''.join(frames(300)))\n"
        "assert r.stored == 300\n"
        "os.kill(os.getpid(), 9)\n"  # no close, no goodbye to the server
    )
    p = subprocess.run([sys.executable, "-c", code], cwd=str(REPO))
    assert p.returncode == -9
    with open_store(pg_url, read_only=True) as s:
        assert s.raw_stream() == b"".join(frames(300))


def test_connection_lost_mid_batch_503_health_says_so_then_reconnects(pg_url):
    url = with_password(pg_url)
    st = open_store(url, KEYS)
    httpd = IngestHTTPServer(("127.0.0.1", 0), Log(-1), MAX_BODY)
    httpd.store = st
    base = f"http://127.0.0.1:{httpd.server_address[1]}"
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    fs = frames(30)
    try:
        assert post(base, b"".join(fs[:10]))[0] == 200
        assert post(base, method="GET", path="/v1/health")[0] == 200
        with psycopg.connect(pg_url, autocommit=True) as conn:  # the link drops
            conn.execute(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                "WHERE datname = current_database() AND pid <> pg_backend_pid()"
            )
        status, doc = post(base, b"".join(fs[10:20]))
        assert status == 503 and doc["error"] == "store_error", doc
        assert doc["acked"] == [] and doc["stored"] == 0
        hs, hdoc = post(base, method="GET", path="/v1/health")
        assert hs == 503 and hdoc["error"] == "store_error"
        assert "s3cret-pw" not in json.dumps(doc) + json.dumps(hdoc)
        status, doc = post(base, b"".join(fs[10:20]))
        assert status == 200 and doc["stored"] == 10  # connected again
        assert post(base, method="GET", path="/v1/health")[0] == 200
        assert st.count() == 20
    finally:
        httpd.shutdown()
        httpd.server_close()
        st.close()


def test_count_is_kept_exact_beside_the_frames(pg_url):
    """count() sums the per-writer counts kept in each batch's transaction: equal
    to count(*) with two writers, in a reader's snapshot, after a reopen folds the
    rows, and for a store made before the count (seeded once from count(*))."""
    a, b = open_store(pg_url, KEYS), open_store(pg_url, KEYS)
    fs, gs = frames(120), frames(80, DEV2, KEY2, boot=2)
    ts = [
        threading.Thread(target=lambda st=a: [st.ingest(b"".join(fs[i : i + 10]))
                                              for i in range(0, 120, 10)]),
        threading.Thread(target=lambda st=b: [st.ingest(b"".join(gs[i : i + 10]))
                                              for i in range(0, 80, 10)]),
    ]  # fmt: skip
    for t in ts:
        t.start()
    for t in ts:
        t.join(60)
    assert a.ingest(b"".join(fs[:30])).duplicate == 30  # duplicates count nothing
    with psycopg.connect(pg_url) as conn:
        real = conn.execute("SELECT count(*) FROM jalkal.frames").fetchone()[0]
        rows = conn.execute("SELECT count(*) FROM jalkal.frame_counts").fetchone()[0]
    assert real == 200 and a.count() == b.count() == 200 and rows == 3
    reader = open_store(pg_url, read_only=True)
    assert reader.count() == 200
    a.ingest(b"".join(frames(5, seq=120, prev=_mac16(fs[-1]))))
    assert reader.count() == 200 and a.count() == 205  # the reader's snapshot
    a.close(), b.close(), reader.close()
    with open_store(pg_url, KEYS) as c:  # folded into one row at a read-write open
        assert c.count() == 205
    with psycopg.connect(pg_url, autocommit=True) as conn:
        assert conn.execute("SELECT writer, n FROM jalkal.frame_counts").fetchall() == [
            ("base", 205)
        ]
        conn.execute("DROP TABLE jalkal.frame_counts")  # as a store made before it
    with open_store(pg_url, read_only=True) as r:
        assert r.count() == 205  # counted the slow way, nothing written
    with open_store(pg_url, KEYS) as c:
        assert c.count() == 205  # seeded once from count(*)


def test_bulk_read_equals_the_stored_columns(pg_url, monkeypatch):
    """pgread reads the bytes and decodes them again: every column equal to what
    the store holds (read column by column), across several device groups; a
    group whose bytes do not decode as stored falls back to the columns."""
    from jalkal.ingest import pgread

    devs = {0x0B000001 + i: bytes([i + 7]) * 32 for i in range(5)}
    keys = {f"{d:08x}": k for d, k in devs.items()}
    with open_store(pg_url, keys) as st:
        for i, (d, k) in enumerate(devs.items()):
            assert (
                st.ingest(
                    b"".join(frames(30 + i, d, k, boot=i + 1)),
                    via="mqtt" if i % 2 else "http",
                ).stored
                == 30 + i
            )
    monkeypatch.setattr(pgread, "CHUNK_ROWS", 40)  # about one device a group
    fast: list[bool] = []
    real = pgread.decoded

    def counted(hx):
        got = real(hx)
        fast.append(got is not None)
        return got

    monkeypatch.setattr(pgread, "decoded", counted)
    with open_store(pg_url, read_only=True) as r:
        want = r.table()
        groups = pgread.device_groups(r.distinct_boots()[0], r.count())
        assert len(groups) >= 3
        got = pa.concat_tables(list(pgread.chunks(r)))
        assert got.equals(want) and fast and all(fast)  # all decoded again
        assert r.con.execute("SELECT count(*) FROM frames").fetchall() == [(160,)]
        folder = Path(r.duck_dir.name)
        assert folder.is_dir()
    assert not folder.exists()  # the DuckDB copy goes with the reader
    with psycopg.connect(pg_url, autocommit=True) as conn:  # bytes that are not
        conn.execute("UPDATE jalkal.frames SET frame = '\\x0102'::bytea "  # a frame
                     f"WHERE device = {0x0B000002} AND seq = 3")  # fmt: skip
    with open_store(pg_url, read_only=True) as r:
        want = r.table()
        got = pa.concat_tables(list(pgread.chunks(r)))
        assert got.equals(want) and b"\x01\x02" in got.column("frame").to_pylist()
    assert fast.count(False) == 1  # the one group with the odd bytes
