"""The report's plots (matplotlib, Agg backend, no pyplot state).

    write_plots(rep, "plots/")   # daily_lpcd.png, calendar.png, bands.png

* ``daily_lpcd.png``: one panel per village, lpcd of each complete day with the
  55 lpcd (fully) and 40 lpcd (non at or below) lines; an incomplete day has no
  point (the line breaks there) and a hatched grey band: never a zero.
* ``calendar.png``: one calendar per village, weeks across and Monday..Sunday
  down, each day coloured by its lpcd in the JJM bands' steps; incomplete days are
  grey with a cross, days outside the report blank.
* ``bands.png``: per block (or district), village-days fully / partially / non /
  incomplete as stacked bars.

VillageSeries figures come from ``periods.periods(days, "day", "village")`` (a village
with several meters is their sum, as in every report), band counts from
``periods(days, period, by)`` summed (band_counts: the report's days, or the
calendar days of the page's period table). Colours are the Okabe-Ito palette (told apart
with any colour vision; hatching and crosses repeat what colour says). The output
is deterministic: matplotlib's default style, DejaVu Sans at fixed sizes, fixed
figure sizes and dpi, no software or date in the PNG metadata.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from datetime import date, timedelta
from pathlib import Path
from typing import Any

import pyarrow as pa

from ..errors import JalkalError
from ..fileio import atomic_write
from . import periods as per
from .render import where_label

# Okabe-Ito: distinguishable with any colour vision, and in grey
BLUE = "#0072B2"
GREEN = "#009E73"  # fully
ORANGE = "#E69F00"  # partially
VERMILLION = "#D55E00"  # non
GREY = "#999999"  # incomplete
SKY = "#56B4E9"
BAND_COLOURS = {"fully": GREEN, "partially": ORANGE, "non": VERMILLION}
MAX_VILLAGES = 12  # panels per figure; more villages: the lowest mean lpcd first
DPI = 100
STYLE = {
    "font.family": "DejaVu Sans",
    "font.size": 9,
    "axes.titlesize": 10,
    "axes.labelsize": 9,
    "xtick.labelsize": 8,
    "ytick.labelsize": 8,
    "legend.fontsize": 8,
    "figure.titlesize": 12,
    "hatch.color": GREY,
    "hatch.linewidth": 0.8,
    "svg.hashsalt": "jalkal",
    "path.simplify": False,
}
FILES = ("daily_lpcd.png", "calendar.png", "bands.png")


def mpl() -> Any:
    """matplotlib on the Agg back-end, or a JalkalError saying how to get it."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        return matplotlib
    except ImportError:
        raise JalkalError("--plot needs matplotlib: pip install 'matplotlib>=3.7'")


@contextmanager
def plot_style() -> Iterator[None]:
    """matplotlib's default style with STYLE, for every plot of the reports."""
    lib = mpl()
    import matplotlib.style

    with matplotlib.style.context("default"), lib.rc_context(STYLE):
        yield


def _save(fig: Any, path: Path) -> None:
    atomic_write(
        str(path),
        lambda f: fig.savefig(f, format="png", dpi=DPI, metadata={"Software": None}),
    )


# --- the data -------------------------------------------------------------------


class VillageSeries:
    """One village's days: date -> lpcd (None: incomplete)."""

    def __init__(self, label: str, key: tuple[str, ...]):
        self.label = label
        self.key = key
        self.lpcd: dict[date, float | None] = {}

    def mean(self) -> float:
        xs = [x for x in self.lpcd.values() if x is not None]
        return sum(xs) / len(xs) if xs else -1.0


def villages(days: pa.Table | Sequence[dict[str, Any]]) -> list[VillageSeries]:
    """Every village's days from the daily table (through periods(), so several
    meters of one village are summed exactly as in the reports)."""
    tb = per.periods(days, "day", "village")
    out: dict[tuple[str, ...], VillageSeries] = {}
    for r in tb.to_pylist():
        key = (r["state"] or "", r["district"] or "", r["block"] or "", r["village"])
        v = out.get(key)
        if v is None:
            v = out[key] = VillageSeries(where_label(r, "village"), key)
        v.lpcd[r["start"]] = r["mean_lpcd"] if r["days_complete"] else None
    return [out[k] for k in sorted(out)]


def pick(
    vs: list[VillageSeries], most: int = MAX_VILLAGES
) -> tuple[list[VillageSeries], str]:
    """At most `most` villages (the lowest mean lpcd first when there are more),
    in name order, and a note saying so."""
    if len(vs) <= most:
        return vs, ""
    keep = sorted(vs, key=lambda v: (v.mean(), v.key))[:most]
    keep.sort(key=lambda v: v.key)
    return keep, f" ({most} of {len(vs)} villages: the lowest mean lpcd)"


def _span(vs: list[VillageSeries]) -> tuple[date, date]:
    ds = [d for v in vs for d in v.lpcd]
    return min(ds), max(ds)


# --- plots ----------------------------------------------------------------------


def daily_lpcd(vs: list[VillageSeries], path: str | Path) -> Path:
    """Daily lpcd per village with the 55 and 40 lpcd lines."""
    with plot_style():
        fig = daily_figure(vs)
        out = Path(path)
        _save(fig, out)
    return out


def daily_figure(vs: list[VillageSeries]) -> Any:
    """The figure of daily_lpcd (matplotlib Figure; the series is each panel's
    last line, NaN on incomplete days)."""
    import numpy as np
    from matplotlib import dates as mdates
    from matplotlib.figure import Figure
    from matplotlib.patches import Patch

    from .daily import FULLY_LPCD, NON_LPCD

    show, note = pick(vs)
    if not show:
        raise JalkalError("no days to plot")
    lo, hi = _span(show)
    ndays = (hi - lo).days + 1
    top = max([FULLY_LPCD * 1.3] + [x for v in show for x in v.lpcd.values() if x])
    with plot_style():
        fig = Figure(figsize=(10, 1.2 + 1.6 * len(show)), layout="constrained")
        axes = fig.subplots(len(show), 1, sharex=True, squeeze=False)[:, 0]
        for ax, v in zip(axes, show, strict=True):
            xs = [lo + timedelta(days=i) for i in range(ndays)]
            ys = [v.lpcd.get(d) for d in xs]
            y = np.array([np.nan if x is None else x for x in ys], float)
            x64 = np.array(xs, dtype="datetime64[D]")
            for d in xs:  # incomplete (or missing) days: hatched, no point
                if v.lpcd.get(d) is None:
                    a = np.datetime64(d, "D")
                    ax.axvspan(
                        a - np.timedelta64(12, "h"),
                        a + np.timedelta64(12, "h"),
                        facecolor="#eeeeee",
                        edgecolor=GREY,
                        hatch="///",
                        linewidth=0,
                    )
            ax.axhline(FULLY_LPCD, color=GREEN, linestyle="--", linewidth=1.2)
            ax.axhline(NON_LPCD, color=VERMILLION, linestyle=":", linewidth=1.4)
            ax.plot(x64, y, color=BLUE, marker="o", markersize=3, linewidth=1.2)
            ax.set_ylim(0, top)
            ax.set_ylabel("lpcd")
            ax.set_title(v.label, loc="left")
            ax.grid(True, axis="y", alpha=0.3)
        axes[-1].set_xlabel("local day")
        loc = mdates.AutoDateLocator(maxticks=12)
        axes[-1].xaxis.set_major_locator(loc)
        axes[-1].xaxis.set_major_formatter(mdates.ConciseDateFormatter(loc))
        axes[-1].set_xlim(
            np.datetime64(lo, "D") - np.timedelta64(12, "h"),
            np.datetime64(hi, "D") + np.timedelta64(12, "h"),
        )
        handles = [
            axes[0].lines[-1],
            axes[0].lines[0],
            axes[0].lines[1],
            Patch(facecolor="#eeeeee", edgecolor=GREY, hatch="///", label="x"),
        ]
        labels = [
            "lpcd (complete days)",
            f"{FULLY_LPCD} lpcd: fully",
            f"{NON_LPCD} lpcd: non at or below",
            "incomplete day (no lpcd)",
        ]
        fig.legend(handles, labels, loc="outside lower center", ncols=4)
        fig.suptitle("Litres per person per day, by village" + note)
    return fig


# lpcd steps of the calendar: the JJM edges (40, 55) and steps either side
STEPS = (0, 20, 40, 55, 70, 100)


def calendar(vs: list[VillageSeries], path: str | Path) -> Path:
    """A calendar heat-map of lpcd per village: weeks across, weekdays down."""
    import numpy as np
    from matplotlib.colors import BoundaryNorm, ListedColormap
    from matplotlib.figure import Figure

    show, note = pick(vs)
    if not show:
        raise JalkalError("no days to plot")
    lo, hi = _span(show)
    monday = lo - timedelta(days=lo.weekday())
    weeks = (hi - monday).days // 7 + 1
    # non: dark red, vermillion; partially: orange; fully: green, sky, blue
    cmap = ListedColormap(["#8C2D04", VERMILLION, ORANGE, GREEN, SKY, BLUE])
    norm = BoundaryNorm(STEPS, cmap.N, extend="max")
    with plot_style():
        width = min(16.0, max(7.0, 3.0 + 0.3 * weeks))
        fig = Figure(figsize=(width, 1.0 + 1.6 * len(show)), layout="constrained")
        axes = fig.subplots(len(show), 1, squeeze=False)[:, 0]
        img = None
        for ax, v in zip(axes, show, strict=True):
            grid = np.full((7, weeks), np.nan)
            inc_x, inc_y = [], []
            for i in range((hi - lo).days + 1):
                d = lo + timedelta(days=i)
                w, wd = (d - monday).days // 7, d.weekday()
                x = v.lpcd.get(d)
                if x is None:
                    inc_x.append(w)
                    inc_y.append(wd)
                else:
                    grid[wd, w] = x
            img = ax.imshow(
                np.ma.masked_invalid(grid), cmap=cmap, norm=norm, aspect="auto"
            )
            for w, wd in zip(inc_x, inc_y, strict=True):
                ax.add_patch(_cell(w, wd))
            ax.plot(inc_x, inc_y, linestyle="none", marker="x", color="#444444",
                    markersize=4, markeredgewidth=0.8)  # fmt: skip
            ax.set_yticks(range(7), ["Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun"])
            ticks = [w for w in range(weeks) if w % max(1, weeks // 12) == 0]
            ax.set_xticks(
                ticks, [(monday + timedelta(weeks=w)).strftime("%d %b") for w in ticks]
            )
            ax.set_xlim(-0.5, weeks - 0.5)
            ax.set_ylim(6.5, -0.5)
            ax.set_title(v.label, loc="left")
            ax.tick_params(length=0)
            for s in ax.spines.values():
                s.set_visible(False)
        axes[-1].set_xlabel("week beginning (Monday)")
        assert img is not None
        bar = fig.colorbar(img, ax=list(axes), location="right", shrink=0.9,
                           ticks=STEPS, extend="max")  # fmt: skip
        bar.set_label("lpcd (grey with x: incomplete day)")
        fig.suptitle("Daily lpcd calendar, by village" + note)
        out = Path(path)
        _save(fig, out)
    return out


def _cell(w: int, wd: int) -> Any:
    from matplotlib.patches import Rectangle

    return Rectangle((w - 0.5, wd - 0.5), 1, 1, facecolor="#dddddd",
                     edgecolor="white", linewidth=0.5)  # fmt: skip


def band_counts(
    days: pa.Table | Sequence[dict[str, Any]],
    by: str = "block",
    period: str = "day",
    registry: Any = None,
) -> list[tuple[str, dict[str, int]]]:
    """(label, {fully, partially, non, incomplete}) village-day counts per block
    or district: the period report's days_fully .. days_incomplete
    (periods(days, period, by, registry=registry)) summed over its periods. With
    period "day" these are the report's days; with "month" the calendar days of
    its months, as the month table counts them."""
    tb = per.periods(days, period, by, registry=registry)
    out: dict[str, dict[str, int]] = {}
    for r in tb.to_pylist():
        c = out.setdefault(where_label(r, by), dict.fromkeys(BANDS, 0))
        c["fully"] += r["days_fully"]
        c["partially"] += r["days_partially"]
        c["non"] += r["days_non"]
        c["incomplete"] += r["days_incomplete"]
    return sorted(out.items())


BANDS = ("fully", "partially", "non", "incomplete")


def bands(
    days: pa.Table | Sequence[dict[str, Any]],
    path: str | Path,
    by: str = "block",
    period: str = "day",
    registry: Any = None,
) -> Path:
    """Stacked bars of village-days per band, one bar per block or district
    (the counts of band_counts)."""
    from matplotlib.figure import Figure

    rows = band_counts(days, by, period, registry)
    if not rows:
        raise JalkalError("no days to plot")
    with plot_style():
        fig = Figure(figsize=(10, 1.6 + 0.45 * len(rows)), layout="constrained")
        ax = fig.subplots()
        left = [0] * len(rows)
        ys = list(range(len(rows)))[::-1]
        style = {
            "fully": {"color": GREEN},
            "partially": {"color": ORANGE},
            "non": {"color": VERMILLION},
            "incomplete": {"color": "#dddddd", "hatch": "///", "edgecolor": GREY},
        }
        most = max(sum(c.values()) for _, c in rows) or 1
        for b in BANDS:
            w = [c[b] for _, c in rows]
            st = style[b]
            bars = ax.barh(
                ys, w, left=left, height=0.6, label=b, color=st["color"],
                hatch=st.get("hatch"), edgecolor=st.get("edgecolor"),
            )  # fmt: skip
            ax.bar_label(
                bars, labels=[str(x) if x >= most / 25 else "" for x in w],
                label_type="center",
                fontsize=7, color="black" if b != "non" else "white",
            )  # fmt: skip
            left = [a + x for a, x in zip(left, w, strict=True)]
        ax.set_yticks(ys, [label for label, _ in rows])
        ax.set_xlabel("village-days")
        ax.set_ylabel(by)
        ax.grid(True, axis="x", alpha=0.3)
        fig.legend(loc="outside lower center", ncols=4)
        ax.set_title(f"Days in each JJM band, by {by}")
        out = Path(path)
        _save(fig, out)
    return out


def plot_file(target: str | Path) -> bool:
    """Whether --plot TARGET names the daily lpcd plot alone (FILE.png) rather
    than a folder for every plot; any other extension is refused (the folder
    would be created under that name)."""
    p = Path(target)
    if p.suffix.lower() == ".png":
        return True
    if p.suffix and not p.is_dir():
        raise JalkalError(
            f"--plot takes a folder or a .png file, not {p.name}: the plots are "
            f"PNG images (give {p.with_suffix('.png')} for the daily lpcd plot, "
            f"or a folder such as {p.with_suffix('')} for all three)"
        )
    if p.exists() and not p.is_dir():
        raise JalkalError(f"--plot {p}: a file is there, not a folder")
    return False


def write_plots(
    rep: Any, folder: str | Path, by: str = "village", period: str = "day"
) -> list[Path]:
    """The three plots of a report (periods.Report, or its days table) into
    folder (created). by: the level of the band chart (block unless district or
    state is asked for); period: the periods whose days it counts (band_counts)."""
    days = rep.days if hasattr(rep, "days") else rep
    registry = getattr(rep, "registry", None)
    n = days.num_rows if isinstance(days, pa.Table) else len(days)
    if n == 0:
        raise JalkalError("no days to plot")
    out = Path(folder)
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise JalkalError(f"cannot create {out}: {e.strerror or e}")
    vs = villages(days)
    level = by if by in ("district", "state") else "block"
    return [
        daily_lpcd(vs, out / FILES[0]),
        calendar(vs, out / FILES[1]),
        bands(days, out / FILES[2], level, period, registry),
    ]
