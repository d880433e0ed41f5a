"""Property tests of the frame codec and the frame <-> object mapping (CPython)."""

from __future__ import annotations

import json
import struct

import pytest
import strategies as S
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from jkproto import codec as c
from jkproto import objects as ob

FAST = settings(
    max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow]
)
KEY = S.KEYS[0]


# --- 1. round trips --------------------------------------------------------------


@FAST
@given(f=S.frames(), key=st.sampled_from(S.KEYS))
def test_object_signed_roundtrip(f, key):
    """object -> from_obj(o, signer) -> bytes -> to_obj -> the same object."""
    o = f.obj()
    b = ob.from_obj(o, c.Signer(key))
    expect = f.signed(key)
    assert b == expect.to_bytes()  # independent encoder: struct + hmac + zlib
    assert c.frame_len(b, 0, len(b)) == len(b)
    back = ob.to_obj(b)
    assert back == expect.obj()
    assert list(back) == list(expect.obj())  # key order too (the JSON output)
    assert json.dumps(back) == json.dumps(expect.obj())


@FAST
@given(f=S.frames())
def test_object_unsigned_uses_its_mac(f):
    o = f.obj()
    b = ob.from_obj(o)
    assert b == f.to_bytes()
    assert ob.to_obj(b) == o


@FAST
@given(fo=S.any_frames())
def test_bytes_object_bytes(fo):
    """bytes -> obj -> from_obj(obj) (no signer, mac from obj) -> identical bytes."""
    b, expect = fo
    o = ob.to_obj(b)
    assert S.normalise(o) == expect
    assert ob.from_obj(json.loads(json.dumps(o))) == b


@FAST
@given(f=S.frames(kinds=S.KNOWN_KINDS))
def test_unpack_fields(f):
    b = f.to_bytes()
    got = c.unpack(b)
    assert got == (
        f.kind,
        f.flags,
        f.device,
        f.boot,
        f.seq,
        f.t,
        f.prev,
        f.values,
        f.extra,
        f.mac,
    )
    assert c.unpack_head(b) == (1, len(b), f.kind, f.flags) + (
        f.device,
        f.boot,
        f.seq,
        f.t,
        f.prev,
    )


@FAST
@given(f=S.frames(), key=st.sampled_from(S.KEYS))
def test_pack_matches_independent_encoder(f, key):
    signer = c.Signer(key)
    b = c.pack(
        f.kind, f.device, f.boot, f.seq, f.t, f.flags, f.prev, f.payload(), signer
    )
    assert b == f.signed(key).to_bytes()
    assert c.verify(b, 0, len(b), signer)
    assert not c.verify(b, 0, len(b), c.Signer(bytes(31) + b"\x01"))


@settings(max_examples=60, deadline=None)
@given(msg=st.binary(max_size=300), key=st.sampled_from(S.KEYS))
def test_signer_is_truncated_hmac_sha256(msg, key):
    assert c.Signer(key).mac(msg) == S.hmac4(key, msg)
    assert c.Signer(key).mac(memoryview(bytearray(msg))) == S.hmac4(key, msg)


@st.composite
def encoder_runs(draw):
    key = draw(st.sampled_from(S.KEYS))
    device = draw(S.u32)
    boot = draw(S.u16)
    seq = draw(st.one_of(st.just(0), st.integers(0xFFF0, 0xFFFF), S.u16))
    prev = 0 if seq == 0 else draw(S.u16)
    items = []
    for _ in range(draw(st.integers(1, 8))):
        kind = draw(st.sampled_from(S.KNOWN_KINDS))
        items.append((kind, draw(S.u32), draw(S.u8), draw(S.payload_values(kind))))
    return key, device, boot, seq, prev, items


@FAST
@given(run=encoder_runs())
def test_encoder_frames_decode_to_given_values(run):
    key, device, boot, seq, prev, items = run
    enc = c.Encoder(device, key, boot=boot, seq=seq, prev=prev)
    stream = b""
    expect = []
    for kind, t, flags, values in items:
        if seq > 0xFFFF:
            assert enc.exhausted()
            with pytest.raises(c.FrameError):
                enc.frame(kind, t, flags, *values)
            break
        assert not enc.exhausted()
        fr = bytes(enc.frame(kind, t, flags, *values))
        spec = S.Frame(kind, flags, device, boot, seq, t, prev, values, b"")
        spec = spec.signed(key)
        assert fr == spec.to_bytes()
        assert c.unpack(fr) == (
            (kind, flags, device, boot, seq, t, prev, values, b"", spec.mac)
        )
        expect.append(spec.obj())
        stream += fr
        prev = spec.mac16
        seq += 1
    objs, stats = ob.decode_stream(stream, {"%08x" % device: c.Signer(key)})
    assert [S.normalise(o) for o in objs] == expect
    assert all(o["verified"] for o in objs)
    assert [o["chain"] for o in objs] == S.expected_chain(objs)
    assert all(o["chain"] != "break" for o in objs[1:])
    assert stats["frames"] == len(expect)
    assert stats["mac_failures"] == stats["chain_breaks"] == 0


def test_encoder_new_epoch_restarts_chain():
    enc = c.Encoder(7, KEY, boot=3, seq=0xFFFF, prev=0x1234)
    a = bytes(enc.frame(c.EVENT, 1, 0, 1, 2, 3))
    assert enc.exhausted()
    with pytest.raises(c.FrameError):
        enc.frame(c.EVENT, 1, 0, 1, 2, 3)
    enc.new_epoch(4)
    b = bytes(enc.frame(c.EVENT, 2, 0, 1, 2, 3))
    objs, stats = ob.decode_stream(a + b, {"00000007": c.Signer(KEY)})
    assert [o["chain"] for o in objs] == ["start", "ok"]
    assert [(o["boot"], o["seq"], o["prev"]) for o in objs] == [
        (3, 0xFFFF, "3412"),
        (4, 0, "0000"),
    ]
    assert stats["chain_breaks"] == stats["mac_failures"] == 0


@settings(max_examples=300, deadline=None)
@given(t=S.u32)
def test_iso_roundtrip(t):
    assert ob.iso(t) == S.iso(t)
    assert ob.parse_iso(S.iso(t)) == t


@pytest.mark.parametrize(
    "s",
    [
        "2026-02-29T00:00:00Z",
        "2026-04-31T00:00:00Z",
        "2026-13-01T00:00:00Z",
        "2026-00-10T00:00:00Z",
        "2026-03-01T24:00:00Z",
        "2026-03-01T08:60:00Z",
        "2026-03-01T08:15:60Z",
        "2026-03-01 08:15:00Z",
        "2026-03-01T08:15:00",
        "2026-03-01T08:15:00+00:00",
        "1969-12-31T23:59:59Z",
        "2106-02-07T06:28:16Z",
        "",
        None,
        20260301,
    ],
)
def test_bad_timestamps_rejected(s):
    o = S.Frame(3, 1, 1, 0, 0, 0, 0, (1, 0, 0), b"").obj()
    o["ts"] = s
    with pytest.raises(c.FrameError):
        ob.from_obj(o)


# --- malformed objects: only FrameError ----------------------------------------


def _ids(v):
    return repr(v)[:24]


_BAD_VALUES = st.one_of(
    st.none(),
    st.booleans(),
    st.floats(allow_nan=True),
    st.integers(-(2**70), 2**70),
    st.sampled_from([-1, 256, 65536, 2**32, 2**64, -(2**31) - 1, 2**31]),
    st.text(max_size=12),
    st.sampled_from(
        [
            "zz",
            "abc",
            "00",
            "0000",
            "00000000",
            "a5",
            "1.2",
            "1.2.3.4",
            "1.2.-3",
            "256.0.0",
            "2026-02-30T00:00:00Z",
            "2026-03-01T08:15:00Z",
            "nonsense",
            "boot",
            "pump_start",
            "dry",
            "\u0966\u0967",
        ]
    ),
    st.lists(st.one_of(st.text(max_size=8), st.integers(-9, 300)), max_size=4),
    st.dictionaries(st.text(max_size=3), st.integers(), max_size=3),
    st.just({str(i): 0 for i in range(20)}),
)


@settings(max_examples=400, deadline=None)
@given(
    o=S.frame_objects(),
    edits=st.lists(
        st.tuples(
            st.one_of(
                st.sampled_from(ob.COMMON),
                st.sampled_from(
                    sorted({n for fs in ob.FIELDS.values() for n, _ in fs})
                ),
            ),
            st.one_of(_BAD_VALUES, st.just("<delete>")),
        ),
        min_size=1,
        max_size=3,
    ),
    signed=st.booleans(),
)
def test_from_obj_malformed_raises_only_frame_error(o, edits, signed):
    for name, v in edits:
        if v == "<delete>":
            o.pop(name, None)
        else:
            o[name] = v
    try:
        b = ob.from_obj(o, c.Signer(KEY) if signed else None)
    except c.FrameError:
        return
    # whatever is accepted must be a well-formed frame
    assert isinstance(b, bytes)
    if "raw" not in o:
        assert c.frame_len(b, 0, len(b)) == len(b)


@pytest.mark.parametrize(
    "name, value",
    [
        ("kind", "nope"),
        ("kind", 256),
        ("kind", -1),
        ("kind", None),
        ("kind", True),
        ("device", "1234567"),
        ("device", "12345678a"),
        ("device", "zzzzzzzz"),
        ("device", 1),
        ("boot", 65536),
        ("boot", -1),
        ("boot", "1"),
        ("boot", 1.0),
        ("seq", 2**64),
        ("uptime_s", 2**32),
        ("uptime_s", None),
        ("time", "sundial"),
        ("time", 8),
        ("time", -1),
        ("prev", "123"),
        ("prev", "zzzz"),
        ("prev", "000000"),
        ("mac", "0000"),
        ("mac", None),
        ("extra", "abc"),
        ("extra", "zz"),
        ("extra", 12),
        ("extra", "00" * 300),
        ("xflags", 256),
        ("xflags", -8),
        ("xflags", "x"),  # was a TypeError from `tq | xflags` (fixed in d54e20c)
        ("xflags", None),
        ("xflags", 1.5),
        ("xflags", 3),  # was accepted: time "none" silently became "gps"
        ("source_pulses", -1),
        ("source_pulses", 2**32),
        ("source_pulses", "1"),
        ("pump_s", 65536),
        ("csq", 256),
        ("inputs", ["wet"]),
        ("inputs", "dry"),
        ("inputs", [None]),
        ("inputs", [8]),
        ("inputs", [-1]),  # bug: ValueError("negative shift count")
        ("inputs", [2**64]),  # bug: MemoryError from 1 << 2**64
    ],
    ids=_ids,
)
def test_from_obj_rejects_bad_field(name, value):
    o = S.Frame(2, 0, 0xDEADBEEF, 1, 2, 3, 4, (1, 2, 3, 1, 5, 6), b"").obj()
    o[name] = value
    with pytest.raises(c.FrameError):
        ob.from_obj(o)


@pytest.mark.parametrize(
    "kind, name, value",
    [
        (c.BOOT, "fw", "1.2"),
        (c.BOOT, "fw", "1.2.256"),
        (c.BOOT, "fw", 123),
        (c.BOOT, "reset", "reboot"),
        (c.EVENT, "event", ""),
        (c.EVENT, "reason", "boredom"),
        (c.GAP, "meter", "tertiary"),
        (c.GAP, "start", "2026-02-30T00:00:00Z"),
        (c.GAP, "start", 1772352900),
        (c.GAP, "pulses", "many"),
        (c.HEARTBEAT, "state", "asleep"),
        (c.CLOCK, "step_s", 2**31),
        (c.CLOCK, "source", "sundial"),
        (c.EVENT, "ts", {str(i): 0 for i in range(20)}),  # bug: KeyError
    ],
    ids=_ids,
)
def test_from_obj_rejects_bad_kind_field(kind, name, value):
    vals = tuple(
        0 if t in (None, "ts", "pulses", "bits") or isinstance(t, tuple) else 1
        for _n, t, chars in S._field_chars(kind)
        for _ch in chars
    )
    o = S.Frame(kind, 1, 1, 0, 0, 0, 0, vals, b"").obj()
    o[name] = value
    with pytest.raises(c.FrameError):
        ob.from_obj(o)


def test_from_obj_rejects_non_dict_and_bad_raw():
    for o in (None, [], "a5", 3, {"raw": "zz"}, {"raw": 5}, {"raw": "abc"}):
        with pytest.raises(c.FrameError):
            ob.from_obj(o)


@FAST
@given(kind=st.sampled_from(S.KNOWN_KINDS), room=st.integers(1, 40))
def test_payload_too_long_rejected(kind, room):
    vals = tuple(0 for _ in c.PAYLOAD_FMT[kind][1:])
    size = c.payload_size(kind)
    f = S.Frame(kind, 0, 1, 0, 0, 0, 0, vals, b"")
    o = f.obj()
    o["extra"] = "00" * (c.MAX_PAYLOAD - size + room)
    with pytest.raises(c.FrameError):
        ob.from_obj(o)
    o["extra"] = "00" * (c.MAX_PAYLOAD - size)
    assert len(ob.from_obj(o)) == c.MAX_LEN


def test_unpack_struct_sizes_are_the_documented_ones():
    assert struct.calcsize(c.HEAD_FMT) == c.HEAD_LEN == S.HEAD_LEN
    assert {k: c.payload_size(k) for k in S.KNOWN_KINDS} == {
        1: 14,
        2: 13,
        3: 6,
        4: 14,
        5: 14,
        6: 9,
        7: 37,
    }
    # the measure frame's first layout (boards before motor_s) stays readable
    assert ob.payload_min(c.MEASURE) == 33
