"""Progress on long work: a bar with the time left on a terminal, quiet elsewhere."""

from __future__ import annotations

import io
import time

from jalkal.console import progress


class Tty(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_a_terminal_gets_a_bar_with_the_time_left():
    out = Tty()
    with progress("simulating Hirapur", total=10, file=out) as advance:
        for _ in range(10):
            advance(1)
            time.sleep(0.02)
    text = out.getvalue()
    assert "simulating Hirapur" in text and "left" in text
    assert "\x1b[" in text  # drawn and redrawn in place, not line after line


def test_elsewhere_the_label_once_or_nothing():
    out = io.StringIO()  # a pipe, a log file
    with progress("simulating Hirapur", total=10, file=out) as advance:
        for _ in range(10):
            advance(1)
    assert out.getvalue() == "simulating Hirapur\n"
    out = io.StringIO()
    with progress("reading 3 files", total=10, file=out, label_alone=False) as advance:
        advance(10)
    assert out.getvalue() == ""


def test_a_terminal_can_be_told_no():
    out = Tty()
    with progress("x", total=1, file=out, enabled=False, label_alone=False) as advance:
        advance(1)
    assert out.getvalue() == ""


def test_export_shows_duckdb_progress_on_a_terminal(tmp_path, monkeypatch):
    import sys

    import duckdb
    import pytest

    from jalkal.reports import export

    out = Tty()
    monkeypatch.setattr(sys, "stderr", out)
    con = duckdb.connect()
    con.execute("CREATE TABLE t AS SELECT range AS x FROM range(2000000)")
    dst = tmp_path / "x.parquet"
    export._copy(
        con,
        f"COPY (SELECT x * 2 AS y FROM t ORDER BY x DESC) TO '{dst}' (FORMAT PARQUET)",
        "exporting 2,000,000 frames",
    )
    assert dst.stat().st_size > 0
    assert "exporting 2,000,000 frames" in out.getvalue() and "left" in out.getvalue()
    with pytest.raises(duckdb.Error):  # the worker's failure reaches the caller
        export._copy(con, "COPY (SELECT * FROM nowhere) TO 'x' (FORMAT PARQUET)", "x")
