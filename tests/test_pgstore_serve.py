"""`jalkal serve --store postgresql://...`: several workers on one store, kill -9 of
a worker and of PostgreSQL itself, and report/export from the PostgreSQL store while
it is served, equal to the same from a DuckDB store fed the same frames."""

from __future__ import annotations

import os
import threading
import time
from pathlib import Path

import pytest
from pg_util import PrivatePostgres, available
from test_report_while_serving import op, outage
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
            hold_insert(c, f"NEW.device = {DEV2} AND NEW.seq = {hold_seq}", 60)
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


# --- report, export and --alerts while a sim-outage backlog comes in ----------------

OUTAGE_DAYS = 30  # the outage: day 2 06:00 to day 9 06:00, then three weeks of uploads
KINDS = ("report", "export", "alerts", "since")


def hold_insert(c, cond: str, seconds: int) -> None:
    """A trigger that holds the INSERT of a row matching `cond` (SQL over NEW) for
    `seconds` inside its batch's transaction."""
    c.execute(
        "CREATE FUNCTION public.hold() RETURNS trigger LANGUAGE plpgsql AS "
        f"$$ BEGIN IF {cond} THEN PERFORM pg_sleep({seconds}); END IF; "
        "RETURN NEW; END $$"
    )
    c.execute("CREATE TRIGGER hold BEFORE INSERT ON jalkal.frames "
              "FOR EACH ROW EXECUTE FUNCTION public.hold()")  # fmt: skip


def frame_count(url: str) -> int:
    return int(post(url, method="GET", path="/v1/health")[1]["frames"])


def restricted(pg_url: str, name: str, keys: dict[str, bytes], rows) -> str:
    """A new database holding a store of exactly these rows (every column as stored,
    `received` too), written as a batch writes them (the day marks with them)."""
    with psycopg.connect(pg_url, autocommit=True) as c:
        c.execute(f"CREATE DATABASE {name}")
    url = pg_url.rsplit("/", 1)[0] + "/" + name
    with open_store(url, keys) as st, st.lock:  # type: ignore[attr-defined]
        conn = st.live()  # type: ignore[attr-defined]
        assert st.insert_rows(rows).all()
        conn.commit()
    return url


@pytest.mark.slow
def test_report_export_alerts_while_serving_a_backlog_equal_after_stop(
    tmp_path, pg_url, monkeypatch
):
    """`jalkal sim --scenario sim-outage --uplink` delivers its week of backlog (and
    three more weeks) to `jalkal serve` on PostgreSQL while report, export,
    export --since and report --alerts run over and over. Each run reads the frames
    of one moment (recorded: the keys of every frame table it read), which hold every
    frame acknowledged before it started; after the server stopped, the same command
    on a store holding just those frames gives the same JSON, the same Parquet."""
    import subprocess
    import sys

    import numpy as np
    import pyarrow as pa
    import pyarrow.compute as pc

    from jalkal.ingest import pgread, pgstore

    sc, dev, key, keys, villages = outage(tmp_path, OUTAGE_DAYS)

    def key_of(tb) -> np.ndarray:
        return (
            (tb["device"].to_numpy().astype(np.uint64) << np.uint64(32))
            | (tb["boot"].to_numpy().astype(np.uint64) << np.uint64(16))
            | tb["seq"].to_numpy().astype(np.uint64)
        )

    read: list[np.ndarray] = []  # keys of every frame table read since the last run
    recording = [True]
    query, where = pgstore.PgStore.query, pgread.where

    def keep(tb):
        if recording[0] and {"device", "boot", "seq"} <= set(tb.column_names):
            read.append(key_of(tb))
        return tb

    monkeypatch.setattr(pgstore.PgStore, "query",
                        lambda self, *a, **k: keep(query(self, *a, **k)))  # fmt: skip
    monkeypatch.setattr(pgread, "where", lambda *a, **k: keep(where(*a, **k)))
    srv = Server(tmp_path, pg_url, keys).start()  # type: ignore[arg-type]
    url = str(srv.http)
    runs: list[dict[str, object]] = []
    agg: np.ndarray | None = None  # the frames the report's aggregates were made of
    try:
        sim = subprocess.Popen(
            [sys.executable, "-m", "jalkal", "sim", "--scenario", "sim-outage",
             "--days", str(OUTAGE_DAYS), "--out", str(tmp_path / "out"),
             "--uplink", url],
            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
        )  # fmt: skip
        i, last = 0, 0
        try:
            while sim.poll() is None and i < 20:
                before = frame_count(url)
                if before == last:  # only when frames came in since the last run
                    time.sleep(0.02)
                    continue
                last = before
                kind = KINDS[i % 4]
                at = tmp_path / ("lake" if kind == "since" else f"x{i}")
                read.clear()
                got, said = op(kind, pg_url, villages, at)
                after = frame_count(url)
                assert len(read) <= 1 or kind == "report", (kind, len(read))
                if read:
                    seen = np.unique(np.concatenate(read))
                    if kind == "report":
                        agg = seen
                else:  # the report's aggregates were current: nothing recomputed
                    assert kind == "report" and agg is not None, (kind, said)
                    assert "0 device(s) recomputed" in said or "recomputed" not in said
                    seen = agg
                runs.append(dict(kind=kind, before=before, after=after, got=got,
                                 keys=seen, i=i))  # fmt: skip
                i += 1
        finally:
            assert sim.wait(600) == 0, sim.stderr.read() if sim.stderr else ""
    finally:
        srv.stop()
    recording[0] = False
    with open_store(pg_url, read_only=True) as st:
        final = st.table()
    every = key_of(final)
    assert np.unique(every).size == final.num_rows  # no frame twice
    assert {r["kind"] for r in runs} == set(KINDS), runs
    # while ingesting: frames came in during a run, and later runs saw more
    assert any(int(r["before"]) < int(r["after"]) for r in runs)  # type: ignore[call-overload]
    assert any(len(r["keys"]) < final.num_rows for r in runs)  # type: ignore[arg-type]
    keyring = {dev: key}
    for r in runs:
        k: np.ndarray = r["keys"]  # type: ignore[assignment]
        # every frame acknowledged before it started is in what it read
        assert k.size >= int(r["before"]), (r["kind"], r["before"], k.size)  # type: ignore[call-overload]
        assert np.isin(k, every).all()
        rows = final.filter(pa.array(np.isin(every, k)))
        part = restricted(pg_url, f"part{r['i']}_{os.getpid()}", keyring, rows)
        kind = "export" if r["kind"] == "since" else str(r["kind"])
        want, _ = op(kind, part, villages, tmp_path / f"y{r['i']}")
        assert r["got"] == want, (r["kind"], r["before"], k.size)
    assert pc.sum(pc.equal(final["via"], "http")).as_py() == final.num_rows
    print(f"{len(runs)} runs while serving, {final.num_rows} frames at the end; "
          "frames read by each run (acknowledged before it started): "
          + ", ".join(f"{r['kind']} {len(r['keys'])} ({r['before']})"  # type: ignore[arg-type]
                      for r in runs))  # fmt: skip


def test_device_provisioned_while_two_workers_serve_one_postgresql_store(
    tmp_path, pg_url
):
    """The State's setup: `jalkal provision` writes the keys file both workers
    read; the new board's first upload is stored through either worker without a
    restart, and once through both; a device removed from the file is refused by
    both from then on."""
    import json
    import os

    from jalkal.keys import load_keys

    new = 0xC0FFEE02
    a, b = workers(tmp_path, pg_url)
    keys = tmp_path / "k.json"
    try:
        first = frames(6, device=new, key=bytes(32))
        for s in (a, b):
            status, doc = post(str(s.http), first[0])
            assert status == 403 and doc["stored"] == 0  # not provisioned yet
        assert main([
            "provision", "--board", "esp32-devkitc-sim800l", "--village", "Rampur",
            "--population", "1250", "--out", str(tmp_path / "rampur"), "--keys",
            str(keys), "--villages", str(tmp_path / "villages.csv"),
            "--device", f"{new:08x}",
        ]) == 0  # fmt: skip
        key = load_keys(keys)[f"{new:08x}"]
        for s in (a, b):  # each worker takes the new file within --keys-poll
            end = time.monotonic() + 15
            while "1 added" not in s.err.read_text():
                assert time.monotonic() < end, s.err.read_text()[-2000:]
                time.sleep(0.1)
        fs = frames(6, device=new, key=key)
        status, doc = post(str(a.http), b"".join(fs[:3]))
        assert status == 200 and doc["stored"] == 3, doc
        # the rest through the other worker, with the first three again
        status, doc = post(str(b.http), b"".join(fs))
        assert status == 200, doc
        assert (doc["stored"], doc["duplicate"]) == (3, 3), doc
        # DEV revoked: the file written whole and renamed over the old one
        doc = json.loads(keys.read_text())
        del doc["devices"][f"{DEV:08x}"]
        tmp = keys.with_name("k.json.tmp")
        tmp.write_text(json.dumps(doc))
        tmp.chmod(0o600)
        os.replace(tmp, keys)
        for s in (a, b):
            end = time.monotonic() + 15
            while "1 removed" not in s.err.read_text():
                assert time.monotonic() < end, s.err.read_text()[-2000:]
                time.sleep(0.1)
            status, doc = post(str(s.http), frames(3)[0])
            assert status == 403 and doc["stored"] == 0, doc
        assert post(str(b.http), b"".join(frames(2, device=DEV2, key=KEY2)))[0] == 200
    finally:
        a.stop()
        b.stop()
    with open_store(pg_url, read_only=True) as st:
        got = st.table(["device", "frame"])
    mine = [f for d, f in zip(got["device"].to_pylist(), got["frame"].to_pylist(),
                              strict=True) if d == new]  # fmt: skip
    assert mine == fs and got.num_rows == 8  # its six, DEV2's two; DEV's none


def test_kill9_of_a_worker_inside_a_batch_transaction(tmp_path, pg_url):
    """One of two workers killed while a batch is inside its transaction (a trigger
    holds one of its rows in pg_sleep): the sender gets no answer and sends the
    batch to the other worker, which waits for the dead worker's transaction to
    end (rolled back: its client is gone) and stores the batch whole, once; the
    killed worker restarted, the rest of the backlog drains through both."""
    a, b = workers(tmp_path, pg_url)
    body = batches(200, 10)  # DEV and DEV2 alternate
    held = body[21]  # DEV2's 11th batch
    hold_seq = codec.unpack_head(held)[6] + 5  # its sixth frame
    with psycopg.connect(pg_url, autocommit=True) as c:
        c.execute("CREATE SEQUENCE public.once")  # not rolled back: holds once
        hold_insert(c, f"NEW.device = {DEV2} AND NEW.seq = {hold_seq} AND "
                    "nextval('public.once') = 1", 3)  # fmt: skip
    acked: list[bytes] = []
    try:
        send_all([a, b], body[:21], acked)
        got: dict[str, object] = {}

        def send_held() -> None:
            try:
                got["a"] = post(str(a.http), held)
            except OSError as e:  # the worker died: no answer
                got["a"] = e

        t = threading.Thread(target=send_held)
        t.start()
        with psycopg.connect(pg_url, autocommit=True) as c:
            end = time.monotonic() + 20
            while not c.execute("SELECT 1 FROM pg_stat_activity WHERE "
                                "wait_event = 'PgSleep'").fetchall():  # fmt: skip
                assert time.monotonic() < end, "the batch never reached the hold"
                time.sleep(0.02)
            a.kill9()  # inside the held batch's transaction
            t.join(30)
            assert isinstance(got["a"], OSError), got  # nothing acknowledged
            # the sender's retry, on the other worker: the held rows of the dead
            # worker's transaction make it wait, then it stores the batch
            t0 = time.monotonic()
            status, doc = post(str(b.http), held, timeout=60)
            assert status == 200 and doc["stored"] == 10, doc
            assert time.monotonic() - t0 > 1.0  # it waited for the dead one's rows
            acked.append(held)
            c.execute("DROP TRIGGER hold ON jalkal.frames")
        a.start()  # systemd's Restart=always
        send_all([a, b], body[22:], acked)
    finally:
        a.stop(), b.stop()
    assert sorted(acked) == sorted(body)
    got_bytes = stored(pg_url)
    assert sorted(got_bytes) == sorted(b"".join(body))
    assert len(got_bytes) == len(b"".join(body))
