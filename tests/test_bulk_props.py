"""The vectorised decoder (jalkal.decode.bulk) against the reference decoder
(objects.decode_stream).

Every test runs both decoders on the same bytes and demands identical objects
(values and key order) and identical stats, plus what the protocol promises:
intact frames come out exactly once and in order, the chain and MAC verdicts are
those of an independent model, and nothing but FrameError is ever raised.
"""

from __future__ import annotations

import json
import random
from dataclasses import replace

import pytest
import strategies as S
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from jalkal.decode import bulk
from jkproto import codec as c
from jkproto import objects as ob

SETTINGS = dict(deadline=None, suppress_health_check=list(HealthCheck))


def _call(fn):
    try:
        return fn(), None
    except c.FrameError as e:  # anything else propagates and fails the test
        return None, e


def _bulk(buf, signers=None, state=None, stats=None):
    d = bulk.decode(buf, signers, state, stats)
    return bulk.to_objects(d.table), d.stats


def _signers(keys):
    return None if keys is None else {d: c.Signer(k) for d, k in keys.items()}


def run_both(buf: bytes, keys: dict | None = None):
    """Decode buf with both decoders; check they agree and the stream invariants."""
    buf = bytes(buf)
    ref, ref_err = _call(lambda: ob.decode_stream(buf, _signers(keys)))
    got, got_err = _call(lambda: _bulk(buf, _signers(keys)))
    assert (ref_err is None) == (got_err is None), (ref_err, got_err)
    if ref_err is not None:
        return None, None
    (objs, stats), (bobjs, bstats) = ref, got
    assert bobjs == objs
    assert json.dumps(bobjs) == json.dumps(objs)  # key order of the JSON output
    assert bstats == stats
    check_invariants(buf, objs, stats, keys)
    return objs, stats


def check_invariants(buf, objs, stats, keys):
    assert stats["bytes"] == len(buf)
    assert stats["frames"] + stats["unknown_version"] + stats["malformed"] == len(objs)
    # every object is a frame found in buf, in order, without overlaps
    pos = taken = 0
    frames = []
    for o in objs:
        fb = ob.from_obj(o)
        i = buf.find(fb, pos)
        assert i >= 0
        frames.append(fb)
        pos = i + len(fb)
        taken += len(fb)
    assert stats["skipped_bytes"] == len(buf) - taken
    assert (stats["skipped_runs"] == 0) == (taken == len(buf))
    assert [o.get("chain") for o in objs] == S.expected_chain(objs)
    assert stats["chain_breaks"] == sum(o.get("chain") == "break" for o in objs)
    if keys is None:
        assert not any("verified" in o for o in objs)
        assert stats["mac_failures"] == stats["unknown_devices"] == 0
        return
    for o, fb in zip(objs, frames, strict=True):
        if "raw" in o:
            assert "verified" not in o
            continue
        key = keys.get(o["device"])
        assert o["verified"] == (key is not None and S.hmac4(key, fb[:-8]) == fb[-8:-4])
    good = [o for o in objs if "raw" not in o]
    assert stats["mac_failures"] == sum(not o["verified"] for o in good)
    assert stats["unknown_devices"] == sum(o["device"] not in keys for o in good)


def norm(objs):
    return [S.normalise(o) for o in objs]


# --- 2. garbage ------------------------------------------------------------------

_BYTES = st.one_of(
    st.binary(max_size=400),
    st.lists(
        st.one_of(st.sampled_from([0xA5, 0x01, 27, 28, 40, 255, 0]), S.u8),
        max_size=300,
    ).map(bytes),
)


@settings(max_examples=150, **SETTINGS)
@given(buf=_BYTES, signed=st.booleans())
def test_random_bytes(buf, signed):
    run_both(buf, {} if signed else None)


@pytest.mark.parametrize(
    "buf",
    [
        b"",
        b"\xa5",
        b"\xa5\x01",
        b"\xa5\x01\x1b",
        b"\xa5\x01\x1a" + bytes(40),
        b"\xa5\x01\x1b" + bytes(24),
        b"\xa5\x01\xff" + bytes(300),
        b"\xa5\x02\x1b" + bytes(24),
        b"\xa5" * 300,
        b"\xa5\x01\x1b" * 200,
    ],
    ids=lambda b: b[:6].hex() + ("-%d" % len(b)),
)
def test_edge_buffers(buf):
    run_both(buf)


def _stream(items):
    """Concatenate (bytes, expected) items; also return each frame's span."""
    buf = b""
    spans = []
    for fb, _o in items:
        spans.append((len(buf), len(buf) + len(fb)))
        buf += fb
    return buf, spans


@settings(max_examples=10, **SETTINGS)
@given(items=st.lists(S.any_frames(max_extra=12), min_size=1, max_size=4))
def test_truncation_at_every_cut(items):
    buf, spans = _stream(items)
    for k in range(len(buf) + 1):
        objs, stats = run_both(buf[:k])
        pairs = list(zip(items, spans, strict=True))
        assert norm(objs) == [o for (_fb, o), (_a, b) in pairs if b <= k]
        cut = [(a, fb) for (fb, _o), (a, b) in pairs if a < k < b]
        if cut:
            a, fb = cut[0]
            assert stats["skipped_runs"] == 1
            assert stats["skipped_bytes"] == k - a
            assert stats["truncated"] == (1 if k - a == 1 or fb[1] == 1 else 0)
        else:
            assert stats["skipped_bytes"] == 0


@settings(max_examples=25, **SETTINGS)
@given(
    items=st.lists(S.any_frames(), min_size=1, max_size=5),
    flips=st.lists(st.integers(0, 10**6), min_size=1, max_size=8),
)
def test_single_bit_flips(items, flips):
    buf, spans = _stream(items)
    for flip in flips:
        bit = flip % (8 * len(buf))
        bad = bytearray(buf)
        bad[bit // 8] ^= 1 << (bit % 8)
        objs, _stats = run_both(bad)
        # CRC-32 catches every single-bit error: only the hit frame is lost
        expect = [
            o for (_fb, o), (a, b) in zip(items, spans, strict=True)
            if not a <= bit // 8 < b
        ]  # fmt: skip
        assert norm(objs) == expect


@st.composite
def buried_streams(draw):
    items = draw(st.lists(S.any_frames(), min_size=1, max_size=6))
    pool = [fb for fb, _o in items]
    buf = b""
    for fb, _o in items:
        if draw(st.booleans()):
            buf += draw(S.garbage(pool))
        buf += fb
    if draw(st.booleans()):
        buf += draw(S.garbage(pool))
    return buf, [o for _fb, o in items]


@settings(max_examples=100, **SETTINGS)
@given(stream=buried_streams())
def test_frames_buried_in_garbage(stream):
    buf, expect = stream
    objs, _stats = run_both(buf)
    assert norm(objs) == expect


# --- 3. MAC and chain ------------------------------------------------------------


@settings(max_examples=40, **SETTINGS)
@given(
    stream=S.signed_streams(),
    drop=st.sets(st.integers(0, 2), max_size=3),
    wrong=st.sets(st.integers(0, 2), max_size=3),
)
def test_signers_other_key_and_unknown_device(stream, drop, wrong):
    frames, keys = stream
    buf = b"".join(f.to_bytes() for f in frames)
    objs, stats = run_both(buf, keys)
    assert all(o["verified"] for o in objs)
    assert all(o["chain"] in ("ok", "start") for o in objs)
    assert stats["mac_failures"] == stats["unknown_devices"] == 0

    devs = sorted(keys)
    signers = dict(keys)
    for i in wrong:
        if i < len(devs):
            signers[devs[i]] = bytes(b ^ 0x5A for b in keys[devs[i]])
    for i in drop:
        if i < len(devs):
            del signers[devs[i]]
    objs, stats = run_both(buf, signers)
    bad = {d for d in devs if signers.get(d) != keys[d]}
    assert [o["verified"] for o in objs] == [o["device"] not in bad for o in objs]
    assert stats["mac_failures"] == sum(o["device"] in bad for o in objs)
    assert stats["unknown_devices"] == sum(o["device"] not in signers for o in objs)


@settings(max_examples=40, **SETTINGS)
@given(stream=S.signed_streams(min_frames=1), data=st.data())
def test_tampered_frame_with_recomputed_crc(stream, data):
    frames, keys = stream
    i = data.draw(st.integers(0, len(frames) - 1))
    fb = frames[i].to_bytes()
    # payload bytes, or the t / flags fields of the header (not chain fields)
    pos = data.draw(st.sampled_from([4, 13, 14, 15, 16, *range(19, len(fb) - 8)]))
    bit = data.draw(st.integers(0, 7))
    bad = bytearray(fb)
    bad[pos] ^= 1 << bit
    raw = [f.to_bytes() for f in frames]
    raw[i] = S.recrc(bytes(bad))
    objs, stats = run_both(b"".join(raw), keys)
    clean, _ = run_both(b"".join(f.to_bytes() for f in frames), keys)
    assert [o["verified"] for o in objs] == [j != i for j in range(len(frames))]
    assert stats["mac_failures"] == 1
    assert [o["chain"] for o in objs] == [o["chain"] for o in clean]


@st.composite
def single_chains(draw, min_frames=3):
    key = draw(st.sampled_from(S.KEYS))
    dev, boot = draw(S.u32), draw(S.u16)
    n = draw(st.integers(min_frames, 10))
    specs = [draw(S.frames(device=dev, boot=boot, max_extra=16)) for _ in range(n)]
    return S.link(specs, key), {"%08x" % dev: key}


@settings(max_examples=40, **SETTINGS)
@given(chain=single_chains(), data=st.data())
def test_chain_deleted_frame(chain, data):
    frames, keys = chain
    i = data.draw(st.integers(0, len(frames) - 1))
    kept = frames[:i] + frames[i + 1 :]
    objs, stats = run_both(b"".join(f.to_bytes() for f in kept), keys)
    expect = ["ok"] * len(kept)
    if i < len(kept):
        expect[i] = "start" if i == 0 else "break"
    assert [o["chain"] for o in objs] == expect
    assert stats["chain_breaks"] == (0 < i < len(kept))
    assert all(o["verified"] for o in objs)


@settings(max_examples=40, **SETTINGS)
@given(chain=single_chains(), data=st.data())
def test_chain_reordered_frames(chain, data):
    frames, keys = chain
    i = data.draw(st.integers(0, len(frames) - 2))
    j = data.draw(st.integers(i + 1, len(frames) - 1))
    order = list(range(len(frames)))
    order[i], order[j] = order[j], order[i]
    objs, stats = run_both(b"".join(frames[k].to_bytes() for k in order), keys)
    got = [o["chain"] for o in objs]
    assert got[:i] == ["ok"] * i
    assert got[i] == ("start" if i == 0 else "break")
    assert "break" in got
    assert stats["chain_breaks"] >= 1


@settings(max_examples=60, **SETTINGS)
@given(
    chain=single_chains(),
    what=st.sampled_from(["seq", "prev", "mac"]),
    data=st.data(),
)
def test_chain_altered_frame(chain, what, data):
    frames, keys = chain
    n = len(frames)
    i = data.draw(st.integers(0, n - 1))
    f = frames[i]
    if what == "seq":
        f = replace(f, seq=data.draw(S.u16.filter(lambda s: s != i)))
        expect_at_i = "start" if i == 0 and f.seq else "break"
    elif what == "prev":
        f = replace(f, prev=data.draw(S.u16.filter(lambda p, f=f: p != f.prev)))
        expect_at_i = "break"
    else:
        flip = data.draw(st.integers(1, 0xFFFFFFFF))
        f = replace(
            f, mac=(int.from_bytes(f.mac, "little") ^ flip).to_bytes(4, "little")
        )
        expect_at_i = "ok"
    fb = S.recrc(f.to_bytes())  # altered, CRC recomputed, MAC left as is
    raw = [g.to_bytes() for g in frames]
    raw[i] = fb
    objs, _stats = run_both(b"".join(raw), keys)
    got = [o["chain"] for o in objs]
    assert got[:i] == ["ok"] * i
    assert got[i] == expect_at_i
    if i + 1 < n:
        next_breaks = what == "seq" or (what == "mac" and (flip & 0xFFFF))
        assert got[i + 1] == ("break" if next_breaks else "ok")
    assert got[i + 2 :] == ["ok"] * len(got[i + 2 :])
    assert [o["verified"] for o in objs] == [j != i for j in range(n)]


# --- 4. bulk-specific ------------------------------------------------------------


@st.composite
def segmented_streams(draw):
    frames, keys = draw(S.signed_streams(max_frames=8))
    segs = []
    for f in frames:
        r = draw(st.integers(0, 7))
        if r == 0:
            segs.append(("garbage", draw(S.garbage([f.to_bytes()]))))
        elif r == 1:
            segs.append(("frame", draw(S.odd_frames(max_len=60))[0]))
        segs.append(("frame", f.to_bytes()))
    # split points: stream edges and boundaries between two frames
    cuts = [0]
    pos = 0
    for k, (what, b) in enumerate(segs):
        pos += len(b)
        nxt = segs[k + 1][0] if k + 1 < len(segs) else "frame"
        if what == "frame" and nxt == "frame":
            cuts.append(pos)
    return b"".join(b for _w, b in segs), keys, draw(st.sampled_from(cuts))


@settings(max_examples=60, **SETTINGS)
@given(stream=segmented_streams(), signed=st.booleans())
def test_chain_state_across_calls(stream, signed):
    buf, keys, cut = stream
    keys = keys if signed else None
    whole, whole_stats = run_both(buf, keys)

    state, stats = ob.StreamState(), ob.new_stats()
    ref1, _ = ob.decode_stream(buf[:cut], _signers(keys), stats, state)
    ref2, _ = ob.decode_stream(buf[cut:], _signers(keys), stats, state)
    assert ref1 + ref2 == whole
    assert stats == whole_stats

    bstate, bstats = bulk.ChainState(), ob.new_stats()
    b1, _ = _bulk(buf[:cut], _signers(keys), bstate, bstats)
    b2, _ = _bulk(buf[cut:], _signers(keys), bstate, bstats)
    assert b1 + b2 == whole
    assert bstats == whole_stats


def _large_stream(rnd: random.Random, n_frames: int):
    keys = {"%08x" % rnd.getrandbits(32): rnd.choice(S.KEYS) for _ in range(4)}
    encs = [
        c.Encoder(int(d, 16), k, boot=rnd.getrandbits(16), seq=rnd.choice([0, 7]))
        for d, k in keys.items()
    ]
    parts = []
    t = 1_772_352_900
    for _ in range(n_frames):
        enc = rnd.choice(encs)
        kind = rnd.choice(S.KNOWN_KINDS)
        vals = []
        for ch in c.PAYLOAD_FMT[kind][1:]:
            lo, hi = S.RANGES[ch]
            vals.append(rnd.randint(lo, hi))
        t += rnd.randint(0, 600)
        if enc.exhausted():
            enc.new_epoch(enc.boot + 1)
        fr = bytes(enc.frame(kind, t, rnd.choice([0, 1, 2, 4, 9]), *vals))
        r = rnd.random()
        if r < 0.01:
            continue  # lost frame: chain break
        if r < 0.02:
            fr = fr[: rnd.randint(1, len(fr) - 1)]  # truncated write
        elif r < 0.03:
            b = bytearray(fr)
            b[rnd.randrange(len(b))] ^= 1 << rnd.randrange(8)
            fr = bytes(b)
        elif r < 0.04:
            fr = (
                bytes([0xA5, 1, rnd.randint(27, 255)])
                + rnd.randbytes(rnd.randint(0, 40))
                + fr
            )
        elif r < 0.045:
            fr = rnd.randbytes(rnd.randint(1, 64)) + fr
        elif r < 0.05:
            b = bytearray(fr)
            b[rnd.randrange(19, len(b) - 8)] ^= 1 << rnd.randrange(8)
            fr = S.recrc(bytes(b))  # tampered, CRC fixed: MAC failure
        elif r < 0.055:
            body = bytes([0xA5, rnd.choice([0, 2, 9]), 40]) + rnd.randbytes(33)
            fr = body + S.crc_le(body) + fr  # unknown version
        parts.append(fr)
    return b"".join(parts), keys


@settings(max_examples=4, **SETTINGS)
@given(seed=st.integers(0, 2**32 - 1), n=st.integers(1500, 4000))
def test_large_stream_with_sprinkled_garbage(seed, n):
    buf, keys = _large_stream(random.Random(seed), n)
    objs, stats = run_both(buf, keys)
    assert stats["frames"] > n * 0.9
    assert stats["chain_breaks"] > 0 and stats["mac_failures"] > 0
    # and chunked at frame boundaries the state carried gives the same answer
    offs = [o for o, _n in c.scan(buf)]
    cuts = sorted(random.Random(seed).sample(offs, min(3, len(offs))))
    bstate, bstats = bulk.ChainState(), ob.new_stats()
    rstate, rstats = ob.StreamState(), ob.new_stats()
    out, rout = [], []
    for a, b in zip([0] + cuts, cuts + [len(buf)], strict=True):
        out += _bulk(buf[a:b], _signers(keys), bstate, bstats)[0]
        rout += ob.decode_stream(buf[a:b], _signers(keys), rstats, rstate)[0]
    assert out == objs
    assert rout == objs


# --- signer dictionaries ------------------------------------------------------


@pytest.mark.parametrize(
    "name",
    [
        "DEADBEEF",  # bug: bulk parses the key, the reference needs the exact id
        "00deadbeef",  # bug: same
        "gateway",  # bug: bulk raises ValueError from bytes.fromhex
    ],
)
def test_signer_keys_that_are_not_device_ids(name):
    f = S.Frame(3, 0, 0xDEADBEEF, 1, 0, 5, 0, (1, 2, 3), b"").signed(S.KEYS[0])
    run_both(f.to_bytes(), {name: S.KEYS[0]})
