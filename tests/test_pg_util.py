"""The private PostgreSQL the store tests use: made, reached over loopback, stopped,
and nothing left running."""

from __future__ import annotations

import subprocess

import pytest
from pg_util import PrivatePostgres, available

pytestmark = pytest.mark.skipif(available() is not None, reason=str(available()))


def test_private_cluster_starts_answers_and_stops() -> None:
    psycopg = pytest.importorskip("psycopg")
    with PrivatePostgres() as pg:
        with psycopg.connect(pg.url, connect_timeout=10) as conn:
            v = conn.execute("SHOW server_version").fetchone()
            addr = conn.execute("SELECT inet_server_addr()").fetchone()
        assert v and int(v[0].split(".")[0]) >= 15
        assert addr and str(addr[0]) == "127.0.0.1"
        data = pg.data
    # stopped and removed: no postmaster of this cluster is left
    assert not data.exists()
    ps = subprocess.run(["ps", "-eo", "args"], capture_output=True, text=True).stdout
    assert str(data) not in ps


def test_kill9_and_restart_keep_committed_rows() -> None:
    psycopg = pytest.importorskip("psycopg")
    with PrivatePostgres() as pg:
        with psycopg.connect(pg.url, autocommit=True) as conn:
            conn.execute("CREATE TABLE t (x int)")
            conn.execute("INSERT INTO t VALUES (1)")
        pg.kill9()
        pg.restart()
        with psycopg.connect(pg.url) as conn:
            assert conn.execute("SELECT count(*) FROM t").fetchone() == (1,)
