"""benchmarks/ingest_scale.py on tiny sizes (the figures are in docs/uplink.md; run
the script itself for them): both back-ends pre-filled alike, every measurement
made, the goals judged. Without PostgreSQL the DuckDB half runs and the rest is
skipped with the reason."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))


def test_ingest_scale_quick(capsys):
    import ingest_scale

    assert ingest_scale.main(["--quick", "--json"]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert list(doc["sizes"]) == ["2000", "6000"]
    for per in doc["sizes"].values():
        r = per["DuckDB"]
        assert r["api_p99_ms"] > 0 and r["http_p99_ms"] > 0
        assert r["sustained_1"]["batches"] == 50 and r["sustained_1"]["bps"] > 0
    # the pre-fill, then 30 + 30 latency uploads and 50 hourly batches of 4 frames
    assert doc["sizes"]["2000"]["DuckDB"]["stored_after"] == 2000 + 110 * 4
    assert {"http_p99_ms", "p99_ok", "growth", "growth_ok"} <= set(
        doc["goals"]["DuckDB"]
    )
    if "PostgreSQL" in doc["skipped"]:
        pytest.skip(f"PostgreSQL half: {doc['skipped']['PostgreSQL']}")
    assert doc["same_prefill"] is True  # DuckDB INSERT and PostgreSQL COPY alike
    pg = doc["sizes"]["6000"]["PostgreSQL"]
    assert pg["sustained_1"]["batches"] == pg["sustained_2"]["batches"] == 50
    # the pre-fill, 60 latency uploads, 2 x 50 hourly batches (none of DuckDB's)
    assert doc["sizes"]["2000"]["PostgreSQL"]["stored_after"] == 2000 + 160 * 4
    assert "bps_ok" in doc["goals"]["PostgreSQL"]
