"""Reports, exports and alerts while `jalkal serve` ingests: the server holds the
DuckDB file, so they read a snapshot through GET /v1/snapshot (the token from the
0600 sidecar file beside the store). Each run during a sim-outage backlog equals
the same command run after the server stopped on the final store restricted to
the frames of its snapshot, and the snapshot holds every frame acknowledged before
the command started. The route refuses requests without the token, with a wrong
one, and from other machines."""

from __future__ import annotations

import io
import json
import os
import shutil
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import duckdb
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from uplink_util import DEV, KEY, Server, frames, keys_file

from jalkal.errors import JalkalError
from jalkal.ingest import snapshot
from jalkal.reports import command, live
from jalkal.reports.export import export
from jalkal.reports.since import export_since
from jksim import scenario
from jksim.village import identity

DAYS = 30  # the outage: day 2 06:00 to day 9 06:00, then three weeks of uploads


def health(url: str) -> int:
    with urllib.request.urlopen(url + "/v1/health", timeout=10) as r:
        return int(json.load(r)["frames"])


def keyset(tb: pa.Table) -> pa.Table:
    return tb.select(["device", "boot", "seq"])


def restricted(final: Path, keys: pa.Table, dst: Path) -> Path:
    """A copy of the final store holding only the frames of `keys`."""
    shutil.copy(final, dst)
    con = duckdb.connect(str(dst))
    con.register("k", keys)
    con.execute(
        "DELETE FROM frames WHERE (device, boot, seq) NOT IN "
        "(SELECT (device, boot, seq) FROM k)"
    )
    left = con.execute("SELECT count(*) FROM frames").fetchone()
    con.execute("CHECKPOINT")
    con.close()
    assert left is not None and left[0] == keys.num_rows
    return dst


def lake(root: Path) -> dict[str, object]:
    """Each Parquet file's rows, in (boot, seq) order: DuckDB's partitioned COPY
    does not always keep the export's ORDER BY inside a file (seen on a
    PostgreSQL store's export: a few rows of a day out of place), so a file is
    compared as the set of its rows."""
    return {
        str(f.relative_to(root)): pq.read_table(f)
        .sort_by([("boot", "ascending"), ("seq", "ascending")])
        .to_pylist()
        for f in sorted(root.rglob("*.parquet"))
    }


def op(kind: str, store: str | Path, villages: Path, where: Path) -> tuple[object, str]:
    """One command in-process, as `jalkal report/export` runs it: (its result,
    its stderr)."""
    err = io.StringIO()
    if kind in ("report", "alerts"):
        out = io.StringIO()
        command.run([], str(villages), fmt="json", out=out, err=err,
                    store=str(store), show_alerts=kind == "alerts")  # fmt: skip
        return json.loads(out.getvalue()), err.getvalue()
    if kind == "export":
        export(store, where, note=lambda ln: print(ln, file=err))
    else:  # export --since into a lake kept current across the runs
        export_since(store, where, "2000-01-01", note=lambda ln: print(ln, file=err))
    return lake(where), err.getvalue()


def outage(tmp: Path, days: int) -> tuple[Any, str, bytes, Path, Path]:
    """The sim-outage scenario, its device and key, a keys file and a villages
    file."""
    sc = scenario.load("sim-outage", days=days)
    dev, key = identity(sc)
    keys = tmp / "keys.json"
    keys.write_text(json.dumps({"devices": {dev: {"key": key.hex()}}}))
    keys.chmod(0o600)
    villages = tmp / "villages.csv"
    villages.write_text(f"device,village,population\n{dev},Hirapur,1200\n")
    return sc, dev, key, keys, villages


def test_report_export_alerts_while_serving_equal_the_stopped_store(
    tmp_path, monkeypatch
):
    sc, dev, _key, keys, villages = outage(tmp_path, DAYS)
    store = tmp_path / "store.duckdb"
    seen: list[pa.Table] = []
    fetch = live.fetch

    def recording(srv, columns=None):
        tb = fetch(srv, columns)
        seen.append(keyset(tb))
        return tb

    monkeypatch.setattr(live, "fetch", recording)
    srv = Server(tmp_path, store, keys).start()
    runs: list[dict[str, object]] = []
    try:
        side = store.with_name(store.name + ".serve.json")
        assert side.stat().st_mode & 0o777 == 0o600
        url = srv.http
        assert url is not None
        sim = subprocess.Popen(
            [sys.executable, "-m", "jalkal", "sim", "--scenario", "sim-outage",
             "--days", str(DAYS), "--out", str(tmp_path / "out"), "--uplink", url],
            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
        )  # fmt: skip
        kinds = ["report", "export", "alerts", "since"]
        i = 0
        try:
            while sim.poll() is None and i < 40:
                before = health(url)
                if before == 0:
                    time.sleep(0.02)
                    continue
                kind = kinds[i % 4]
                where = tmp_path / ("lake" if kind == "since" else f"x{i}")
                got, said = op(kind, store, villages, where)
                runs.append(dict(kind=kind, before=before, after=health(url),
                                 got=got, said=said, keys=seen[-1], i=i))  # fmt: skip
                i += 1
        finally:
            assert sim.wait(300) == 0, sim.stderr.read() if sim.stderr else ""
    finally:
        srv.stop()
    assert not side.exists()  # removed at the clean stop
    with duckdb.connect(str(store), read_only=True) as con:
        row = con.execute("SELECT count(*) FROM frames").fetchone()
    final = int(row[0]) if row else 0
    assert {r["kind"] for r in runs} == set(kinds), runs
    # while ingesting: frames came in during a run, and later runs saw more
    assert any(r["before"] < r["after"] for r in runs)
    assert any(r["keys"].num_rows < final for r in runs)
    t0 = time.monotonic()
    for r in runs:
        k: pa.Table = r["keys"]  # type: ignore[assignment]
        # every frame acknowledged before it started is in its snapshot
        assert k.num_rows >= r["before"]  # type: ignore[operator]
        assert "is held by jalkal serve" in r["said"] and "snapshot" in r["said"]
        part = restricted(store, k, tmp_path / f"part{r['i']}.duckdb")
        where = tmp_path / f"y{r['i']}"
        kind = "export" if r["kind"] == "since" else str(r["kind"])
        want, said = op(kind, part, villages, where)
        assert "held by" not in said  # the stopped store is opened directly
        assert r["got"] == want, (r["kind"], r["before"], k.num_rows)
    print(f"{len(runs)} runs while serving ({final} frames at the end), "
          f"compared in {time.monotonic() - t0:.1f} s")  # fmt: skip


@pytest.fixture
def served(tmp_path):
    keys = keys_file(tmp_path / "keys.json")
    store = tmp_path / "store.duckdb"
    srv = Server(tmp_path, store, keys).start()
    try:
        body = b"".join(frames(50))
        req = urllib.request.Request(
            f"{srv.http}/v1/frames", body,
            {"Content-Type": "application/octet-stream"},
        )  # fmt: skip
        with urllib.request.urlopen(req, timeout=10) as r:
            assert json.load(r)["stored"] == 50
        yield srv, store
    finally:
        srv.stop()


def get(url: str, headers: dict[str, str]) -> tuple[int, dict, bytes]:
    req = urllib.request.Request(url, headers=headers)
    try:
        with urllib.request.urlopen(req, timeout=10) as r:
            return r.status, dict(r.headers), r.read()
    except urllib.error.HTTPError as e:
        return e.code, dict(e.headers), e.read()


def test_snapshot_needs_the_token(served):
    srv, store = served
    side = json.loads(store.with_name(store.name + ".serve.json").read_text())
    assert side["pid"] == srv.proc.pid and side["store"] == str(store.resolve())
    url = side["url"]
    assert url == f"{srv.http}/v1/snapshot"
    for headers, status, reason in (
        ({}, 401, "unauthorized"),
        ({"Authorization": "Bearer " + "x" * len(side["token"])}, 403, "forbidden"),
        ({"Authorization": side["token"]}, 401, "unauthorized"),  # no scheme
    ):
        code, head, body = get(url, headers)
        assert code == status and head["Content-Type"] == "application/json"
        doc = json.loads(body)
        assert doc["ok"] is False and doc["error"] == reason
    ok = {"Authorization": f"Bearer {side['token']}"}
    code, head, body = get(url + "?columns=device,boot,seq", ok)
    assert code == 200 and head["Content-Type"] == snapshot.ARROW_STREAM
    tb = pa.ipc.open_stream(body).read_all()
    assert tb.column_names == ["device", "boot", "seq"] and tb.num_rows == 50
    assert head[snapshot.FRAMES_HEADER] == "50"
    code, _, body = get(url + "?columns=device,nope", ok)
    assert code == 400 and json.loads(body)["error"] == "bad_request"


def test_only_this_machine_unless_allowed():
    acc = snapshot.Access()
    auth = f"Bearer {acc.token}"
    assert acc.refusal("127.0.0.1", "127.0.0.1", auth) is None
    assert acc.refusal("::1", "::1", auth) is None
    assert acc.refusal("::ffff:127.0.0.1", "::ffff:127.0.0.1", auth) is None
    assert acc.refusal("192.0.2.7", "192.0.2.7", auth) is None  # its own address
    bad = acc.refusal("192.0.2.8", "192.0.2.7", auth)
    assert bad is not None and bad[:2] == (403, "forbidden")
    acc.allow = snapshot.allowed_networks("192.0.2.0/24, 10.1.2.3")
    assert acc.refusal("192.0.2.8", "192.0.2.7", auth) is None
    assert acc.refusal("10.1.2.3", "192.0.2.7", auth) is None
    assert acc.refusal("10.1.2.4", "192.0.2.7", auth) is not None
    assert acc.refusal("192.0.2.8", "192.0.2.7", "Bearer wrong")[:2] == (
        403, "forbidden",
    )  # fmt: skip
    with pytest.raises(JalkalError, match="JALKAL_SNAPSHOT_FROM"):
        snapshot.allowed_networks("intranet")


def test_wire_names_agree():
    for name in ("SNAPSHOT_PATH", "SIDECAR_SUFFIX", "ARROW_STREAM", "FRAMES_HEADER"):
        assert getattr(live, name) == getattr(snapshot, name), name


def test_stale_sidecar_and_a_lock_without_one(tmp_path, capsys):
    """A sidecar left by kill -9 names a dead PID: the report opens the file (the
    lock died with the server) and says nothing of a server; a store locked by a
    process that wrote no sidecar (serve with MQTT only) is refused with the hint."""
    keys = keys_file(tmp_path / "keys.json")
    store = tmp_path / "store.duckdb"
    villages = tmp_path / "villages.csv"
    villages.write_text(f"device,village,population\n{DEV:08x},Rampur,400\n")
    srv = Server(tmp_path, store, keys).start()
    body = b"".join(frames(200))
    ctype = {"Content-Type": "application/octet-stream"}
    req = urllib.request.Request(f"{srv.http}/v1/frames", body, ctype)
    urllib.request.urlopen(req, timeout=10).read()
    srv.kill9()
    side = store.with_name(store.name + ".serve.json")
    assert side.exists() and live.find(store) is None
    err = io.StringIO()
    command.run([], str(villages), store=str(store), fmt="json",
                out=io.StringIO(), err=err)  # fmt: skip
    assert "held by" not in err.getvalue()
    # a new server replaces the stale file with its own token
    old = json.loads(side.read_text())["token"]
    srv2 = Server(tmp_path, store, keys).start()
    try:
        assert json.loads(side.read_text())["token"] != old
        assert side.stat().st_mode & 0o777 == 0o600
        os.chmod(side, 0o644)  # readable by others: not trusted
        assert live.find(store) is None
        with pytest.raises(JalkalError, match="--http 127.0.0.1:0"):
            command.run([], str(villages), store=str(store), out=io.StringIO(),
                        err=io.StringIO())  # fmt: skip
    finally:
        srv2.stop()
    assert not side.exists()
    # a lock held by a process without a sidecar
    hold = subprocess.Popen(
        [sys.executable, "-c", "import duckdb, sys, time; "
         f"c = duckdb.connect({str(store)!r}); print('ok', flush=True); "
         "sys.stdin.read()"],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        assert hold.stdout is not None and hold.stdout.readline().strip() == "ok"
        with pytest.raises(JalkalError, match="in use by another process.*--http"):
            command.run([], str(villages), store=str(store), out=io.StringIO(),
                        err=io.StringIO())  # fmt: skip
    finally:
        hold.communicate("", timeout=30)


def test_snapshot_time(tmp_path):
    """Figures for docs/uplink.md: the report's columns of N frames read as a
    snapshot through the server vs from the stopped file."""
    from jalkal.ingest.store import Store
    from jalkal.reports.frames import TABLE_COLUMNS
    from jalkal.reports.sources import load_store

    keys = keys_file(tmp_path / "keys.json")
    store = tmp_path / "store.duckdb"
    n = 50_000
    enc = frames(n, DEV, KEY)
    with Store(store, {f"{DEV:08x}": KEY}) as st:
        for i in range(0, n, 5000):
            assert st.ingest(b"".join(enc[i : i + 5000])).stored == min(5000, n - i)
    cols = [c for c in TABLE_COLUMNS if c != "status"]
    srv = Server(tmp_path, store, keys).start()
    try:
        t0 = time.perf_counter()
        got = live.read(store, cols)
        t_live = time.perf_counter() - t0
        t0 = time.perf_counter()
        every = live.read(store)
        t_all = time.perf_counter() - t0
    finally:
        srv.stop()
    t0 = time.perf_counter()
    tb = load_store(str(store))
    t_file = time.perf_counter() - t0
    assert got is not None and every is not None
    assert got[0].equals(tb) and every[0].num_rows == n
    print(f"{n} frames, the report's columns: snapshot through the server "
          f"{t_live * 1e3:.0f} ms, the stopped file {t_file * 1e3:.0f} ms; "
          f"every column through the server {t_all * 1e3:.0f} ms")  # fmt: skip
