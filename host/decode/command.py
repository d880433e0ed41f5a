"""`jalkal decode` and `jalkal encode`."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import click

from ..errors import JalkalError
from ..fileio import atomic_write, check_target
from ..keys import load_keys, signers
from .streams import (
    decode_paths,
    encode_objects,
    problems_line,
    read_objects,
    stats_line,
    write_table,
)


@click.command("decode")
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
    help="JSON Lines, CSV, or Parquet (parquet needs -o FILE).",
)
@click.option(
    "-o",
    "--output",
    "out",
    metavar="FILE",
    help="Write here instead of standard output.",
)
@click.option(
    "--stats", is_flag=True, help="Print frame, garbage, CRC, MAC and chain counts."
)
def decode(
    paths: tuple[str, ...], keys: str | None, fmt: str, out: str | None, stats: bool
) -> None:
    """Decode raw frame streams (SD log files, upload captures) to JSON Lines.

    A directory means every file in it, sorted; all inputs form one stream."""
    if out is not None:  # a target that cannot be written fails before the work
        check_target(out, Path(out))
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


@click.command("encode")
@click.argument("infile", required=False, metavar="[IN.jsonl]")
@click.option(
    "--keys", "keys", metavar="FILE", help="Keys file: sign frames (compute MACs)."
)
@click.option(
    "-o",
    "--output",
    "out",
    metavar="FILE",
    help="Write frames here instead of standard output.",
)
def encode(infile: str | None, keys: str | None, out: str | None) -> None:
    """Encode JSON Lines (as `decode` prints them) to binary frames.

    Without --keys each object must carry its "mac"; with --keys the MAC is computed
    for every device in the file. A missing "prev" is chained from the previous
    frame of the same device and boot."""
    if out is not None:
        check_target(out, Path(out))
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
