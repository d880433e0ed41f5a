"""`jalkal report` and `jalkal export`: the report's sources, rules and outputs put
together for the command line (the logic lives in the modules beside this one)."""

from __future__ import annotations

import sys
from collections.abc import Sequence
from datetime import date, datetime
from typing import IO, Any

import click

from jkproto import objects as ob

from ..decode.streams import problems_line
from ..errors import JalkalError
from ..registry import load_registry
from . import plots
from .alerts import alerts
from .alerts import to_text as alerts_text
from .daily import DailyResult
from .export import PARTS, build_parquet, export
from .html import write_html
from .periods import build, periods
from .quality import load_quality
from .render import emit, to_csv, to_json, to_table, to_text, write_text
from .sources import decode_sources, load_store


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
    parquet: str | None = None,
    dask: str | None = None,
    html: str | None = None,
) -> DailyResult:
    """`jalkal report`: decode (or load from a store), compute, print; warnings go
    to err. Daily rows by default; --period: period rows (periods.periods);
    --alerts: the escalation list (alerts.alerts). output: write there instead
    of `out` (needed for parquet)."""
    out = out or sys.stdout
    err = err or sys.stderr
    if bool(paths) + bool(store) + bool(parquet) != 1:
        raise JalkalError(
            "report needs frame files (SOURCE...), --store DB or --parquet DIR, "
            "one of them"
        )
    if dask and not parquet:
        raise JalkalError("--dask runs the report over --parquet DIR; give both")
    if period and show_alerts:
        raise JalkalError("give --period or --alerts, not both")
    if fmt == "parquet" and not output:
        raise JalkalError("--format parquet needs -o FILE")
    when = _parse_as_of(as_of) if as_of else None
    reg = load_registry(villages)  # a bad registry fails before any decoding
    qual = None
    if quality:
        qual = load_quality(quality)
    if parquet:  # an export (reports/export.py): DuckDB, or Dask with --dask
        engine = "dask" if dask else "duckdb"
        rep = build_parquet(parquet, reg, engine, dask, timeline=show_alerts)
        stats = ob.new_stats()
    else:
        if store:
            table, stats = load_store(store), ob.new_stats()
        else:
            table, stats = decode_sources(paths, keys)
        rep = build(table, reg)
    res = rep.result
    line = problems_line(dict(stats, mac_failures=0, unknown_devices=0))
    if line:
        print(line, file=err)
    if res.unverified:
        print(
            f"report: {res.unverified} frames failed MAC check, not counted", file=err
        )
    for dev, nf in sorted(res.unknown.items()):
        print(
            f"report: device {dev} is not in the villages file ({nf} frames "
            "skipped); add a row for it to report it",
            file=err,
        )
    for note in res.notes:
        print(f"report: {note}", file=err)
    if period:
        tb = periods(
            rep.days, period, by, min_complete=min_complete, quality=qual, registry=reg
        )
        emit(tb, "periods", fmt, out, output, lambda: to_text(tb, by))
    elif show_alerts:
        tb = alerts(
            rep,
            when,
            fault_days=fault_days,
            low_days=low_days,
            silent_days=silent_days,
            night_lpph=night_lpph,
            night_nights=night_nights,
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
        write_text(text, out, output)
    if plot and plot.lower().endswith(".png"):  # the daily lpcd plot alone
        plots.daily_lpcd(plots.villages(rep.days), plot)
    elif plot:  # a folder: every plot (reports/plots.py)
        plots.write_plots(rep, plot, by=by)
    if html:  # a static page with the tables and plots (reports/html.py)
        alerts_kw = dict(
            as_of=when, fault_days=fault_days, low_days=low_days,
            silent_days=silent_days, night_lpph=night_lpph, night_nights=night_nights,
        )  # fmt: skip
        write_html(
            rep, html, period=period or "month", by=by, min_complete=min_complete,
            quality=qual, alerts=alerts_kw if show_alerts else None,
        )  # fmt: skip
    return res


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


@click.command("report")
@click.argument("paths", nargs=-1, metavar="SOURCE...")
@click.option(
    "--villages",
    "villages",
    required=True,
    metavar="FILE",
    help="Village registry CSV: device,village,population[,block,district,state,tz].",
)
@click.option(
    "--keys", "keys", metavar="FILE", help="Keys file: count only verified frames."
)
@click.option(
    "--format",
    "fmt",
    type=click.Choice(["table", "json", "csv", "parquet"]),
    default="table",
    show_default=True,
)
@click.option("-o", "output", metavar="OUT", help="Write here (parquet needs it).")
@click.option(
    "--plot",
    "plot",
    metavar="DIR|FILE.png",
    help="Also draw the plots into DIR (FILE.png: daily lpcd only).",
)
@click.option(
    "--html", metavar="DIR", help="Also write a static report page (index.html)."
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
    help="Group period rows by.",
)
@click.option("--quality", metavar="FILE", help="Water tests: village,date,potable.")
@click.option(
    "--alerts", "show_alerts", is_flag=True, help="The escalation list instead."
)
@click.option("--as-of", metavar="DATE", help="Alerts as of [default: latest frame].")
@click.option("--fault-days", type=float, default=3, show_default=True)
@click.option("--low-days", type=int, default=3, show_default=True)
@click.option("--silent-days", type=float, default=2, show_default=True)
@click.option(
    "--night-lpph",
    type=float,
    default=1.0,
    show_default=True,
    help="Night flow alert: litres per person per hour.",
)
@click.option("--night-nights", type=int, default=3, show_default=True)
def report_cmd(
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

    SOURCE: frame files or directories (one stream, devices may be mixed), or
    --store DB instead. A day with missing data is marked incomplete and gets no
    lpcd or band. See docs/reports.md."""
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
@click.option("--overwrite", is_flag=True, help="Replace an existing DIR.")
def export_cmd(store: str, out: str, partition: str, overwrite: bool) -> None:
    """The store's frames as Parquet, partitioned by date and device (hive style:
    DIR/date=2026-03-01/device=0a1b2c3d/part-0.parquet), for DuckDB, Dask or any
    Parquet reader. `jalkal report --parquet DIR` reports from it."""
    e = export(store, out, partition, overwrite)
    click.echo(
        f"export: {e.frames} frames of {e.devices} devices in {e.files} files "
        f"under {e.out}"
    )
