"""A PostgreSQL store's frames read fast and in bounded memory, for the readers that
want them all (``export``, ``export --since``, DuckDB SQL over the store).

Fetching every decoded column row by row through the driver makes a Python object
per value: about 60 per frame, an hour and tens of GB at 100 M frames. The decoded
columns are a function of the frame's bytes (the store's columns are what
``jalkal.decode.bulk.decode`` gives for them, nothing else parses frames), so only
the bytes, ``received`` and ``via`` are read, as CSV from ``COPY … TO STDOUT``
(hex bytes, parsed by pyarrow's CSV reader), and decoded again in bulk; a chunk
whose bytes do not decode to exactly its rows is read column by column instead.
Devices are read a group at a time (about CHUNK_ROWS frames), in (device, boot,
seq) order, through the primary key."""

from __future__ import annotations

import binascii
import io
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa

from ..decode import bulk
from ..errors import JalkalError
from .batch import SCHEMA, quote, rows_of

CHUNK_ROWS = 500_000


def device_groups(devices: np.ndarray, frames: int, rows: int | None = None) -> list:
    """The store's devices (sorted, distinct) in groups of about `rows` frames
    (CHUNK_ROWS), from the mean frames per device."""
    rows = rows or CHUNK_ROWS
    devs = [int(d) for d in np.unique(devices)]
    if not devs:
        return []
    per = max(1, rows * len(devs) // max(frames, 1))
    return [devs[i : i + per] for i in range(0, len(devs), per)]


def decoded(hex_frames: Any) -> tuple[bytes, pa.Table] | None:
    """The frames' bytes back to back and their bulk decode, or None when they do
    not decode to exactly one frame each, in order."""
    hx = hex_frames
    if isinstance(hx, pa.ChunkedArray):
        hx = hx.combine_chunks()
    n = len(hx)
    offs = np.frombuffer(hx.buffers()[1], np.int32, n + 1, hx.offset * 4)
    data = hx.buffers()[2]
    if data is None or n == 0:
        return None
    body = binascii.unhexlify(memoryview(data)[int(offs[0]) : int(offs[-1])])
    tb = bulk.decode(body).table
    starts = (offs[:-1] - offs[0]) // 2
    if tb.num_rows != n or not np.array_equal(tb.column("offset").to_numpy(), starts):
        return None
    status = tb.column("status").combine_chunks().indices.to_numpy()
    if (status != 0).any():
        return None
    return body, tb


def chunk(store: Any, devices: list[int]) -> pa.Table:
    """The frames of these devices as the store's columns, (device, boot, seq)
    order."""
    ids = ",".join(str(int(d)) for d in devices)
    return where(store, f"device = ANY(ARRAY[{ids}]::bigint[])")


def since(store: Any, when: str, unit: str) -> pa.Table:
    """Every frame of the (device, day or month of ts) a frame received at or after
    `when` (UTC) belongs to: the partitions `export --since` rewrites."""
    ns, u = store.namespace, "month" if unit == "month" else "day"
    return where(
        store,
        f"EXISTS (SELECT 1 FROM (SELECT DISTINCT device AS d, date_trunc('{u}', ts) "
        f"AS p FROM {ns}.frames WHERE received >= %s::timestamp) c WHERE "
        f"c.d = f.device AND c.p IS NOT DISTINCT FROM date_trunc('{u}', f.ts))",
        [when],
    )


def where(store: Any, cond: str, params: list[Any] | None = None) -> pa.Table:
    """The frames where `cond` (SQL on ``frames f``) holds, as the store's
    columns, (device, boot, seq) order."""
    from pyarrow import csv

    ns = store.namespace
    sql = (
        f"COPY (SELECT encode(frame, 'hex'), extract(epoch FROM received)::bigint, "
        f"via FROM {ns}.frames f WHERE {cond} ORDER BY device, boot, seq) "
        "TO STDOUT (FORMAT csv)"
    )
    buf = io.BytesIO()
    with store.lock:
        conn = store.live()
        with conn.cursor() as cur, cur.copy(sql, params) as cp:
            for data in cp:
                buf.write(data)
        if not store.read_only:
            conn.commit()
    if buf.tell() == 0:
        return SCHEMA.empty_table()
    buf.seek(0)
    raw = csv.read_csv(
        buf,
        read_options=csv.ReadOptions(column_names=["hex", "received", "via"]),
        convert_options=csv.ConvertOptions(
            column_types={
                "hex": pa.string(),
                "received": pa.int64(),
                "via": pa.string(),
            }  # fmt: skip
        ),
    )
    got = decoded(raw.column("hex"))
    if got is None:  # not what bulk.decode makes of them: read the columns
        cols = ", ".join(quote(x) for x in SCHEMA.names)
        return store.query(
            f"SELECT {cols} FROM {ns}.frames f WHERE {cond} ORDER BY device, boot, seq",
            params,
        )
    body, tb = got
    rows = rows_of(tb, body, np.arange(tb.num_rows), "")
    received = raw.column("received").to_numpy().astype("datetime64[s]")
    rows = rows.set_column(
        SCHEMA.get_field_index("received"), "received",
        pa.array(received, pa.timestamp("s")),
    )  # fmt: skip
    return rows.set_column(
        SCHEMA.get_field_index("via"), "via", raw.column("via").cast(pa.string())
    )


def chunks(store: Any) -> Iterator[pa.Table]:
    """Every stored frame, a group of devices at a time."""
    devices, _ = store.distinct_boots()
    for group in device_groups(devices, store.count()):
        yield chunk(store, group)


def to_duckdb(store: Any) -> tuple[Any, tempfile.TemporaryDirectory]:
    """A DuckDB connection on a temporary file holding the store's ``frames``
    (filled a chunk at a time: memory stays bounded, DuckDB spills to the file).
    Returns the connection and the folder (a TemporaryDirectory: clean it up
    after closing the connection)."""
    import duckdb

    tmp = tempfile.TemporaryDirectory(prefix="jalkal-pg-")
    con = duckdb.connect(str(Path(tmp.name) / "frames.duckdb"))
    con.register("jalkal_empty", SCHEMA.empty_table())
    con.execute("CREATE TABLE frames AS SELECT * FROM jalkal_empty")
    con.unregister("jalkal_empty")
    for tb in chunks(store):
        con.register("jalkal_chunk", tb)
        con.execute("INSERT INTO frames SELECT * FROM jalkal_chunk")
        con.unregister("jalkal_chunk")
    return con, tmp


ASIDE_TIMEOUT_S = 10  # connecting for a read aside (as pgstore's own connection)


def aside(store: Any, sql: str, params: list[Any] | None) -> list[tuple]:
    """Rows of a read on a connection of its own (no batch of the store's
    connection waits for it)."""
    import psycopg

    try:
        with psycopg.connect(store.url, autocommit=True,
                             connect_timeout=ASIDE_TIMEOUT_S) as c:  # fmt: skip
            return c.execute(sql, params).fetchall()
    except psycopg.Error as e:
        raise JalkalError(f"the store failed: {store.say(e)}")


def heard_since(store: Any, since: float | None) -> list[tuple[int, float]]:
    """(device, Unix time its last frame was received) over the frames received
    at or after `since` (Unix time; None: every frame, a read of the whole
    table): a recent `since` reads a few pages through the BRIN index on
    received (pgstore.heard_sql)."""
    cond, params = "", None
    if since is not None:
        cond = "WHERE received >= to_timestamp(%s) AT TIME ZONE 'UTC'"
        params = [float(since)]
    sql = (f"SELECT device, extract(epoch FROM max(received))::float8 FROM "
           f"{store.namespace}.frames {cond} GROUP BY device")  # fmt: skip
    rows = aside(store, sql, params)
    return [(int(d), float(t)) for d, t in rows if t is not None]


def have_frames(store: Any, devices: list[int]) -> set[int]:
    """Which of these devices have a frame stored: a probe of the primary key
    each."""
    rows = aside(store, "SELECT x.d FROM unnest(%s::bigint[]) AS x(d) WHERE EXISTS "
                 f"(SELECT 1 FROM {store.namespace}.frames f WHERE f.device = x.d)",
                 [devices])  # fmt: skip
    return {int(r[0]) for r in rows}
