"""`jalkal serve --dashboard`: the ingest server and the dashboard in one process
sharing the store (the ingest endpoint with no viewer login, the pages behind
one), the daily aggregates kept current there; and logins that survive a
restart (sessions kept beside the users file, as hashes of their ids)."""

from __future__ import annotations

import hashlib
import stat
import time
from pathlib import Path

import pytest
from test_dashboard_support import (
    STATE,
    Client,
    add_users,
    logged_in,
    post_frames,
    wait_for,
)
from uplink_util import DEV, Server, frames, free_port, keys_file, wait_port

from jalkal.ingest.store import open_store
from jalkal.registry import load_registry
from jalkal.reports import aggregates
from jalkal.reports.periods import build


def world(d: Path) -> None:
    d.mkdir(parents=True, exist_ok=True)
    keys_file(d / "keys.json")
    (d / "villages.csv").write_text(
        "device,village,population,block,district,state\n"
        f"{DEV:08x},Rampur,500,Malpura,Tonk,{STATE}\n"
    )
    add_users(d / "users.json")


def start(d: Path, store: str, port: int) -> Server:
    srv = Server(
        d, store, d / "keys.json", "--dashboard", f"127.0.0.1:{port}",
        "--users", str(d / "users.json"), "--villages", str(d / "villages.csv"),
        "--as-of", "latest",
    ).start()  # fmt: skip
    wait_port(port, 30)
    return srv


def litres(c: Client) -> float | None:
    return c.get_json("/v1/villages")["villages"][0]["litres_today"]


@pytest.mark.parametrize("backend", ["duckdb", "postgres"])
def test_one_process_ingests_and_shows(tmp_path, request, backend) -> None:
    if backend == "duckdb":
        store = str(tmp_path / "s.duckdb")
    else:
        from conftest import new_database

        store = new_database(request.getfixturevalue("pg_cluster"))
    world(tmp_path)
    port = free_port()
    srv = start(tmp_path, store, port)
    fs = frames(60)
    try:
        # the ingest endpoint answers a board with no login; the pages want one
        assert post_frames(srv.http or "", b"".join(fs[:30])) == 200
        base = f"http://127.0.0.1:{port}"
        anon = Client(base)
        assert anon.get("/v1/villages")[0] == 401
        assert anon.get("/")[0] == 303
        assert Client(srv.http or "").get("/v1/villages")[0] == 404  # not there
        c = logged_in(base)
        before = wait_for(lambda: litres(c), 10)
        assert before == 28 * 70.0, before  # 29 readings of 7 pulses, 100/m3
        t0 = time.monotonic()
        assert post_frames(srv.http or "", b"".join(fs[30:34])) == 200
        after = wait_for(lambda: litres(c) != before and litres(c), 5.0, 0.05)
        took = time.monotonic() - t0
        assert after == 32 * 70.0 and took <= 5.0, (after, took)
    finally:
        srv.stop()
    # the aggregates the process kept: every batch's marks read, the rows the
    # report's over every frame
    reg = load_registry(tmp_path / "villages.csv")
    with open_store(store, read_only=backend == "duckdb") as st:
        assert aggregates.changes(st)[0] == 0
        got, ups = aggregates.report(st, reg, write=False)
        want = build(st.table(aggregates.READ_COLUMNS), reg)
    assert got.days.num_rows and got.days.equals(want.days)
    assert list(ups) == [f"{DEV:08x}"] and ups[f"{DEV:08x}"]["frames"] == 34


def test_a_login_survives_a_restart_and_a_logout_does_not(tmp_path) -> None:
    world(tmp_path)
    store = str(tmp_path / "s.duckdb")
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    srv = start(tmp_path, store, port)
    try:
        c = logged_in(base)
        assert c.get("/v1/villages")[0] == 200
    finally:
        srv.stop()
    kept = tmp_path / "users.json.sessions"
    assert stat.S_IMODE(kept.stat().st_mode) == 0o600
    token = (c.cookie or "").split("=", 1)[1]
    text = kept.read_text()
    assert token and token not in text  # only its hash is kept
    assert hashlib.sha256(token.encode()).hexdigest() in text
    srv = start(tmp_path, store, port)
    try:
        assert c.get("/v1/villages")[0] == 200  # the same cookie, a new process
        other = Client(base)
        other.cookie = c.cookie[:-2] + "xx" if c.cookie else None
        assert other.get("/v1/villages")[0] == 401
        st, _h, _b = c.request("POST", "/logout", {"csrf": c.csrf("/")})
        assert st == 303 and c.get("/v1/villages")[0] == 401
    finally:
        srv.stop()
    assert hashlib.sha256(token.encode()).hexdigest() not in kept.read_text()
    revived = Client(base)
    revived.cookie = f"jalkal_session={token}"
    srv = start(tmp_path, store, port)
    try:
        assert revived.get("/v1/villages")[0] == 401
    finally:
        srv.stop()


def test_dashboard_options_are_checked_before_serving(tmp_path) -> None:
    from jalkal.cli import main

    world(tmp_path)
    args = ["serve", "--store", str(tmp_path / "s.duckdb"), "--keys",
            str(tmp_path / "keys.json")]  # fmt: skip
    assert main([*args, "--dashboard", "127.0.0.1:0"]) == 2  # no --users
    assert main([*args, "--users", str(tmp_path / "users.json")]) == 2
    assert not (tmp_path / "s.duckdb").exists()


def test_expired_and_foreign_sessions_are_not_kept(tmp_path) -> None:
    from jalkal.dashboard.sessions import Sessions, token_hash
    from jalkal.errors import JalkalError

    path = tmp_path / "users.json.sessions"
    a = Sessions(path)
    live = a.new("asha", "admin")
    old = a.new("ravi", "viewer")
    anon = a.new()  # a login form's session: not kept
    old.expires = time.time() - 1
    a.drop(a.new("x", "viewer").id)  # a login and logout: written again
    b = Sessions(path)
    assert b.get(live.id) is not None and b.get(live.id).user == "asha"
    assert b.get(old.id) is None and b.get(anon.id) is None
    assert token_hash(old.id) not in path.read_text()
    path.chmod(0o644)  # others may read it: refused, as the users file
    with pytest.raises(JalkalError, match="sessions file"):
        Sessions(path)
    assert Sessions(path, check=False).get(live.id) is not None
