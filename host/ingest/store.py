"""The frame stores: an embedded DuckDB file (this module, the default) or
PostgreSQL (pgstore.py), exactly once on (device, boot, seq); ``open_store`` picks
the back-end from what ``--store`` names.

One table, ``frames``: the frame's bytes (``frame``) beside its decoded header and
payload columns (the columns of ``jalkal.bulk.decode``, which does all the parsing),
unique on (device, boot, seq) through ``frame_key``, the three packed in one column
whose index answers the per-batch look-ups; ``jalkal_meta`` holds the schema
version. The decisions per frame are batch.py's, alike for both back-ends. DuckDB
writes the commit to its write-ahead log and calls fdatasync before COMMIT returns,
so a frame acknowledged after ``ingest`` returns survives a crash of the server
right after the ack (tested with kill -9 in tests/test_serve.py). DuckDB lets one
process open the file; PostgreSQL takes several `jalkal serve` processes and
readers at once."""

from __future__ import annotations

import re
import threading
from contextlib import suppress
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa

from ..errors import JalkalError
from .ack import BodyError, IngestResult
from .batch import (
    ADDED_COLUMNS,
    MAX_BODY,
    NOT_NULL,
    SCHEMA,
    SCHEMA_VERSION,
    TOUCHED,
    FrameStore,
    Prepared,
    frame_keys,
    quote,
    rows_of,
    split_keys,
)
from .signer import FastSigner

__all__ = ["MAX_BODY", "SCHEMA", "FastSigner", "FrameStore", "Store", "open_store"]

_DUCK_TYPES = {
    pa.uint8(): "UTINYINT", pa.uint16(): "USMALLINT", pa.uint32(): "UINTEGER",
    pa.int32(): "INTEGER", pa.binary(): "BLOB", pa.string(): "VARCHAR",
    pa.timestamp("s"): "TIMESTAMP",
}  # fmt: skip
_DAMAGED = ("not a valid DuckDB database", "Corrupt database", "Could not read enough")
# The frame key as one column with its own index: DuckDB answers an equality on a
# one-column index from the index (an ART look-up), while an equality on the three
# columns of a composite key, a join or an IN list scans the whole table (60 ms at
# 100 M frames). A store made before this column gets it when opened read-write.
KEY_SQL = "(device::UBIGINT << 32) | (boot::UBIGINT << 16) | seq::UBIGINT"
INDEXED_MAX = 128  # keys looked up through the index; a larger set is one scan


def is_postgres(where: str | Path) -> bool:
    return str(where).startswith(("postgresql://", "postgres://"))


def open_store(
    where: str | Path, keys: dict[str, bytes] | None = None, read_only: bool = False
) -> FrameStore:
    """The store ``where`` names: a ``postgresql://`` (or ``postgres://``) URL is
    PostgreSQL, anything else a DuckDB file."""
    if is_postgres(where):
        from .pgstore import PgStore

        return PgStore(str(where), keys, read_only)
    return Store(where, keys, read_only)


def create_sql() -> str:
    cols = [
        f"{quote(f.name)} {_DUCK_TYPES[f.type]}"
        f"{' NOT NULL' if f.name in NOT_NULL else ''}"
        for f in SCHEMA
    ]
    return (
        "CREATE TABLE IF NOT EXISTS frames (\n  "
        + ",\n  ".join(cols)
        + ",\n  frame_key UBIGINT PRIMARY KEY\n)"
    )


def touched_sql() -> list[str]:
    """The marks of the device-days each batch touched (reports/aggregates.py
    recomputes those devices' daily aggregates): (device, UTC date of ts, or
    1970-01-01 for a frame without a clock), batch: a new number at every mark."""
    return [
        f"CREATE SEQUENCE IF NOT EXISTS {TOUCHED}_batch",
        f"CREATE TABLE IF NOT EXISTS {TOUCHED} (device UINTEGER NOT NULL, day DATE "
        "NOT NULL, batch BIGINT NOT NULL, PRIMARY KEY (device, day))",
    ]


MARK_SQL = (
    f"INSERT INTO {TOUCHED} SELECT device, day, nextval('{TOUCHED}_batch') FROM "
    "(SELECT DISTINCT device, coalesce(CAST(ts AS DATE), DATE '1970-01-01') AS day "
    "FROM jalkal_rows) ON CONFLICT (device, day) DO UPDATE SET batch = excluded.batch"
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


class Store(FrameStore):
    """A DuckDB frame store. One connection; ``ingest`` is safe from many threads
    (the decoding and MAC checks run in parallel, the store work behind a lock)."""

    def __init__(
        self,
        path: str | Path,
        keys: dict[str, bytes] | None = None,
        read_only: bool = False,
    ):
        import duckdb

        super().__init__()
        self.path = Path(path)
        self.name = str(self.path)
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
        self.set_keys(keys or {})
        try:
            if read_only:
                self._check_schema()
            else:
                self._create()
                self.boots.load_from(self._distinct_boots)
        except BaseException:
            self.con.close()
            if new:  # the file this failed start made: nothing of anyone's in it
                for p in (self.path, self.path.with_name(self.path.name + ".wal")):
                    p.unlink(missing_ok=True)
            raise

    def _distinct_boots(self) -> tuple[np.ndarray, np.ndarray]:
        b = self._arrow("SELECT DISTINCT device, boot FROM frames")
        return b["device"].to_numpy(), b["boot"].to_numpy()

    def _create(self) -> None:
        tables = {
            str(r[0])
            for r in self.con.execute(
                "SELECT table_name FROM information_schema.tables"
            ).fetchall()
        }
        if "jalkal_meta" in tables:
            self._upgrade()
            self._check_schema()  # before anything is added to it
        elif tables:
            raise JalkalError(
                f"{self.path}: a DuckDB file that is not a jalkal store (it has "
                f"tables {', '.join(sorted(tables)[:5])}); it is left as it is: "
                "give a new file or a jalkal store"
            )
        made = {"frames", "jalkal_meta", TOUCHED} <= tables and bool(
            self.con.execute(
                "SELECT 1 FROM duckdb_sequences() WHERE sequence_name = ?",
                [f"{TOUCHED}_batch"],
            ).fetchall()
        )
        if made:  # nothing to create: no write transaction (a report opens it)
            self._key_column()
            return
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
            for sql in touched_sql():
                self.con.execute(sql)
            self.con.execute("COMMIT")
        self._check_schema()
        self._key_column()

    def _key_column(self) -> None:
        """A store made before the frame_key column gets it, filled, then a unique
        index on it (its PRIMARY KEY (device, boot, seq) stays as it is). Two
        transactions, as DuckDB builds no index over rows updated in its own; each
        step is skipped when done, so a stop between them is finished next time."""
        have = self.con.execute(
            "SELECT count(*) FROM information_schema.columns "
            "WHERE table_name = 'frames' AND column_name = 'frame_key'"
        ).fetchall()[0][0]
        indexed = self.con.execute(
            "SELECT (SELECT count(*) FROM duckdb_indexes() WHERE table_name = 'frames' "
            "AND index_name = 'frames_key') + (SELECT count(*) FROM "
            "duckdb_constraints() WHERE table_name = 'frames' AND constraint_type = "
            "'PRIMARY KEY' AND list_contains(constraint_column_names, 'frame_key'))"
        ).fetchall()[0][0]
        with self.lock:
            if not have:
                self.con.execute("BEGIN")
                self.con.execute("ALTER TABLE frames ADD COLUMN frame_key UBIGINT")
                self.con.execute(f"UPDATE frames SET frame_key = {KEY_SQL}")
                self.con.execute("COMMIT")
            if not indexed:
                self.con.execute("CREATE UNIQUE INDEX frames_key ON frames (frame_key)")

    def _version(self) -> str | None:
        import duckdb

        try:
            rows = self.con.execute(
                "SELECT value FROM jalkal_meta WHERE key = 'schema_version'"
            ).fetchall()
        except duckdb.Error:
            return None
        return str(rows[0][0]) if rows else None

    def _upgrade(self) -> None:
        """A store of an older schema version gets the columns added since, in one
        transaction (the frames in it keep their bytes; the new columns are empty
        for them, as no frame of theirs had those fields)."""
        v = self._version()
        while v is not None and v.isdigit() and int(v) < int(SCHEMA_VERSION):
            nxt = str(int(v) + 1)
            have = {
                str(r[0])
                for r in self.con.execute(
                    "SELECT column_name FROM information_schema.columns "
                    "WHERE table_name = 'frames'"
                ).fetchall()
            }
            types = {f.name: f.type for f in SCHEMA}
            with self.lock:
                self.con.execute("BEGIN")
                for name in ADDED_COLUMNS.get(nxt, []):
                    if name not in have:
                        self.con.execute(
                            f"ALTER TABLE frames ADD COLUMN {quote(name)} "
                            f"{_DUCK_TYPES[types[name]]}"
                        )
                self.con.execute(
                    "UPDATE jalkal_meta SET value = ? WHERE key = 'schema_version'",
                    [nxt],
                )
                self.con.execute("COMMIT")
            v = nxt

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
            older = str(row[0]).isdigit() and int(row[0]) < int(SCHEMA_VERSION)
            raise JalkalError(
                f"{self.path}: store schema version {row[0]}, this jalkal reads "
                f"{SCHEMA_VERSION} ("
                + ("open it once read-write with this jalkal, e.g. `jalkal serve`, "
                   "to upgrade it" if older else "written by a newer jalkal: "
                   "upgrade jalkal")
                + ")"
            )  # fmt: skip

    def close(self) -> None:
        with self.lock:
            if not self.read_only:
                try:
                    self.con.execute("CHECKPOINT")
                except Exception:  # pragma: no cover - best effort at shutdown
                    pass
            self.con.close()

    # --- reading ----------------------------------------------------------------

    def count(self) -> int:
        with self.lock:
            rows = self.con.execute("SELECT count(*) FROM frames").fetchall()
        return int(rows[0][0])

    def ping(self) -> None:
        """Raise if the store does not answer (GET /healthz)."""
        with self.lock:
            self.con.execute("SELECT 1").fetchall()

    def query(self, sql: str, params: list[Any] | None = None) -> pa.Table:
        with self.lock:
            return self._arrow(sql, params)

    def _arrow(self, sql: str, params: list[Any] | None = None) -> pa.Table:
        rel = self.con.sql(sql, params=params) if params else self.con.sql(sql)
        if rel is None:  # pragma: no cover - only for statements without a result
            raise JalkalError(f"no result from {sql!r}")
        return rel.to_arrow_table()

    # --- writing ----------------------------------------------------------------

    def write(self, prep: Prepared, res: IngestResult, via: str) -> None:
        import duckdb

        with self.lock:
            try:
                ins = self.check_and_insert(prep, res, via)  # COMMIT in insert_rows
            except duckdb.Error as e:  # nothing of the batch is stored
                self.failure = f"the store failed: {str(e).splitlines()[0]}"
                raise BodyError("store_error", self.failure) from e
            self.boots.advance(prep["device"][ins], prep["boot"][ins])

    def device_boots(self, devices: list[int]) -> tuple[np.ndarray, np.ndarray]:
        b = self._arrow(
            "SELECT DISTINCT device, boot FROM frames WHERE device = ANY(?)",
            [devices],
        )
        return b["device"].to_numpy(), b["boot"].to_numpy()

    def _at(self, keys: np.ndarray, cols: str) -> pa.Table:
        if 0 < keys.size <= INDEXED_MAX:  # one index look-up per key
            one = f"SELECT {cols} FROM frames f WHERE frame_key = ?"
            sql = " UNION ALL ".join([one] * keys.size)
            return self._arrow(sql, keys.tolist())
        d, b, s = split_keys(keys)
        want = pa.table({"device": d, "boot": b, "seq": s})
        self.con.register("jalkal_want", want)
        try:
            return self._arrow(
                f"SELECT {cols} FROM frames f "
                "SEMI JOIN jalkal_want w USING (device, boot, seq)"
            )
        finally:
            self.con.unregister("jalkal_want")

    def lookup(self, keys: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        got = self._at(keys, "f.device, f.boot, f.seq, f.mac, f.prev")
        k = frame_keys(*(got.column(x).to_numpy() for x in ("device", "boot", "seq")))
        order = np.argsort(k)
        mac16 = (got.column("mac").to_numpy() & 0xFFFF).astype(np.uint16)
        prev = got.column("prev").to_numpy().astype(np.uint16)
        return k[order], mac16[order], prev[order]

    def frames_at(self, keys: np.ndarray) -> dict[int, bytes]:
        got = self._at(keys, "f.device, f.boot, f.seq, f.frame")
        k = frame_keys(*(got.column(x).to_numpy() for x in ("device", "boot", "seq")))
        return dict(zip(k.tolist(), got.column("frame").to_pylist(), strict=True))

    def insert_rows(self, rows: pa.Table) -> np.ndarray:
        """One process holds the file and writes under the lock: all go in."""
        self.con.register("jalkal_rows", rows)
        try:
            self.con.execute("BEGIN")
            try:
                self.con.execute(
                    f"INSERT INTO frames BY NAME SELECT *, {KEY_SQL} AS frame_key "
                    "FROM jalkal_rows"
                )
                self.con.execute(MARK_SQL)  # the device-days it touched, in its txn
                self.con.execute("COMMIT")
            except BaseException:
                with suppress(Exception):  # a failed COMMIT has ended it
                    self.con.execute("ROLLBACK")
                raise
            self.failure = None
        finally:
            self.con.unregister("jalkal_rows")
        return np.ones(rows.num_rows, bool)

    def insert_decoded(self, tb: pa.Table, body: bytes, via: str = "bulk") -> None:
        """Insert every row of a bulk.decode table of body in one transaction, with
        no checks (the benchmark's limit; the PRIMARY KEY still holds)."""
        with self.lock:
            self.insert_rows(rows_of(tb, body, np.arange(tb.num_rows), via))
