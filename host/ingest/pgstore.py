"""The PostgreSQL frame store (psycopg 3): the State's back-end, for several
`jalkal serve` workers and readers at once (docs/uplink.md#the-store).

    jalkal serve --store postgresql://USER[:PASSWORD]@HOST[:PORT]/DB --keys K

Everything of jalkal's lives in the schema ``jalkal`` of that database:
``jalkal.frames`` (the columns of batch.SCHEMA in PostgreSQL types, PRIMARY KEY
(device, boot, seq)) and ``jalkal.jalkal_meta`` (``schema_version``). It is created
on first use; a ``jalkal`` schema holding other tables, or a store of another schema
version, is refused and left as it is; nothing outside the schema is touched.

A batch is one transaction on the worker's connection: read the stored keys and
neighbours of the batch (range scans of the primary key), decide as batch.py does,
``INSERT ... ON CONFLICT DO NOTHING RETURNING`` the new frames in key order, read
back only the keys that another worker stored meanwhile (its insert waited for that
commit: duplicate if the bytes are equal, else conflict), COMMIT (synchronous, so on
disk), then answer. So two workers sending the same batch at once store it once and
both acknowledge it. A lost connection fails that batch (``store_error``: nothing
acknowledged); the next batch connects again.

Readers (report, export) open one REPEATABLE READ, read-only transaction: every read
of a reader sees one snapshot, while the workers keep writing."""

from __future__ import annotations

import os
import secrets
import socket
import threading
from contextlib import suppress
from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

import numpy as np
import pyarrow as pa

from ..errors import JalkalError
from .ack import BodyError, IngestResult
from .batch import (
    ADDED_COLUMNS,
    NOT_NULL,
    SCHEMA,
    SCHEMA_VERSION,
    TOUCHED,
    FrameStore,
    Prepared,
    frame_keys,
    quote,
    split_keys,
)

NS = "jalkal"  # the schema (namespace) holding jalkal's tables
PG_TYPES = {
    pa.uint8(): "smallint", pa.uint16(): "integer", pa.uint32(): "bigint",
    pa.int32(): "integer", pa.binary(): "bytea", pa.string(): "text",
    pa.timestamp("s"): "timestamp",
}  # fmt: skip
# from an older schema version: (the next version, its statements)
MIGRATIONS: dict[str, tuple[str, list[str]]] = {
    v: (
        str(int(v) + 1),
        [
            f"ALTER TABLE {NS}.frames ADD COLUMN IF NOT EXISTS {quote(f.name)} "
            f"{PG_TYPES[f.type]}"
            for f in SCHEMA
            if f.name in ADDED_COLUMNS.get(str(int(v) + 1), [])
        ],
    )
    for v in map(str, range(1, int(SCHEMA_VERSION)))
}
LOCK_ID = 0x6A616C6B  # pg_advisory_xact_lock: one process creates or upgrades
CONNECT_TIMEOUT_S = 10


def masked(url: str) -> str:
    """The URL with its password (user info or ?password=) shown as ***."""
    u = urlsplit(url)
    net = u.netloc
    if u.password is not None:
        user, _, host = net.rpartition("@")
        net = f"{user.split(':', 1)[0]}:***@{host}"
    q = [(k, "***" if k == "password" else v) for k, v in parse_qsl(u.query, True)]
    return urlunsplit((u.scheme, net, u.path, urlencode(q, safe="*"), u.fragment))


def create_sql() -> list[str]:
    cols = [
        f"{quote(f.name)} {PG_TYPES[f.type]}{' NOT NULL' if f.name in NOT_NULL else ''}"
        for f in SCHEMA
    ]
    return [
        f"CREATE SCHEMA IF NOT EXISTS {NS}",
        f"CREATE TABLE {NS}.jalkal_meta (key text PRIMARY KEY, value text)",
        f"INSERT INTO {NS}.jalkal_meta VALUES ('schema_version', '{SCHEMA_VERSION}')",
        f"CREATE TABLE {NS}.frames (\n  " + ",\n  ".join(cols)
        + ",\n  PRIMARY KEY (device, boot, seq)\n)",
        *touched_sql(),
        *heard_sql(),
    ]  # fmt: skip


def touched_sql() -> list[str]:
    """The device-days each batch touched (as store.touched_sql)."""
    return [
        f"CREATE SEQUENCE IF NOT EXISTS {NS}.{TOUCHED}_batch",
        f"CREATE TABLE IF NOT EXISTS {NS}.{TOUCHED} (device bigint NOT NULL, day date "
        "NOT NULL, batch bigint NOT NULL, PRIMARY KEY (device, day))",
    ]


def heard_sql() -> list[str]:
    """A BRIN index on ``received`` (a few pages for the whole table, next to
    nothing per insert): each worker reads the frames received since its last look
    cheaply (heard_since: who the other workers heard, for /metrics)."""
    return [
        f"CREATE INDEX IF NOT EXISTS frames_received ON {NS}.frames "
        "USING brin (received)"
    ]


MARK_SQL = (
    f"INSERT INTO {NS}.{TOUCHED} (device, day, batch) SELECT d, day, "
    f"nextval('{NS}.{TOUCHED}_batch') FROM (SELECT DISTINCT d, coalesce(ts::date, "
    "date '1970-01-01') AS day FROM unnest(%s::bigint[], %s::timestamp[]) AS r(d, ts) "
    "ORDER BY 1, 2) x ON CONFLICT (device, day) DO UPDATE SET batch = EXCLUDED.batch"
)


COUNTS = "frame_counts"  # rows stored, one row per writing process: count() sums it
COUNT_SQL = (
    f"INSERT INTO {NS}.{COUNTS} AS c (writer, n) VALUES (%s, %s) "
    "ON CONFLICT (writer) DO UPDATE SET n = c.n + EXCLUDED.n"
)


def counts_sql(made: bool) -> list[str]:
    """The frame count kept beside the frames (count(*) reads every row: seconds at
    100 M): each writer adds what it inserted to its own row in the batch's
    transaction (no two workers wait on one row), so the sum is exact in every
    snapshot. A store without the table gets it seeded with count(*) once; at each
    read-write open the rows are folded into one (a live writer's next batch makes
    its row again). Under the advisory lock of _check_schema."""
    out = [] if made else [
        f"CREATE TABLE {NS}.{COUNTS} (writer text PRIMARY KEY, n bigint NOT NULL)",
        f"INSERT INTO {NS}.{COUNTS} SELECT 'base', count(*) FROM {NS}.frames",
    ]  # fmt: skip
    return out + [
        f"WITH gone AS (DELETE FROM {NS}.{COUNTS} WHERE writer <> 'base' RETURNING n) "
        f"UPDATE {NS}.{COUNTS} SET n = n + (SELECT coalesce(sum(n), 0) FROM gone) "
        "WHERE writer = 'base'",
    ]


def key_ranges(keys: np.ndarray) -> tuple[list[int], list[int], list[int], list[int]]:
    """Sorted unique keys as runs of consecutive seqs: (device, boot, lo, hi)."""
    if keys.size == 0:
        return [], [], [], []
    brk = np.flatnonzero(((keys[1:] >> np.uint64(16)) != (keys[:-1] >> np.uint64(16)))
                         | (keys[1:] - keys[:-1] != 1)) + 1  # fmt: skip
    lo, hi = keys[np.r_[0, brk]], keys[np.r_[brk - 1, keys.size - 1]]
    d, b, s0 = split_keys(lo)
    s1 = split_keys(hi)[2]
    return d.tolist(), b.tolist(), s0.tolist(), s1.tolist()


class PgStore(FrameStore):
    """A PostgreSQL frame store: one connection per process, batches behind a lock
    (several processes write at once; the database keeps them apart)."""

    def __init__(
        self, url: str, keys: dict[str, bytes] | None = None, read_only: bool = False
    ):
        super().__init__()
        self.url = url
        self.name = masked(url)
        self.read_only = read_only
        self.lock = threading.RLock()
        self.conn: Any = None
        self.duck: Any = None
        self.duck_dir: Any = None  # the temporary folder of con's DuckDB file
        self.counted = False
        self.namespace = NS
        self.writer = f"{socket.gethostname()}:{os.getpid()}:{secrets.token_hex(4)}"
        self.set_keys(keys or {})
        self.connect()
        try:
            self._check_schema()
            if not read_only:
                self.boots.load_from(self.distinct_boots)
        except BaseException:
            self.close()
            raise

    # --- the connection ---------------------------------------------------------

    def where(self) -> str:
        import psycopg

        try:
            info = psycopg.conninfo.conninfo_to_dict(self.url)
        except psycopg.Error:
            return self.name
        host = str(info.get("host") or info.get("hostaddr") or "localhost")
        return f"{host}:{info.get('port') or 5432}"

    def say(self, e: BaseException) -> str:
        """An error's first line, with no password in it."""
        msg = (str(e).strip().splitlines() or [type(e).__name__])[0]
        pw = urlsplit(self.url).password
        for k, v in parse_qsl(urlsplit(self.url).query):
            pw = v if k == "password" else pw
        return msg.replace(pw, "***") if pw else msg

    def connect(self) -> Any:
        try:
            import psycopg
        except ImportError:  # pragma: no cover - a runtime dependency
            raise JalkalError("a PostgreSQL store needs psycopg 3 (psycopg[binary])")
        opts: dict[str, Any] = {"autocommit": True}
        if "connect_timeout" not in self.url:
            opts["connect_timeout"] = CONNECT_TIMEOUT_S
        try:
            conn = psycopg.connect(self.url, **opts)
            conn.execute(f"SET search_path TO {NS}")
            if not self.read_only:
                conn.execute("SET synchronous_commit TO on")  # COMMIT is on disk
            conn.autocommit = False
            if self.read_only:  # one snapshot for every read of this reader
                conn.isolation_level = psycopg.IsolationLevel.REPEATABLE_READ
                conn.read_only = True
        except psycopg.Error as e:
            raise JalkalError(
                f"cannot connect to PostgreSQL at {self.where()} ({self.name}): "
                f"{self.say(e)}"
            )
        self.conn = conn
        return conn

    def live(self) -> Any:
        """The connection; a new one after it was lost (not for a reader, whose
        snapshot went with it)."""
        if self.conn is None or self.conn.closed or self.conn.broken:
            if self.read_only and self.conn is not None:
                raise JalkalError(f"lost the connection to PostgreSQL at "
                                  f"{self.where()} ({self.name})")  # fmt: skip
            with suppress(Exception):
                if self.conn is not None:
                    self.conn.close()
            self.conn = None
            return self.connect()
        return self.conn

    def close(self) -> None:
        with self.lock:
            if self.conn is not None:
                with suppress(Exception):
                    self.conn.close()
                self.conn = None
            if self.duck is not None:
                self.duck.close()
                self.duck = None
            if self.duck_dir is not None:
                self.duck_dir.cleanup()
                self.duck_dir = None

    # --- schema -----------------------------------------------------------------

    def _tables(self, cur: Any) -> set[str]:
        rows = cur.execute(
            "SELECT c.relname FROM pg_class c JOIN pg_namespace n "
            "ON n.oid = c.relnamespace WHERE n.nspname = %s "
            "AND c.relkind IN ('r', 'p', 'v', 'm', 'f')",
            [NS],
        ).fetchall()
        return {str(r[0]) for r in rows}

    def _check_schema(self) -> None:
        import psycopg

        db = urlsplit(self.url).path.lstrip("/") or "(default)"
        try:
            with self.lock, self.conn.transaction():
                cur = self.conn.cursor()
                if not self.read_only:
                    cur.execute("SELECT pg_advisory_xact_lock(%s)", [LOCK_ID])
                tables = self._tables(cur)
                if "jalkal_meta" not in tables:
                    if self.read_only:
                        raise JalkalError(
                            f"{self.name}: not a jalkal store (no {NS}.jalkal_meta "
                            f"table in {db})"
                        )
                    if tables:
                        raise JalkalError(
                            f"{self.name}: schema {NS!r} of {db} holds tables that "
                            f"are not a jalkal store ({', '.join(sorted(tables)[:5])}"
                            "); it is left as it is: give another database"
                        )
                    for sql in create_sql():
                        cur.execute(sql)
                self._version(cur)
                if not self.read_only:  # a store made before the marks gets them
                    for sql in (touched_sql() + heard_sql()
                                + counts_sql(COUNTS in tables)):  # fmt: skip
                        cur.execute(sql)
                self.counted = COUNTS in tables or not self.read_only
            if self.read_only:
                self.conn.rollback()
        except psycopg.Error as e:
            raise JalkalError(f"{self.name}: {self.say(e)}")

    def _version(self, cur: Any) -> None:
        row = cur.execute(
            f"SELECT value FROM {NS}.jalkal_meta WHERE key = 'schema_version'"
        ).fetchone()
        v = str(row[0]) if row else "none"
        while v in MIGRATIONS and not self.read_only:  # upgrade, in this transaction
            nxt, sqls = MIGRATIONS[v]
            for sql in sqls:
                cur.execute(sql)
            cur.execute(
                f"UPDATE {NS}.jalkal_meta SET value = %s WHERE key = 'schema_version'",
                [nxt],
            )
            v = nxt
        if v != SCHEMA_VERSION:
            newer = v.isdigit() and int(v) > int(SCHEMA_VERSION)
            why = ("written by a newer jalkal: upgrade jalkal" if newer else
                   "open it read-write with this jalkal to upgrade it"
                   if v in MIGRATIONS else "this jalkal cannot upgrade it")  # fmt: skip
            raise JalkalError(
                f"{self.name}: store schema version {v}, this jalkal reads "
                f"{SCHEMA_VERSION} ({why})"
            )

    # --- reading ----------------------------------------------------------------

    def _fetch(self, sql: str, params: list[Any] | None = None) -> tuple[list, list]:
        """Rows and column names; a writer ends its transaction, a reader keeps its
        snapshot."""
        import psycopg

        with self.lock:
            try:
                conn = self.live()
                try:
                    cur = conn.cursor(binary=True)
                    cur.execute(sql, params)
                    rows = cur.fetchall()
                    names = [d.name for d in cur.description or []]
                    if not self.read_only:
                        conn.commit()
                except BaseException:
                    if not self.read_only:
                        with suppress(Exception):
                            conn.rollback()
                    raise
            except psycopg.Error as e:
                raise JalkalError(f"the store failed: {self.say(e)}")
        return rows, names

    def count(self) -> int:
        """The frames stored (exact, in this connection's snapshot)."""
        if self.counted:
            rows, _ = self._fetch(f"SELECT sum(n) FROM {NS}.{COUNTS}")
        else:  # an older store opened read-only: it has no count kept
            rows, _ = self._fetch(f"SELECT count(*) FROM {NS}.frames")
        return int(rows[0][0] or 0)

    def ping(self) -> None:
        """Raise if the store does not answer (GET /healthz: cheap, unlike count
        on a big table)."""
        self._fetch("SELECT 1")

    def size_bytes(self) -> int:
        """The jalkal schema's tables with their indexes and TOAST, in bytes
        (jalkal_store_bytes): file sizes PostgreSQL knows, no table read."""
        rows, _ = self._fetch(
            "SELECT coalesce(sum(pg_total_relation_size(c.oid)), 0)::bigint FROM "
            "pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace "
            "WHERE n.nspname = %s AND c.relkind = 'r'",
            [NS],
        )
        return int(rows[0][0])

    def heard_since(self, since: float | None = None) -> list[tuple[int, float]]:
        """(device, Unix time of its last frame received) of the frames received
        since `since` (None: all), on a connection of its own (pgread.py)."""
        from .pgread import heard_since

        return heard_since(self, since)

    def have_frames(self, devices: list[int]) -> set[int]:
        """Which of these devices have a frame stored (pgread.py)."""
        from .pgread import have_frames

        return have_frames(self, devices)

    def query(self, sql: str, params: list[Any] | None = None) -> pa.Table:
        """SQL of PostgreSQL (%s placeholders) on the jalkal schema; the store's
        columns come back in their Arrow types, as from the DuckDB store."""
        rows, names = self._fetch(sql, params)
        cols = list(zip(*rows, strict=True)) if rows else [()] * len(names)
        known = set(SCHEMA.names)
        return pa.table({
            n: pa.array(list(v), SCHEMA.field(n).type if n in known else None)
            for n, v in zip(names, cols, strict=True)
        })  # fmt: skip

    @property
    def con(self) -> Any:
        """A DuckDB connection with this reader's snapshot of ``frames`` in a
        temporary DuckDB file, for DuckDB SQL over the store (the Parquet export's
        COPY); filled a group of devices at a time (pgread.py)."""
        if self.duck is None:
            from .pgread import to_duckdb

            self.duck, self.duck_dir = to_duckdb(self)
        return self.duck

    @con.setter
    def con(self, value: Any) -> None:
        self.duck = value

    def frames_since(self, when: str, unit: str) -> pa.Table:
        """The frames of every (device, day or month) with a frame received at or
        after `when`, read in PostgreSQL (export --since: not the whole store)."""
        from .pgread import since

        return since(self, when, unit)

    def distinct_boots(self, devices: list[int] | None = None) -> tuple[Any, Any]:
        """Every distinct (device, boot): a skip scan of the primary key."""
        only = "AND device = ANY(%s)" if devices is not None else ""
        tb = self.query(
            "WITH RECURSIVE t AS ("
            f"(SELECT device, boot FROM {NS}.frames WHERE true {only} "
            "ORDER BY device, boot LIMIT 1) UNION ALL "
            "SELECT n.device, n.boot FROM t, LATERAL (SELECT f.device, f.boot FROM "
            f"{NS}.frames f WHERE (f.device, f.boot) > (t.device, t.boot) {only} "
            "ORDER BY f.device, f.boot LIMIT 1) n) SELECT device, boot FROM t",
            [devices, devices] if devices is not None else None,
        )
        if tb.num_rows == 0:
            return np.zeros(0, np.uint32), np.zeros(0, np.uint16)
        return (tb["device"].to_numpy().astype(np.uint32),
                tb["boot"].to_numpy().astype(np.uint16))  # fmt: skip

    # --- writing (inside write's transaction) -----------------------------------

    def write(self, prep: Prepared, res: IngestResult, via: str) -> None:
        import psycopg

        with self.lock:
            try:
                conn = self.live()
                try:
                    ins = self.check_and_insert(prep, res, via)
                    conn.commit()  # before the answer
                except BaseException:
                    with suppress(Exception):
                        conn.rollback()
                    raise
            except (psycopg.Error, JalkalError) as e:  # nothing of it is stored
                text = self.say(e) if isinstance(e, psycopg.Error) else str(e)
                self.failure = f"the store failed: {text}"
                raise BodyError("store_error", self.failure) from e
            self.failure = None
            self.boots.advance(prep["device"][ins], prep["boot"][ins])

    def device_boots(self, devices: list[int]) -> tuple[np.ndarray, np.ndarray]:
        rows = self.conn.execute(
            f"SELECT DISTINCT device, boot FROM {NS}.frames WHERE device = ANY(%s)",
            [devices],
        ).fetchall()
        d = np.array([r[0] for r in rows], np.uint32)
        return d, np.array([r[1] for r in rows], np.uint16)

    def _at(self, keys: np.ndarray, cols: str) -> list[tuple]:
        """Stored rows at these keys: range scans of the primary key, filtered."""
        rows = self.conn.execute(
            f"SELECT {cols} FROM unnest(%s::bigint[], %s::integer[], %s::integer[], "
            "%s::integer[]) AS r(d, b, lo, hi) CROSS JOIN LATERAL (SELECT * FROM "
            f"{NS}.frames f WHERE f.device = r.d AND f.boot = r.b AND f.seq "
            "BETWEEN r.lo AND r.hi) f",
            list(key_ranges(keys)),
        ).fetchall()
        want = set(keys.tolist())
        return [r for r in rows if (r[0] << 32) | (r[1] << 16) | r[2] in want]

    def lookup(self, keys: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        rows = self._at(keys, "f.device, f.boot, f.seq, f.mac, f.prev")
        a = np.array(rows, np.int64).reshape(-1, 5)
        k = frame_keys(a[:, 0], a[:, 1], a[:, 2])
        order = np.argsort(k)
        mac16 = (a[:, 3] & 0xFFFF).astype(np.uint16)
        return k[order], mac16[order], a[:, 4].astype(np.uint16)[order]

    def frames_at(self, keys: np.ndarray) -> dict[int, bytes]:
        rows = self._at(keys, "f.device, f.boot, f.seq, f.frame")
        return {(d << 32) | (b << 16) | s: bytes(f) for d, b, s, f in rows}

    def insert_rows(self, rows: pa.Table) -> np.ndarray:
        """INSERT ... ON CONFLICT DO NOTHING in key order (two workers' batches
        lock keys in one order: no deadlock); which rows went in."""
        k = frame_keys(*(rows.column(x).to_numpy() for x in ("device", "boot", "seq")))
        order = np.argsort(k, kind="stable")
        idx = pa.array(order)
        arrays = [rows.column(f.name).take(idx).to_pylist() for f in SCHEMA]
        names = ", ".join(quote(f.name) for f in SCHEMA)
        types = ", ".join(f"%s::{PG_TYPES[f.type]}[]" for f in SCHEMA)
        got = self.conn.execute(
            f"INSERT INTO {NS}.frames ({names}) SELECT * FROM unnest({types}) "
            "ON CONFLICT DO NOTHING RETURNING device, boot, seq",
            arrays,
        ).fetchall()
        self.conn.execute(  # the device-days it touched, in the batch's transaction
            MARK_SQL, [arrays[SCHEMA.names.index(x)] for x in ("device", "ts")]
        )
        if got:  # the count, in the same transaction
            self.conn.execute(COUNT_SQL, [self.writer, len(got)])
        went = {(d << 32) | (b << 16) | s for d, b, s in got}
        return np.array([x in went for x in k.tolist()], bool)
