"""Where the frames are in a stream: steps 1-3 of the bulk decoder (see bulk.py).

Sync candidates with a plausible length, the path a greedy reader would walk, the
CRC-32 of every frame on it at once, and the byte-by-byte resync replayed over
damaged stretches only. ``locate`` gives the frame starts and their bytes grouped
by length, for the field views of bulk.decode."""

from __future__ import annotations

import zlib
from functools import lru_cache

import numpy as np

from jkproto import codec as c

CHUNK = 16384
_U8 = np.uint8


WORD_TABLES_MAX_M = 64  # 16-bit tables (256 KB a word) only for short messages


@lru_cache(maxsize=8)
def _crc_tables(m: int) -> tuple[np.ndarray, np.ndarray, int]:
    """Tables: crc32(msg) == z ^ XOR_j T16[j][word j] (^ T8[last byte], m odd).

    Messages longer than WORD_TABLES_MAX_M get byte tables only (T16 empty): every
    v1 kind is far shorter, so memory stays under ~70 MB whatever the input."""
    z = zlib.crc32(bytes(m))
    # contribution of byte value v at position j: crc(e_j(v)) ^ crc(0^m); linear in v,
    # so build it from the 8 single-bit messages
    bits = np.zeros((m, 8), np.uint32)
    for j in range(m):
        for b in range(8):
            e = bytearray(m)
            e[j] = 1 << b
            bits[j, b] = zlib.crc32(e) ^ z
    v = np.arange(256, dtype=np.uint32)
    t8 = np.zeros((m, 256), np.uint32)
    for b in range(8):
        t8 ^= np.where((v >> b) & 1, bits[:, b : b + 1], np.uint32(0))
    if m > WORD_TABLES_MAX_M:
        return np.zeros((0, 65536), np.uint32), t8, z
    half = m // 2
    t16 = (t8[0 : 2 * half : 2][:, None, :] ^ t8[1 : 2 * half : 2][:, :, None]).reshape(
        half, 65536
    )
    return t16, t8[2 * half :], z


def _windows(a: np.ndarray, m: int) -> np.ndarray:
    """Read-only (len - m + 1, m) view: row p is a[p : p + m]."""
    return np.lib.stride_tricks.as_strided(
        a, shape=(max(a.size - m + 1, 0), m), strides=(1, 1), writeable=False
    )


def _crc_of(frames: np.ndarray, m: int) -> np.ndarray:
    """CRC-32 of frames[:, :m] for every row (rows may be strided, bytes contiguous)."""
    t16, t8, z = _crc_tables(m)
    k = frames.shape[0]
    out = np.empty(k, np.uint32)
    tmp = np.empty(min(k, CHUNK), np.uint32)
    half = t16.shape[0]
    words = frames[:, : 2 * half].view("<u2") if half else None
    for s in range(0, k, CHUNK):
        acc = out[s : s + CHUNK]
        acc[:] = z
        t = tmp[: acc.size]
        if words is not None:
            w = words[s : s + CHUNK]
            for j in range(half):
                t16[j].take(w[:, j], out=t)
                np.bitwise_xor(acc, t, out=acc)
        for j in range(t8.shape[0]):  # bytes not covered by a word table
            t8[j].take(frames[s : s + CHUNK, 2 * half + j], out=t)
            np.bitwise_xor(acc, t, out=acc)
    return out


def field_names(dt: np.dtype) -> tuple[str, ...]:
    return dt.names or ()


class Groups:
    """Frames of one stream gathered by length: {length: (rows, (k, length) bytes)}."""

    def __init__(self, a: np.ndarray, starts: np.ndarray, lens: np.ndarray):
        self.by_len: dict[int, tuple[np.ndarray, np.ndarray]] = {}
        n = starts.size
        if n and lens[0] == lens[-1] and (lens == lens[0]).all():
            ln = int(lens[0])
            rows = np.arange(n)
            if starts[0] == 0 and (np.diff(starts) == ln).all():  # tiles: no copy
                self.by_len[ln] = (rows, a[: n * ln].reshape(n, ln))
            else:
                self.by_len[ln] = (rows, _windows(a, ln)[starts])
            return
        for ln in np.flatnonzero(np.bincount(lens, minlength=256)).tolist():
            rows = np.flatnonzero(lens == ln)
            self.by_len[ln] = (rows, _windows(a, ln)[starts[rows]])

    def fields(self, size: int, dt: np.dtype, offset: int) -> dict[str, np.ndarray]:
        """Contiguous arrays of the fields of dt at byte offset (negative: from the
        frame's end) of every frame, in stream order."""
        names = field_names(dt)
        out = {name: np.empty(size, dt[name]) for name in names}
        for ln, (rows, f) in self.by_len.items():
            o = offset if offset >= 0 else ln + offset
            rec = f[:, o : o + dt.itemsize].view(dt)[:, 0]
            whole = rows.size == size
            for name in names:
                if whole:
                    out[name][:] = rec[name]
                else:
                    out[name][rows] = rec[name]
        return out

    def crc_ok(self, size: int) -> np.ndarray:
        ok = np.zeros(size, bool)
        for ln, (rows, f) in self.by_len.items():
            stored = f[:, ln - 4 :].copy().view("<u4").reshape(-1)
            ok[rows] = _crc_of(f, ln - 4) == stored
        return ok


def _view(a: np.ndarray, dtype: str) -> np.ndarray:
    """Unaligned view: v[p] is the value whose first byte is a[p]."""
    dt = np.dtype(dtype)
    count = a.size - dt.itemsize + 1
    if count <= 0:
        return np.zeros(0, dt)
    return np.ndarray((count,), dt, buffer=a, offset=0, strides=(1,))


FIXPOINT_ROUNDS = 8


def _greedy_path(s: np.ndarray, ls: np.ndarray) -> np.ndarray:
    """Mask of candidates on the path of a reader that takes every candidate.

    A fix-point of "hit by a node on the path" settles in two or three rounds on real
    logs; long chains of false syncs (crafted input) fall back to walking the path."""
    k = s.size
    if k == 0:
        return np.zeros(0, bool)
    nxt = np.searchsorted(s, s + ls)
    on = np.ones(k, bool)
    for _ in range(FIXPOINT_ROUNDS):
        hit = np.zeros(k + 1, bool)
        hit[nxt[on]] = True
        hit[0] = True
        new = hit[:k]
        if np.array_equal(new, on):
            return on
        on = new
    on = np.zeros(k, bool)
    nx = nxt.tolist()
    i = 0
    while i < k:
        on[i] = True
        i = nx[i]
    return on


def _candidates(a: np.ndarray, v1_only: bool) -> tuple[np.ndarray, np.ndarray]:
    n = a.size
    cand = np.flatnonzero(a[: n - c.MIN_LEN + 1] == c.SYNC)
    if v1_only:
        cand = cand[a[cand + 1] == c.VERSION]
    lens = a[cand + 2].astype(np.int64)
    keep = (lens >= c.MIN_LEN) & (cand + lens <= n)
    return cand[keep], lens[keep]


def locate(a: np.ndarray) -> tuple[np.ndarray, Groups]:
    """Start offsets of the frames the greedy reader takes (as codec.scan), gathered.

    Fast path: a clean log is version-1 frames tiling the whole buffer; when the
    candidates say so and every CRC holds, that tiling is exactly the greedy answer."""
    n = a.size
    if n < c.MIN_LEN:
        return np.zeros(0, np.int64), Groups(
            a, np.zeros(0, np.int64), np.zeros(0, np.int64)
        )
    s, ls = _candidates(a, v1_only=True)
    # a candidate inside the span of the one before it is a false sync (A5 01 in a
    # payload); whatever this keeps is then checked to tile the buffer exactly
    keep = np.ones(s.size, bool)
    keep[1:] = s[1:] >= s[:-1] + ls[:-1]
    p, lp = s[keep], ls[keep]
    if (
        p.size
        and p[0] == 0
        and p[-1] + lp[-1] == n
        and (p[1:] == p[:-1] + lp[:-1]).all()
    ):
        g = Groups(a, p, lp)
        if g.crc_ok(p.size).all():
            return p, g
    starts = find_frames(a)
    return starts, Groups(a, starts, a[starts + 2].astype(np.int64))


def find_frames(a: np.ndarray) -> np.ndarray:
    """Start offsets of the CRC-valid frames the greedy reader takes (codec.scan)."""
    n = a.size
    if n < c.MIN_LEN:
        return np.zeros(0, np.int64)
    s, ls = _candidates(a, v1_only=False)
    on = _greedy_path(s, ls)
    p, lp = s[on], ls[on]
    good = Groups(a, p, lp).crc_ok(p.size)
    if good.all():
        return p
    return _repair(a, s, ls, p, lp, good)


def _repair(a, s, ls, p, lp, good) -> np.ndarray:
    """Replay the greedy reader over the stretches where the path met a bad CRC."""
    buf = memoryview(a)
    n = a.size
    out: list[np.ndarray] = []
    bad = np.flatnonzero(~good)
    i = 0  # index into p of the next node the reader will meet on the path
    while True:
        # path nodes i.. are taken until the next bad one
        bi = int(np.searchsorted(bad, i))
        nb = int(bad[bi]) if bi < bad.size else p.size
        out.append(p[i:nb])
        if nb >= p.size:
            break
        # the reader is at p[nb], a bad frame: it moves on by one byte and scans
        pos = int(p[nb]) + 1
        k = int(np.searchsorted(s, pos))
        back = None
        while k < s.size:
            cpos = int(s[k])
            j = int(np.searchsorted(p, cpos))
            if j < p.size and p[j] == cpos:
                if good[j]:
                    back = j  # back on the path
                    break
                k += 1
                continue
            ln = c.frame_len(buf, cpos, n)
            if ln:
                out.append(np.array([cpos], np.int64))
                k = int(np.searchsorted(s, cpos + ln))
            else:
                k += 1
        if back is None:
            break
        i = back
    return np.concatenate(out) if out else np.zeros(0, np.int64)
