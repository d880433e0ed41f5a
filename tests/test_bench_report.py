"""benchmarks/report.py: its synthetic export is what jalkal export writes (the
report over it equals build() on the same frames), and a small run works."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest

from jalkal.registry import parse_registry
from jalkal.reports import daily_bulk as daysfast
from jalkal.reports import export as ex
from jalkal.reports.periods import build

REPO = Path(__file__).resolve().parents[1]


def _bench():
    spec = importlib.util.spec_from_file_location(
        "bench_report", REPO / "benchmarks" / "report.py"
    )
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_synthetic_export_reports_like_build(tmp_path):
    b = _bench()
    frames, files = b.generate(tmp_path, 3, 4, "day")
    assert files == len(list(tmp_path.rglob("part-0.parquet"))) and frames > 3 * 4 * 96
    reg = parse_registry(b.registry_csv(3))
    got = ex.load_duckdb(tmp_path)
    d = daysfast.days(got, reg)
    assert d.regular == 3 and not d.fallback
    assert d.table.equals(build(got, reg).days)
    assert sum(d.table.column("complete").to_pylist()) >= 6


@pytest.mark.bench
def test_benchmark_small_run(capsys):
    res = _bench().main(["--devices", "20", "--days", "30", "--json", "--dask"])
    # 4 districts x 2026, and 2025 (the readings start at its last midnight)
    assert res["report_rows"] == 8 and res["dask_same"] is True
    assert res["regular_devices"] == 20
