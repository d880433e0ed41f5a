"""A store written before the `measure` frame (schema version 1) is upgraded when
opened read-write: its frames kept, the new columns added, measure frames stored;
a reader of an old store is told how to upgrade it. Both back-ends."""

from __future__ import annotations

import pytest
from uplink_util import DEV, KEY, T0, frames

from jalkal.errors import JalkalError
from jalkal.ingest.batch import ADDED_COLUMNS, SCHEMA_VERSION
from jalkal.ingest.store import open_store
from jkproto import codec as c

KEYS = {f"{DEV:08x}": KEY}
EVERY = (4210, 3790, 1840, 9250, 812, 520, 721, 2650, 7940, 1, 2310, 1890, 1270, 0,
         600)  # fmt: skip


def measure_frame() -> bytes:
    """The frame after frames(3) in the same chain: a measure frame."""
    enc = c.Encoder(DEV, KEY, boot=1)
    for i in range(3):  # as uplink_util.frames writes them
        t = T0 + 900 * i
        if i == 0:
            enc.frame(c.BOOT, t, 2, 1, 1, 2, 3, 900, 100, 100)
        else:
            enc.frame(c.READING, t, 2, 10 * i, 7 * i, 300, 0x18, 124, 20)
    return bytes(enc.frame(c.MEASURE, T0 + 2700, 2, *EVERY))


def make_v1(where: str) -> bytes:
    """A store as the previous jalkal made it: no measure columns, version 1."""
    body = b"".join(frames(3))
    with open_store(where, KEYS) as st:
        assert st.ingest(body).stored == 3
    assert "bore_depth_cm" in ADDED_COLUMNS["2"] and len(ADDED_COLUMNS["2"]) == 14
    added = ADDED_COLUMNS["2"] + ADDED_COLUMNS["3"]  # and version 3's motor_s
    if where.startswith("postgresql"):
        import psycopg

        with psycopg.connect(where, autocommit=True) as conn:
            for name in added:
                conn.execute(f'ALTER TABLE jalkal.frames DROP COLUMN "{name}"')
            conn.execute(
                "UPDATE jalkal.jalkal_meta SET value = '1' WHERE key = 'schema_version'"
            )
    else:
        import duckdb

        con = duckdb.connect(where)  # version 1's table: PRIMARY KEY (device,
        con.execute("ALTER TABLE frames RENAME TO newer")  # boot, seq), no frame_key
        cols = [r[0] for r in con.execute("DESCRIBE newer").fetchall()]
        keep = [x for x in cols if x not in added and x != "frame_key"]
        types = dict(con.execute("SELECT column_name, column_type FROM "
                                 "(DESCRIBE newer)").fetchall())  # fmt: skip
        con.execute(
            "CREATE TABLE frames ("
            + ", ".join(f'"{x}" {types[x]}' for x in keep)
            + ", PRIMARY KEY (device, boot, seq))"
        )
        names = ", ".join(f'"{x}"' for x in keep)
        con.execute(f"INSERT INTO frames SELECT {names} FROM newer")
        con.execute("DROP TABLE newer")
        con.execute("UPDATE jalkal_meta SET value = '1' WHERE key = 'schema_version'")
        con.close()
    return body


@pytest.fixture(params=["duckdb", "postgresql"])
def where(request, tmp_path) -> str:
    if request.param == "postgresql":
        return str(request.getfixturevalue("pg_url"))
    return str(tmp_path / "s.duckdb")


def test_an_old_store_is_upgraded_and_takes_measure_frames(where):
    body = make_v1(where)
    with pytest.raises(JalkalError, match="schema version 1.*upgrade"):
        open_store(where, read_only=True).close()
    with open_store(where, KEYS) as st:  # read-write: upgraded in one transaction
        assert st.raw_stream() == body  # the old frames, byte for byte
        m = measure_frame()
        res = st.ingest(m)
        assert res.stored == 1, res.summary()
        again = st.ingest(body + m)  # found again through the upgraded key index
        assert (again.stored, again.duplicate) == (0, 4), again.summary()
        tb = st.table(["seq", "kind", "bore_depth_cm", "tank_l", "motor_s"])
        assert tb.column("bore_depth_cm").to_pylist() == [None, None, None, 3790]
        assert tb.column("tank_l").to_pylist()[-1] == 9250
        assert tb.column("motor_s").to_pylist() == [None, None, None, 600]
    with open_store(where, read_only=True) as st:  # now a reader opens it
        assert st.count() == 4
        if not where.startswith("postgresql"):  # every old frame got its key
            got = st.query(
                "SELECT count(*) AS n FROM frames WHERE frame_key = "
                "(device::UBIGINT << 32) | (boot::UBIGINT << 16) | seq"
            )
            assert got.column("n").to_pylist() == [4]
    assert SCHEMA_VERSION == "3"
