"""The SQL of the daily aggregates (aggregates.py) on either store back-end: the
tables, and a refresh's one transaction."""

from __future__ import annotations

from collections.abc import Callable
from contextlib import suppress
from typing import Any

import pyarrow as pa

from ..ingest.store import FrameStore, is_postgres
from .period_sql import MONTHS_SCHEMA
from .periods import DAY_SCHEMA

TOUCHED = "jalkal_touched"  # the marks of the ingest (store.py, pgstore.py)
DAYS = "jalkal_days"
DEVICES = "jalkal_agg_devices"
MONTHS = "jalkal_agg_months"  # each device's months (period_sql.device_months)
META = "jalkal_agg_meta"
PG_LOCK = 0x6A6B6167  # pg_advisory_xact_lock: one refresh at a time
_DUCK = {pa.string(): "VARCHAR", pa.date32(): "DATE", pa.float64(): "DOUBLE",
         pa.int64(): "BIGINT", pa.bool_(): "BOOLEAN"}  # fmt: skip
_PG = {pa.string(): "text", pa.date32(): "date", pa.float64(): "double precision",
       pa.int64(): "bigint", pa.bool_(): "boolean"}  # fmt: skip
Steps = list[tuple[str, list[Any]]]
# what a refresh writes, given the devices whose marks changed since it read them
Plan = Callable[[set[int]], tuple[Steps, list[tuple[str, pa.Table]]]]


class Db:
    """The few statements the aggregates need, on either back-end (DuckDB's ``?``
    placeholders or PostgreSQL's ``%s``; unqualified names: a PgStore's search
    path is its schema)."""

    def __init__(self, st: FrameStore):
        self.st = st
        self.pg = is_postgres(getattr(st, "url", "") or "")
        self.p = "%s" if self.pg else "?"

    def tables(self) -> set[str]:
        if self.pg:
            tb = self.st.query(
                "SELECT table_name FROM information_schema.tables "
                "WHERE table_schema = current_schema()"
            )
        else:
            tb = self.st.query("SELECT table_name FROM information_schema.tables")
        return {str(x) for x in tb.column(0).to_pylist()}

    def read(self, sql: str, params: list[Any] | None = None) -> pa.Table:
        return self.st.query(sql.replace("?", self.p), params)

    def read_as(
        self,
        table: str,
        names: list[str],
        where: str = "",
        params: list[Any] | None = None,
    ) -> pa.Table:
        """Columns of one of our tables (aliased: a PgStore gives a column named
        as a frames column that column's type)."""
        cols = ", ".join(f'"{n}" AS "a_{n}"' for n in names)
        tb = self.read(f"SELECT {cols} FROM {table} {where}", params)
        return tb.rename_columns(names)

    def create_sql(self, drop: bool) -> list[str]:
        types = _PG if self.pg else _DUCK
        cols = ", ".join(f'"{f.name}" {types[f.type]}' for f in DAY_SCHEMA)
        mcols = ", ".join(f'"{f.name}" {types[f.type]}' for f in MONTHS_SCHEMA)
        text = "text" if self.pg else "VARCHAR"
        return [
            *(
                [f"DROP TABLE IF EXISTS {t}" for t in (DAYS, DEVICES, MONTHS)]
                if drop
                else []
            ),
            f"CREATE TABLE IF NOT EXISTS {DAYS} ({cols}, PRIMARY KEY (device, date))",
            f"CREATE TABLE IF NOT EXISTS {MONTHS} ({mcols}, "
            "PRIMARY KEY (device, s, di, b, v, p))",
            f"CREATE TABLE IF NOT EXISTS {DEVICES} (device {text} PRIMARY KEY, "
            f"info {text} NOT NULL, timeline {text} NOT NULL)",
            f"CREATE TABLE IF NOT EXISTS {META} (key {text} PRIMARY KEY, "
            f"value {text} NOT NULL)",
        ]

    def marks_read(self) -> str:
        """The marks a refresh read, (device, day, batch) arrays as parameters,
        as a relation s(d, day, b)."""
        if self.pg:
            return "unnest(%s::bigint[], %s::date[], %s::bigint[]) AS s(d, day, b)"
        return ("(SELECT unnest(?::BIGINT[]) AS d, unnest(?::DATE[]) AS day, "
                "unnest(?::BIGINT[]) AS b) s")  # fmt: skip

    def delete_marks_sql(self) -> str:
        seen = self.marks_read()
        return (f"DELETE FROM {TOUCHED} t USING {seen} WHERE t.device = s.d "
                "AND t.day = s.day AND t.batch = s.b")  # fmt: skip

    def remark_sql(self) -> str:
        """Mark devices again (their rows are recomputed by the next refresh)."""
        devs = "unnest(%s::bigint[]) AS x(d)" if self.pg else (
            "(SELECT unnest(?::BIGINT[]) AS d) x")  # fmt: skip
        return (
            f"INSERT INTO {TOUCHED} (device, day, batch) SELECT d, DATE '1970-01-01', "
            f"nextval('{TOUCHED}_batch') FROM {devs} "
            "ON CONFLICT (device, day) DO UPDATE SET batch = excluded.batch"
        )

    def lost_sql(self) -> str:
        """Which of the marks read (device, day, batch) are no longer there as
        read: another refresh consumed them, or a batch marked the day again."""
        seen = self.marks_read()
        return (f"SELECT DISTINCT s.d FROM {seen} LEFT JOIN {TOUCHED} t ON "
                "t.device = s.d AND t.day = s.day AND t.batch = s.b "
                "WHERE t.device IS NULL")  # fmt: skip

    def write(self, plan: Plan, marks: pa.Table | None = None) -> None:
        """In one transaction: the devices whose marks changed since they were
        read (lost_sql), then plan(those devices)'s statements and the rows of
        its tables. A device another refresh wrote meanwhile keeps that refresh's
        rows (computed from as many frames or more); one marked again is
        recomputed by the next refresh."""
        args = [[], [], []] if marks is None else [
            marks[x].to_pylist() for x in ("device", "day", "batch")
        ]  # fmt: skip
        if self.pg:
            self._write_pg(args, plan)
            return
        con = self.st.con
        with self.st.lock:
            con.execute("BEGIN")
            try:
                lost = set()
                if args[0]:
                    lost = {int(r[0]) for r in con.execute(self.lost_sql(), args)
                            .fetchall()}  # fmt: skip
                steps, tables = plan(lost)
                for sql, params in steps:
                    con.execute(sql, params or None)
                for name, tb in tables:
                    con.register("jalkal_agg_rows", tb)
                    try:
                        con.execute(
                            f"INSERT INTO {name} BY NAME SELECT * FROM jalkal_agg_rows"
                        )
                    finally:
                        with suppress(Exception):  # an aborted transaction: the
                            con.unregister("jalkal_agg_rows")  # error is the insert's
                con.execute("COMMIT")
            except BaseException:
                try:
                    con.execute("ROLLBACK")
                except Exception:  # a failed COMMIT has ended it
                    pass
                raise

    def _write_pg(self, args: list[list[Any]], plan: Plan) -> None:
        st: Any = self.st
        with st.lock:
            conn = st.live()
            try:
                with conn.cursor() as cur:
                    cur.execute("SELECT pg_advisory_xact_lock(%s)", [PG_LOCK])
                    lost = set()
                    if args[0]:
                        cur.execute(self.lost_sql(), args)
                        lost = {int(r[0]) for r in cur.fetchall()}
                    steps, tables = plan(lost)
                    for sql, params in steps:
                        cur.execute(sql.replace("?", "%s"), params or None)
                    for name, tb in tables:
                        names = ", ".join(f'"{n}"' for n in tb.column_names)
                        with cur.copy(f"COPY {name} ({names}) FROM STDIN") as cp:
                            for row in zip(
                                *(c.to_pylist() for c in tb.columns), strict=True
                            ):
                                cp.write_row(row)
                conn.commit()
            except BaseException:
                try:
                    conn.rollback()
                except Exception:
                    pass
                raise
