"""The report over Parquet on a local Dask cluster (two workers): the same daily
table, notes and period report as the DuckDB path and the store."""

from __future__ import annotations

import pytest
from scale_util import sim_store

from jalkal.cli import main
from jalkal.registry import load_registry
from jalkal.reports import export as ex
from jalkal.reports.periods import build, periods
from jalkal.reports.sources import load_store

pytest.importorskip("dask.distributed")


@pytest.fixture(scope="module")
def sim(tmp_path_factory):
    root = tmp_path_factory.mktemp("dask")
    db, reg = sim_store(root, days=3)
    out = root / "pq"
    ex.export(db, out)
    return db, reg, out


def test_dask_equals_duckdb_and_store(sim):
    db, reg, out = sim
    registry = load_registry(reg)
    on_duck = ex.days_parquet(out, registry, "duckdb")
    # one device a task, two in-process workers
    on_dask = ex.days_parquet(out, registry, "dask", batch=1, processes=False)
    want = build(load_store(str(db)), registry)
    assert on_dask.table.equals(on_duck.table) and on_duck.table.equals(want.days)
    assert on_dask.notes == on_duck.notes == want.notes
    assert on_dask.regular == on_duck.regular and on_dask.fallback == on_duck.fallback
    for by in ("village", "district"):
        a = periods(on_dask.table, "month", by, registry=registry)
        assert a.equals(periods(want.days, "month", by, registry=registry))


@pytest.mark.slow
def test_cli_dask_local_cluster_of_processes(sim, capsys):
    db, reg, out = sim
    args = ["--villages", str(reg), "--period", "week", "--format", "csv"]
    assert main(["report", "--store", str(db), *args]) == 0
    want = capsys.readouterr().out
    assert main(["report", "--parquet", str(out), "--dask", "local", *args]) == 0
    assert capsys.readouterr().out == want


def test_dask_needs_parquet(sim, capsys):
    db, reg, _out = sim
    assert main(["report", "--store", str(db), "--villages", str(reg),
                 "--dask", "local"]) == 1  # fmt: skip
    assert "--parquet" in capsys.readouterr().err
