"""`jalkal report ... --html DIR`: a static report page.

DIR/index.html and the plots beside it (plots.py, sensor_plots.py). Plain HTML
and CSS in one file: no JavaScript, no fonts or styles from the network, images
by relative path, so the folder opens from a USB stick in any browser without a
server (``file://``). The page holds: what the report covers, the period table
(--period, default month, --by), the plots, the band counts per block (over the
days of the period table, so that the two agree), the sensors of each village
with measure frames (sensor_section), the alerts when --alerts is given, the
daily rows (up to MAX_DAILY), and the notes. DIR is new, empty or an earlier
page's (page_folder): nothing else in it is overwritten.
Nothing on it depends on the time it was made, so the same data gives the same
bytes.
"""

from __future__ import annotations

import html
import struct
from collections.abc import Mapping, Sequence
from datetime import date
from pathlib import Path
from typing import Any

import pyarrow as pa

from ..errors import JalkalError
from ..fileio import atomic_write
from . import periods as per
from . import plots, sensor_plots
from . import sensor_view as sv
from .render import where_label

MAX_DAILY = 1000  # daily rows on the page; more: the CSV output has them

CSS = """
body { font-family: "DejaVu Sans", Verdana, Arial, sans-serif; margin: 1.5em auto;
       max-width: 1100px; padding: 0 1em; color: #111; background: #fff; }
h1 { font-size: 1.6em; margin-bottom: 0.2em; }
h2 { font-size: 1.25em; margin-top: 1.6em; border-bottom: 2px solid #0072B2; }
p.lead { color: #333; margin-top: 0; }
table { border-collapse: collapse; margin: 0.5em 0; font-size: 0.85em; }
th, td { border: 1px solid #bbb; padding: 0.2em 0.5em; text-align: left; }
th { background: #e8f1f8; }
td.n { text-align: right; font-variant-numeric: tabular-nums; }
tr:nth-child(even) td { background: #f6f6f6; }
.fully { color: #006F50; font-weight: bold; }
.partially { color: #8A5A00; font-weight: bold; }
.non { color: #B34700; font-weight: bold; }
.incomplete { color: #555; font-style: italic; }
figure { margin: 1em 0; }
figure img { max-width: 100%; height: auto; border: 1px solid #ddd; }
figcaption { font-size: 0.9em; color: #333; }
ul.notes { font-size: 0.9em; color: #333; }
div.wide { overflow-x: auto; }
td.d { white-space: nowrap; }
.over { color: #8A5A00; font-weight: bold; background: #FDF1D6 !important; }
.out { color: #B34700; font-weight: bold; background: #FBE3D6 !important; }
.fault { color: #555; font-style: italic; background: #E9E9E9 !important; }
"""


def _png_size(path: Path) -> tuple[int, int]:
    head = path.read_bytes()[:24]
    w, h = struct.unpack(">II", head[16:24])
    return int(w), int(h)


def _cell(x: Any, spec: str = "") -> tuple[str, bool]:
    """(text, numeric)."""
    if x is None:
        return "–", False
    if isinstance(x, bool):
        return ("yes" if x else "no"), False
    if isinstance(x, (int, float)):
        return format(x, spec), True
    if isinstance(x, date):
        return x.isoformat(), False
    return str(x), False


def table_html(
    head: Sequence[str], rows: Sequence[Sequence[Any]], cls: Sequence[str] = ()
) -> str:
    """A table; a value is text, a number, None (–) or (text, css class)."""
    out = ["<table>", "<thead><tr>"]
    out += [f"<th>{html.escape(h)}</th>" for h in head]
    out.append("</tr></thead><tbody>")
    for r in rows:
        out.append("<tr>")
        for x in r:
            klass = ""
            if isinstance(x, tuple):
                x, klass = x
            text, num = _cell(x)
            attrs = []
            if num:
                klass = (klass + " n").strip()
            if klass:
                attrs.append(f' class="{klass}"')
            out.append(f"<td{''.join(attrs)}>{html.escape(text)}</td>")
        out.append("</tr>")
    out.append("</tbody></table>")
    return "\n".join(out)


def _band(b: str | None) -> tuple[str, str]:
    return (b, b) if b else ("incomplete", "incomplete")


def period_section(tb: pa.Table, by: str) -> str:
    head = [
        "period", by, "complete days", "litres", "mean lpcd", "fully", "partially",
        "non", "incomplete", "class", "note",
    ]  # fmt: skip
    rows = []
    for r in tb.to_pylist():
        cls: Any
        if by == "village":
            cls = (
                _band(r["functionality"]) if r["functionality"] else "insufficient data"
            )
        else:
            cls = (
                f"villages {r['villages_fully']} fully, {r['villages_partially']} "
                f"partially, {r['villages_non']} non, {r['villages_insufficient']} "
                "insufficient data"
            )
        rows.append(
            [
                r["period"], where_label(r, by),
                f"{r['days_complete']} of {r['days']}", r["litres"], r["mean_lpcd"],
                r["days_fully"], r["days_partially"], r["days_non"],
                r["days_incomplete"], cls, r["note"] or "",
            ]
        )  # fmt: skip
    return table_html(head, rows)


def sensor_section(
    rep: Any,
    period: str,
    min_complete: float,
    quality: Mapping[tuple[str, ...], list[tuple[date, bool]]] | None,
) -> list[str]:
    """The sensors of each village with measure frames, as `jalkal report` prints
    them (sensor_view.py): the daily columns and the period's; BIS 10500 marks
    on the cells out of limits. Nothing for a report without measure frames."""
    days = sv.sensor_days(rep.days.to_pylist())
    if not days:
        return []
    tb = per.periods(
        rep.days, period, "village", min_complete=min_complete, quality=quality,
        registry=rep.registry,
    )  # fmt: skip
    by_village: dict[tuple[str, ...], list[Mapping[str, Any]]] = {}
    for r in days:
        by_village.setdefault(_village_key(r), []).append(r)
    periods = tb.to_pylist()
    out = [
        '<h2 id="sensors">Sensors</h2>',
        "<p>The measure frames of each village with sensors: each device's day "
        "(borewell depth to water below ground, m; tank level; medians of pH, TDS, "
        "EC and water temperature; the motor's own hours beside the relay's pump "
        "hours; the sensors in fault) and each "
        f"{html.escape(period)}. BIS 10500: "
        '<span class="over">permissible</span> (TDS above 500 mg/L, at most 2000: '
        'only where there is no other source), <span class="out">not '
        "acceptable</span> (pH outside 6.5&ndash;8.5 or TDS above 2000 mg/L); "
        '<span class="fault">fault</span>: a sensor read a fault that day '
        "(no value: &ndash;).</p>",
    ]
    if len(days) > MAX_DAILY:
        out.append(
            f"<p>{len(days)} device-days with sensors: too many for a page; "
            "<code>jalkal report ... --format csv</code> gives them all; the "
            f"{html.escape(period)} tables follow.</p>"
        )
    day_head = ["device", "date", *(h for h, _k, _p in sv.DAY_VIEW)]
    per_head = ["period", *(h for h, _k, _p in sv.PERIOD_VIEW)]
    for key, mine in sorted(by_village.items()):
        dates = {r["date"] for r in mine}
        rows = [  # the village's periods with measure frames
            r for r in periods
            if _village_key(r) == key and any(r["start"] <= d < r["end"] for d in dates)
        ]  # fmt: skip
        out.append(f'<div class="sensors"><h3>{html.escape(where_label(mine[0]))}</h3>')
        if len(days) <= MAX_DAILY:
            cells = [
                [r["device"], (r["date"], "d"), *_marked(sv.cells(r, sv.DAY_VIEW))]
                for r in mine
            ]
            out += ['<div class="wide">', table_html(day_head, cells), "</div>"]
        cells = [[r["period"], *_marked(sv.cells(r, sv.PERIOD_VIEW))] for r in rows]
        out += [f"<p>By {html.escape(period)}:</p>", table_html(per_head, cells)]
        out.append("</div>")
    return out


def _village_key(r: Mapping[str, Any]) -> tuple[str, ...]:
    return tuple(r[k] or "" for k in ("state", "district", "block", "village"))


def _marked(cs: Sequence[sv.Cell]) -> list[tuple[str, str]]:
    """(text, css class): a number right-aligned, its mark its class."""
    out = []
    for text, mark in cs:
        num = text[:1].isdigit() or text[:1] in "+-" and text[1:2].isdigit()
        out.append((text, " ".join(x for x in ("n" if num else "", mark) if x)))
    return out


PAGE = "index.html"


def page_folder(folder: str | Path) -> list[str]:
    """The files of an earlier page in folder that writing a page there
    replaces (empty: a new or empty folder). A folder that holds anything else
    is refused: the page never overwrites what it did not write."""
    out = Path(folder)
    if not out.exists():
        return []
    if not out.is_dir():
        raise JalkalError(f"--html {out}: a file is there, not a folder")
    try:
        names = sorted(p.name for p in out.iterdir())
    except OSError as e:
        raise JalkalError(f"cannot read {out}: {e.strerror or e}")
    if not names:
        return []
    mine = {PAGE, *plots.FILES, *sensor_plots.FILES}
    other = [n for n in names if n not in mine]
    if PAGE not in names or other:
        odd = other or names
        shown = ", ".join(odd[:3]) + (", ..." if len(odd) > 3 else "")
        raise JalkalError(
            f"--html {out}: the folder holds files that are not an earlier report "
            f"page ({shown}); give a new or empty folder, or the folder of an "
            f"earlier page ({PAGE} and its plots)"
        )
    return names


def write_html(
    rep: Any,
    folder: str | Path,
    period: str = "month",
    by: str = "village",
    min_complete: float = per.MIN_COMPLETE,
    quality: Mapping[tuple[str, ...], list[tuple[date, bool]]] | None = None,
    alerts: Mapping[str, Any] | None = None,
    title: str = "Village water supply report",
) -> Path:
    """Write folder/index.html and the plots for a periods.Report (rep.days; with
    alerts, the keyword arguments of alerts.alerts). Returns the page's path."""
    days: pa.Table = rep.days
    if days.num_rows == 0:
        raise JalkalError("no days to report: nothing for the HTML page")
    page_folder(folder)
    out = Path(folder)
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise JalkalError(f"cannot create {out}: {e.strerror or e}")
    pngs = plots.write_plots(rep, out, by=by, period=period)
    pngs += sensor_plots.write(rep.days, out)  # with measure frames only
    dates = days.column("date").to_pylist()
    first, last = min(dates), max(dates)
    nvil = len(plots.villages(days))
    ndev = len(set(days.column("device").to_pylist()))
    ncomp = sum(1 for x in days.column("complete").to_pylist() if x)
    parts = [
        "<!DOCTYPE html>",
        '<html lang="en">',
        "<head>",
        '<meta charset="utf-8">',
        '<meta name="viewport" content="width=device-width, initial-scale=1">',
        f"<title>{html.escape(title)}</title>",
        f"<style>{CSS}</style>",
        "</head>",
        "<body>",
        f"<h1>{html.escape(title)}</h1>",
        f'<p class="lead">{first.isoformat()} to {last.isoformat()} (local days): '
        f"{nvil} villages, {ndev} devices, {days.num_rows} device-days of which "
        f"{ncomp} complete. Bands (JJM Table 11): fully at 55 lpcd or more, "
        "partially above 40 and below 55, non at 40 or less; a day without full "
        "data is incomplete, never low supply.</p>",
    ]
    tb = per.periods(
        days, period, by, min_complete=min_complete, quality=quality,
        registry=rep.registry,
    )  # fmt: skip
    parts += [f"<h2>By {html.escape(period)} and {html.escape(by)}</h2>"]
    parts.append(period_section(tb, by))
    captions = {
        "daily_lpcd.png": "Litres per person per day of every complete day, with "
        "the 55 lpcd (fully) and 40 lpcd lines; hatched days are incomplete.",
        "calendar.png": "Each day's lpcd in the JJM steps; grey with a cross: "
        "incomplete day; blank: outside the report.",
        "bands.png": f"Village-days in each band per block (or district), over "
        f"the days of the {period} table above.",
        **sensor_plots.CAPTIONS,
    }
    parts.append("<h2>Plots</h2>")
    for p in pngs:
        w, h = _png_size(p)
        parts.append(
            f'<figure><img src="{html.escape(p.name)}" width="{w}" height="{h}" '
            f'alt="{html.escape(captions[p.name])}">'
            f"<figcaption>{html.escape(captions[p.name])}</figcaption></figure>"
        )
    level = by if by in ("district", "state") else "block"
    # the days of the period table above, so that both count the same days
    counts = plots.band_counts(days, level, period, rep.registry)
    parts.append(
        f"<h2>Days in each band by {level}</h2>"
        f"<p>The village-days of the {html.escape(period)} table above (a day "
        "with no data is incomplete).</p>"
    )
    parts.append(
        table_html(
            [level, "fully", "partially", "non", "incomplete"],
            [[label, *(c[b] for b in plots.BANDS)] for label, c in counts],
        )
    )
    parts += sensor_section(rep, period, min_complete, quality)
    if alerts is not None:
        from .alerts import alerts as find_alerts

        al = find_alerts(rep, **alerts)
        parts.append("<h2>Alerts</h2>")
        rows = [
            [
                ("active" if r["active"] else "ended", "non" if r["active"] else ""),
                r["kind"], r["village"], r["device"], r["since"], r["until"],
                r["days"], r["what"], r["evidence"],
            ]
            for r in al.to_pylist()
        ]  # fmt: skip
        parts.append(
            table_html(
                [
                    "",
                    "kind",
                    "village",
                    "device",
                    "since",
                    "until",
                    "days",
                    "what",
                    "evidence",
                ],  # fmt: skip
                rows,
            )
            if rows
            else "<p>No alerts.</p>"
        )
    parts.append("<h2>Daily rows</h2>")
    if days.num_rows <= MAX_DAILY:
        rows = [
            [
                r["village"], r["device"], r["date"], r["litres"], r["population"],
                r["lpcd"], _band(r["band"]), r["pump_hours"], r["completeness"],
            ]
            for r in days.to_pylist()
        ]  # fmt: skip
        parts.append(
            table_html(
                [
                    "village",
                    "device",
                    "date",
                    "litres",
                    "population",
                    "lpcd",
                    "band",
                    "pump h",
                    "completeness",
                ],  # fmt: skip
                rows,
            )
        )
    else:
        parts.append(
            f"<p>{days.num_rows} daily rows: too many for a page; "
            "<code>jalkal report ... --format csv</code> gives them all.</p>"
        )
    notes = list(getattr(rep, "notes", []) or [])
    if notes:
        parts.append("<h2>Notes</h2>")
        parts.append(
            '<ul class="notes">'
            + "".join(f"<li>{html.escape(n)}</li>" for n in notes)
            + "</ul>"
        )
    parts += ["</body>", "</html>", ""]
    page = out / PAGE

    text = "\n".join(parts)
    atomic_write(str(page), lambda f: f.write(text.encode()))
    return page
