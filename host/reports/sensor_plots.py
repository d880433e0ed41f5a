"""The sensors' plots (the conventions of plots.py: Agg, matplotlib's default style
with plots.STYLE, the Okabe-Ito colours, fixed sizes, no metadata):

* ``sensors_bore.png``: per device, the borewell's depth to water each day (the
  day's range as a bar, 06:00 as a point; deeper is lower) over the tank level's
  range and mean; a day with a sensor fault is hatched grey, a day without a
  value has no bar or point (never a zero).
* ``sensors_quality.png``: per device, the daily median pH between BIS 10500's
  6.5 and 8.5, and TDS against 500 (acceptable) and 2000 mg/L (permissible
  without an alternative source); each point coloured by the day's class.

Written by `jalkal report --plot DIR` (and into --html pages) when the report
has measure frames."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from datetime import date, timedelta
from pathlib import Path
from typing import Any

import pyarrow as pa

from ..errors import JalkalError
from ..fileio import atomic_write
from .measures import PH_MAX, PH_MIN, TDS_ACCEPTABLE, TDS_PERMISSIBLE
from .plots import BLUE, DPI, GREEN, GREY, ORANGE, SKY, VERMILLION, plot_style

FILES = ("sensors_bore.png", "sensors_quality.png")
CLASS_COLOURS = {"acceptable": GREEN, "permissible": ORANGE,
                 "not acceptable": VERMILLION}  # fmt: skip
MAX_DEVICES = 6
CAPTIONS = {
    FILES[0]: "Borewell depth to water each day (bar: the day's range, point: "
    "06:00; deeper is lower) and the tank level's range and mean; hatched: the "
    "sensor in fault.",
    FILES[1]: "Daily median pH and TDS against BIS 10500 (pH 6.5-8.5; TDS 500 "
    "mg/L acceptable, 2000 permissible without an alternative source).",
}


def _rows(days: pa.Table | Sequence[dict[str, Any]]) -> dict[str, list[dict]]:
    rows = days.to_pylist() if isinstance(days, pa.Table) else list(days)
    out: dict[str, list[dict[str, Any]]] = {}
    for r in rows:
        if r.get("sensor_faults") is None:
            continue
        d = r["date"] if isinstance(r["date"], date) else date.fromisoformat(r["date"])
        out.setdefault(f"{r['village']} ({r['device']})", []).append(dict(r, date=d))
    for rs in out.values():
        rs.sort(key=lambda r: r["date"])
    return dict(sorted(out.items())[:MAX_DEVICES])


def has_data(days: pa.Table | Sequence[dict[str, Any]]) -> bool:
    return bool(_rows(days))


def _figure(n: int, per: int) -> tuple[Any, Any]:
    from matplotlib.figure import Figure

    fig = Figure(figsize=(9, 2.6 * n * per), layout="constrained")
    return fig, fig.subplots(n * per, 1, squeeze=False)[:, 0]


def _save(fig: Any, path: Path) -> Path:
    atomic_write(
        str(path),
        lambda f: fig.savefig(f, format="png", dpi=DPI, metadata={"Software": None}),
    )
    return path


def _faults(ax: Any, rs: list[dict[str, Any]], sensor: str) -> None:
    for r in rs:
        if sensor in (r["sensor_faults"] or "").split("|"):
            ax.axvspan(r["date"] - timedelta(days=0.5), r["date"] + timedelta(days=0.5),
                       facecolor="none", edgecolor=GREY, hatch="///", lw=0)  # fmt: skip


def _ranges(ax: Any, rs: list[dict[str, Any]], sensor: str) -> list[dict[str, Any]]:
    """The day's range of a level (bore_min_m..bore_max_m, tank_...) as bars; the
    days that have one."""
    lo, hi = f"{sensor}_min_m", f"{sensor}_max_m"
    got = [r for r in rs if r[lo] is not None]
    ax.bar([r["date"] for r in got], [r[hi] - r[lo] for r in got],
           bottom=[r[lo] for r in got], width=0.6, color=SKY,
           label="day's range")  # fmt: skip
    return got


@contextmanager
def _figures(days: pa.Table | Sequence[dict[str, Any]]) -> Iterator[tuple]:
    """The devices' rows, and a figure of two panels each, in the reports' style."""
    by = _rows(days)
    if not by:
        raise JalkalError("no measure frames to plot")
    with plot_style():
        yield (by, *_figure(len(by), 2))


def bore(days: pa.Table | Sequence[dict[str, Any]], path: str | Path) -> Path:
    """sensors_bore.png (see the module's docstring)."""
    with _figures(days) as (by, fig, axes):
        for k, (label, rs) in enumerate(by.items()):
            ax, tx = axes[2 * k], axes[2 * k + 1]
            _ranges(ax, rs, "bore")
            at = [r for r in rs if r["bore_0600_m"] is not None]
            ax.plot([r["date"] for r in at], [r["bore_0600_m"] for r in at], "o-",
                    color=BLUE, ms=3, lw=1, label="at 06:00")  # fmt: skip
            _faults(ax, rs, "bore")
            ax.invert_yaxis()
            ax.set_ylabel("depth to water, m")
            ax.set_title(f"{label}: borewell")
            ax.legend(loc="lower left")
            got = _ranges(tx, rs, "tank")
            tx.plot([r["date"] for r in got], [r["tank_mean_m"] for r in got], "s",
                    color=BLUE, ms=3, label="day's mean")  # fmt: skip
            _faults(tx, rs, "tank")
            tx.set_ylim(bottom=0)
            tx.set_ylabel("tank level, m")
            tx.set_title(f"{label}: tank")
            tx.legend(loc="lower left")
        return _save(fig, Path(path))


def quality(days: pa.Table | Sequence[dict[str, Any]], path: str | Path) -> Path:
    """sensors_quality.png (see the module's docstring)."""
    with _figures(days) as (by, fig, axes):
        for k, (label, rs) in enumerate(by.items()):
            for ax, key, lines, unit in (
                (axes[2 * k], "ph", (PH_MIN, PH_MAX), "pH"),
                (axes[2 * k + 1], "tds_mgl", (TDS_ACCEPTABLE, TDS_PERMISSIBLE),
                 "TDS, mg/L"),
            ):  # fmt: skip
                got = [r for r in rs if r[key] is not None]
                ax.plot([r["date"] for r in got], [r[key] for r in got], "-",
                        color=GREY, lw=0.8)  # fmt: skip
                for cls, colour in CLASS_COLOURS.items():
                    xs = [r for r in got if r["water_quality"] == cls]
                    if xs:
                        ax.plot([r["date"] for r in xs], [r[key] for r in xs], "o",
                                color=colour, ms=5, label=cls)  # fmt: skip
                top = max((r[key] for r in got), default=0.0)
                styles = ("--", "--") if key == "ph" else ("--", ":")
                for y, style in zip(lines, styles, strict=True):
                    if key == "ph" or y <= 2 * top:  # 2000 mg/L only near the data
                        ax.axhline(y, color=VERMILLION, ls=style, lw=1)
                _faults(ax, rs, "ph" if key == "ph" else "ec")
                ax.set_ylabel(unit)
                ax.set_title(f"{label}: daily median {unit.split(',')[0]}")
                if got:  # a village with no such probe: an empty panel, no legend
                    ax.legend(loc="upper left")
            lo, hi = axes[2 * k + 1].get_ylim()
            axes[2 * k + 1].set_ylim(lo, max(hi, TDS_ACCEPTABLE * 1.05))
        return _save(fig, Path(path))


def write(days: pa.Table | Sequence[dict[str, Any]], folder: Path) -> list[Path]:
    """Both plots into folder, or none when the days have no measure frames."""
    if not has_data(days):
        return []
    return [bore(days, folder / FILES[0]), quality(days, folder / FILES[1])]
