"""Signed upload answers (protocol/SPEC.md "Uplink", docs/uplink.md "The answer"):
the board moves its backlog cursor only on an answer that verifies with its key for
the very batch it sent. A man in the middle answering "all acknowledged", a third
MQTT client publishing on the device's ack topic, an old answer replayed for another
batch: none of them makes the board drop a frame, and the frames reach a real
`jalkal serve` later. Unknown devices are told like bad MACs on the wire."""

from __future__ import annotations

import hashlib
import json
import threading
import zlib
from pathlib import Path

from hypothesis import given, settings
from hypothesis import strategies as st
from signed_ack import answer
from test_uplink import KEY, Board
from uplink_util import Mosquitto, Server, frames, keys_file, needs_mosquitto

from jalkal.ingest.store import Store
from jkfw.uplink import BADSIG, FEWER, verdict
from jkproto import codec

DEV_HEX = "0a1b2c3d"
HOUR_MS = 3600 * 1000


def stored_keys(path: Path) -> set[tuple[int, int]]:
    with Store(path, read_only=True) as st_:
        tb = st_.query("SELECT boot, seq FROM frames")
    return set(zip(tb.column(0).to_pylist(), tb.column(1).to_pylist(), strict=True))


def forged(body: bytes, sig: str | None = None) -> bytes:
    """What a forger answers: everything acknowledged (no key: no or a made-up sig)."""
    n = len(list(codec.scan(body)))
    doc = {"ok": True, "frames": n, "stored": n, "duplicate": 0,
           "acked_bytes": len(body)}  # fmt: skip
    if sig is not None:
        doc.update(sig=sig, device=DEV_HEX)
    doc.update(rejected=0, body_bytes=len(body), body_crc32=f"{zlib.crc32(body):08x}")
    return json.dumps(doc, separators=(",", ":")).encode()


class Mitm:
    """Between the board and the server: forges every answer while `forging`,
    otherwise forwards the POST to the real server."""

    def __init__(self):
        self.url = None
        self.forging = True
        self.forged = 0

    def post(self, url, body):
        if self.forging:
            self.forged += 1
            sig = ["", "0" * 16, None][self.forged % 3]
            return 200, forged(bytes(body), sig), len(body) + 700
        from jksim.modem import http_post

        return http_post(self.url + "/v1/frames", body)


def test_a_forged_http_answer_moves_nothing_and_the_frames_reach_serve(tmp_path):
    mitm = Mitm()
    b = Board(tmp_path, mitm)
    start = list(b.state["up"][:5])
    b.run_days(0.25)  # 6 h of forged "all acknowledged"
    assert mitm.forged >= 3
    assert b.state["up"][:5] == start  # the cursor did not move
    assert b.up.skipped == 0 and b.up.badsig == mitm.forged
    assert b.events == [("fault_raised", "bad_ack", 200)]  # raised once
    srv = Server(tmp_path, tmp_path / "s.duckdb", keys_file(tmp_path / "k.json"))
    try:
        srv.start()
        mitm.url, mitm.forging = srv.http, False
        b.run_days(0.5)
    finally:
        srv.stop()
    got = stored_keys(tmp_path / "s.duckdb")
    assert set(b.logged[:-4]) <= got  # every frame, the forged-over ones too
    assert b.up.fails == 0


class Forger:
    """A third MQTT client that answers every batch on the device's up topic with a
    forged ack on its ack topic."""

    def __init__(self, port: int):
        import paho.mqtt.client as mqtt

        self.n = 0
        self.ready = threading.Event()
        self.c = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id="forger")
        self.c.on_connect = lambda c, *a: c.subscribe(f"jalkal/v1/{DEV_HEX}/up", 1)
        self.c.on_subscribe = lambda *a: self.ready.set()
        self.c.on_message = self._answer
        self.c.connect("127.0.0.1", port, 60)
        self.c.loop_start()
        assert self.ready.wait(10)

    def _answer(self, c, userdata, msg):
        self.n += 1
        c.publish(f"jalkal/v1/{DEV_HEX}/ack", forged(msg.payload, "ab" * 8), qos=1)

    def stop(self):
        self.c.disconnect()
        self.c.loop_stop()


@needs_mosquitto
def test_a_forged_mqtt_ack_moves_nothing_and_the_frames_reach_serve(tmp_path):
    from jkfw.mqtt import Mqtt

    mq = Mosquitto(tmp_path / "mq").start()
    srv = Server(tmp_path, tmp_path / "s.duckdb", keys_file(tmp_path / "k.json"))
    try:
        url = f"mqtt://127.0.0.1:{mq.port}"
        b = Board(tmp_path, Mitm(), family="sim7600", uplink_url=url)
        b.up.link = Mqtt(b.m, DEV_HEX.encode())
        start = list(b.state["up"][:5])
        forger = Forger(mq.port)  # no server yet: only the forger answers
        try:
            b.clock.run_until(3 * HOUR_MS)
        finally:
            forger.stop()
        assert b.clock.failures == []
        assert forger.n >= 2 and b.up.badsig >= 2
        assert b.state["up"][:5] == start  # the cursor did not move
        assert ("fault_raised", "bad_ack", 200) in b.events
        srv.start(http=None, mqtt=mq.url)
        b.clock.run_until(b.clock.ms + 12 * HOUR_MS)
        assert b.clock.failures == []
    finally:
        srv.stop()
        mq.stop()
    got = stored_keys(tmp_path / "s.duckdb")
    # the frames published while forged too; the last hour's wait for the next one
    assert set(b.logged[:-6]) <= got and len(got) > 40
    assert b.state["up"][:5] != start


def real_answer(store: Store, body: bytes) -> tuple[int, bytes]:
    res = store.ingest(body, via="http")
    return res.status(), json.dumps(res.to_json(), separators=(",", ":")).encode()


def test_an_answer_for_another_batch_is_refused(tmp_path):
    store = Store(tmp_path / "s.duckdb", {DEV_HEX: KEY})
    fs = frames(7)
    old, new = b"".join(fs[1:4]), b"".join(fs[4:])  # readings, 40 bytes each
    # frames end in their own CRC-32: any two bodies of as many frames have the
    # same CRC-32, so it cannot tell one batch's answer from another's
    assert zlib.crc32(old) == zlib.crc32(new) and len(old) == len(new)
    status, ans = real_answer(store, old)
    sg = codec.Signer(KEY)
    sha_old, sha_new = hashlib.sha256(old).digest(), hashlib.sha256(new).digest()
    assert verdict(status, ans, len(old), 3, sha_old, sg, DEV_HEX) == len(old)
    # the old answer replayed when the next batch went up: refused
    assert verdict(status, ans, len(new), 3, sha_new, sg, DEV_HEX) == BADSIG
    # another device's answer, or this one checked with another key: refused
    assert verdict(status, ans, len(old), 3, sha_old, sg, "0a1b2c3e") == BADSIG
    assert verdict(status, ans, len(old), 3, sha_old, codec.Signer(bytes(32)),
                   DEV_HEX) == BADSIG  # fmt: skip
    store.close()


def test_unknown_device_and_bad_mac_answers_look_alike(tmp_path):
    store = Store(tmp_path / "s.duckdb", {DEV_HEX: KEY})
    unknown = b"".join(frames(3, device=0x0A1B2C3E))  # not in the keys file
    bad = b"".join(frames(3, key=bytes(32)))  # a known device, the wrong key
    answers = []
    for body in (unknown, bad):
        res = store.ingest(body, via="http")
        answers.append((res.status(), res.to_json(), res.summary()))
    (s1, a, log1), (s2, b, log2) = answers
    assert s1 == s2 == 403
    assert list(a) == list(b)  # the same fields in the same order
    for k in ("ok", "frames", "stored", "duplicate", "acked_bytes", "error",
              "rejected", "body_bytes", "acked", "reasons", "message"):  # fmt: skip
        assert a[k] == b[k], k
    assert a["error"] == "bad_mac" and a["reasons"] == {"bad_mac": 3}
    assert [list(e) for e in a["errors"]] == [list(e) for e in b["errors"]]
    assert {e["reason"] for e in a["errors"]} == {"bad_mac"}
    assert len(a["sig"]) == len(b["sig"]) == 16
    assert int(a["sig"], 16) >= 0 and int(b["sig"], 16) >= 0  # hex, both
    assert a["device"] == "0a1b2c3e" and b["device"] == DEV_HEX
    # random for the unknown device (no key signs it), a real one for the known
    again = store.ingest(unknown, via="http").to_json()
    assert again["sig"] != a["sig"]
    assert store.ingest(bad, via="http").to_json()["sig"] == b["sig"]
    # the server's own log still tells them apart
    assert "unknown_device 3" in log1 and "bad_mac 3" in log2
    store.close()


def json_ish():
    """Answers shaped like the server's, with made-up numbers and sig."""
    num = st.integers(0, 5000)
    return st.builds(
        lambda f, s, d, a, e, g, sp: json.dumps(
            {"ok": True, "frames": f, "stored": s, "duplicate": d, "acked_bytes": a,
             "error": e, "sig": g, "device": DEV_HEX},
            separators=(",", ":" + " " * sp),
        ).encode(),  # fmt: skip
        num, num, num, num,
        st.sampled_from(["", "bad_mac", "conflict", "malformed_body"]),
        st.text("0123456789abcdef", min_size=0, max_size=20), st.integers(0, 1),
    )  # fmt: skip


@settings(max_examples=300, deadline=None)
@given(
    status=st.sampled_from([200, 201, 400, 403, 404, 409, 413, 429, 500, 503, 601]),
    body=st.one_of(st.binary(max_size=200), json_ish()),
    n=st.integers(27, 4096),
    nf=st.integers(1, 150),
)
def test_no_answer_without_the_key_moves_the_cursor(status, body, n, nf):
    sha = hashlib.sha256(bytes(n)).digest()
    v = verdict(status, body, n, nf, sha, codec.Signer(KEY), DEV_HEX)
    assert v in (None, FEWER, BADSIG)  # never acked bytes, SKIP1 or SKIPALL
    assert verdict(status, bytearray(body), n, nf, sha, codec.Signer(KEY),
                   DEV_HEX) == v  # fmt: skip


@given(n=st.integers(0, 3), stored=st.integers(0, 3))
@settings(max_examples=20, deadline=None)
def test_a_signed_answer_built_alike_does_move_it(n, stored):
    # the property above is not vacuous: the same shape, signed, is acted on
    body = bytes(80)
    ans = answer(KEY, body, n, min(stored, n), 0, 40 if stored and n else 0,
                 "" if stored >= n else "bad_mac")  # fmt: skip
    v = verdict(200, ans, 80, 2, hashlib.sha256(body).digest(), codec.Signer(KEY),
                DEV_HEX)  # fmt: skip
    assert v is None or v == 40 or v in (-1, -3)
    assert v is not None or n == 0


def test_unknown_devices_cost_the_server_a_mac_check_like_bad_macs(
    tmp_path, monkeypatch
):
    """An unknown device must not be answered sooner than a bad MAC (which would
    tell which ids exist): its frames get a check with a key nobody has."""
    from jalkal.ingest import signer

    checked: list[int] = []
    real = signer.FastSigner.verify_many

    def spy(self, buf, offsets, lengths):  # type: ignore[no-untyped-def]
        checked.append(len(offsets))
        return real(self, buf, offsets, lengths)

    monkeypatch.setattr(signer.FastSigner, "verify_many", spy)
    keys = {f"{0x0A1B2C3D:08x}": KEY}
    with Store(tmp_path / "s.duckdb", keys) as st:
        unknown = b"".join(frames(5, device=0x0BADF00D, key=bytes(32)))
        res = st.ingest(unknown)
        assert res.rejected == 5 and checked == [5]
        forged = bytearray(b"".join(frames(5, key=bytes(32))))  # known id, bad MACs
        res = st.ingest(bytes(forged))
        assert res.rejected == 5 and checked == [5, 5]
