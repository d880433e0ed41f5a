"""Where a report's frames come from: frame files (decoded as one stream) or the
ingest store. Either way the result is the Arrow table of the columns the day rules
read (frames.TABLE_COLUMNS)."""

from __future__ import annotations

from collections.abc import Sequence

import pyarrow as pa

from ..decode.streams import decode_tables
from .frames import TABLE_COLUMNS


def decode_sources(
    paths: Sequence[str], keys: str | None
) -> tuple[pa.Table, dict[str, int]]:
    """The report's columns of every frame of the inputs, as one stream."""
    tables, stats, verified = decode_tables(paths, keys)
    cols = TABLE_COLUMNS + (["verified"] if verified else [])
    return pa.concat_tables([t.select(cols) for t in tables]), stats


def load_store(path: str) -> pa.Table:
    """The report's columns of every frame in a store (jalkal serve's DuckDB file),
    in (device, boot, seq) order: the order each device wrote them. Every stored
    frame passed its MAC check when it was ingested."""
    from ..ingest.store import Store

    with Store(path, read_only=True) as st:
        return st.table([x for x in TABLE_COLUMNS if x != "status"])
