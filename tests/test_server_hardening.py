"""`jalkal serve` under attack, as a process on 127.0.0.1: failed-MAC guessing is
throttled (429 + Retry-After, per device and per source, lifted when the lockout
ends), frames far in a device's future are refused (future_boot), slow clients are
cut at the request deadline while others are served, connections past the cap get
503 busy at once, https with a pinned self-signed certificate, and an open keys
file is refused (docs/uplink.md)."""

from __future__ import annotations

import http.client
import json
import shutil
import socket
import ssl
import struct
import subprocess
import threading
import time
import zlib

import numpy as np
import pytest
from test_ingest_store import forge_mac
from uplink_util import DEV, DEV2, KEY, KEY2, Server, frames, free_port, keys_file

from jalkal.cli import main
from jalkal.ingest.boots import BootCeiling
from jalkal.ingest.guard import ENV, Throttle
from jalkal.ingest.httpd import HEALTH_RESERVE
from jalkal.ingest.store import Store

OTHER = "127.0.0.2"  # another source address (all of 127/8 is this machine)


def hostport(url: str) -> tuple[str, int]:
    host, port = url.split("://")[1].split(":")
    return host, int(port)


def post(
    url: str, body: bytes, source: str | None = None, path: str = "/v1/frames",
    method: str = "POST",
) -> tuple[int, dict, dict]:  # fmt: skip
    host, port = hostport(url)
    src = (source, 0) if source else None
    conn = http.client.HTTPConnection(host, port, timeout=10, source_address=src)
    try:
        conn.request(method, path, body=body,
                     headers={"Content-Type": "application/octet-stream"})  # fmt: skip
        r = conn.getresponse()
        return r.status, json.loads(r.read()), dict(r.getheaders())
    finally:
        conn.close()


def health(url: str, source: str | None = None) -> tuple[int, dict]:
    status, doc, _ = post(url, b"", source, path="/v1/health", method="GET")
    return status, doc


@pytest.fixture
def keys(tmp_path):
    return keys_file(tmp_path / "keys.json")


def guess(f: bytes, i: int) -> bytes:
    """Frame f with its MAC replaced by guess i (CRC fixed), never the true one."""
    b = bytearray(f)
    mac = struct.pack("<I", i)
    if bytes(b[-8:-4]) == mac:
        mac = struct.pack("<I", i + 1 << 16)
    b[-8:-4] = mac
    struct.pack_into("<I", b, len(b) - 4, zlib.crc32(b[:-4]))
    return bytes(b)


def start(tmp_path, keys, *args: str) -> Server:
    return Server(tmp_path, tmp_path / "s.duckdb", keys, *args).start()


# --- failed-MAC throttle ------------------------------------------------------------


def test_mac_guessing_is_throttled_per_device_and_source(tmp_path, keys):
    s = start(tmp_path, keys)
    try:
        genuine = frames(3)
        guess = forge_mac(genuine[0])
        codes = []
        t0 = time.monotonic()
        for _ in range(40):  # a brute force: one device id, one source
            status, doc, head = post(s.http, guess)
            codes.append(status)
            if status == 429:
                assert doc["error"] == "throttled" and doc["ok"] is False
                assert int(head["Retry-After"]) >= 1
        took = time.monotonic() - t0
        tested = codes.count(403)
        assert tested == 11 and codes[11:] == [429] * 29, codes  # 10 free, then locked
        # another device from another source is served meanwhile
        status, doc, _ = post(s.http, b"".join(frames(2, device=DEV2, key=KEY2)), OTHER)
        assert status == 200 and doc["stored"] == 2
        # the locked device is delayed from any source (429: send again later) ...
        status, doc, head = post(s.http, b"".join(genuine), OTHER)
        assert status == 429 and "Retry-After" in head
        # ... while the source, 11 failing requests into its 100, still sends for
        # other devices (a carrier's NAT is one address for many boards)
        more = frames(4, device=DEV2, key=KEY2)[2:]  # the chain goes on
        status, doc, _ = post(s.http, b"".join(more))
        assert status == 200 and doc["stored"] == 2
        _, doc = health(s.http, OTHER)
        t = doc["throttle"]
        assert t["locked_devices"] == 1 and t["locked_sources"] == 0, t
        assert t["failed_macs"] == 11 and t["refused_requests"] >= 30, t
        print(f"\n{tested} of {len(codes)} guesses tested in {took:.2f} s")
    finally:
        s.stop()
    assert "throttle: device 0a1b2c3d locked for 1 s after 11 failed MACs" in (
        s.err.read_text()
    )


def test_a_body_of_guesses_tests_only_the_devices_budget(tmp_path, keys):
    """6,000 forged frames in one body: the first 10 are answered bad_mac, the rest
    not answered at all (throttled), and the device is locked; frames of another
    device in the same body are stored."""
    s = start(tmp_path, keys)
    try:
        genuine = frames(1)[0]
        guesses = [guess(genuine, i) for i in range(6000)]
        other = frames(1, device=DEV2, key=KEY2)
        status, doc, _ = post(s.http, b"".join(other + guesses))
        assert status == 200 and doc["stored"] == 1, doc
        assert doc["reasons"] == {"bad_mac": 10, "throttled": 5990}, doc["reasons"]
        assert doc["acked_bytes"] == len(other[0])
        status, doc, head = post(s.http, b"".join(frames(3)), OTHER)
        assert status == 429 and int(head["Retry-After"]) >= 1
        _, doc = health(s.http, OTHER)
        assert doc["throttle"]["failed_macs"] == 11  # the first unanswered too
        assert doc["throttle"]["unanswered_frames"] == 5990
    finally:
        s.stop()


def test_a_lockout_ends_and_the_delayed_frames_are_stored(tmp_path, keys, monkeypatch):
    monkeypatch.setenv(ENV, "2,0.4,0.8")  # 2 free failures, then 0.4 s, 0.8 s
    s = start(tmp_path, keys)
    try:
        bad = forge_mac(frames(1)[0])
        assert [post(s.http, bad)[0] for _ in range(4)] == [403, 403, 403, 429]
        batch = b"".join(frames(5))
        status, _, head = post(s.http, batch)
        assert status == 429 and head["Retry-After"] == "1"
        time.sleep(0.5)
        status, doc, _ = post(s.http, batch)  # the board's re-send, later
        assert status == 200 and doc["stored"] == 5
    finally:
        s.stop()
    with Store(s.store, read_only=True) as st:
        assert st.count() == 5


def test_a_source_with_many_failing_requests_is_held_back(tmp_path, keys, monkeypatch):
    monkeypatch.setenv(ENV, "1000,1,3600,5")  # 5 failing requests, then 5 an hour
    s = start(tmp_path, keys)
    try:
        unknown = frames(1, device=0x0BADF00D, key=bytes(range(32)))
        codes = [post(s.http, b"".join(unknown))[0] for _ in range(8)]
        assert codes == [403] * 5 + [429] * 3, codes
        # the held-back source waits, before its body is read, for any device...
        status, doc, head = post(s.http, b"".join(frames(2)))
        assert status == 429 and doc["error"] == "throttled" and "Retry-After" in head
        # ...another source does not, and no device was locked by unknown ids
        status, doc, _ = post(s.http, b"".join(frames(2)), OTHER)
        assert status == 200 and doc["stored"] == 2
        _, doc = health(s.http, OTHER)
        assert doc["throttle"]["locked_sources"] == 1
        assert doc["throttle"]["locked_devices"] == 0
    finally:
        s.stop()


def test_throttle_budgets_and_serialises_a_suspect():
    now = [0.0]
    t = Throttle(free=10, base_s=1, max_s=3600, clock=lambda: now[0])
    wait, budget, held = t.admit("a", [DEV])
    assert wait == 0 and budget == {DEV: 10} and held == []
    t.settle(held, "a", {DEV: 10}, True)
    wait, budget, held = t.admit("a", [DEV])
    assert wait == 0 and budget == {DEV: 1} and len(held) == 1
    t.settle(held, "a", {DEV: 1}, True)  # the 11th: locked a second
    assert t.admit("b", [DEV])[0] == 1 and t.admit("a", [DEV2])[0] == 0
    for _ in range(12):  # each later failure doubles the lock, up to an hour
        now[0] += 3601
        wait, budget, held = t.admit("b", [DEV])
        assert wait == 0 and budget == {DEV: 1}
        assert t.admit("c", [DEV])[0] > 0  # one request at a time
        t.settle(held, "b", {DEV: 1}, True)
    assert t.admit("c", [DEV])[0] == 3600
    # unknown devices and clean requests never lock a device
    t.settle([], "z", {}, True)
    assert set(t.devices) == {DEV}


# --- future boots ----------------------------------------------------------------


def test_frames_far_in_a_devices_future_are_refused(tmp_path, keys):
    s = start(tmp_path, keys, "--max-boot-ahead", "100")
    try:
        assert post(s.http, b"".join(frames(3, boot=7)))[0] == 200
        # a stolen key writing ahead of the board (seq 0, prev 0: no chain to check)
        far = frames(3, boot=7 + 101)
        status, doc, _ = post(s.http, b"".join(far))
        assert status == 409 and doc["error"] == "future_boot", doc
        # a device with nothing stored may start at boot 100 at most
        status, doc, _ = post(s.http, b"".join(frames(1, device=DEV2, key=KEY2,
                                                    boot=101)))  # fmt: skip
        assert status == 409 and doc["error"] == "future_boot"
        # the genuine board's next boots are stored, walked up in one batch too
        later = [f for b in range(8, 8 + 250, 50) for f in frames(2, boot=b)]
        status, doc, _ = post(s.http, b"".join(later))
        assert status == 200 and doc["stored"] == 10, doc
        # and the stored boots move the ceiling: 258 + 100 is not too far now
        assert post(s.http, b"".join(far))[0] == 200
    finally:
        s.stop()


def test_boot_ceiling_walks_and_wraps():
    c = BootCeiling(10)
    c.load(np.array([1, 1, 2], np.uint32), np.array([65530, 3, 7], np.uint16))
    assert c.latest == {1: 3, 2: 7}  # device 1 wrapped past 65535
    dev = np.array([1, 1, 1, 1, 2, 2, 3], np.uint32)
    boot = np.array([65000, 13, 23, 40, 17, 28, 11], np.uint16)
    assert c.too_far(dev, boot).tolist() == [False, False, False, True, False,
                                             True, True]  # fmt: skip


# --- slow clients, the connection cap --------------------------------------------


def test_slow_clients_are_cut_at_the_deadline_while_others_are_served(tmp_path, keys):
    n = 300
    s = start(tmp_path, keys, "--max-connections", "400", "--request-timeout", "3")
    host, port = hostport(s.http)
    slow: list[socket.socket] = []
    stop = threading.Event()
    try:
        for _ in range(n):
            c = socket.create_connection((host, port), timeout=10)
            c.sendall(b"POST /v1/frames HTTP/1.1\r\n")
            slow.append(c)
        t_open = time.monotonic()

        def trickle() -> None:  # a byte from each, every 0.2 s
            while not stop.wait(0.2):
                for c in slow:
                    try:
                        c.send(b"X")
                    except OSError:
                        pass

        threading.Thread(target=trickle, daemon=True).start()
        while health(s.http)[1]["connections"]["open"] < n:  # all accepted
            assert time.monotonic() - t_open < 2
            time.sleep(0.05)
        worst = 0.0
        for i in range(5):
            t0 = time.monotonic()
            status, doc, _ = post(s.http, frames(5)[i])
            assert status == 200 and doc["stored"] == 1
            status, doc = health(s.http)
            assert status == 200 and doc["connections"]["open"] >= n
            worst = max(worst, time.monotonic() - t0)
        assert worst < 1.0, worst
        # every slow client is answered 408 and closed at its deadline
        answers = []
        for c in slow:
            c.settimeout(5)
            got = b""
            try:
                while chunk := c.recv(4096):
                    got += chunk
            except OSError:
                pass
            answers.append(got.split(b"\r\n", 1)[0])
        cut = time.monotonic() - t_open
        assert answers.count(b"HTTP/1.1 408 Request Timeout") == n, set(answers)
        assert 2.5 < cut < 5.5, cut
        _, doc = health(s.http)
        assert doc["connections"]["timed_out"] >= n
        print(f"\n{n} slow clients held; upload+health at most {worst * 1e3:.0f} ms; "
              f"all cut after {cut:.1f} s")  # fmt: skip
    finally:
        stop.set()
        for c in slow:
            c.close()
        s.stop()


def test_connections_past_the_cap_get_503_busy_at_once(tmp_path, keys):
    cap = 3
    s = start(tmp_path, keys, "--max-connections", str(cap), "--request-timeout", "5")
    host, port = hostport(s.http)
    held = []
    try:
        for _ in range(cap):
            held.append(socket.create_connection((host, port), timeout=5))
        time.sleep(0.2)
        # at the cap: health still has a reserved slot
        status, doc = health(s.http)
        assert status == 200 and doc["connections"]["open"] == cap + 1
        # an upload on a reserved slot: busy
        status, doc, head = post(s.http, frames(1)[0])
        assert status == 503 and doc["error"] == "busy" and "Retry-After" in head
        for _ in range(HEALTH_RESERVE):
            held.append(socket.create_connection((host, port), timeout=5))
        time.sleep(0.2)
        t0 = time.monotonic()
        c = socket.create_connection((host, port), timeout=5)  # says nothing
        got = c.recv(4096)
        c.close()
        assert time.monotonic() - t0 < 1
        head, _, body = got.partition(b"\r\n\r\n")
        assert head.startswith(b"HTTP/1.1 503 ")
        assert json.loads(body)["error"] == "busy"
        for c in held:
            c.close()
        time.sleep(0.3)
        status, doc, _ = post(s.http, frames(1)[0])
        assert status == 200 and doc["stored"] == 1
        assert health(s.http)[1]["connections"]["refused_busy"] == 1
    finally:
        for c in held:
            c.close()
        s.stop()


# --- TLS --------------------------------------------------------------------------


def self_signed(tmp_path):
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt",
         "ec_paramgen_curve:prime256v1", "-nodes", "-days", "1", "-subj",
         "/CN=127.0.0.1", "-addext", "subjectAltName=IP:127.0.0.1",
         "-keyout", str(key), "-out", str(cert)],
        check=True, capture_output=True,
    )  # fmt: skip
    return cert, key


@pytest.mark.skipif(not shutil.which("openssl"), reason="no openssl command")
def test_https_round_trip_with_a_pinned_certificate(tmp_path, keys):
    cert, key = self_signed(tmp_path)
    s = start(tmp_path, keys, "--tls-cert", str(cert), "--tls-key", str(key))
    try:
        assert s.http and s.http.startswith("https://127.0.0.1:")
        host, port = hostport(s.http)
        ctx = ssl.create_default_context(cafile=str(cert))  # trusts this cert only
        conn = http.client.HTTPSConnection(host, port, timeout=10, context=ctx)
        body = b"".join(frames(4))
        conn.request("POST", "/v1/frames", body=body,
                     headers={"Content-Type": "application/octet-stream"})  # fmt: skip
        r = conn.getresponse()
        assert r.status == 200 and json.loads(r.read())["stored"] == 4
        assert conn.sock.version() in ("TLSv1.2", "TLSv1.3")  # type: ignore[union-attr]
        conn.request("GET", "/v1/health")  # the same connection, kept alive
        r = conn.getresponse()
        assert r.status == 200 and json.loads(r.read())["frames"] == 4
        conn.close()
        # a client that does not trust the certificate gets nowhere
        with pytest.raises(ssl.SSLCertVerificationError):
            public = ssl.create_default_context()
            other = http.client.HTTPSConnection(host, port, timeout=10, context=public)
            other.request("GET", "/v1/health")
        # plain HTTP on the TLS port: no answer, and the server goes on
        with pytest.raises((http.client.HTTPException, OSError)):
            post(f"http://{host}:{port}", body)
        ctx2 = ssl.create_default_context(cafile=str(cert))
        c2 = http.client.HTTPSConnection(host, port, timeout=10, context=ctx2)
        c2.request("GET", "/v1/health")
        assert c2.getresponse().status == 200
        c2.close()
    finally:
        s.stop()


# --- keys file permissions --------------------------------------------------------


def test_a_keys_file_others_can_read_is_refused(tmp_path, capsys):
    k = keys_file(tmp_path / "keys.json", {DEV: KEY})
    k.chmod(0o644)
    port = free_port()
    with socket.socket() as busy:  # a taken port: a serve that got past the check
        busy.bind(("127.0.0.1", port))  # fails there instead of serving
        busy.listen()
        args = ["serve", "--store", str(tmp_path / "s.duckdb"), "--keys", str(k),
                "--http", f"127.0.0.1:{port}"]  # fmt: skip
        assert main(args) == 1
        err = capsys.readouterr().err
        assert "open to other users (mode 0644)" in err and f"chmod 600 {k}" in err
        assert not (tmp_path / "s.duckdb").exists()
        assert main([*args, "--insecure-keys-file"]) == 1  # the override
        assert "cannot listen" in capsys.readouterr().err


@pytest.mark.skipif(not shutil.which("openssl"), reason="no openssl command")
def test_a_tls_key_others_can_read_is_refused(tmp_path, keys, capsys):
    cert, key = self_signed(tmp_path)
    key.chmod(0o640)
    args = ["serve", "--store", str(tmp_path / "s.duckdb"), "--keys", str(keys),
            "--http", "127.0.0.1:0", "--tls-cert", str(cert),
            "--tls-key", str(key)]  # fmt: skip
    assert main(args) == 1
    err = capsys.readouterr().err
    assert f"TLS key {key} is open to other users (mode 0640)" in err
    assert "pose as this server" in err and not (tmp_path / "s.duckdb").exists()
