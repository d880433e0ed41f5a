"""Devices added and revoked while `jalkal serve` runs: the keys file is read again
when `jalkal provision` replaces it and on SIGHUP; a broken or open keys file is
not taken (the old keys stay, one log line says why)."""

from __future__ import annotations

import json
import os
import signal
import time
from pathlib import Path

from uplink_util import DEV, KEY, Server, frames, keys_file, post

from jalkal.cli import main
from jalkal.ingest.keywatch import KeyWatch
from jalkal.ingest.log import Log
from jalkal.keys import load_keys

NEW = 0xC0FFEE01


def until(check, timeout: float = 10.0):  # type: ignore[no-untyped-def]
    end = time.monotonic() + timeout
    while True:
        got = check()
        if got or time.monotonic() > end:
            return got
        time.sleep(0.1)


def provision(tmp: Path, keys: Path) -> bytes:
    """`jalkal provision` of device NEW into the served keys file: its key."""
    assert main([
        "provision", "--board", "esp32-devkitc-sim800l", "--village", "Rampur",
        "--population", "1250", "--out", str(tmp / "rampur"), "--keys", str(keys),
        "--villages", str(tmp / "villages.csv"), "--device", f"{NEW:08x}",
    ]) == 0  # fmt: skip
    return load_keys(keys)[f"{NEW:08x}"]


def replace(path: Path, text: str, mode: int = 0o600) -> None:
    """Write a file whole and rename it over path (as an editor or a tool would)."""
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(text)
    tmp.chmod(mode)
    os.replace(tmp, path)


def log_lines(s: Server) -> list[str]:
    return [ln for ln in s.err.read_text().splitlines() if "keys" in ln]


def test_provisioned_device_uploads_without_a_restart(tmp_path):
    keys = keys_file(tmp_path / "keys.json", {DEV: KEY})
    s = Server(tmp_path, tmp_path / "store.duckdb", keys).start()
    try:
        body = b"".join(frames(3, device=NEW, key=bytes(32)))
        status, doc = post(s.http, body)
        assert status == 403 and doc["stored"] == 0  # not provisioned yet
        key = provision(tmp_path, keys)  # while the server runs
        body = b"".join(frames(3, device=NEW, key=key))
        got = until(lambda: post(s.http, body)[1]["stored"] == 3)
        assert got, log_lines(s)
        assert until(lambda: any("1 added" in ln for ln in log_lines(s)))
        assert "keys: reloaded" in log_lines(s)[-1] and "0 removed" in log_lines(s)[-1]
        # DEV revoked: removed from the file, refused from then on
        doc = json.loads(keys.read_text())
        del doc["devices"][f"{DEV:08x}"]
        replace(keys, json.dumps(doc))
        assert until(lambda: post(s.http, frames(1)[0])[0] == 403), log_lines(s)
        assert post(s.http, b"".join(frames(2, device=NEW, key=key, seq=3,
                                           prev=0)))[0] in (200, 409)  # fmt: skip
        # a broken file and an open one are not taken: NEW still served
        n = len(log_lines(s))
        replace(keys, '{"devices": {')
        assert until(lambda: len(log_lines(s)) > n)
        assert "not taken" in log_lines(s)[-1] and "not JSON" in log_lines(s)[-1]
        assert "still serving the 1 devices" in log_lines(s)[-1]
        fresh = frames(4, device=NEW, key=key, boot=2)
        assert post(s.http, fresh[0])[1]["stored"] == 1
        doc["devices"][f"{DEV:08x}"] = {"key": KEY.hex()}
        replace(keys, json.dumps(doc), mode=0o644)
        assert until(lambda: len(log_lines(s)) > n + 1)
        assert "open to other users" in log_lines(s)[-1]
        assert post(s.http, frames(1)[0])[0] == 403  # DEV not taken back
        assert post(s.http, fresh[1])[1]["stored"] == 1
        time.sleep(2.5)  # a broken version is said once, not every second
        assert len(log_lines(s)) == n + 2
        keys.chmod(0o600)  # the same file, fixed: its mode is not its signature
        s.proc.send_signal(signal.SIGHUP)  # type: ignore[union-attr]
        assert until(lambda: post(s.http, frames(1)[0])[0] == 200)  # acked again
        assert "(SIGHUP)" in log_lines(s)[-1] and "1 added" in log_lines(s)[-1]
        assert s.proc.poll() is None  # type: ignore[union-attr]
    finally:
        s.stop()


def test_sighup_alone_with_polling_off(tmp_path):
    keys = keys_file(tmp_path / "keys.json", {DEV: KEY})
    s = Server(tmp_path, tmp_path / "store.duckdb", keys, "--keys-poll", "0").start()
    try:
        key = provision(tmp_path, keys)
        body = b"".join(frames(2, device=NEW, key=key))
        time.sleep(2.0)
        assert post(s.http, body)[0] == 403  # not polled: still the old keys
        s.proc.send_signal(signal.SIGHUP)  # type: ignore[union-attr]
        assert until(lambda: post(s.http, body)[1]["stored"] == 2), log_lines(s)
        assert any("(SIGHUP)" in ln and "1 added" in ln for ln in log_lines(s))
    finally:
        s.stop()


class FakeStore:
    def __init__(self) -> None:
        self.sets: list[dict[str, bytes]] = []

    def set_keys(self, keys: dict[str, bytes]) -> None:
        self.sets.append(keys)


def test_keywatch_counts(tmp_path, capsys):
    keys = keys_file(tmp_path / "keys.json", {DEV: KEY})
    st = FakeStore()
    w = KeyWatch(keys, st, load_keys(keys), Log(0, "json"), interval=0)
    assert w.check() is None  # unchanged
    keys_file(keys, {DEV: bytes(32), NEW: KEY})
    assert w.check() is True and w.reloads == 1
    doc = json.loads(capsys.readouterr().err)
    assert doc["event"] == "keys_reload" and doc["level"] == "info"
    assert (doc["added"], doc["removed"], doc["changed"]) == (1, 0, 1)
    assert st.sets[-1] == {f"{DEV:08x}": bytes(32), f"{NEW:08x}": KEY}
    keys.unlink()
    assert w.check() is False and w.failures == 1 and len(st.sets) == 1
    doc = json.loads(capsys.readouterr().err)
    assert doc["event"] == "keys_reload_failed" and doc["devices"] == 2
    assert w.check() is None  # still gone: said once
    assert w.check(forced=True) is False and w.failures == 2
