"""The report's plots: three PNGs, byte-identical on every run, incomplete days
never drawn as zero, the band counts the period report's."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scale_util import synthetic

from jalkal.cli import main
from jalkal.registry import parse_registry
from jalkal.reports import daily_bulk as daysfast
from jalkal.reports import plots
from jalkal.reports.periods import periods

pytest.importorskip("matplotlib")


@pytest.fixture(scope="module")
def days():
    frames, text = synthetic(8, 10)
    return daysfast.days(frames, parse_registry(text)).table


def _png(path):
    from PIL import Image

    with Image.open(path) as im:
        return im.size, np.asarray(im.convert("RGB")), dict(im.info)


def test_three_pngs_deterministic(days, tmp_path):
    a = plots.write_plots(days, tmp_path / "a")
    b = plots.write_plots(days, tmp_path / "b")
    assert [p.name for p in a] == list(plots.FILES)
    for x, y in zip(a, b, strict=True):
        assert x.read_bytes() == y.read_bytes(), x.name
        size, px, info = _png(x)
        assert "Software" not in info and not any("date" in k.lower() for k in info)
        assert size[0] >= 700 and size[1] >= 200
        # not blank: many pixels off the white background
        assert (px.min(axis=2) < 200).mean() > 0.01, x.name


def test_incomplete_days_are_gaps_not_zero(days):
    vs = plots.villages(days)
    v = next(v for v in vs if any(x is None for x in v.lpcd.values()))
    lo, hi = plots._span([v])
    none = [d for d, x in v.lpcd.items() if x is None]
    fig = plots.daily_figure([v])
    line = fig.axes[0].lines[-1]
    ys = np.asarray(line.get_ydata(), float)
    xs = [
        lo + __import__("datetime").timedelta(days=i) for i in range((hi - lo).days + 1)
    ]
    for d, y in zip(xs, ys, strict=True):
        if d in none or d not in v.lpcd:
            assert math.isnan(y)
        else:
            assert y == v.lpcd[d] and y > 0


def test_band_counts_are_the_period_reports(days):
    got = dict(plots.band_counts(days, "block"))
    tb = periods(days, "day", "block").to_pylist()
    for label, c in got.items():
        rows = [
            r for r in tb if f"{r['block']} (" in label and label.startswith(r["block"])
        ]
        assert c["fully"] == sum(r["days_fully"] for r in rows)
        assert c["incomplete"] == sum(r["days_incomplete"] for r in rows)
    pairs = set(zip(days["village"].to_pylist(), days["date"].to_pylist(), strict=True))
    assert sum(sum(c.values()) for c in got.values()) == len(pairs)


def test_pick_lowest_when_many():
    vs = [plots.VillageSeries(f"v{i}", ("", "", "", f"v{i:02d}")) for i in range(20)]
    for i, v in enumerate(vs):
        v.lpcd = {__import__("datetime").date(2026, 3, 1): float(100 - i)}
    keep, note = plots.pick(vs, 5)
    assert [v.label for v in keep] == ["v15", "v16", "v17", "v18", "v19"]
    assert "5 of 20" in note


def test_cli_plot_dir(tmp_path, capsys):
    frames, text = synthetic(8, 4)
    import pyarrow.parquet as pq

    pq.write_table(frames, tmp_path / "f.parquet")
    (tmp_path / "v.csv").write_text(text)
    # a folder from a Parquet export is tested in test_html; here the API's
    out = tmp_path / "plots"
    plots.write_plots(daysfast.days(frames, parse_registry(text)).table, out)
    assert sorted(p.name for p in out.iterdir()) == sorted(plots.FILES)
    assert main(["report", "--parquet", str(tmp_path / "nope"), "--villages",
                 str(tmp_path / "v.csv"), "--plot", str(out)]) == 1  # fmt: skip
    assert "no such folder" in capsys.readouterr().err
