"""The frame store: an embedded DuckDB file, exactly once on (device, boot, seq).

One table, ``frames``: the frame's bytes (``frame``) beside its decoded header and
payload columns (the columns of ``jalkal.bulk.decode``, which does all the parsing),
with PRIMARY KEY (device, boot, seq). ``Store.ingest`` takes an upload batch (frames
back to back, as the board sends them), checks every frame against the keys file
and what is already stored, inserts the new ones in ONE transaction and returns,
after the COMMIT, what was acknowledged. DuckDB writes the commit to its write-ahead
log and calls fdatasync before COMMIT returns, so a frame acknowledged after
``ingest`` returns survives a crash of the server right after the ack (tested with
kill -9 in tests/test_serve.py).

Outcomes per frame (see docs/uplink.md for the whole contract):

* ``stored``: new, verified, consistent with the stored chain: inserted;
* ``duplicate``: the exact same bytes under the same key are already stored (or
  earlier in the same batch): acknowledged, stored nothing (a board re-sending after
  a power cut must get its ack so its cursor moves on);
* rejected, with a reason: ``unknown_device`` (not in the keys file), ``bad_mac``,
  ``wrong_device`` (an MQTT batch on another device's topic), ``unsupported_version``,
  ``malformed_frame``, ``conflict`` (same key, different bytes: stored or earlier in
  the batch), ``broken_chain`` (``prev`` does not match the stored predecessor
  (device, boot, seq - 1), ``prev`` is not 0000 at seq 0, or a stored successor's
  ``prev`` does not match this frame's MAC).

A body that is not exactly CRC-valid frames back to back (garbage, a torn or
corrupted frame, an empty body) is refused as a whole (``malformed_body``): nothing
of it is stored, the sender re-sends the batch. So is a batch whose COMMIT failed
(a full disk): ``store_error`` with DuckDB's words, in ``failure`` until one works."""

from __future__ import annotations

import re
import threading
import time
import zlib
from contextlib import suppress
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa

from jkproto import codec as c
from jkproto import objects as ob

from ..decode import bulk
from ..errors import JalkalError
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
from .signer import FastSigner, check_macs

SCHEMA_VERSION = "1"
MAX_BODY = 256 * 1024  # bytes per upload batch (HTTP body or MQTT payload)
_DUCK_TYPES = {
    pa.uint8(): "UTINYINT", pa.uint16(): "USMALLINT", pa.uint32(): "UINTEGER",
    pa.int32(): "INTEGER", pa.binary(): "BLOB", pa.string(): "VARCHAR",
    pa.timestamp("s"): "TIMESTAMP",
}  # fmt: skip
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
_DAMAGED = ("not a valid DuckDB database", "Corrupt database", "Could not read enough")
NOT_NULL = {"device", "boot", "seq", "kind", "flags", "t", "prev", "mac", "version",
            "length", "frame", "received", "via"}  # fmt: skip


def _q(name: str) -> str:
    return '"' + name + '"'


def create_sql() -> str:
    cols = [
        f"{_q(f.name)} {_DUCK_TYPES[f.type]}{' NOT NULL' if f.name in NOT_NULL else ''}"
        for f in SCHEMA
    ]
    return (
        "CREATE TABLE IF NOT EXISTS frames (\n  "
        + ",\n  ".join(cols)
        + ",\n  PRIMARY KEY (device, boot, seq)\n)"
    )


def _open_error(path: Path, e: Exception) -> JalkalError:
    msg = str(e).splitlines()[0]
    if "Could not set lock on file" in msg:  # DuckDB names the holder's PID
        who = p[0] if (p := re.search(r"PID \d+", msg)) else "a running `jalkal serve`?"
        return JalkalError(
            f"store {path} is in use by another process ({who}); "
            "DuckDB lets one process open a store file at a time: stop it first"
        )
    if any(m in msg for m in _DAMAGED):
        fix = "restore it from a backup or move it aside"
        return JalkalError(f"cannot open store {path}: not a DuckDB file or "
                           f"damaged: {fix} ({msg})")  # fmt: skip
    return JalkalError(f"cannot open store {path}: {msg}")


class Store:
    """A DuckDB frame store. One connection; ``ingest`` is safe from many threads
    (the decoding and MAC checks run in parallel, the store work behind a lock)."""

    def __init__(
        self,
        path: str | Path,
        keys: dict[str, bytes] | None = None,
        read_only: bool = False,
    ):
        import duckdb

        self.path = Path(path)
        self.read_only = read_only
        if read_only and not self.path.exists():
            raise JalkalError(f"store {self.path}: no such file")
        if self.path.is_dir():
            raise JalkalError(f"store {self.path}: a folder; give a file name")
        new = not self.path.exists()
        try:
            self.con = duckdb.connect(str(self.path), read_only=read_only)
        except duckdb.Error as e:
            raise _open_error(self.path, e)
        self.lock = threading.Lock()
        self.max_body = MAX_BODY
        self.failure: str | None = None  # a failed commit's error, until one works
        self.guard: Throttle | None = None  # failed-MAC throttle (serve sets one)
        self.boots = BootCeiling()  # each device's latest boot: future_boot
        self.set_keys(keys or {})
        try:
            if read_only:
                self._check_schema()
            else:
                self._create()
                b = self._arrow("SELECT DISTINCT device, boot FROM frames")
                self.boots.load(b["device"].to_numpy(), b["boot"].to_numpy())
        except BaseException:
            self.con.close()
            if new:  # the file this failed start made: nothing of anyone's in it
                for p in (self.path, self.path.with_name(self.path.name + ".wal")):
                    p.unlink(missing_ok=True)
            raise

    def _create(self) -> None:
        tables = {
            str(r[0])
            for r in self.con.execute(
                "SELECT table_name FROM information_schema.tables"
            ).fetchall()
        }
        if "jalkal_meta" in tables:
            self._check_schema()  # before anything is added to it
        elif tables:
            raise JalkalError(
                f"{self.path}: a DuckDB file that is not a jalkal store (it has "
                f"tables {', '.join(sorted(tables)[:5])}); it is left as it is: "
                "give a new file or a jalkal store"
            )
        with self.lock:
            self.con.execute("BEGIN")
            self.con.execute(
                "CREATE TABLE IF NOT EXISTS jalkal_meta "
                "(key VARCHAR PRIMARY KEY, value VARCHAR)"
            )
            self.con.execute(
                "INSERT OR IGNORE INTO jalkal_meta VALUES ('schema_version', ?)",
                [SCHEMA_VERSION],
            )
            self.con.execute(create_sql())
            self.con.execute("COMMIT")
        self._check_schema()

    def _check_schema(self) -> None:
        import duckdb

        try:
            rows = self.con.execute(
                "SELECT value FROM jalkal_meta WHERE key = 'schema_version'"
            ).fetchall()
        except duckdb.Error:
            rows = []
        row = rows[0] if rows else None
        if row is None:
            raise JalkalError(f"{self.path}: not a jalkal store (no jalkal_meta table)")
        if row[0] != SCHEMA_VERSION:
            raise JalkalError(
                f"{self.path}: store schema version {row[0]}, this jalkal reads "
                f"{SCHEMA_VERSION}"
            )

    def set_keys(self, keys: dict[str, bytes]) -> None:
        self.signers = {d: FastSigner(k) for d, k in keys.items()}
        self._devices = np.array(sorted(int(d, 16) for d in keys), np.uint32)

    def close(self) -> None:
        with self.lock:
            if not self.read_only:
                try:
                    self.con.execute("CHECKPOINT")
                except Exception:  # pragma: no cover - best effort at shutdown
                    pass
            self.con.close()

    def __enter__(self) -> Store:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # --- reading ----------------------------------------------------------------

    def count(self) -> int:
        with self.lock:
            rows = self.con.execute("SELECT count(*) FROM frames").fetchall()
        return int(rows[0][0])

    def query(self, sql: str, params: list[Any] | None = None) -> pa.Table:
        with self.lock:
            return self._arrow(sql, params)

    def _arrow(self, sql: str, params: list[Any] | None = None) -> pa.Table:
        rel = self.con.sql(sql, params=params) if params else self.con.sql(sql)
        if rel is None:  # pragma: no cover - only for statements without a result
            raise JalkalError(f"no result from {sql!r}")
        return rel.to_arrow_table()

    def table(self, columns: list[str] | None = None) -> pa.Table:
        """Stored frames ordered by (device, boot, seq): the order a device wrote
        them, which is the stream order of its SD log."""
        cols = ", ".join(_q(x) for x in columns) if columns else "*"
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
        import duckdb

        t0 = time.perf_counter()
        res = IngestResult(body_bytes=len(body), body_crc32=zlib.crc32(body))
        try:
            prep = self._prepare(body, res, device, source)
            if prep is not None:
                with self.lock:
                    try:
                        self._check_and_insert(prep, res, via)
                    except duckdb.Error as e:  # nothing of the batch is stored
                        self.failure = f"the store failed: {str(e).splitlines()[0]}"
                        raise BodyError("store_error", self.failure) from e
        except BodyError as e:
            res.outcome = np.zeros(0, np.int8)
            res.error, res.message = e.reason, e.message
            res.retry_after = e.retry_after if isinstance(e, Throttled) else 0
        who = (
            device if device is not None else res.device[0] if res.device.size else None
        )
        if who is not None:  # the device whose key signs the answer
            res.bind(int(who), body)
            res.signer = self.signers.get(ob.device_str(int(who)))
        res.seconds = time.perf_counter() - t0
        return res

    def _prepare(
        self, body: bytes, res: IngestResult, device: int | None, source: str | None
    ) -> dict[str, Any] | None:
        """Decode and verify (no store access): fills res, returns the columns."""
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
            raise BodyError("malformed_body", _garbage_message(tb, len(body), stats))
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
        known = np.isin(dev, self._devices)
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
            failed = check_macs(self.signers, body, col, out, pending & known, budget)
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

    def _check_and_insert(
        self, col: dict[str, Any], res: IngestResult, via: str
    ) -> None:
        out = res.outcome
        key = _keys(col["device"], col["boot"], col["seq"])
        body: bytes = col["body"]
        off, ln = res.offset, res.length
        mac16 = (col["mac"] & 0xFFFF).astype(np.uint16)
        prev, seq = col["prev"], col["seq"]
        ok = np.flatnonzero(out == 0)  # authentic: too far in its device's future?
        out[ok[self.boots.too_far(col["device"][ok], col["boot"][ok])]] = FUTURE_BOOT

        # the same key twice in the batch: the first copy is checked, a later one
        # gets its outcome (as a duplicate) if the bytes are equal, else conflict
        cand = np.flatnonzero(out == 0)
        _, first, inv = np.unique(key[cand], return_index=True, return_inverse=True)
        owner = cand[first[inv.reshape(-1)]]
        later = np.flatnonzero(owner != cand)
        copies = [(int(cand[j]), int(owner[j])) for j in later.tolist()]
        cand = cand[first]

        # what the store holds at these keys and their neighbours
        ck = key[cand]
        s = seq[cand]
        st_key, st_mac16, st_prev = self._lookup(
            np.unique(np.concatenate((ck, ck[s > 0] - 1, ck[s < 0xFFFF] + 1)))
        )
        # exact key stored: duplicate when the bytes are equal, else conflict
        hit, _ = _find(st_key, ck)
        if hit.any():
            stored = self._frames_at(ck[hit])
            for i in cand[hit].tolist():
                same = stored.get(int(key[i])) == body[off[i] : off[i] + ln[i]]
                out[i] = DUPLICATE if same else CONFLICT
        new = cand[~hit]
        if new.size:
            # known neighbours: stored frames and this batch's authentic frames
            mine = cand[out[cand] <= DUPLICATE]
            kk, ki = np.unique(np.concatenate((st_key, key[mine])), return_index=True)
            km = np.concatenate((st_mac16, mac16[mine]))[ki]
            nk, ns = key[new], seq[new]
            bad = (ns == 0) & (prev[new] != 0)
            have, pos = _find(kk, nk - 1)
            if kk.size:
                bad |= have & (ns > 0) & (km[pos] != prev[new])
            succ, pos = _find(st_key, nk + 1)
            if st_key.size:
                bad |= succ & (ns < 0xFFFF) & (st_prev[pos] != mac16[new])
            out[new[bad]] = BROKEN_CHAIN
        for i, f in copies:
            same = body[off[i] : off[i] + ln[i]] == body[off[f] : off[f] + ln[f]]
            out[i] = max(out[f], DUPLICATE) if same else CONFLICT
        ins = np.flatnonzero(out == STORED)
        if ins.size:
            self._insert(self._rows(col["table"], body, ins, via))
            self.boots.advance(col["device"][ins], col["boot"][ins])

    def _lookup(self, keys: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Stored keys among keys (sorted), with their mac & 0xFFFF and prev."""
        want = _key_table(keys)
        self.con.register("jalkal_want", want)
        try:
            got = self._arrow(
                "SELECT f.device, f.boot, f.seq, f.mac, f.prev FROM frames f "
                "SEMI JOIN jalkal_want w USING (device, boot, seq)"
            )
        finally:
            self.con.unregister("jalkal_want")
        k = _keys(*(got.column(x).to_numpy() for x in ("device", "boot", "seq")))
        order = np.argsort(k)
        mac16 = (got.column("mac").to_numpy() & 0xFFFF).astype(np.uint16)
        prev = got.column("prev").to_numpy().astype(np.uint16)
        return k[order], mac16[order], prev[order]

    def _frames_at(self, keys: np.ndarray) -> dict[int, bytes]:
        want = _key_table(keys)
        self.con.register("jalkal_want", want)
        try:
            rows = self.con.execute(
                "SELECT f.device, f.boot, f.seq, f.frame FROM frames f "
                "SEMI JOIN jalkal_want w USING (device, boot, seq)"
            ).fetchall()
        finally:
            self.con.unregister("jalkal_want")
        return {(d << 32) | (b << 16) | s: bytes(fr) for d, b, s, fr in rows}

    def _rows(self, tb: pa.Table, body: bytes, rows: np.ndarray, via: str) -> pa.Table:
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

    def _insert(self, rows: pa.Table) -> None:
        self.con.register("jalkal_rows", rows)
        try:
            self.con.execute("BEGIN")
            try:
                self.con.execute("INSERT INTO frames SELECT * FROM jalkal_rows")
                self.con.execute("COMMIT")
            except BaseException:
                with suppress(Exception):  # a failed COMMIT has ended it
                    self.con.execute("ROLLBACK")
                raise
            self.failure = None
        finally:
            self.con.unregister("jalkal_rows")

    def insert_decoded(self, tb: pa.Table, body: bytes, via: str = "bulk") -> None:
        """Insert every row of a bulk.decode table of body in one transaction, with
        no checks (the benchmark's limit; the PRIMARY KEY still holds)."""
        with self.lock:
            self._insert(self._rows(tb, body, np.arange(tb.num_rows), via))


def _keys(device: np.ndarray, boot: np.ndarray, seq: np.ndarray) -> np.ndarray:
    """(device, boot, seq) as one sortable uint64."""
    u = np.uint64
    return (device.astype(u) << u(32)) | (boot.astype(u) << u(16)) | seq.astype(u)


def _key_table(keys: np.ndarray) -> pa.Table:
    u = np.uint64
    return pa.table(
        {
            "device": pa.array((keys >> u(32)).astype(np.uint32)),
            "boot": pa.array(((keys >> u(16)) & u(0xFFFF)).astype(np.uint16)),
            "seq": pa.array((keys & u(0xFFFF)).astype(np.uint16)),
        }
    )


def _find(sorted_keys: np.ndarray, q: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Which of q are in sorted_keys, and where (a valid index even when not)."""
    if sorted_keys.size == 0:
        return np.zeros(q.size, bool), np.zeros(q.size, np.int64)
    pos = np.minimum(np.searchsorted(sorted_keys, q), sorted_keys.size - 1)
    return sorted_keys[pos] == q, pos


def _garbage_message(tb: pa.Table, n: int, st: dict[str, int]) -> str:
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
