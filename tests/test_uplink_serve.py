"""The board's uplink against the real `jalkal serve` on 127.0.0.1: through the
simulated modem over HTTP (SIM800) and over MQTT with a private Mosquitto (SIM7600),
every frame stored exactly once, also across a power cut mid-send and a server that
is down for a while."""

import pytest
from test_uplink import Board
from test_uplink import Server as MemServer
from uplink_util import Mosquitto, Server, keys_file, needs_mosquitto

from jalkal.ingest.store import open_store
from jkfw.mqtt import Mqtt
from jksim.modem import http_post


@pytest.fixture(params=["duckdb", "postgresql"])
def serve(request, tmp_path):
    """`jalkal serve` on each store back-end (PostgreSQL: a database of the
    session's private cluster)."""
    if request.param == "postgresql":
        from conftest import new_database

        store = new_database(request.getfixturevalue("pg_cluster"))
    else:
        store = str(tmp_path / "store.duckdb")
    s = Server(tmp_path, store, keys_file(tmp_path / "keys.json"))  # type: ignore[arg-type]
    s.start()
    yield s
    s.stop()


def stored_keys(path):
    with open_store(str(path), read_only=True) as st:
        tb = st.query("SELECT boot, seq FROM frames")
    return sorted(zip(tb.column(0).to_pylist(), tb.column(1).to_pylist(), strict=True))


def board(tmp_path, url, **kw):
    d = tmp_path / "board"
    d.mkdir()
    return Board(d, MemServer(), uplink_url=url, **kw)


def test_http_to_jalkal_serve_exactly_once(tmp_path, serve):
    b = board(tmp_path, serve.http)
    b.sm.post = http_post  # the simulated modem POSTs to the real server
    b.run_days(0.5)
    cut = b.sm.posts
    # the server goes away for half a day: the board backs off and keeps its backlog
    serve.stop()
    b.run_days(0.5)
    assert b.up.fails > 0
    serve.start(http=serve.http.removeprefix("http://"))
    b.power_cut()  # and the board loses power on the way
    b.run_days(0.5)
    serve.stop()  # DuckDB: one process at a time
    keys = stored_keys(serve.store)
    assert len(keys) == len(set(keys))
    assert set(keys) >= set(b.logged[:-4]) and set(keys) <= set(b.logged)
    assert b.sm.posts > cut and b.events == []


@needs_mosquitto
def test_mqtt_to_jalkal_serve_exactly_once(tmp_path):
    mq = Mosquitto(tmp_path / "mq").start()
    s = Server(tmp_path, tmp_path / "store.duckdb", keys_file(tmp_path / "keys.json"))
    try:
        s.start(http=None, mqtt=mq.url)
        b = board(tmp_path, mq.url, family="sim7600")
        b.up.link = Mqtt(b.m, b"0a1b2c3d")
        b.run_days(0.5)
        b.sm.outage = True
        b.run_days(0.5)
        b.sm.outage = False
        b.run_days(0.5)
    finally:
        s.stop()
        mq.stop()
    keys = stored_keys(s.store)
    assert len(keys) == len(set(keys))
    assert set(keys) >= set(b.logged[:-4])
    assert b.sm.posts > 10 and b.up.fails == 0
