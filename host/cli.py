"""The `jalkal` command line."""

from __future__ import annotations

import json
import os
import sys
import tempfile
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import IO, Any

import click

from jkproto import codec
from jkproto import objects as ob

from . import __version__, bulk
from .errors import JalkalError
from .keys import load_keys, signers

# Commands in the order a technician or engineer meets them.
COMMAND_ORDER = [
    "provision", "flash", "deploy", "doctor", "pull", "monitor",
    "sim", "decode", "encode", "report", "export", "serve", "replay", "vboard",
]  # fmt: skip


class OrderedGroup(click.Group):
    def list_commands(self, ctx: click.Context) -> list[str]:
        known = [c for c in COMMAND_ORDER if c in self.commands]
        return known + sorted(c for c in self.commands if c not in known)


@click.group(
    cls=OrderedGroup,
    invoke_without_command=True,
    context_settings={"help_option_names": ["-h", "--help"]},
)
@click.version_option(__version__, prog_name="jalkal")
@click.pass_context
def cli(ctx: click.Context) -> None:
    """jalkal: village water-scheme controller toolkit.

    Frames from the board's SD log or SIM uplink are decoded, verified with the
    device keys, and turned into tables and reports."""
    if ctx.invoked_subcommand is None:
        click.echo(ctx.get_help())


# --- decode ---------------------------------------------------------------------


def input_files(paths: tuple[str, ...]) -> list[Path]:
    """Files named, and every file under a named directory (sorted)."""
    out: list[Path] = []
    for name in paths:
        p = Path(name)
        if p.is_dir():
            found = sorted(f for f in p.rglob("*") if f.is_file())
            if not found:
                raise JalkalError(f"{p}: directory has no files")
            out.extend(found)
        elif p.exists():
            out.append(p)
        else:
            raise JalkalError(f"{p}: no such file or directory")
    return out


def read_bytes(p: Path) -> bytes:
    try:
        return p.read_bytes()
    except OSError as e:
        raise JalkalError(f"cannot read {p}: {e.strerror or e}")


def stats_line(st: dict[str, int]) -> str:
    return (
        f"decode: {st['frames']} frames, {st['bytes']} bytes read, "
        f"{st['skipped_bytes']} bytes skipped in {st['skipped_runs']} runs, "
        f"{st['crc_errors']} CRC failures, {st['truncated']} truncated, "
        f"{st['unknown_version']} unknown version, {st['malformed']} malformed, "
        f"{st['chain_breaks']} chain breaks, {st['mac_failures']} MAC failures, "
        f"{st['unknown_devices']} from unknown devices"
    )


def problems_line(st: dict[str, int]) -> str | None:
    parts = []
    if st["skipped_bytes"]:
        parts.append(
            f"skipped {st['skipped_bytes']} bytes of garbage in {st['skipped_runs']} "
            f"places ({st['crc_errors']} CRC failures, {st['truncated']} truncated)"
        )
    for key, label in (
        ("unknown_version", "frames of an unknown version (kept raw)"),
        ("malformed", "malformed frames (kept raw)"),
        ("chain_breaks", "chain breaks"),
        ("mac_failures", "MAC failures"),
        ("unknown_devices", "frames from devices not in the keys file"),
    ):
        if st[key]:
            parts.append(f"{st[key]} {label}")
    return "decode: " + "; ".join(parts) if parts else None


def decode_tables(
    paths: Sequence[str], keys: str | None
) -> tuple[list[Any], dict[str, int], bool]:
    """bulk.decode tables of every input file, as one stream (the chain runs across
    files), the counts of what was skipped, and whether MACs were checked (a keys
    file with devices in it)."""
    sg = signers(load_keys(keys)) if keys else None
    state = bulk.ChainState()
    stats = ob.new_stats()
    tables = [
        bulk.decode(read_bytes(f), sg, state, stats).table
        for f in input_files(tuple(paths))
    ]
    return tables, stats, bool(sg)


def decode_paths(
    paths: tuple[str, ...], keys: str | None
) -> tuple[list[dict[str, Any]], dict[str, int]]:
    """All frames of the inputs, as one stream (the chain runs across files)."""
    tables, stats, _verified = decode_tables(paths, keys)
    objs: list[dict[str, Any]] = []
    for t in tables:
        objs.extend(bulk.to_objects(t))
    return objs, stats


# column order for csv / parquet: every key decode can print
def _columns() -> list[str]:
    cols = ["device", "boot", "seq", "kind", "ts", "uptime_s", "time", "xflags"]
    for fields in ob.FIELDS.values():
        for name, _t in fields:
            if name not in cols:
                cols.append(name)
    tail = "extra payload prev mac chain verified version error raw"
    return cols + tail.split()


def write_table(objs: list[dict[str, Any]], fmt: str, out: str | None) -> None:
    import pyarrow as pa
    import pyarrow.compute as pc
    import pyarrow.csv as pcsv
    import pyarrow.parquet as pq

    cols = _columns()
    rows = []
    for o in objs:
        r = dict(o)
        if "inputs" in r:
            r["inputs"] = "|".join(r["inputs"])
        rows.append(r)
    data = {c: [r.get(c) for r in rows] for c in cols}
    arrays = {}
    for c, vals in data.items():
        arr = pa.array(vals)
        if pa.types.is_null(arr.type):
            arr = arr.cast(pa.string())
        if c in ("ts", "start") and fmt == "parquet":
            arr = pc.strptime(arr, format="%Y-%m-%dT%H:%M:%SZ", unit="s").cast(
                pa.timestamp("s", tz="UTC")
            )
        arrays[c] = arr
    table = pa.table(arrays)
    if fmt == "parquet":
        if out is None:
            raise JalkalError("--format parquet needs -o FILE")
        atomic_write(out, lambda f: pq.write_table(table, f))
    elif out is None:
        buf = pa.BufferOutputStream()
        pcsv.write_csv(table, buf)
        sys.stdout.write(buf.getvalue().to_pybytes().decode())
    else:
        atomic_write(out, lambda f: pcsv.write_csv(table, f))


def atomic_write(out: str, write: Any) -> None:
    """Write to a temporary file beside OUT, then rename: no half-written output."""
    target = Path(out)
    try:
        fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", dir=target.parent or ".")
    except OSError as e:
        raise JalkalError(f"cannot write {target}: {e.strerror or e}")
    try:
        with os.fdopen(fd, "wb") as f:
            write(f)
        os.replace(tmp, target)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


@cli.command()
@click.argument("paths", nargs=-1, required=True, metavar="PATH...")
@click.option(
    "--keys", "keys", metavar="FILE", help="Keys file: verify each frame's MAC."
)
@click.option(
    "--format",
    "fmt",
    type=click.Choice(["jsonl", "csv", "parquet"]),
    default="jsonl",
    show_default=True,
)
@click.option("-o", "out", metavar="OUT", help="Write here instead of standard output.")
@click.option(
    "--stats", is_flag=True, help="Print frame, garbage, CRC, MAC and chain counts."
)
def decode(
    paths: tuple[str, ...], keys: str | None, fmt: str, out: str | None, stats: bool
) -> None:
    """Decode raw frame streams (SD log files, upload captures) to JSON Lines.

    A directory means every file in it, sorted; all inputs form one stream."""
    objs, st = decode_paths(paths, keys)
    if fmt == "jsonl":
        lines = "".join(json.dumps(o, separators=(",", ":")) + "\n" for o in objs)
        if out is None:
            sys.stdout.write(lines)
        else:
            atomic_write(out, lambda f: f.write(lines.encode()))
    else:
        write_table(objs, fmt, out)
    if stats:
        click.echo(stats_line(st), err=True)
    else:
        line = problems_line(st)
        if line:
            click.echo(line, err=True)


# --- encode ---------------------------------------------------------------------


def read_objects(stream: IO[str], name: str) -> Iterator[tuple[int, dict[str, Any]]]:
    try:
        yield from _read_objects(stream, name)
    except UnicodeDecodeError:
        raise JalkalError(f"{name}: not text (JSON Lines expected; binary frames?)")


def _read_objects(stream: IO[str], name: str) -> Iterator[tuple[int, dict[str, Any]]]:
    for no, line in enumerate(stream, 1):
        if not line.strip():
            continue
        try:
            o = json.loads(line)
        except json.JSONDecodeError as e:
            raise JalkalError(f"{name} line {no}: not JSON ({e.msg})")
        if not isinstance(o, dict):
            raise JalkalError(f"{name} line {no}: needs a JSON object")
        yield no, o


def encode_objects(
    items: Iterator[tuple[int, dict[str, Any]]],
    sg: dict[str, codec.Signer] | None,
    name: str,
) -> bytes:
    """Frames for decoded objects; with keys, MACs are computed and prev chained."""
    out = bytearray()
    last: dict[tuple[str, int], bytes] = {}
    for no, o in items:
        try:
            signer = sg.get(o.get("device", "")) if sg else None
            if sg is not None and signer is None and "mac" not in o and "raw" not in o:
                raise codec.FrameError(
                    f"device {o.get('device')!r} has no key in the keys file "
                    "and the object has no mac"
                )
            k = (o.get("device"), o.get("boot"))
            prev = last.get(k) if o.get("seq") != 0 else None  # type: ignore[arg-type]
            frame = ob.from_obj(o, signer, prev)
        except codec.FrameError as e:
            raise JalkalError(f"{name} line {no}: {e}")
        if "raw" not in o:
            last[k] = frame[-8:-6]  # type: ignore[index]
        out += frame
    return bytes(out)


@cli.command()
@click.argument("infile", required=False, metavar="[IN.jsonl]")
@click.option(
    "--keys", "keys", metavar="FILE", help="Keys file: sign frames (compute MACs)."
)
@click.option(
    "-o", "out", metavar="OUT", help="Write frames here instead of standard output."
)
def encode(infile: str | None, keys: str | None, out: str | None) -> None:
    """Encode JSON Lines (as `decode` prints them) to binary frames.

    Without --keys each object must carry its "mac"; with --keys the MAC is computed
    for every device in the file. A missing "prev" is chained from the previous
    frame of the same device and boot."""
    sg = signers(load_keys(keys)) if keys else None
    if infile in (None, "-"):
        data = encode_objects(read_objects(sys.stdin, "<stdin>"), sg, "<stdin>")
    else:
        try:
            with open(infile, encoding="utf-8") as f:  # type: ignore[arg-type]
                data = encode_objects(read_objects(f, infile), sg, infile)  # type: ignore[arg-type]
        except OSError as e:
            raise JalkalError(f"cannot read {infile}: {e.strerror or e}")
    if out is None:
        if sys.stdout.isatty():
            raise JalkalError(
                "refusing to write binary frames to a terminal; use -o FILE"
            )
        sys.stdout.buffer.write(data)
        sys.stdout.flush()
    else:
        atomic_write(out, lambda f: f.write(data))


def _register() -> None:
    from .deploy import deploy_cmd
    from .doctor import doctor_cmd
    from .flash import flash_cmd
    from .monitor import monitor_cmd
    from .provision import provision_cmd
    from .pull import pull_cmd
    from .replay import replay
    from .serve import serve
    from .simcmd import sim
    from .vboard import vboard

    cli.add_command(provision_cmd)
    cli.add_command(flash_cmd)
    cli.add_command(deploy_cmd)
    cli.add_command(doctor_cmd)
    cli.add_command(pull_cmd)
    cli.add_command(monitor_cmd)
    cli.add_command(sim)
    cli.add_command(vboard)
    cli.add_command(serve)
    cli.add_command(replay)
    from .export import export_cmd

    cli.add_command(export_cmd)


_register()


# --- report ---------------------------------------------------------------------


@cli.command("report")
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
    from .report import run

    run(paths, villages, keys, fmt, plot, store=store, **more)


def main(argv: list[str] | None = None) -> int:
    """Entry point: one-line errors and exit status 1, never a traceback."""
    try:
        cli.main(args=argv, prog_name="jalkal", standalone_mode=False)
    except click.exceptions.Exit as e:
        return int(e.exit_code or 0)
    except click.exceptions.Abort:
        click.echo("jalkal: aborted", err=True)
        return 1
    except click.UsageError as e:
        hint = (
            f" (see: jalkal {e.ctx.info_name} --help)" if e.ctx and e.ctx.parent else ""
        )
        click.echo(f"jalkal: {e.format_message()}{hint}", err=True)
        return 1
    except click.ClickException as e:
        click.echo(f"jalkal: {e.format_message()}", err=True)
        return 1
    except JalkalError as e:
        click.echo(f"jalkal: {e}", err=True)
        return 1
    except BrokenPipeError:
        # reader went away (e.g. `| head`): stop quietly
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        return 0
    except KeyboardInterrupt:
        click.echo("jalkal: interrupted", err=True)
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())
