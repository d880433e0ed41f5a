"""A frame a board posts to a running `jalkal serve` changes the village's litres
today on the dashboard within 5 s: a DuckDB store read through the server's
snapshot, and PostgreSQL read directly."""

from __future__ import annotations

import time

import pytest
from test_dashboard_support import (
    Dashboard,
    logged_in,
    post_frames,
    served_village,
    wait_for,
)


def litres(c) -> float | None:  # type: ignore[no-untyped-def]
    return c.get_json("/v1/villages")["villages"][0]["litres_today"]


@pytest.mark.parametrize("backend", ["duckdb", "postgres"])
def test_a_posted_frame_shows_within_5_s(tmp_path, request, backend) -> None:
    if backend == "duckdb":
        store = str(tmp_path / "s.duckdb")
    else:
        from conftest import new_database

        store = new_database(request.getfixturevalue("pg_cluster"))
    srv, reg, users, rest = served_village(tmp_path / "w", store)
    dash = Dashboard(store, reg, users, "--as-of", "latest")
    try:
        dash.start()
        c = logged_in(dash.url)
        before = wait_for(lambda: litres(c), 10)
        # 29 readings of 7 pulses at 100 pulses/m3, from the day's first reading
        assert before == 28 * 70.0, before
        t0 = time.monotonic()
        assert post_frames(srv.http or "", b"".join(rest[:4])) == 200
        after = wait_for(lambda: litres(c) != before and litres(c), 5.0, 0.05)
        took = time.monotonic() - t0
        assert after == 32 * 70.0 and took <= 5.0, (after, took)
        st, _h, html = c.get("/")
        assert st == 200 and b"Rampur" not in html and b"Tonk" not in html
        assert c.get_json("/v1/summary")["total"]["status"]["water"] == 1
    finally:
        dash.stop()
        srv.stop()
