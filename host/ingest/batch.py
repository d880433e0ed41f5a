"""What every store back-end shares: the stored columns, and one upload batch's
decoding, verification and exactly-once decisions (docs/uplink.md#the-store).

``FrameStore.ingest`` takes an upload batch (frames back to back, as the board sends
them), decodes and verifies it without touching the store (CRC, version, MACs, the
failed-MAC throttle), then lets the back-end check every frame against what it holds
and insert the new ones in ONE transaction, and returns, after the COMMIT, what was
acknowledged. The back-ends (store.py: an embedded DuckDB file; pgstore.py:
PostgreSQL) give the reads and the one insert; the decisions are made here, alike
for both.

Outcomes per frame (see docs/uplink.md for the whole contract):

* ``stored``: new, verified, consistent with the stored chain: inserted;
* ``duplicate``: the exact same bytes under the same key are already stored (or
  earlier in the same batch, or stored meanwhile by another writer): acknowledged,
  stored nothing (a board re-sending after a power cut must get its ack);
* rejected, with a reason: ``unknown_device``, ``bad_mac``, ``wrong_device``,
  ``unsupported_version``, ``malformed_frame``, ``future_boot``, ``throttled``,
  ``conflict`` (same key, different bytes), ``broken_chain`` (``prev`` does not
  match the stored predecessor (device, boot, seq - 1), ``prev`` is not 0000 at
  seq 0, or a stored successor's ``prev`` does not match this frame's MAC).

A body that is not exactly CRC-valid frames back to back is refused as a whole
(``malformed_body``); so is a batch the store could not commit (``store_error``,
with the store's words, in ``failure`` until a batch commits again)."""

from __future__ import annotations

import time
import zlib
from typing import Any

import numpy as np
import pyarrow as pa

from jkproto import codec as c
from jkproto import objects as ob

from ..decode import bulk
from .ack import (
    BROKEN_CHAIN,
    CONFLICT,
    DUPLICATE,
    FUTURE_BOOT,
    MALFORMED_FRAME,
    STORED,
    THROTTLED,
    UNKNOWN_DEVICE,
    UNSUPPORTED_VERSION,
    WRONG_DEVICE,
    BodyError,
    IngestResult,
)
from .boots import BootCeiling
from .guard import Throttle, Throttled, retry_after
from .signer import FastSigner, check_macs, decoy_macs

SCHEMA_VERSION = "3"
# the device-days each committed batch touched (store.py, pgstore.py): what
# reports/aggregates.py recomputes
TOUCHED = "jalkal_touched"
MAX_BODY = 256 * 1024  # bytes per upload batch (HTTP body or MQTT payload)
_HEAD = [
    ("device", pa.uint32()), ("boot", pa.uint16()), ("seq", pa.uint16()),
    ("kind", pa.uint8()), ("flags", pa.uint8()), ("t", pa.uint32()),
    ("ts", pa.timestamp("s")), ("prev", pa.uint16()), ("mac", pa.uint32()),
    ("version", pa.uint8()), ("length", pa.uint8()),
]  # fmt: skip
_PAYLOAD = [
    (name, pa.from_numpy_dtype(np.dtype(bulk.FIELD_DT[specs[0][1]])))
    for name, specs in bulk.PAYLOAD_COLUMNS.items()
]
_TAIL = [
    ("extra", pa.binary()), ("frame", pa.binary()),
    ("received", pa.timestamp("s")), ("via", pa.string()),
]  # fmt: skip
SCHEMA = pa.schema(_HEAD + _PAYLOAD + _TAIL)
# the columns each schema version added (version 2: the `measure` frame's, version
# 3: its appended motor_s): a store of an older version gets them, empty for the
# frames already in it, when it is opened read-write (ALTER TABLE ... ADD COLUMN);
# both back-ends insert by name
ADDED_COLUMNS = {
    "2": [
        n for n, specs in bulk.PAYLOAD_COLUMNS.items()
        if {k for k, *_ in specs} == {c.MEASURE} and n != "motor_s"
    ],
    "3": ["motor_s"],
}  # fmt: skip
NOT_NULL = {"device", "boot", "seq", "kind", "flags", "t", "prev", "mac", "version",
            "length", "frame", "received", "via"}  # fmt: skip
Prepared = dict[str, Any]


def quote(name: str) -> str:
    return '"' + name + '"'


class FrameStore:
    """The back-end-neutral store: ``ingest`` is safe from many threads (decoding
    and MAC checks run in parallel; the back-end's ``write`` serialises the rest).

    A back-end gives ``write`` (check_and_insert in one transaction, COMMIT, then
    ``boots.advance``), ``lookup``, ``frames_at``, ``insert_rows``, ``device_boots``,
    ``query``, ``count`` and ``close``."""

    name = "store"  # what messages call it (a URL's password masked)
    read_only = False
    con: Any  # a DuckDB connection with the store's `frames` (readers' SQL)
    lock: Any  # held around every use of con

    def __init__(self) -> None:
        self.max_body = MAX_BODY
        self.failure: str | None = None  # a failed commit's error, until one works
        self.guard: Throttle | None = None  # failed-MAC throttle (serve sets one)
        self.boots = BootCeiling()  # each device's latest boot: future_boot
        # (device id -> signer, sorted device ids): one attribute, replaced whole,
        # so a batch never sees the signers of one keys file and the ids of another
        self.keyset: tuple[dict[str, FastSigner], np.ndarray] = (
            {},
            np.zeros(0, np.uint32),
        )

    def set_keys(self, keys: dict[str, bytes]) -> None:
        self.keyset = (
            {d: FastSigner(k) for d, k in keys.items()},
            np.array(sorted(int(d, 16) for d in keys), np.uint32),
        )

    def __enter__(self) -> FrameStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # --- what a back-end gives ------------------------------------------------------

    def close(self) -> None:
        raise NotImplementedError

    def count(self) -> int:
        raise NotImplementedError

    def query(self, sql: str, params: list[Any] | None = None) -> pa.Table:
        raise NotImplementedError

    def write(self, prep: Prepared, res: IngestResult, via: str) -> None:
        raise NotImplementedError

    def lookup(self, keys: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Stored keys among keys (sorted), with their mac & 0xFFFF and prev."""
        raise NotImplementedError

    def frames_at(self, keys: np.ndarray) -> dict[int, bytes]:
        raise NotImplementedError

    def insert_rows(self, rows: pa.Table) -> np.ndarray:
        """Insert; which rows went in (False: another writer had stored the key)."""
        raise NotImplementedError

    def device_boots(self, devices: list[int]) -> tuple[np.ndarray, np.ndarray]:
        """Every distinct (device, boot) stored for these devices."""
        raise NotImplementedError

    # --- reading ----------------------------------------------------------------

    def table(self, columns: list[str] | None = None) -> pa.Table:
        """Stored frames ordered by (device, boot, seq): the order a device wrote
        them, which is the stream order of its SD log."""
        cols = ", ".join(quote(x) for x in columns or SCHEMA.names)
        return self.query(f"SELECT {cols} FROM frames ORDER BY device, boot, seq")

    def raw_stream(self) -> bytes:
        """Every stored frame's bytes, back to back, in (device, boot, seq) order."""
        col = self.table(["frame"]).column("frame")
        return b"".join(col.to_pylist())

    # --- writing ----------------------------------------------------------------

    def ingest(
        self, body: bytes, via: str = "api", device: int | None = None,
        source: str | None = None,
    ) -> IngestResult:  # fmt: skip
        """Check and store one upload batch; return after the COMMIT.

        device: the device an MQTT topic names (frames of others are rejected);
        source: who sent it, for the failed-MAC throttle (guard.py)."""
        t0 = time.perf_counter()
        res = IngestResult(body_bytes=len(body), body_crc32=zlib.crc32(body))
        keyset = self.keyset  # the keys of one keys file for the whole batch
        try:
            prep = self.prepare(body, res, device, source, keyset)
            if prep is not None:
                self.write(prep, res, via)
        except BodyError as e:
            res.outcome = np.zeros(0, np.int8)
            res.error, res.message = e.reason, e.message
            res.retry_after = e.retry_after if isinstance(e, Throttled) else 0
        who = (
            device if device is not None else res.device[0] if res.device.size else None
        )
        if who is not None:  # the device whose key signs the answer
            res.bind(int(who), body)
            res.signer = keyset[0].get(ob.device_str(int(who)))
        res.seconds = time.perf_counter() - t0
        return res

    def prepare(
        self, body: bytes, res: IngestResult, device: int | None, source: str | None,
        keyset: tuple[dict[str, FastSigner], np.ndarray] | None = None,
    ) -> Prepared | None:  # fmt: skip
        """Decode and verify (no store access): fills res, returns the columns.
        keyset: the store's keyset as the batch began (set_keys may replace it)."""
        if len(body) > self.max_body:
            raise BodyError(
                "too_large", f"body of {len(body)} bytes; at most {self.max_body}"
            )
        if not body:
            raise BodyError("malformed_body", "empty body: send frames back to back")
        stats = ob.new_stats()
        d = bulk.decode(body, None, bulk.ChainState(), stats)  # MACs: below
        tb = d.table
        if stats["skipped_bytes"]:
            raise BodyError("malformed_body", garbage_message(tb, len(body), stats))
        n = tb.num_rows
        col = {
            k: tb.column(k).to_numpy()
            for k in ("offset", "length", "version", "device", "boot", "seq", "mac",
                      "prev")
        }  # fmt: skip
        status = tb.column("status").combine_chunks().indices.to_numpy()
        out = np.zeros(n, np.int8)
        out[status == 1] = UNSUPPORTED_VERSION
        out[status == 2] = MALFORMED_FRAME
        dev = col["device"]
        pending = out == 0
        signers, devices = keyset or self.keyset
        known = np.isin(dev, devices)
        out[pending & ~known] = UNKNOWN_DEVICE
        held: list[Any] = []
        budget: dict[int, int] = {}
        failed: dict[int, int] = {}
        if self.guard is not None:  # a locked device or source: no MAC computed
            wait, budget, held = self.guard.admit(
                source, np.unique(dev[pending & known]).tolist()
            )
            if wait > 0:
                raise Throttled(retry_after(wait))
        try:  # MAC of every frame of a known device, one tight loop per device
            failed = check_macs(signers, body, col, out, pending & known, budget)
            decoy_macs(body, col, pending & ~known)
        finally:
            if self.guard is not None:
                self.guard.settle(
                    held, source, failed,
                    bool(failed and any(failed.values()))
                    or bool(np.any(out == UNKNOWN_DEVICE)),
                    int(np.count_nonzero(out == THROTTLED)),
                )  # fmt: skip
        if device is not None:
            out[(out == 0) & (dev != device)] = WRONG_DEVICE
        res.outcome = out
        res.device, res.boot, res.seq = dev, col["boot"], col["seq"]
        res.offset, res.length = col["offset"], col["length"].astype(np.int64)
        if not np.any(out == 0):
            return None
        col["table"] = tb
        col["body"] = body
        return col

    def future(self, device: np.ndarray, boot: np.ndarray) -> np.ndarray:
        """Which frames are too far ahead of their device's stored boots. Before a
        refusal the devices' boots are read again: another writer (a second
        `jalkal serve` on one PostgreSQL) may have stored newer ones."""
        far = self.boots.too_far(device, boot)
        if far.any():
            devs = np.unique(device[far]).tolist()
            self.boots.reload(devs, *self.device_boots(devs))
            far = self.boots.too_far(device, boot)
        return far

    def check_and_insert(
        self, col: Prepared, res: IngestResult, via: str
    ) -> np.ndarray:
        """Decide every authentic frame against the store and insert the new ones
        (the back-end commits after); returns the indices inserted."""
        out = res.outcome
        key = frame_keys(col["device"], col["boot"], col["seq"])
        body: bytes = col["body"]
        off, ln = res.offset, res.length
        mac16 = (col["mac"] & 0xFFFF).astype(np.uint16)
        prev, seq = col["prev"], col["seq"]
        ok = np.flatnonzero(out == 0)  # authentic: too far in its device's future?
        out[ok[self.future(col["device"][ok], col["boot"][ok])]] = FUTURE_BOOT

        # the same key twice in the batch: the first copy is checked, a later one
        # gets its outcome (as a duplicate) if the bytes are equal, else conflict
        cand = np.flatnonzero(out == 0)
        _, first, inv = np.unique(key[cand], return_index=True, return_inverse=True)
        owner = cand[first[inv.reshape(-1)]]
        later = np.flatnonzero(owner != cand)
        copies = [(int(cand[j]), int(owner[j])) for j in later.tolist()]
        out[cand[later]] = DUPLICATE  # for now: decided after the first copy's
        cand = cand[first]

        # what the store holds at these keys and their neighbours
        ck = key[cand]
        s = seq[cand]
        st_key, st_mac16, st_prev = self.lookup(
            np.unique(np.concatenate((ck, ck[s > 0] - 1, ck[s < 0xFFFF] + 1)))
        )
        # exact key stored: duplicate when the bytes are equal, else conflict
        hit, _ = find_keys(st_key, ck)
        if hit.any():
            self.same_or_conflict(cand[hit], key, col, out)
        new = cand[~hit]
        if new.size:
            # known neighbours: stored frames and this batch's authentic frames
            mine = cand[out[cand] <= DUPLICATE]
            kk, ki = np.unique(np.concatenate((st_key, key[mine])), return_index=True)
            km = np.concatenate((st_mac16, mac16[mine]))[ki]
            nk, ns = key[new], seq[new]
            bad = (ns == 0) & (prev[new] != 0)
            have, pos = find_keys(kk, nk - 1)
            if kk.size:
                bad |= have & (ns > 0) & (km[pos] != prev[new])
            succ, pos = find_keys(st_key, nk + 1)
            if st_key.size:
                bad |= succ & (ns < 0xFFFF) & (st_prev[pos] != mac16[new])
            out[new[bad]] = BROKEN_CHAIN
        ins = np.flatnonzero(out == STORED)
        if ins.size:
            went = self.insert_rows(rows_of(col["table"], body, ins, via))
            if not went.all():  # stored meanwhile by another writer
                self.same_or_conflict(ins[~went], key, col, out)
            ins = ins[went]
        for i, f in copies:
            same = body[off[i] : off[i] + ln[i]] == body[off[f] : off[f] + ln[f]]
            out[i] = max(out[f], DUPLICATE) if same else CONFLICT
        return ins

    def same_or_conflict(
        self, idx: np.ndarray, key: np.ndarray, col: Prepared, out: np.ndarray
    ) -> None:
        """Frames idx whose key is stored: duplicate if the stored bytes are theirs."""
        body: bytes = col["body"]
        off, ln = col["offset"], col["length"].astype(np.int64)
        stored = self.frames_at(key[idx])
        for i in idx.tolist():
            same = stored.get(int(key[i])) == body[off[i] : off[i] + ln[i]]
            out[i] = DUPLICATE if same else CONFLICT


def frame_keys(device: np.ndarray, boot: np.ndarray, seq: np.ndarray) -> np.ndarray:
    """(device, boot, seq) as one sortable uint64."""
    u = np.uint64
    return (device.astype(u) << u(32)) | (boot.astype(u) << u(16)) | seq.astype(u)


def split_keys(keys: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """frame_keys back to (device, boot, seq)."""
    u = np.uint64
    return (
        (keys >> u(32)).astype(np.uint32),
        ((keys >> u(16)) & u(0xFFFF)).astype(np.uint16),
        (keys & u(0xFFFF)).astype(np.uint16),
    )


def find_keys(sorted_keys: np.ndarray, q: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Which of q are in sorted_keys, and where (a valid index even when not)."""
    if sorted_keys.size == 0:
        return np.zeros(q.size, bool), np.zeros(q.size, np.int64)
    pos = np.minimum(np.searchsorted(sorted_keys, q), sorted_keys.size - 1)
    return sorted_keys[pos] == q, pos


def rows_of(tb: pa.Table, body: bytes, rows: np.ndarray, via: str) -> pa.Table:
    """The store's columns for the given rows of a bulk table."""
    sel = tb if rows.size == tb.num_rows else tb.take(pa.array(rows))
    n = sel.num_rows
    off = sel.column("offset").to_numpy()
    ln = sel.column("length").to_numpy().astype(np.int64)
    offsets = np.r_[0, np.cumsum(ln)].astype(np.int32)
    if (off[1:] == off[:-1] + ln[:-1]).all():  # contiguous: one slice, no copy
        data = pa.py_buffer(body)[int(off[0]) : int(off[-1] + ln[-1])]
    else:
        a = np.frombuffer(body, np.uint8)
        idx = np.repeat(off - offsets[:-1], ln) + np.arange(int(offsets[-1]))
        data = pa.py_buffer(a[idx].tobytes())
    frame = pa.Array.from_buffers(
        pa.binary(), n, [None, pa.py_buffer(offsets.tobytes()), data]
    )
    flags = sel.column("flags").to_numpy()
    t = sel.column("t").to_numpy()
    timed = (flags & c.TQ_MASK) != 0
    ts = pa.array(t.astype("datetime64[s]"), pa.timestamp("s"), mask=~timed)
    now = np.datetime64(int(time.time()), "s")
    cols: dict[str, Any] = {}
    for f in SCHEMA:
        if f.name == "frame":
            cols[f.name] = frame
        elif f.name == "ts":
            cols[f.name] = ts
        elif f.name == "received":
            cols[f.name] = pa.array(np.full(n, now), pa.timestamp("s"))
        elif f.name == "via":
            cols[f.name] = pa.array([via] * n, pa.string())
        else:
            col = sel.column(f.name)
            cols[f.name] = col if col.type == f.type else col.cast(f.type)
    return pa.table(cols, schema=SCHEMA)


def garbage_message(tb: pa.Table, n: int, st: dict[str, int]) -> str:
    off = tb.column("offset").to_numpy()
    ln = tb.column("length").to_numpy().astype(np.int64)
    ends = off + ln
    starts = np.r_[off, n]
    prev_end = np.r_[0, ends]
    gap = np.flatnonzero(starts > prev_end)
    at = int(prev_end[gap[0]]) if gap.size else 0
    return (
        f"bytes from offset {at} are not a CRC-valid frame ({st['skipped_bytes']} "
        f"bytes in {st['skipped_runs']} places: {st['crc_errors']} CRC failures, "
        f"{st['truncated']} truncated); send whole frames back to back"
    )
