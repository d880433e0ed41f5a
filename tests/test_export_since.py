"""`jalkal export --since DATE`: the Parquet export kept current incrementally. New
days are written, a day that got a late frame is rewritten (atomically, as a whole
partition), unchanged days are left alone, a second run writes nothing, and the
result equals a full export of the final store (file by file, and the report over
it equals the report over the store)."""

from __future__ import annotations

import json
import os
from datetime import datetime, timedelta, timezone
from pathlib import Path

import duckdb
import pyarrow.parquet as pq
import pytest
from uplink_util import DEV, DEV2, KEY, KEY2, frames

from jalkal.cli import main
from jalkal.errors import JalkalError
from jalkal.ingest.store import Store, open_store
from jalkal.reports.since import export_since, parse_since

PER_DAY = 96  # readings every 15 minutes
LATE = 150  # the frame of day 2 held back: it arrives after the first export


def keymap() -> dict[str, bytes]:
    return {f"{DEV:08x}": KEY, f"{DEV2:08x}": KEY2}


def lake(root: Path) -> dict[str, object]:
    """Every partition file of an export: relative path -> its rows."""
    return {
        str(f.relative_to(root)): pq.read_table(f).to_pylist()
        for f in sorted(root.rglob("*.parquet"))
    }


def stamp(root: Path) -> dict[str, tuple[int, int]]:
    return {
        str(f.relative_to(root)): (f.stat().st_ino, f.stat().st_mtime_ns)
        for f in root.rglob("*.parquet")
    }


def age(db: Path | str, days: int) -> None:
    """Make every frame stored so far look received `days` days ago."""
    if str(db).startswith("postgresql"):
        import psycopg

        with psycopg.connect(str(db), autocommit=True) as conn:
            conn.execute("UPDATE jalkal.frames SET received = received - "
                         f"INTERVAL '{days} days'")  # fmt: skip
        return
    con = duckdb.connect(str(db))
    con.execute(f"UPDATE frames SET received = received - INTERVAL {days} DAY")
    con.close()


@pytest.fixture(params=["duckdb", "postgresql"])
def store(request, tmp_path) -> str:
    """Both back-ends: PostgreSQL's --since reads only the touched partitions."""
    if request.param == "postgresql":
        return str(request.getfixturevalue("pg_url"))
    return str(tmp_path / "store.duckdb")


def report(capsys, *args: str) -> object:
    assert main(["report", *args, "--format", "json"]) == 0
    return json.loads(capsys.readouterr().out)


@pytest.fixture
def village(tmp_path):
    v = tmp_path / "villages.csv"
    v.write_text(f"device,village,population\n{DEV:08x},Rampur,400\n"
                 f"{DEV2:08x},Sonpur,300\n")  # fmt: skip
    return v


def test_since_writes_new_and_late_days_only_and_equals_a_full_export(
    tmp_path, village, capsys, store
):
    db, out = store, tmp_path / "lake"
    one = frames(4 * PER_DAY)  # days 1-4 of device 1 (a boot, then readings)
    first = one[: 3 * PER_DAY]
    with open_store(db, keymap()) as st:
        body = b"".join(f for i, f in enumerate(first) if i != LATE)
        assert st.ingest(body).stored == len(first) - 1
        assert st.ingest(b"".join(frames(PER_DAY, DEV2, KEY2))).stored == PER_DAY
    age(db, 3)
    assert main(["export", "--store", str(db), "--out", str(out)]) == 0
    capsys.readouterr()
    before = stamp(out)
    assert len(before) == 4  # 3 days of device 1, 1 of device 2

    today = datetime.now(timezone.utc).date().isoformat()
    with open_store(db, keymap()) as st:  # day 4, and the late frame of day 2
        assert st.ingest(b"".join(one[3 * PER_DAY :])).stored == PER_DAY
        assert st.ingest(one[LATE]).stored == 1
    assert main(["export", "--store", str(db), "--out", str(out),
                 "--since", today]) == 0  # fmt: skip
    said = capsys.readouterr().out
    assert "2 partitions written (1 new, 1 rewritten)" in said, said
    after = stamp(out)
    changed = sorted(k for k in after if before.get(k) != after[k])
    assert changed == [
        f"date=2026-03-02/device={DEV:08x}/part-0.parquet",
        f"date=2026-03-04/device={DEV:08x}/part-0.parquet",
    ]

    # the lake equals a full export of the final store, file by file
    full = tmp_path / "full"
    assert main(["export", "--store", str(db), "--out", str(full)]) == 0
    assert lake(out) == lake(full)
    # and the report over it is the report over the store
    capsys.readouterr()
    vil = ["--villages", str(village)]
    assert report(capsys, "--parquet", str(out), *vil) == report(
        capsys, "--store", str(db), *vil
    )
    assert report(capsys, "--parquet", str(out), *vil, "--alerts") == report(
        capsys, "--store", str(db), *vil, "--alerts"
    )

    # a second run writes nothing; an earlier --since compares more, writes nothing
    for since in (today, "2000-01-01"):
        assert main(["export", "--store", str(db), "--out", str(out),
                     "--since", since]) == 0  # fmt: skip
        assert "export: nothing to write since" in capsys.readouterr().out
        assert stamp(out) == after


def test_since_month_partitions_and_frames_without_a_clock(tmp_path, store):
    db, out = store, tmp_path / "lake"
    with open_store(db, keymap()) as st:
        st.ingest(b"".join(frames(PER_DAY)))
    e = export_since(db, out, "2000-01-01", "month")  # a new folder: created
    assert (e.files, e.new, e.unchanged) == (1, 1, 0)
    assert list(out.glob("date=*")) == [out / "date=2026-03"]
    again = export_since(db, out, "2000-01-01", "month")
    assert (again.files, again.unchanged) == (0, 1)
    with pytest.raises(JalkalError, match="partitioned by month: give --partition"):
        export_since(db, out, "2000-01-01", "day")


def test_since_refuses_what_is_not_an_export_and_bad_dates(tmp_path, capsys):
    db = tmp_path / "store.duckdb"
    with Store(db, keymap()) as st:
        st.ingest(b"".join(frames(10)))
    other = tmp_path / "notes"
    other.mkdir()
    (other / "README").write_text("mine")
    with pytest.raises(JalkalError, match="is not a jalkal export"):
        export_since(db, other, "2026-03-01")
    assert (other / "README").read_text() == "mine" and len(os.listdir(other)) == 1
    with pytest.raises(JalkalError, match="--since must be a date"):
        parse_since("yesterday")
    assert parse_since("2026-03-01T05:30+05:30") == "2026-03-01 00:00:00"
    assert main(["export", "--store", str(db), "--out", str(tmp_path / "x"),
                 "--since", "2026-03-01", "--overwrite"]) == 2  # fmt: skip
    assert "leave --overwrite out" in capsys.readouterr().err


def test_since_only_looks_at_frames_received_since(tmp_path):
    """Frames received before DATE are not looked at: a partition the export lacks
    whose frames are all older is not written (make the first export in full)."""
    db, out = tmp_path / "store.duckdb", tmp_path / "lake"
    with Store(db, keymap()) as st:
        st.ingest(b"".join(frames(PER_DAY)))
    age(db, 10)
    later = (datetime.now(timezone.utc) - timedelta(days=1)).date().isoformat()
    e = export_since(db, out, later)
    assert (e.files, e.unchanged, e.frames) == (0, 0, 0)
