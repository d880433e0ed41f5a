"""`jalkal serve --store postgresql://...`: several workers on one store, kill -9 of
a worker and of PostgreSQL itself, and report/export from the PostgreSQL store while
it is served, equal to the same from a DuckDB store fed the same frames."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import pytest
from pg_util import PrivatePostgres, available
from uplink_util import DEV, DEV2, KEY, KEY2, Server, frames, keys_file, post

from jalkal.cli import main
from jalkal.ingest.store import open_store
from jkproto import codec

pytestmark = pytest.mark.skipif(available() is not None, reason=str(available()))
psycopg = pytest.importorskip("psycopg")


def workers(tmp_path: Path, url: str, n: int = 2) -> list[Server]:
    k = keys_file(tmp_path / "k.json", {DEV: KEY, DEV2: KEY2})
    out = []
    for i in range(n):
        w = tmp_path / f"w{i}"
        w.mkdir()
        out.append(Server(w, url, k).start())  # type: ignore[arg-type]
    return out


def batches(n_frames: int = 400, size: int = 20) -> list[bytes]:
    fs = frames(n_frames) + frames(n_frames, DEV2, KEY2, boot=5)
    per = [fs[:n_frames], fs[n_frames:]]
    return [b"".join(d[i : i + size]) for i in range(0, n_frames, size) for d in per]


def stored(url: str) -> bytes:
    with open_store(url, read_only=True) as st:
        return st.raw_stream()


def test_two_workers_same_and_interleaved_batches(tmp_path, pg_url):
    url = pg_url.replace("://jalkal@", "://jalkal:s3cret-pw@")
    a, b = workers(tmp_path, url)
    body = batches()
    try:
        answers: list[tuple[int, dict]] = []

        def send(srv, bodies):
            for x in bodies:
                answers.append(post(srv.http, x))

        # the same batches through both at once, then interleaved ones
        first, rest = body[: len(body) // 2], body[len(body) // 2 :]
        ts = [threading.Thread(target=send, args=(s, first)) for s in (a, b)]
        ts += [threading.Thread(target=send, args=(s, rest[i::2]))
               for i, s in enumerate((a, b))]  # fmt: skip
        for t in ts[:2]:
            t.start()
        for t in ts[:2]:
            t.join(120)
        for t in ts[2:]:
            t.start()
        for t in ts[2:]:
            t.join(120)
        assert len(answers) == 2 * len(first) + len(rest)
        for status, doc in answers:
            assert status == 200 and doc["ok"] and doc["rejected"] == 0, doc
        assert sum(d["stored"] for _, d in answers) == 800
        assert post(str(a.http), method="GET", path="/v1/health")[1]["frames"] == 800
    finally:
        a.stop()
        b.stop()
    got = stored(pg_url)
    assert len(got) == sum(map(len, body)) and sorted(got) == sorted(b"".join(body))
    for s in (a, b):  # the password is in no line of the servers' output
        assert "s3cret-pw" not in s.err.read_text()


def send_all(servers: list[Server], bodies: list[bytes], acked: list[bytes],
             on_batch=None, give_up_s: float = 90) -> None:  # fmt: skip
    """Each batch to the next live server until acknowledged (a load balancer and a
    board that re-sends)."""
    i = 0
    for n, body in enumerate(bodies):
        if on_batch:
            on_batch(n)
        end = time.monotonic() + give_up_s
        while True:
            srv = servers[i % len(servers)]
            i += 1
            try:
                status, doc = post(srv.http, body)
            except OSError:
                continue
            if status == 200 and doc["ok"]:
                acked.append(body)
                break
            assert status == 503 and doc["error"] == "store_error", doc
            assert time.monotonic() < end, doc
            time.sleep(0.2)


def test_kill9_of_one_of_two_workers_mid_stream(tmp_path, pg_url):
    a, b = workers(tmp_path, pg_url)
    body = batches(600, 10)
    acked: list[bytes] = []

    def kill_a(n):
        if n == len(body) // 3:
            a.kill9()

    try:
        send_all([a, b], body, acked, kill_a)
    finally:
        a.stop()
        b.stop()
    assert acked == body
    got = stored(pg_url)
    assert sorted(got) == sorted(b"".join(body)) and len(got) == len(b"".join(body))


def test_kill9_of_postgres_mid_batch_loses_nothing_acked(tmp_path):
    with PrivatePostgres() as pg:
        (s,) = workers(tmp_path, pg.url, 1)
        body = batches(600, 10)
        acked: list[bytes] = []
        seen: dict[str, object] = {}

        def crash(n):
            if n == len(body) // 2:
                killer = threading.Timer(0.02, pg.kill9)
                killer.start()
                killer.join()
                status, doc = post(s.http, body[n])
                seen["batch"] = (status, doc)
                seen["health"] = post(str(s.http), method="GET", path="/v1/health")
                pg.restart()

        try:
            send_all([s], body, acked, crash)
        finally:
            s.stop()
        status, doc = seen["batch"]  # type: ignore[misc]
        assert status == 503 and doc["error"] == "store_error" and doc["acked"] == []
        hs, hdoc = seen["health"]  # type: ignore[misc]
        assert hs == 503 and hdoc["error"] == "store_error"
        assert acked == body
        got = stored(pg.url)
    assert sorted(got) == sorted(b"".join(body)) and len(got) == len(b"".join(body))


def test_kill9_of_postgres_inside_a_batch_transaction(tmp_path):
    """PostgreSQL killed while a batch is inside its transaction (a trigger holds
    its INSERT in pg_sleep), a second worker's batch queued behind nothing: the held
    batch is answered 503 with nothing acked, crash recovery leaves none of it, and
    after a restart the re-sent backlog is stored whole, once."""
    with PrivatePostgres() as pg:
        a, b = workers(tmp_path, pg.url, 2)  # the schema exists once they run
        body = batches(200, 10)  # DEV and DEV2 alternate
        held = body[21]  # DEV2's 11th batch
        hold_seq = codec.unpack_head(held)[6]  # version, len, kind, flags, device…
        with psycopg.connect(pg.url, autocommit=True) as c:
            c.execute(
                "CREATE FUNCTION public.hold() RETURNS trigger LANGUAGE plpgsql AS "
                f"$$ BEGIN IF NEW.device = {DEV2} AND NEW.seq = {hold_seq} THEN "
                "PERFORM pg_sleep(60); END IF; RETURN NEW; END $$"
            )
            c.execute("CREATE TRIGGER hold BEFORE INSERT ON jalkal.frames "
                      "FOR EACH ROW EXECUTE FUNCTION public.hold()")  # fmt: skip
        acked: list[bytes] = []
        try:
            send_all([a, b], body[:21], acked)
            got: dict[str, tuple] = {}
            t = threading.Thread(target=lambda: got.update(h=post(a.http, held)))
            t.start()
            with psycopg.connect(pg.url, autocommit=True) as c:
                end = time.monotonic() + 20
                while not c.execute("SELECT 1 FROM pg_stat_activity WHERE "
                                    "wait_event = 'PgSleep'").fetchall():  # fmt: skip
                    assert time.monotonic() < end, "the batch never reached the hold"
                    time.sleep(0.02)
            other = post(b.http, body[22])  # DEV's next, while the held one waits
            pg.kill9()  # inside the held batch's transaction
            t.join(30)
            status, doc = got["h"]
            assert status == 503 and doc["error"] == "store_error", doc
            assert doc["acked"] == [] and doc["stored"] == 0
            pg.restart()
            with psycopg.connect(pg.url, autocommit=True) as c:
                c.execute("DROP TRIGGER hold ON jalkal.frames")
                left = c.execute("SELECT count(*) FROM jalkal.frames WHERE device = "
                                 f"{DEV2} AND seq = {hold_seq}").fetchone()  # fmt: skip
            assert left == (0,)  # rolled back by crash recovery
            if other[0] == 200 and other[1]["ok"]:
                acked.append(body[22])
            rest = [x for x in body[21:] if x not in acked]
            send_all([a, b], rest, acked)
        finally:
            a.stop(), b.stop()
        assert sorted(acked) == sorted(body)
        got_bytes = stored(pg.url)
    assert sorted(got_bytes) == sorted(b"".join(body))
    assert len(got_bytes) == len(b"".join(body))


def test_report_and_export_while_serving_equal_duckdb(tmp_path, pg_url, capsys):
    sim = tmp_path / "sim"
    run = ["sim", "--scenario", "power-cuts", "--days", "3", "--out", str(sim)]
    assert main(run) == 0
    keys = sim / "keys.json"
    db = tmp_path / "s.duckdb"
    (tmp_path / "d").mkdir()
    (tmp_path / "p").mkdir()
    duck = Server(tmp_path / "d", db, keys).start()
    pgs = Server(tmp_path / "p", pg_url, keys).start()  # type: ignore[arg-type]
    args = ["--villages", str(sim / "villages.csv"), "--format", "csv"]
    try:
        for srv in (duck, pgs):
            assert main(["replay", str(sim / "sd"), "--to", str(srv.http)]) == 0
        capsys.readouterr()
        # while the PostgreSQL store is served: report and export
        assert main(["report", "--store", pg_url, *args]) == 0
        from_pg = capsys.readouterr().out
        assert main(["export", "--store", pg_url, "--out", str(tmp_path / "xp")]) == 0
        capsys.readouterr()
    finally:
        duck.stop()
        pgs.stop()
    assert main(["report", "--store", str(db), *args]) == 0
    from_duck = capsys.readouterr().out
    assert from_pg == from_duck and from_duck.count("\n") >= 4
    assert main(["export", "--store", str(db), "--out", str(tmp_path / "xd")]) == 0
    import pyarrow.parquet as pq

    def rows(d: Path):
        t = pq.read_table(d).drop(["received"]).to_pylist()
        return sorted(t, key=lambda r: (r["device"], r["boot"], r["seq"]))

    assert rows(tmp_path / "xp") == rows(tmp_path / "xd")


def test_kill9_of_serve_right_after_an_ack_loses_nothing(tmp_path, pg_url):
    (s,) = workers(tmp_path, pg_url, 1)
    fs = frames(4000, boot=2)
    acked: list[bytes] = []
    for i in range(0, 2500, 500):
        status, doc = post(s.http, b"".join(fs[i : i + 500]))
        assert status == 200 and doc["stored"] == 500
        acked.extend(fs[i : i + 500])
    s.kill9()  # the very moment the ack is in
    assert stored(pg_url) == b"".join(acked)
    s.start()
    status, doc = post(s.http, b"".join(fs[2000:3000]))
    s.stop()
    assert (doc["duplicate"], doc["stored"]) == (500, 500)
    assert stored(pg_url) == b"".join(fs[:3000])
