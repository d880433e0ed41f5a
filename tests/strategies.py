"""Hypothesis strategies and independent oracles for jalkal frames.

The oracles here (``Frame.to_bytes``, ``Frame.obj``, ``hmac4``, ``iso``,
``expected_chain``) are written from the protocol description with the standard
library (struct, zlib, hmac, datetime), not with ``jkproto``'s own helpers, so a
property that compares the two can actually fail.
"""

from __future__ import annotations

import hashlib
import hmac
import struct
import zlib
from dataclasses import dataclass, replace
from datetime import datetime, timezone

from hypothesis import strategies as st

from jkproto import codec as c
from jkproto import objects as ob

HEAD_FMT = "<BBBBBIHHIH"  # sync ver len kind flags device boot seq t prev
HEAD_LEN = 19
MIN_LEN = 27
MAX_LEN = 255
MAX_PAYLOAD = MAX_LEN - MIN_LEN
KNOWN_KINDS = (1, 2, 3, 4, 5, 6, 7)
KIND_NAMES = {
    1: "boot", 2: "reading", 3: "event", 4: "heartbeat", 5: "gap", 6: "clock",
    7: "measure",
}  # fmt: skip
TIME_NAMES = ("none", "rtc", "net", "gps", "host")
INPUT_NAMES = ("dry", "low", "high", "pump", "mains", "fault", "sd_fail", "manual")
SENSOR_NAMES = (
    "bore",
    "tank",
    "ec",
    "ph",
    "temp",
    "motor",
    "supply",
    "panel",
    "battery",
)
# a measure field with no value: all ones of its type (the signed one: its minimum)
NONE = {"B": 0xFF, "H": 0xFFFF, "I": 0xFFFFFFFF, "i": -(2**31)}
RANGES = {
    "B": (0, 0xFF),
    "H": (0, 0xFFFF),
    "I": (0, 0xFFFFFFFF),
    "i": (-(2**31), 2**31 - 1),
}
KEYS = (bytes(range(32)), bytes(range(100, 132)), b"\xff" * 32, b"\x00" * 32)

u8 = st.integers(0, 0xFF)
u16 = st.integers(0, 0xFFFF)
u32 = st.integers(0, 0xFFFFFFFF)


def hmac4(key: bytes, msg: bytes) -> bytes:
    return hmac.new(key, bytes(msg), hashlib.sha256).digest()[:4]


def crc_le(msg: bytes) -> bytes:
    return struct.pack("<I", zlib.crc32(msg) & 0xFFFFFFFF)


def seal_raw(body: bytes, mac: bytes) -> bytes:
    """body (header + payload, length byte already right) + mac + CRC."""
    msg = bytes(body) + bytes(mac)
    return msg + crc_le(msg)


def recrc(frame: bytes) -> bytes:
    """The same frame with its CRC recomputed (what a tamperer would do)."""
    return bytes(frame[:-4]) + crc_le(frame[:-4])


def iso(t: int) -> str:
    return datetime.fromtimestamp(t, timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def _fmt_chars(kind: int) -> str:
    return c.PAYLOAD_FMT[kind][1:]


def _field_chars(kind: int) -> list[tuple[str, object, str]]:
    """(name, table, struct chars) per field of a known kind."""
    chars = _fmt_chars(kind)
    out = []
    i = 0
    for name, table in ob.FIELDS[kind]:
        w = 3 if table == "ver" else 1
        out.append((name, table, chars[i : i + w]))
        i += w
    assert i == len(chars)
    return out


@dataclass(frozen=True)
class Frame:
    kind: int
    flags: int
    device: int
    boot: int
    seq: int
    t: int
    prev: int  # u16 as stored (little-endian): bytes are prev & 0xFF, prev >> 8
    values: tuple | None  # payload tuple of a known kind, None for unknown kinds
    extra: bytes  # bytes past the known layout (whole payload for unknown kinds)
    mac: bytes = b"\x00" * 4

    def payload(self) -> bytes:
        if self.values is None:
            return self.extra
        return struct.pack(c.PAYLOAD_FMT[self.kind], *self.values) + self.extra

    def body(self) -> bytes:
        p = self.payload()
        n = MIN_LEN + len(p)
        head = struct.pack(
            HEAD_FMT,
            0xA5,
            1,
            n,
            self.kind,
            self.flags,
            self.device,
            self.boot,
            self.seq,
            self.t,
            self.prev,
        )
        return head + p

    def signed(self, key: bytes) -> Frame:
        return replace(self, mac=hmac4(key, self.body()))

    def to_bytes(self) -> bytes:
        return seal_raw(self.body(), self.mac)

    @property
    def mac16(self) -> int:
        return self.mac[0] | self.mac[1] << 8

    def obj(self) -> dict:
        """The JSON object `jalkal decode` prints, minus chain/verified."""
        o: dict = {
            "device": "%08x" % self.device,
            "boot": self.boot,
            "seq": self.seq,
            "kind": KIND_NAMES.get(self.kind, self.kind),
        }
        tq = self.flags & 7
        if tq:
            o["ts"] = iso(self.t)
        else:
            o["ts"] = None
            o["uptime_s"] = self.t
        o["time"] = TIME_NAMES[tq] if tq < len(TIME_NAMES) else tq
        if self.flags & 0xF8:
            o["xflags"] = self.flags & 0xF8
        if self.values is None:
            o["payload"] = self.extra.hex()
        else:
            i = 0
            for name, table, chars in _field_chars(self.kind):
                if table == "ver":
                    o[name] = "%d.%d.%d" % self.values[i : i + 3]
                elif table == "opt":
                    v = self.values[i]
                    o[name] = None if v == NONE[chars] else v
                else:
                    o[name] = _canon(table, self.values[i])
                i += len(chars)
            if self.extra:
                o["extra"] = self.extra.hex()
        o["prev"] = struct.pack("<H", self.prev).hex()
        o["mac"] = self.mac.hex()
        return o


def _canon(table, v):
    if table is None or table == "ver":
        return v
    if table == "bits":
        return [INPUT_NAMES[b] for b in range(8) if v >> b & 1]
    if table == "ts":
        return iso(v) if v else None
    if table == "pulses":
        return None if v == 0xFFFFFFFF else v
    if table == "faults":
        return [SENSOR_NAMES[b] if b < 9 else b for b in range(16) if v >> b & 1]
    return table[v] if v < len(table) and table[v] else v


# --- strategies ----------------------------------------------------------------


def _value(table, ch: str):
    lo, hi = RANGES[ch]
    plain = st.integers(lo, hi)
    if table == "ts":
        return st.one_of(st.just(0), plain)
    if table == "pulses":
        return st.one_of(st.just(0xFFFFFFFF), plain)
    if table == "opt":
        return st.one_of(st.just(NONE[ch]), plain)
    if isinstance(table, tuple):
        return st.one_of(st.integers(0, len(table) - 1), plain)
    return plain


def payload_values(kind: int) -> st.SearchStrategy[tuple]:
    parts = []
    for _name, table, chars in _field_chars(kind):
        for ch in chars:
            parts.append(_value(table, ch))
    return st.tuples(*parts)


def _extra(max_size: int) -> st.SearchStrategy[bytes]:
    return st.one_of(
        st.just(b""), st.binary(max_size=min(8, max_size)), st.binary(max_size=max_size)
    )


@st.composite
def frames(draw, kinds=None, device=None, boot=None, max_extra=MAX_PAYLOAD) -> Frame:
    """Valid v1 frames of every kind (known and unknown) across full field ranges."""
    if kinds is None:
        kind = draw(
            st.one_of(st.sampled_from(KNOWN_KINDS), st.just(0), st.integers(8, 255))
        )
    else:
        kind = draw(st.sampled_from(kinds))
    tq = draw(st.one_of(st.just(0), st.integers(0, 7)))
    xflags = draw(st.one_of(st.just(0), st.integers(1, 31).map(lambda x: x << 3)))
    if kind in KNOWN_KINDS:
        values = draw(payload_values(kind))
        room = MAX_PAYLOAD - c.payload_size(kind)
        extra = draw(_extra(min(room, max_extra)))
    else:
        values = None
        extra = draw(_extra(min(MAX_PAYLOAD, max_extra)))
    return Frame(
        kind=kind,
        flags=tq | xflags,
        device=draw(u32) if device is None else device,
        boot=draw(u16) if boot is None else boot,
        seq=draw(u16),
        t=draw(u32),
        prev=draw(u16),
        values=values,
        extra=extra,
        mac=draw(st.binary(min_size=4, max_size=4)),
    )


def frame_objects():
    return frames().map(Frame.obj)


@st.composite
def odd_frames(draw, max_len: int = MAX_LEN) -> tuple[bytes, dict]:
    """CRC-valid frames that are not well-formed v1: unknown versions, short payloads.

    Returns (bytes, expected object with "error" normalised to True)."""
    if draw(st.booleans()):
        ver = draw(st.one_of(st.just(0), st.just(2), st.integers(2, 255)))
        n = draw(st.integers(MIN_LEN, max_len))
        body = bytes([0xA5, ver, n]) + draw(st.binary(min_size=n - 7, max_size=n - 7))
        fr = body + crc_le(body)
        return fr, {"version": ver, "raw": fr.hex()}
    kind = draw(st.sampled_from(KNOWN_KINDS))
    plen = draw(st.integers(0, ob.payload_min(kind) - 1))
    n = MIN_LEN + plen
    head = bytes([0xA5, 1, n, kind]) + draw(st.binary(min_size=15, max_size=15))
    body = head + draw(st.binary(min_size=plen + 4, max_size=plen + 4))
    fr = body + crc_le(body)
    return fr, {"version": 1, "error": True, "raw": fr.hex()}


@st.composite
def any_frames(draw, max_extra: int = MAX_PAYLOAD) -> tuple[bytes, dict]:
    """(CRC-valid frame bytes, expected object minus chain/verified)."""
    if draw(st.integers(0, 5)) == 0:
        return draw(odd_frames(max_len=MIN_LEN + max(max_extra, 14)))
    f = draw(frames(max_extra=max_extra))
    return f.to_bytes(), f.obj()


def link(specs: list[Frame], key: bytes, seq0: int = 0, prev0: int = 0) -> list[Frame]:
    """Chain frames of one (device, boot): consecutive seq, prev = previous MAC."""
    out = []
    prev = prev0
    for i, f in enumerate(specs):
        f = replace(f, seq=seq0 + i, prev=prev).signed(key)
        prev = f.mac16
        out.append(f)
    return out


@st.composite
def signed_streams(draw, min_frames=1, max_frames=12, max_extra=24):
    """Interleaved signed chains of 1-3 (device, boot) epochs.

    Returns (frames in stream order, {device str: key})."""
    n_chains = draw(st.integers(1, 3))
    chains = []
    keys: dict[str, bytes] = {}
    devices = draw(st.lists(u32, min_size=n_chains, max_size=n_chains, unique=True))
    for i in range(n_chains):
        dev = devices[i]
        key = keys.setdefault("%08x" % dev, draw(st.sampled_from(KEYS)))
        boot = draw(u16)
        seq0 = draw(st.one_of(st.just(0), st.integers(0, 0xFFFF - max_frames)))
        prev0 = 0 if seq0 == 0 else draw(u16)
        count = draw(st.integers(min_frames, max_frames))
        specs = [
            draw(frames(device=dev, boot=boot, max_extra=max_extra))
            for _ in range(count)
        ]
        chains.append(link(specs, key, seq0, prev0))
    order = draw(st.permutations([i for i, ch in enumerate(chains) for _ in ch]))
    pos = [0] * n_chains
    out = []
    for i in order:
        out.append(chains[i][pos[i]])
        pos[i] += 1
    return out, keys


@st.composite
def garbage(draw, pool: list[bytes] | None = None) -> bytes:
    """Bytes a reader must skip: noise, false sync markers, damaged frame copies."""
    parts = []
    for _ in range(draw(st.integers(1, 3))):
        choice = draw(st.integers(0, 5 if pool else 3))
        if choice == 0:
            parts.append(draw(st.binary(min_size=1, max_size=40)))
        elif choice == 1:  # false sync with a plausible length
            n = draw(st.one_of(st.integers(MIN_LEN, MAX_LEN), u8))
            tail = draw(st.binary(max_size=30))
            parts.append(bytes([0xA5, 1, n]) + tail)
        elif choice == 2:  # lone sync bytes and sync+version
            parts.append(draw(st.sampled_from([b"\xa5", b"\xa5\x01", b"\xa5\xa5"])))
        elif choice == 3:  # a sync, a foreign version byte and a length
            parts.append(bytes([0xA5, draw(u8), draw(u8)]))
        elif choice == 4:  # partial copy (a strict prefix) of a frame in the stream
            fr = draw(st.sampled_from(pool))
            parts.append(fr[: draw(st.integers(1, len(fr) - 1))])
        else:  # a copy with one bit flipped (CRC-32 catches every 1-bit error)
            fr = bytearray(draw(st.sampled_from(pool)))
            i = draw(st.integers(0, len(fr) * 8 - 1))
            fr[i // 8] ^= 1 << (i % 8)
            parts.append(bytes(fr))
    return b"".join(parts)


def normalise(o: dict) -> dict:
    """Object without chain/verified, the error text reduced to its presence."""
    o = {k: v for k, v in o.items() if k not in ("chain", "verified")}
    if "error" in o:
        o["error"] = True
    return o


def expected_chain(objs: list[dict]) -> list[str | None]:
    """Chain status a reader must give each object (None for raw ones)."""
    last: dict = {}
    out: list[str | None] = []
    for o in objs:
        if "raw" in o:
            out.append(None)
            continue
        k = (o["device"], o["boot"])
        prev = bytes.fromhex(o["prev"])
        if k in last:
            lseq, lmac = last[k]
            ok = o["seq"] == lseq + 1 and prev == lmac[:2]
            out.append("ok" if ok else "break")
        elif o["seq"] == 0:
            out.append("ok" if prev == b"\x00\x00" else "break")
        else:
            out.append("start")
        last[k] = (o["seq"], bytes.fromhex(o["mac"]))
    return out
