"""jalkal export (the store as Parquet partitioned by date and device) and the
report over it on DuckDB: the same output as the report from the store; the
vectorised daily table (host/daysfast.py) equals periods.build().days."""

from __future__ import annotations

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from scale_util import sim_store, synthetic

from jalkal.cli import main
from jalkal.errors import JalkalError
from jalkal.ingest.store import Store
from jalkal.registry import load_registry, parse_registry
from jalkal.reports import daily_bulk as daysfast
from jalkal.reports import export as ex
from jalkal.reports.periods import build
from jalkal.reports.sources import load_store


@pytest.fixture(scope="module")
def sim(tmp_path_factory):
    root = tmp_path_factory.mktemp("export")
    db, reg = sim_store(root)
    out = root / "pq"
    assert main(["export", "--store", str(db), "--out", str(out)]) == 0
    return root, db, reg, out


def test_export_layout_and_rows(sim, capsys):
    root, db, _reg, out = sim
    with Store(db, read_only=True) as st:
        n, devs = st.count(), st.query("SELECT DISTINCT device FROM frames")
    files = sorted(out.rglob("*.parquet"))
    assert files and all(f.name == "part-0.parquet" for f in files)
    for f in files:
        date, device = f.parent.parent.name, f.parent.name
        assert date.startswith("date=") and len(date) == len("date=2026-03-01")
        assert device.startswith("device=") and len(device) == len("device=0a1b2c3d")
    assert sum(pq.ParquetFile(f).metadata.num_rows for f in files) == n
    assert sorted(ex.devices_in(out)) == sorted(
        f"{d:08x}" for d in devs.column("device").to_pylist()
    )
    # the frames come back as the store has them (raw bytes too)
    back = ex.load_duckdb(out)  # the report's columns, the measure frame's too
    assert back.column_names[: len(daysfast.COLUMNS)] == daysfast.COLUMNS
    assert back.equals(load_store(str(db)).select(back.column_names))
    # refuses to overwrite unless asked; month partitions
    with pytest.raises(JalkalError, match="--overwrite"):
        ex.export(db, out)
    e = ex.export(db, root / "pqm", partition="month")
    assert e.frames == n and e.files == len(list((root / "pqm").rglob("*.parquet")))
    assert {p.parent.parent.name for p in (root / "pqm").rglob("*.parquet")} <= {
        "date=2026-02",
        "date=2026-03",
    }


@pytest.mark.parametrize(
    "args",
    [
        [],
        ["--format", "csv"],
        ["--period", "month", "--by", "block", "--format", "json"],
        ["--period", "week", "--format", "csv"],
    ],
)
def test_report_from_parquet_is_the_report_from_the_store(sim, capsys, args):
    _root, db, reg, out = sim
    assert main(["report", "--store", str(db), "--villages", str(reg), *args]) == 0
    a = capsys.readouterr()
    assert main(["report", "--parquet", str(out), "--villages", str(reg), *args]) == 0
    b = capsys.readouterr()
    assert b.out == a.out and len(a.out) > 200
    # the store's report also says what of its daily aggregates it brought up to date
    agg = "report: daily aggregates:"
    assert b.err == "".join(x for x in a.err.splitlines(True) if not x.startswith(agg))


def test_alerts_from_parquet(sim, capsys):
    _root, db, reg, out = sim
    args = ["--villages", str(reg), "--alerts", "--format", "csv"]
    assert main(["report", "--store", str(db), *args]) == 0
    a = capsys.readouterr().out
    assert main(["report", "--parquet", str(out), *args]) == 0
    assert capsys.readouterr().out == a


def test_sim_villages_regular_and_not(sim):
    _root, db, reg, out = sim
    registry = load_registry(reg)
    d = ex.days_parquet(out, registry)
    want = build(load_store(str(db)), registry)
    assert d.table.equals(want.days)
    assert d.notes == want.notes
    assert d.regular >= 1 and len(d.fallback) >= 1  # the power cuts: report.compute


def test_daysfast_equals_build_on_synthetic_streams():
    frames, text = synthetic()
    reg = parse_registry(text)
    got = daysfast.days(frames, reg)
    want = build(frames, reg)
    assert got.table.equals(want.days), _first_diff(got.table, want.days)
    assert got.notes == want.notes
    assert got.unknown == want.unknown and list(got.unknown) == ["1000000b"]
    # which went where: the irregular ones through report.compute
    assert got.fallback == ["10000003", "10000008", "10000009", "1000000d"]
    assert got.regular == 11
    # rows shuffled: sorted again first, same table
    o = pa.array(list(range(frames.num_rows))[::-1])
    assert daysfast.days(frames.take(o), reg).table.equals(want.days)


def test_daysfast_empty_and_unregistered():
    frames, _ = synthetic(2, 2)
    assert (
        daysfast.days(
            frames.slice(0, 0), parse_registry("device,village,population\n")
        ).table.num_rows
        == 0
    )
    d = daysfast.days(frames, parse_registry("device,village,population\n"))
    assert d.table.num_rows == 0 and len(d.unknown) == 2


def _first_diff(a: pa.Table, b: pa.Table) -> str:
    for x, y in zip(a.to_pylist(), b.to_pylist(), strict=False):
        if x != y:
            return str({k: (x[k], y[k]) for k in x if x[k] != y[k]})
    return f"rows {a.num_rows} vs {b.num_rows}"
