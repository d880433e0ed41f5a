"""Every protocol vector through every decoder: reference, bulk, CLI, MicroPython;
and every signed-answer vector (acks.jsonl) through the server's signer, the board's
verdict and MicroPython."""

import hashlib
import json
import subprocess
import sys
import zlib

import pytest
from conftest import VECTOR_DIR, load_vectors, protocol_files

from jalkal.cli import main
from jalkal.decode import bulk
from jkproto import codec
from jkproto import objects as ob

VECTORS = [v for v in load_vectors() if "hex" in v]  # frame streams
NAMES = [v["name"] for v in VECTORS]
ACKS = [json.loads(line) for line in (VECTOR_DIR / "acks.jsonl").open()]
ACK_NAMES = [v["name"] for v in ACKS]


def signers_of(v):
    if v["keys"] is None:
        return None
    return {
        d: codec.Signer(bytes.fromhex(e["key"]))
        for d, e in v["keys"]["devices"].items()
    }


def test_vectors_cover_every_kind_and_bad_case():
    kinds = {o.get("kind") for v in VECTORS for o in v["expect"]}
    assert {"boot", "reading", "event", "heartbeat", "gap", "clock", "measure"} <= kinds
    total = {k: sum(v["report"][k] for v in VECTORS) for k in ob.new_stats()}
    bad = "crc_errors truncated unknown_version malformed chain_breaks mac_failures"
    for k in bad.split() + ["unknown_devices", "skipped_bytes"]:
        assert total[k] > 0, k
    assert len(set(NAMES)) == len(NAMES)


@pytest.mark.parametrize("v", VECTORS, ids=NAMES)
def test_reference_decoder(v):
    objs, stats = ob.decode_stream(bytes.fromhex(v["hex"]), signers_of(v))
    assert objs == v["expect"]
    assert stats == v["report"]


@pytest.mark.parametrize("v", VECTORS, ids=NAMES)
def test_bulk_decoder(v):
    d = bulk.decode(bytes.fromhex(v["hex"]), signers_of(v))
    assert bulk.to_objects(d.table) == v["expect"]
    assert d.stats == v["report"]


@pytest.mark.parametrize("v", VECTORS, ids=NAMES)
def test_cli_decode_then_encode(v, tmp_path, capsys):
    data = bytes.fromhex(v["hex"])
    log = tmp_path / "log.bin"
    log.write_bytes(data)
    args = ["decode", str(log)]
    if v["keys"] is not None:
        keys = tmp_path / "keys.json"
        keys.write_text(json.dumps(v["keys"]))
        args += ["--keys", str(keys)]
    assert main(args) == 0
    out = capsys.readouterr().out
    assert [json.loads(line) for line in out.splitlines()] == v["expect"]
    # decode | encode gives back exactly the intact frames (garbage dropped)
    (tmp_path / "in.jsonl").write_text(out)
    assert (
        main(["encode", str(tmp_path / "in.jsonl"), "-o", str(tmp_path / "out")]) == 0
    )
    intact = b"".join(data[o : o + n] for o, n in codec.scan(data))
    assert (tmp_path / "out").read_bytes() == intact


def test_reading_vector_has_the_fields_given():
    v = next(x for x in VECTORS if x["name"] == "reading-typical")
    (o,) = v["expect"]
    assert len(bytes.fromhex(v["hex"])) == 40
    assert o["device"] == "0a1b2c3d" and o["boot"] == 7 and o["seq"] == 1
    assert o["ts"] == "2026-03-01T00:00:00Z" and o["time"] == "net"
    assert (o["source_pulses"], o["supply_pulses"], o["pump_s"]) == (123450, 98760, 840)
    assert o["inputs"] == ["pump", "mains"] and o["supply_dv"] == 124 and o["csq"] == 21
    assert o["verified"] is True


def test_vectors_are_what_the_generator_makes(tmp_path):
    """The committed vectors are reproducible from protocol/vectors/generate.py."""
    before = {p.name: p.read_text() for p in VECTOR_DIR.glob("*.jsonl")}
    code = (
        "import runpy, pathlib, sys; sys.argv=['g'];"
        f"ns = runpy.run_path({str(VECTOR_DIR / 'generate.py')!r}, run_name='x');"
        "import json;"
        "out = {n: ''.join(json.dumps(v, separators=(',', ':')) + '\\n' for v in f())"
        " for n, f in ns['SETS']};"
        "print(json.dumps(out))"
    )
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert res.returncode == 0, res.stderr
    made = json.loads(res.stdout)
    assert {f"{k}.jsonl": t for k, t in made.items()} == before


MPY_SCRIPT = """
import json
from jkproto import codec, objects as ob
for line in open("vectors.jsonl"):
    v = json.loads(line)
    sg = None
    if v["keys"]:
        sg = {}
        for d, e in v["keys"]["devices"].items():
            sg[d] = codec.Signer(bytes.fromhex(e["key"]))
    data = bytes.fromhex(v["hex"])
    objs, stats = ob.decode_stream(data, sg)
    again = b"".join(ob.from_obj(o) for o in objs)
    intact = b"".join(data[o : o + n] for o, n in codec.scan(data))
    print(json.dumps({"name": v["name"], "expect": objs, "report": stats,
                      "roundtrip": again == intact}))
"""


@pytest.mark.micropython
def test_vectors_in_real_micropython(mpy):
    files = protocol_files()
    files["vectors.jsonl"] = "".join(json.dumps(v) + "\n" for v in VECTORS).encode()
    out = mpy.run(MPY_SCRIPT, files, timeout_s=120)
    got = [json.loads(line) for line in out.splitlines()]
    assert [g["name"] for g in got] == NAMES
    for g, v in zip(got, VECTORS, strict=True):
        assert g["expect"] == v["expect"], g["name"]
        assert g["report"] == v["report"], g["name"]
        assert g["roundtrip"], g["name"]


@pytest.mark.micropython
def test_encoder_in_micropython_matches_cpython(mpy):
    script = """
from jkproto import codec
e = codec.Encoder(0x0a1b2c3d, bytes(range(32)), boot=7)
out = b""
for i in range(5):
    t = 1772323200 + 900 * i
    out += bytes(e.frame(codec.READING, t, 2, 10 * i, 5 * i, 300, 24, 124, 20))
out += bytes(e.frame(codec.EVENT, 1772324000, 2, 1, 1, 0))
print(out.hex())
"""
    got = bytes.fromhex(mpy.run(script, protocol_files()).strip())
    e = codec.Encoder(0x0A1B2C3D, bytes(range(32)), boot=7)
    want = b"".join(
        bytes(
            e.frame(
                codec.READING, 1772323200 + 900 * i, 2, 10 * i, 5 * i, 300, 24, 124, 20
            )
        )
        for i in range(5)
    ) + bytes(e.frame(codec.EVENT, 1772324000, 2, 1, 1, 0))
    assert got == want


# --- signed answers (protocol/SPEC.md "Uplink")


def ack_inputs(v):
    i = v["inputs"]
    return (i["device"], bytes.fromhex(i["sha256"]), i["body_bytes"], i["frames"],
            i["stored"], i["duplicate"], i["acked_bytes"], i["error"])  # fmt: skip


def test_ack_vectors_cover_the_cases():
    assert len(set(ACK_NAMES)) == len(ACK_NAMES) >= 6
    errors = {v["inputs"]["error"] for v in ACKS}
    assert {"", "bad_mac", "malformed_body"} <= errors
    assert {v["inputs"]["device"] for v in ACKS} == {"0a1b2c3d", "11223344"}
    # two bodies of the same CRC-32 (frames end in their own CRC), other sigs
    a, b = (next(v for v in ACKS if v["name"] == n)
            for n in ("ack-all-stored", "ack-next-batch-same-crc32"))  # fmt: skip
    ba, bb = bytes.fromhex(a["body"]), bytes.fromhex(b["body"])
    assert zlib.crc32(ba) == zlib.crc32(bb) and a["sig"] != b["sig"]


@pytest.mark.parametrize("v", ACKS, ids=ACK_NAMES)
def test_ack_vector(v):
    from jalkal.ingest.signer import FastSigner

    body = bytes.fromhex(v["body"])
    assert hashlib.sha256(body).hexdigest() == v["inputs"]["sha256"]
    assert v["inputs"]["body_bytes"] == len(body)
    msg = codec.ack_msg(*ack_inputs(v))
    assert msg == v["msg"].encode() and msg.isascii()
    key = bytes.fromhex(v["key"])
    assert codec.ack_sig(codec.Signer(key), msg).decode() == v["sig"]
    assert codec.ack_sig(FastSigner(key), msg).decode() == v["sig"]  # the server's
    assert len(v["sig"]) == 2 * codec.ACK_SIG_LEN == 16


ACK_SCRIPT = """
import json
from jkproto import codec
for line in open("acks.jsonl"):
    v = json.loads(line)
    i = v["inputs"]
    msg = codec.ack_msg(i["device"], bytes.fromhex(i["sha256"]), i["body_bytes"],
                        i["frames"], i["stored"], i["duplicate"], i["acked_bytes"],
                        i["error"])
    sig = codec.ack_sig(codec.Signer(bytes.fromhex(v["key"])), msg)
    print(json.dumps({"name": v["name"], "msg": msg.decode(), "sig": sig.decode()}))
"""


@pytest.mark.micropython
def test_ack_vectors_in_real_micropython(mpy):
    files = protocol_files()
    files["acks.jsonl"] = (VECTOR_DIR / "acks.jsonl").read_bytes()
    got = [json.loads(x) for x in mpy.run(ACK_SCRIPT, files).splitlines()]
    assert got == [{"name": v["name"], "msg": v["msg"], "sig": v["sig"]} for v in ACKS]
