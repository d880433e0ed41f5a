"""`jalkal replay`: logged frames to a server over HTTP and MQTT, exactly once; the
report from the store equals the report from the SD files."""

from __future__ import annotations

import time

import pytest
from uplink_util import (
    DEV,
    KEY,
    Mosquitto,
    Server,
    frames,
    free_port,
    keys_file,
    needs_mosquitto,
)

from jalkal.cli import main

pytestmark = needs_mosquitto


@pytest.fixture(scope="module")
def sim_out(tmp_path_factory):
    """A simulated village's SD card with power cuts (torn frames in the logs)."""
    out = tmp_path_factory.mktemp("sim") / "v"
    assert (
        main(["sim", "--scenario", "power-cuts", "--days", "3", "--out", str(out)]) == 0
    )
    return out


@pytest.mark.parametrize(
    "via, backend",
    [("http", "duckdb"), ("mqtt", "duckdb"), ("http", "postgresql"),
     ("mqtt", "postgresql")],
)  # fmt: skip
def test_replay_twice_stores_once_and_report_matches_files(
    request, tmp_path, sim_out, via, backend, capsys
):
    if backend == "postgresql":
        from conftest import new_database

        store = new_database(request.getfixturevalue("pg_cluster"))
    else:
        store = str(tmp_path / "s.duckdb")
    m = Mosquitto(tmp_path / "mq").start() if via == "mqtt" else None
    s = Server(tmp_path, store, sim_out / "keys.json")  # type: ignore[arg-type]
    s.start(mqtt=m.url if m else None)
    to = s.http if via == "http" else m.url  # type: ignore[union-attr]
    try:
        capsys.readouterr()
        assert main(["replay", str(sim_out / "sd"), "--to", to, "--batch", "100"]) == 0
        first = capsys.readouterr()
        assert main(["replay", str(sim_out / "sd"), "--to", to]) == 0
        second = capsys.readouterr()
    finally:
        s.stop()
        if m:
            m.stop()
    n = int(first.out.split("replay: ")[1].split()[0])
    assert n > 300
    assert f"{n} stored, 0 duplicate, 0 rejected" in first.out
    assert f"0 stored, {n} duplicate, 0 rejected" in second.out
    # the report from the store is the report from the files
    args = ["--villages", str(sim_out / "villages.csv"), "--format", "csv"]
    assert main(["report", str(sim_out / "sd"), "--keys", str(sim_out / "keys.json"),
                 *args]) == 0  # fmt: skip
    from_files = capsys.readouterr().out
    assert main(["report", "--store", store, *args]) == 0
    assert capsys.readouterr().out == from_files and from_files.count("\n") >= 4


def test_rejected_frames_make_replay_fail(tmp_path, capsys):
    k = keys_file(tmp_path / "k.json", {DEV: KEY})
    log = tmp_path / "log.bin"
    torn = frames(51)[50][:-7]  # a frame cut by a power loss: counted, not sent
    log.write_bytes(b"".join(frames(50) + frames(20, device=0x5555)) + torn)
    s = Server(tmp_path, tmp_path / "s.duckdb", k).start()
    try:
        assert main(["replay", str(log), "--to", s.http]) == 1
    finally:
        s.stop()
    cap = capsys.readouterr()
    assert "50 stored, 0 duplicate, 20 rejected (bad_mac 20)" in cap.out  # as sent
    assert "20 frames were rejected" in cap.err
    assert "1 truncated" in cap.err and "(not sent)" in cap.err


def test_unreachable_server_is_a_clear_error(tmp_path, capsys):
    log = tmp_path / "log.bin"
    log.write_bytes(b"".join(frames(5)))
    port = free_port()
    t0 = time.monotonic()
    assert main(["replay", str(log), "--to", f"http://127.0.0.1:{port}"]) == 1
    assert "cannot reach" in capsys.readouterr().err
    assert main(["replay", str(log), "--to", f"mqtt://127.0.0.1:{port}"]) == 1
    assert "cannot reach" in capsys.readouterr().err
    assert time.monotonic() - t0 < 10
    assert main(["replay", str(log), "--to", "ftp://x"]) == 1
    assert "http://HOST:PORT or mqtt://HOST:PORT" in capsys.readouterr().err


def test_rate_limits_the_sending(tmp_path, capsys):
    k = keys_file(tmp_path / "k.json", {DEV: KEY})
    log = tmp_path / "log.bin"
    log.write_bytes(b"".join(frames(600)))
    s = Server(tmp_path, tmp_path / "s.duckdb", k).start()
    try:
        t0 = time.monotonic()
        argv = ["replay", str(log), "--to", s.http, "--rate", "1000", "--batch", "100"]
        assert main(argv) == 0
        assert time.monotonic() - t0 >= 0.55
    finally:
        s.stop()
    assert "600 stored" in capsys.readouterr().out
