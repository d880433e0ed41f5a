"""The exactly-once frame store (jalkal.ingest.store): verification, duplicates,
conflicts, chain checks against what is stored, malformed bodies, and the report
from a store; on both back-ends (a DuckDB file and PostgreSQL) where the test is
about the store's semantics."""

from __future__ import annotations

import struct
import subprocess
import sys
import zlib

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from uplink_util import DEV, DEV2, KEY, KEY2, frames

from jalkal.decode import bulk
from jalkal.errors import JalkalError
from jalkal.ingest.ack import REASONS
from jalkal.ingest.store import FastSigner, Store, open_store
from jkproto import codec as c

KEYS = {f"{DEV:08x}": KEY, f"{DEV2:08x}": KEY2}


@pytest.fixture
def store(store_where):
    s = open_store(store_where, KEYS)
    yield s
    s.close()


def reasons(res) -> list[str]:
    return [REASONS[x] for x in res.outcome.tolist()]


def forge_mac(f: bytes) -> bytes:
    """The frame with its MAC changed and the CRC fixed (CRC-valid, MAC-invalid)."""
    b = bytearray(f)
    b[-8] ^= 0xFF
    struct.pack_into("<I", b, len(b) - 4, zlib.crc32(b[:-4]))
    return bytes(b)


def test_fast_signer_is_the_codec_signer():
    for key in (KEY, KEY2, bytes(32)):
        for msg in (b"", b"x" * 19, bytes(range(200))):
            assert FastSigner(key).mac(msg) == c.Signer(key).mac(msg)


def test_verify_many_is_codec_verify():
    fs = frames(20)
    fs[3], fs[7] = forge_mac(fs[3]), fs[7][:-8] + b"\0" * 8  # bad MAC, bad both
    buf = b"".join(fs)
    offs = [sum(map(len, fs[:i])) for i in range(len(fs))]
    lens = [len(f) for f in fs]
    got = FastSigner(KEY).verify_many(buf, offs, lens).tolist()
    want = [c.verify(buf, o, n, c.Signer(KEY)) for o, n in zip(offs, lens, strict=True)]
    assert got == want and want.count(False) == 2


def test_round_trip_raw_and_decoded(store):
    fs = frames(50) + frames(30, DEV2, KEY2, boot=4)
    body = b"".join(fs)
    res = store.ingest(body, via="http")
    assert res.status() == 200 and res.stored == 80 and res.rejected == 0
    doc = res.to_json()
    assert doc["ok"] and doc["acked"] == [
        ["0a1b2c3d", 1, 0, 49],
        ["11223344", 4, 0, 29],
    ]
    assert (
        doc["acked_bytes"] == len(body)
        and doc["body_crc32"] == f"{zlib.crc32(body):08x}"
    )
    assert store.count() == 80
    # the raw bytes come back exactly, in (device, boot, seq) order
    assert store.raw_stream() == body
    # decoded columns are bulk.decode's
    want = bulk.decode(body).table
    got = store.table()
    for name in ("device", "boot", "seq", "kind", "t", "prev", "mac", "supply_pulses",
                 "interval_s", "pump_s"):  # fmt: skip
        assert got.column(name).to_pylist() == want.column(name).to_pylist(), name
    assert set(got.column("via").to_pylist()) == {"http"}
    assert got.column("ts").to_pylist()[0].year == 2026


def test_duplicates_are_acked_and_stored_once(store):
    fs = frames(20)
    assert store.ingest(b"".join(fs)).stored == 20
    res = store.ingest(b"".join(fs))
    assert res.status() == 200 and res.duplicate == 20 and res.stored == 0
    assert res.to_json()["acked"] == [["0a1b2c3d", 1, 0, 19]]
    # overlapping batch: old ones duplicate, new ones stored, the same frame twice
    more = frames(30)
    res = store.ingest(b"".join(more[15:] + more[25:26]))
    assert (res.stored, res.duplicate, res.rejected) == (10, 6, 0)
    assert store.count() == 30


def test_conflict_same_key_other_bytes(store):
    store.ingest(b"".join(frames(5)))
    other = frames(5, t0=1_800_000_000)  # same keys, same device key, other bytes
    res = store.ingest(other[3])
    assert reasons(res) == ["conflict"] and res.status() == 409
    assert res.to_json()["error"] == "conflict"
    # within one batch: the second copy of a key with other bytes is the conflict
    res = store.ingest(b"".join(frames(7)[5:7] + frames(7, t0=5)[6:7]))
    assert reasons(res) == ["stored", "stored", "conflict"]
    assert store.count() == 7
    assert store.raw_stream() == b"".join(frames(7))


def test_unknown_device_and_bad_mac(store):
    res = store.ingest(b"".join(frames(3, device=0x99, key=KEY)))
    assert reasons(res) == ["unknown_device"] * 3 and res.status() == 403
    res = store.ingest(b"".join(forge_mac(f) for f in frames(3)))
    assert reasons(res) == ["bad_mac"] * 3 and res.status() == 403
    res = store.ingest(b"".join(frames(3, key=KEY2)))  # signed with another key
    assert reasons(res) == ["bad_mac"] * 3
    assert store.count() == 0


def test_mixed_batch_stores_the_good_and_reports_the_bad(store):
    fs = frames(6)
    body = b"".join([fs[0], fs[1], forge_mac(fs[2]), fs[3], fs[4]])
    res = store.ingest(body)
    assert reasons(res) == ["stored", "stored", "bad_mac", "stored", "stored"]
    doc = res.to_json()
    assert res.status() == 200 and not doc["ok"]
    assert doc["acked"] == [["0a1b2c3d", 1, 0, 1], ["0a1b2c3d", 1, 3, 4]]
    assert doc["acked_bytes"] == len(fs[0]) + len(fs[1])
    assert doc["reasons"] == {"bad_mac": 1}
    assert doc["errors"] == [
        {"index": 2, "offset": doc["acked_bytes"], "reason": "bad_mac",
         "device": "0a1b2c3d", "boot": 1, "seq": 2},
    ]  # fmt: skip
    # the genuine frame 2 fills the hole later
    assert store.ingest(fs[2]).stored == 1
    assert store.raw_stream() == b"".join(fs[:5])


def test_broken_chain_against_the_store(store):
    fs = frames(10)
    store.ingest(b"".join(fs[:5]))
    # seq 5 signed by the device key but chained to something else
    wrong = frames(1, seq=5, prev=0x1234)[0]
    res = store.ingest(wrong)
    assert reasons(res) == ["broken_chain"] and res.status() == 409
    # seq 0 must have prev 0000
    res = store.ingest(frames(1, boot=9, prev=0x0101)[0])
    assert reasons(res) == ["broken_chain"]
    # no stored predecessor: accepted as the start of what the store knows
    assert store.ingest(fs[8]).stored == 1
    # a frame whose stored successor does not chain to it
    res = store.ingest(frames(8, t0=99)[7])  # seq 7 with other bytes: MAC differs
    assert reasons(res) == ["broken_chain"]
    # the genuine ones chain both ways
    res = store.ingest(b"".join(fs[5:8] + fs[9:]))
    assert res.stored == 4 and res.rejected == 0
    assert store.raw_stream() == b"".join(fs)


def test_wrong_device_for_a_topic(store):
    body = b"".join(frames(2) + frames(2, DEV2, KEY2))
    res = store.ingest(body, via="mqtt", device=DEV)
    assert reasons(res) == ["stored", "stored", "wrong_device", "wrong_device"]


def test_unsupported_version_and_malformed_frame(store):
    v2 = bytearray(frames(1)[0])
    v2[1] = 2
    struct.pack_into("<I", v2, len(v2) - 4, zlib.crc32(v2[:-4]))
    res = store.ingest(bytes(v2))
    assert reasons(res) == ["unsupported_version"] and res.status() == 400
    assert "device" not in res.to_json()["errors"][0]
    enc = c.Encoder(DEV, KEY, boot=1)
    buf = bytearray(enc.frame(c.READING, 1_772_323_200, 2, 1, 2, 3, 4, 5, 6))
    short = buf[:19] + buf[-8:]  # a reading without its payload
    short[2] = len(short)
    c.seal(short, len(short), c.Signer(KEY))
    res = store.ingest(bytes(short))
    assert reasons(res) == ["malformed_frame"] and res.status() == 400
    assert store.count() == 0


@pytest.mark.parametrize(
    "body, why",
    [
        (b"", "empty body"),
        (b"hello world, not frames", "offset 0"),
        (b"".join(frames(3))[:-5], "truncated"),
        (b"".join(frames(3)) + b"\x00", "offset 121"),
        (b"\xa5\x01" + b"".join(frames(3)), "offset 0"),
    ],
)
def test_malformed_body_is_refused_whole(store, body, why):
    res = store.ingest(body)
    assert res.error == "malformed_body" and res.status() == 400 and why in res.message
    doc = res.to_json()
    assert doc["frames"] == 0 and doc["acked"] == [] and doc["acked_bytes"] == 0
    assert store.count() == 0


def test_too_large(store):
    store.max_body = 1000
    res = store.ingest(b"".join(frames(40)))
    assert res.error == "too_large" and res.status() == 413 and store.count() == 0


@settings(max_examples=200, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])  # fmt: skip
@given(
    data=st.data(),
    cuts=st.lists(st.integers(0, 2000), max_size=4),
    flips=st.lists(st.tuples(st.integers(0, 2000), st.integers(1, 255)), max_size=4),
    noise=st.binary(max_size=64),
)
def test_whatever_the_body_only_authentic_frames_are_stored_once(
    store, data, cuts, flips, noise
):
    """Random damage to a valid batch (cuts, bit flips, noise): the store never
    holds anything but the genuine frames, each once, and a body that is not whole
    frames stores nothing. (One store for all examples: the property holds as the
    store fills up.)"""
    genuine = frames(40) + frames(10, DEV2, KEY2, boot=3)
    body = bytearray(b"".join(genuine))
    for pos, x in flips:
        body[pos % len(body)] ^= x
    for cut in sorted(cuts, reverse=True):
        del body[cut % max(len(body), 1) :][: data.draw(st.integers(0, 50))]
    at = data.draw(st.integers(0, len(body)))
    body[at:at] = noise
    s = store
    before = s.count()
    res = s.ingest(bytes(body))
    assert res.status() in (200, 400, 403, 409)
    stored = set(bulk_frames(s.raw_stream()))
    assert stored <= set(genuine)
    assert s.count() == before + res.stored == len(stored)
    if res.error:
        assert res.stored == 0 and res.status() == 400
    # again: nothing new
    again = s.ingest(bytes(body))
    assert again.stored == 0 and s.count() == len(stored)


def bulk_frames(stream: bytes) -> list[bytes]:
    t = bulk.decode(stream).table
    offs = t.column("offset").to_pylist()
    lens = t.column("length").to_pylist()
    return [stream[o : o + n] for o, n in zip(offs, lens, strict=True)]


def test_store_reopens_and_checks_its_schema(tmp_path):
    p = tmp_path / "s.duckdb"
    with Store(p, KEYS) as s:
        s.ingest(b"".join(frames(5)))
    with Store(p, read_only=True) as s:
        assert s.count() == 5
    with pytest.raises(JalkalError, match="no such file"):
        Store(tmp_path / "nope.duckdb", read_only=True)
    import duckdb

    con = duckdb.connect(str(tmp_path / "other.duckdb"))
    con.execute("CREATE TABLE x (a INT)")
    con.close()
    with pytest.raises(JalkalError, match="not a jalkal store"):
        Store(tmp_path / "other.duckdb", read_only=True)


def test_commit_survives_a_crash_right_after_ingest(tmp_path):
    """ingest returns after COMMIT (WAL written and fdatasync'ed): a process that
    dies right after it (no close, no checkpoint) leaves the frames in the store."""
    p = tmp_path / "s.duckdb"
    code = (
        "import os, sys; sys.path.insert(0, 'tests')\n"
        "from uplink_util import frames, KEY, DEV\n"
        "from jalkal.ingest.store import Store\n"
        f"s = Store({str(p)!r}, {{'{DEV:08x}': KEY}})\n"
        "r = s.ingest(b''.join(frames(300)))\n"
        "assert r.stored == 300\n"
        "os._exit(0)\n"  # no close, no checkpoint: only the WAL has the frames
    )
    subprocess.run([sys.executable, "-c", code], check=True, cwd=str(_repo()))
    assert (tmp_path / "s.duckdb.wal").exists()
    with Store(p, read_only=True) as s:
        assert s.count() == 300
        assert s.raw_stream() == b"".join(frames(300))


def _repo():
    from pathlib import Path

    return Path(__file__).resolve().parents[1]


def test_report_from_store_equals_report_from_files(tmp_path, store_where):
    """The simulator's SD card (with power cuts: torn frames, gaps) reported from
    the files and, after ingesting its frames, from the store: identical output."""
    from click.testing import CliRunner

    from jalkal.cli import cli
    from jalkal.keys import load_keys

    out = tmp_path / "sim"
    r = CliRunner().invoke(
        cli, ["sim", "--scenario", "power-cuts", "--days", "4", "--out", str(out)]
    )
    assert r.exit_code == 0, r.output
    keys = load_keys(out / "keys.json")
    db = store_where
    with open_store(db, keys) as s:
        for f in sorted((out / "sd").rglob("*")):
            if f.is_file():
                clean = b"".join(bulk_frames(f.read_bytes()))
                res = s.ingest(clean)
                assert res.rejected == 0, res.to_json()
    args = ["--villages", str(out / "villages.csv")]
    for fmt in ("table", "json", "csv"):
        a = CliRunner().invoke(
            cli,
            [
                "report",
                str(out / "sd"),
                "--keys",
                str(out / "keys.json"),
                "--format",
                fmt,
                *args,
            ],  # fmt: skip
        )
        b = CliRunner().invoke(
            cli, ["report", "--store", str(db), "--format", fmt, *args]
        )
        assert a.exit_code == 0 and b.exit_code == 0, (a.output, b.output)
        assert a.stdout == b.stdout and len(a.stdout) > 200


def test_report_needs_files_or_store(tmp_path):
    from jalkal.cli import main

    v = tmp_path / "v.csv"
    v.write_text("device,village,population\n0a1b2c3d,X,100\n")
    assert main(["report", "--villages", str(v)]) == 1
    assert main(["report", "x", "--store", "y", "--villages", str(v)]) == 1


def test_keys_are_uint64_ordered():
    from jalkal.ingest.batch import frame_keys

    k = frame_keys(np.array([1, 1, 2], np.uint32), np.array([0, 1, 0], np.uint16),
              np.array([5, 0, 0], np.uint16))  # fmt: skip
    assert (np.diff(k.astype(np.float64)) > 0).all()
