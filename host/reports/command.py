"""`jalkal report` and `jalkal export`: the report's sources, rules and outputs put
together for the command line (the logic lives in the modules beside this one)."""

from __future__ import annotations

import sys
from collections.abc import Sequence
from datetime import date, datetime
from pathlib import Path
from typing import IO, Any

import click
from click.core import ParameterSource

from jkproto import objects as ob

from ..decode.streams import problems_line
from ..errors import JalkalError
from ..fileio import check_target
from ..registry import Registry, load_registry
from . import aggregates, plots, sensor_plots
from . import sensor_alerts as sa
from .alerts import LOCKOUT_DAYS, LOCKOUTS, alerts
from .alerts import to_text as alerts_text
from .daily import DailyResult
from .export import PARTS, build_parquet, devices_in, export
from .html import page_folder, write_html
from .periods import build, periods
from .plausible import DEFAULT_MAX_FLOW_M3H
from .quality import load_quality
from .render import emit, to_csv, to_json, to_table, to_text, write_text
from .sensor_view import daily_text, period_text
from .since import export_since
from .sources import load_store, read_sources


def run(
    paths: Sequence[str],
    villages: str,
    keys: str | None = None,
    fmt: str = "table",
    plot: str | None = None,
    out: IO[str] | None = None,
    err: IO[str] | None = None,
    store: str | None = None,
    *,
    output: str | None = None,
    period: str | None = None,
    by: str = "village",
    quality: str | None = None,
    min_complete: float = 0.9,
    show_alerts: bool = False,
    as_of: str | None = None,
    fault_days: float = 3,
    low_days: int = 3,
    silent_days: float = 2,
    night_lpph: float = 1.0,
    night_nights: int = 3,
    lockouts: int = LOCKOUTS,
    lockout_days: float = LOCKOUT_DAYS,
    parquet: str | None = None,
    dask: str | None = None,
    html: str | None = None,
    max_flow_m3h: float = DEFAULT_MAX_FLOW_M3H,
    **sensors: float,
) -> DailyResult:
    """`jalkal report`: decode (or load from a store), compute, print; warnings go
    to err. Daily rows by default; --period: period rows (periods.periods);
    --alerts: the escalation list (alerts.alerts). output: write there instead
    of `out` (needed for parquet). max_flow_m3h: the supply meters' maximum
    flow; an interval above it is not counted (plausible.py). sensors: the
    sensor alerts' options (sensor_alerts.sensor_alerts). Raises
    JalkalError, saying why, when no day could be reported."""
    out = out or sys.stdout
    err = err or sys.stderr
    if bool(paths) + bool(store) + bool(parquet) != 1:
        raise JalkalError(
            "report needs frame files (SOURCE...), --store DB or --parquet DIR, "
            "one of them"
        )
    if dask and not parquet:
        raise JalkalError("--dask runs the report over --parquet DIR; give both")
    if keys and not paths:
        raise JalkalError(
            "--keys verifies frame files (SOURCE...); the frames of a store or an "
            "export were verified when they were stored: leave --keys out"
        )
    if period and show_alerts:
        raise JalkalError("give --period or --alerts, not both")
    if fmt == "parquet" and not output:
        raise JalkalError("--format parquet needs -o FILE")
    if output:  # a target that cannot be written fails before the work
        check_target(output, Path(output))
    if not max_flow_m3h > 0:
        raise JalkalError("--max-flow-m3h must be above 0")
    if lockouts < 1 or lockout_days <= 0:
        raise JalkalError("--lockouts must be 1 or more and --lockout-days above 0")
    one_png = plots.plot_file(plot) if plot else False
    if plot and html and Path(plot).resolve() == Path(html).resolve():
        raise JalkalError("--html DIR holds the plots already; leave --plot out")
    replaced = page_folder(html) if html else []
    when = _parse_as_of(as_of) if as_of else None
    reg = load_registry(villages)  # a bad registry fails before any decoding
    qual = None
    if quality:
        qual = load_quality(quality)
    lines: list[str] = []  # what the reader must be told, for stderr
    explained = 0  # frames that failed verification the lines already explain
    if parquet:  # an export (reports/export.py): DuckDB, or Dask with --dask
        present = set(devices_in(parquet))
        if not present:
            raise JalkalError(
                f"{parquet} holds no jalkal export (no date=.../device=.../ Parquet "
                "files): give the folder `jalkal export --out` wrote; frame "
                "files (.jkl logs) are read as SOURCE"
            )
        engine = "dask" if dask else "duckdb"
        rep = build_parquet(
            parquet, reg, engine, dask, timeline=show_alerts, max_flow_m3h=max_flow_m3h
        )
        stats = ob.new_stats()
    else:
        got = None
        if store and not (show_alerts or plot or html):  # the daily aggregates
            got = aggregates.from_store(
                store, reg, max_flow_m3h, lambda ln: print(f"report: {ln}", file=err),
                detail=not period, months=period in ("month", "year"),
            )  # fmt: skip
        if got is not None:
            rep, present = got[0], set(got[1])
            stats = ob.new_stats()
        elif store:
            table = load_store(store, lambda ln: print(f"report: {ln}", file=err))
            stats = ob.new_stats()
            if table.num_rows == 0:
                raise JalkalError(f"store {store} holds no frames: nothing to report")
            devs = table.column("device").unique().to_pylist()
            present = {ob.device_str(d) for d in devs}
            rep = build(table, reg, max_flow_m3h)
        else:
            src = read_sources(paths, keys)
            table, stats, present = src.table, src.stats, src.devices
            lines += src.notes
            explained = src.explained
            rep = build(table, reg, max_flow_m3h)
    res = rep.result
    lines += _left_out(res, reg, present, explained)
    decoded = problems_line(dict(stats, mac_failures=0, unknown_devices=0))
    if rep.days.num_rows == 0 and not (rep.months and rep.months.months.num_rows):
        why = [decoded] if decoded else []
        why = why + lines or ["no day of a registered device in the input"]
        raise JalkalError(
            "nothing to report: " + why[0]
            if len(why) == 1
            else "nothing to report:\n  " + "\n  ".join(why)
        )
    if decoded:
        print(decoded, file=err)
    for line in lines:
        print(f"report: {line}", file=err)
    if period:
        tb = periods(rep.days, period, by, min_complete=min_complete, quality=qual,
                     registry=reg, months=rep.months)  # fmt: skip
        emit(tb, "periods", fmt, out, output, lambda: to_text(tb, by) + period_text(tb))
    elif show_alerts:
        tb = alerts(
            rep,
            when,
            fault_days=fault_days,
            low_days=low_days,
            silent_days=silent_days,
            night_lpph=night_lpph,
            night_nights=night_nights,
            lockouts=lockouts,
            lockout_days=lockout_days,
            **sensors,
        )
        emit(tb, "alerts", fmt, out, output, lambda: alerts_text(tb))
    elif fmt == "parquet":
        emit(rep.days, "days", fmt, out, output, lambda: "")
    else:
        text = (
            to_json(res.days)
            if fmt == "json"
            else to_csv(res.days)
            if fmt == "csv"
            else to_table(res.days, reg)
        )
        write_text(daily_text(text, fmt, res.detail), out, output)
    if plot and one_png:  # the daily lpcd plot alone
        plots.daily_lpcd(plots.villages(rep.days), plot)
    elif plot:  # a folder: every plot (reports/plots.py)
        plots.write_plots(rep, plot, by=by, period=period or "day")
        sensor_plots.write(rep.days, Path(plot))  # with measure frames only
    if html:  # a static page with the tables and plots (reports/html.py)
        if replaced:
            print(
                f"report: {html} holds an earlier page: replacing "
                f"{', '.join(replaced)}",
                file=err,
            )
        alerts_kw = dict(
            as_of=when, fault_days=fault_days, low_days=low_days,
            silent_days=silent_days, night_lpph=night_lpph, night_nights=night_nights,
            lockouts=lockouts, lockout_days=lockout_days, **sensors,
        )  # fmt: skip
        write_html(
            rep, html, period=period or "month", by=by, min_complete=min_complete,
            quality=qual, alerts=alerts_kw if show_alerts else None,
        )  # fmt: skip
    return res


def _left_out(
    res: DailyResult, reg: Registry, present: set[str], explained: int
) -> list[str]:
    """What the report left out and why: frames that failed their MAC check (less
    the `explained` ones), devices not in the registry, registered devices with
    no frames in the input, and the day rules' notes."""
    lines = []
    unverified = res.unverified - explained
    if unverified:
        lines.append(f"{unverified} frames failed MAC check, not counted")
    for dev, nf in sorted(res.unknown.items()):
        lines.append(
            f"device {dev} is not in the villages file ({nf} frames skipped); add "
            "a row for it to report it"
        )
    for dev, rows in sorted(reg.by_device.items()):
        if dev not in present:
            names = ", ".join(sorted({v.village for v in rows}))
            lines.append(
                f"device {dev} ({names}) is in the villages file but has no frames "
                "in the input"
            )
    return lines + res.notes


def _parse_as_of(text: str) -> date | datetime:
    try:
        if len(text) == 10:
            return date.fromisoformat(text)
        return datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        raise JalkalError(
            f"--as-of must be a date like 2026-03-31 or a time like "
            f"2026-03-31T12:00Z, got {text!r}"
        )


ALERT_OPTIONS = ("as_of", "fault_days", "low_days", "silent_days", "night_lpph",
                 "night_nights", "lockouts", "lockout_days", "table_weeks",
                 "table_fall_m", "quality_days", "sensor_fault_days")  # fmt: skip


def _usage(ctx: click.Context, more: dict[str, Any], plot: str | None) -> None:
    """Refuse options that would do nothing without another one."""

    def given(name: str) -> bool:
        return ctx.get_parameter_source(name) not in (
            ParameterSource.DEFAULT, ParameterSource.DEFAULT_MAP, None,
        )  # fmt: skip

    def flag(name: str) -> str:
        return "--" + name.replace("_", "-")

    alone = [flag(n) for n in ALERT_OPTIONS if given(n)]
    if alone and not more["show_alerts"]:
        raise click.UsageError(
            f"{', '.join(alone)} tune{'s' if len(alone) == 1 else ''} the "
            "escalation list: give --alerts too, or leave "
            f"{'it' if len(alone) == 1 else 'them'} out"
        )
    page = more["period"] or more["html"]
    chart = plot and not plot.lower().endswith(".png")
    if given("by") and not page and not (chart and more["by"] in ("district", "state")):
        raise click.UsageError(
            "--by groups the --period table and the --html page (and the band "
            "chart of --plot DIR by district or state); give one of them, or "
            "leave --by out"
        )
    if given("quality") and not page:
        raise click.UsageError(
            "--quality adds water tests to the JJM class of the --period table "
            "and the --html page; give one of them, or leave --quality out"
        )


_SENSOR_OPTIONS = (
    ("--table-weeks", click.FloatRange(min=1), sa.TABLE_WEEKS,
     "Water table alert: the trend's window, in weeks."),
    ("--table-fall-m", click.FloatRange(min=0, min_open=True), sa.TABLE_FALL_M,
     "Water table alert: the 06:00 depth falling faster than this, m a week."),
    ("--quality-days", click.IntRange(min=1), sa.QUALITY_DAYS,
     "Alert on water outside BIS 10500's acceptable limits this many days in a row."),
    ("--sensor-fault-days", click.FloatRange(min=0, min_open=True),
     sa.SENSOR_FAULT_DAYS, "Alert on a sensor in fault for this many days."),
)  # fmt: skip


def _sensor_options(f: Any) -> Any:
    for name, kind, default, text in reversed(_SENSOR_OPTIONS):
        f = click.option(name, type=kind, default=default, show_default=True,
                         help=text)(f)  # fmt: skip
    return f


# the registry option of the commands that read one (report, dashboard)
villages_option = click.option(
    "--villages",
    "villages",
    required=True,
    metavar="FILE",
    help="Village registry CSV: device,village,population[,block,district,state,tz].",
)


@click.command("report")
@click.argument("paths", nargs=-1, metavar="SOURCE...")
@villages_option
@click.option(
    "--keys",
    "keys",
    metavar="FILE",
    help="Keys file: count only frames whose MAC it verifies (SOURCE files only; "
    "without it, frames are counted unverified and the report says so).",
)
@click.option(
    "--format",
    "fmt",
    type=click.Choice(["table", "json", "csv", "parquet"]),
    default="table",
    show_default=True,
    help="Output format of the rows (parquet needs -o FILE).",
)
@click.option(
    "-o",
    "--output",
    "output",
    metavar="FILE",
    help="Write the rows to FILE instead of the terminal (parquet needs it).",
)
@click.option(
    "--plot",
    "plot",
    metavar="DIR|FILE.png",
    help="Also draw the plots into the folder DIR (FILE.png: the daily lpcd plot "
    "alone).",
)
@click.option(
    "--html",
    metavar="DIR",
    help="Also write a static report page, DIR/index.html and its plots (DIR new, "
    "empty or an earlier page's).",
)
@click.option(
    "--store", "store", metavar="DB", help="Report from a store (jalkal serve's file)."
)
@click.option(
    "--parquet", metavar="DIR", help="Report from a Parquet export (jalkal export)."
)
@click.option(
    "--dask",
    metavar="ADDRESS",
    help="Run the --parquet report on a Dask cluster (or 'local').",
)
@click.option(
    "--period",
    type=click.Choice(["day", "week", "month", "year"]),
    help="Period report: litres, lpcd, bands, regularity, JJM class per period.",
)
@click.option(
    "--by",
    type=click.Choice(["village", "block", "district", "state"]),
    default="village",
    show_default=True,
    help="Group the --period table and the --html page by (needs one of them).",
)
@click.option(
    "--quality",
    metavar="FILE",
    help="Water tests for the JJM class, CSV village,date,potable (with --period "
    "or --html).",
)
@click.option(
    "--max-flow-m3h",
    type=click.FloatRange(min=0, min_open=True),
    default=DEFAULT_MAX_FLOW_M3H,
    show_default=True,
    help="The supply meters' maximum flow: a reading interval above it is not "
    "counted and its day is flagged.",
)
@click.option(
    "--alerts",
    "show_alerts",
    is_flag=True,
    help="The escalation list instead of the daily rows (the options below tune it).",
)
@click.option(
    "--as-of",
    metavar="DATE",
    help="Alerts as of the end of this local day, or a UTC time 2026-03-31T12:00Z "
    "[default: the latest frame].",
)
@click.option(
    "--fault-days",
    type=float,
    default=3,
    show_default=True,
    help="Alert on a fault left open this many days.",
)
@click.option(
    "--low-days",
    type=int,
    default=3,
    show_default=True,
    help="Alert on this many consecutive complete days at or below 40 lpcd.",
)
@click.option(
    "--silent-days",
    type=float,
    default=2,
    show_default=True,
    help="Alert on a device that sent no frame for this many days.",
)
@click.option(
    "--night-lpph",
    type=float,
    default=1.0,
    show_default=True,
    help="Night flow alert: litres per person per hour.",
)
@click.option(
    "--night-nights",
    type=int,
    default=3,
    show_default=True,
    help="Night flow alert: on this many consecutive nights.",
)
@click.option(
    "--lockouts",
    type=click.IntRange(min=1),
    default=LOCKOUTS,
    show_default=True,
    help="Alert on this many dry-run lockouts of a pump within --lockout-days.",
)
@click.option(
    "--lockout-days",
    type=click.FloatRange(min=0, min_open=True),
    default=LOCKOUT_DAYS,
    show_default=True,
    help="Lockouts alert: the window, in days.",
)
@_sensor_options
@click.pass_context
def report_cmd(
    ctx: click.Context,
    paths: tuple[str, ...],
    villages: str,
    keys: str | None,
    fmt: str,
    plot: str | None,
    store: str | None,
    **more: Any,
) -> None:
    """Daily litres, lpcd and JJM functionality band per village and local day;
    --period for weeks, months, years per village, block, district or State with
    the JJM functionality class; --alerts for the escalation list.

    SOURCE: frame files or directories (one stream, devices may be mixed; a copy
    of a log is counted once), or --store DB or --parquet DIR instead. A day with
    missing data is marked incomplete and gets no lpcd or band. Fails when no
    day could be reported, saying why. See docs/reports.md."""
    _usage(ctx, more, plot)
    run(paths, villages, keys, fmt, plot, store=store, **more)


@click.command("export")
@click.option("--store", "store", required=True, metavar="DB", help="The store.")
@click.option("--out", "out", required=True, metavar="DIR", help="Write Parquet here.")
@click.option(
    "--partition",
    type=click.Choice(PARTS),
    default="day",
    show_default=True,
    help="date=YYYY-MM-DD (day) or date=YYYY-MM (month) folders, then device=.",
)
@click.option(
    "--overwrite",
    is_flag=True,
    help="Replace an earlier export at DIR (anything else is refused).",
)
@click.option(
    "--since",
    metavar="DATE",
    help="Update the export at DIR in place: only the days (per device) with "
    "frames received from DATE on (UTC) are written, and only if they changed.",
)
def export_cmd(
    store: str, out: str, partition: str, overwrite: bool, since: str | None
) -> None:
    """The store's frames as Parquet, partitioned by date and device (hive style:
    DIR/date=2026-03-01/device=0a1b2c3d/part-0.parquet), for DuckDB, Dask or any
    Parquet reader. `jalkal report --parquet DIR` reports from it. A store that a
    running `jalkal serve` holds is read through the server."""

    def note(line: str) -> None:
        click.echo(f"export: {line}", err=True)

    if since is None:
        e = export(store, out, partition, overwrite, note=note)
        click.echo(
            f"export: {e.frames} frames of {e.devices} devices in {e.files} files "
            f"under {e.out}"
        )
        return
    if overwrite:
        raise click.UsageError("--since updates DIR in place: leave --overwrite out")
    e = export_since(store, out, since, partition, note)
    if not e.files:
        click.echo(
            f"export: nothing to write since {since}: {e.unchanged} partitions "
            f"unchanged under {e.out}"
        )
        return
    click.echo(
        f"export: since {since}: {e.files} partitions written ({e.new} new, "
        f"{e.files - e.new} rewritten), {e.frames} frames of {e.devices} devices; "
        f"{e.unchanged} unchanged, under {e.out}"
    )
