"""The `jalkal` command line: a table of commands, each loaded only when it runs.

`jalkal --help` reads the short help kept here (a test holds it to each command's
own), so listing the commands loads neither numpy nor pyarrow nor any wing. Nothing
imports this module."""

from __future__ import annotations

import importlib
import os
import sys

import click
from click.utils import make_default_short_help

from . import __version__
from .errors import JalkalError

# name -> (module, attribute, the first sentence of its help), in the order a
# technician or engineer meets them
COMMANDS: dict[str, tuple[str, str, str]] = {
    "provision": (
        "jalkal.field.command",
        "provision_cmd",
        "Make a device id and key, write the board's config.json, and add the "
        "device to the keys file and the village registry.",
    ),
    "flash": (
        "jalkal.field.command",
        "flash_cmd",
        "Put MicroPython on a board: check the image, erase, write, verify.",
    ),
    "deploy": (
        "jalkal.field.command",
        "deploy_cmd",
        "Put the firmware, config.json and main.py on a board; check it boots.",
    ),
    "doctor": (
        "jalkal.field.command",
        "doctor_cmd",
        "Check a board: MicroPython, heap, firmware files, config, SD card, "
        "flash, clock, modem and SIM, uploads, switches and meters; a fix for "
        "each ✗.",
    ),
    "pull": (
        "jalkal.field.command",
        "pull_cmd",
        "Copy the board's SD and flash logs to the laptop, verified.",
    ),
    "monitor": (
        "jalkal.field.command",
        "monitor_cmd",
        "Show what a running board prints, with its frames decoded.",
    ),
    "ports": (
        "jalkal.field.command",
        "ports_cmd",
        "List the serial ports a board can be on.",
    ),
    "sim": (
        "jalkal.virtual.command",
        "sim_cmd",
        "Simulate a village scheme: the real firmware on virtual time and a plant.",
    ),
    "decode": (
        "jalkal.decode.command",
        "decode",
        "Decode raw frame streams (SD log files, upload captures) to JSON Lines.",
    ),
    "encode": (
        "jalkal.decode.command",
        "encode",
        "Encode JSON Lines (as `decode` prints them) to binary frames.",
    ),
    "report": (
        "jalkal.reports.command",
        "report_cmd",
        "Daily litres, lpcd and JJM functionality band per village and local "
        "day; --period for weeks, months, years per village, block, district or"
        " State with the JJM functionality class; --alerts for the escalation "
        "list.",
    ),
    "export": (
        "jalkal.reports.command",
        "export_cmd",
        "The store's frames as Parquet, partitioned by date and device (hive "
        "style: DIR/date=2026-03-01/device=0a1b2c3d/part-0.parquet), for "
        "DuckDB, Dask or any Parquet reader.",
    ),
    "broker": (
        "jalkal.field.command",
        "broker_cmd",
        "Write Mosquitto's password file, ACL file and config for every device of a "
        "keys file and the servers' accounts.",
    ),
    "serve": (
        "jalkal.command",
        "serve_cmd",
        "Ingest server: frames over HTTP and MQTT into an exactly-once DuckDB store.",
    ),
    "dashboard": (
        "jalkal.dashboard.command",
        "dashboard_cmd",
        "A live dashboard for the people who answer for the water: State, district, "
        "block and village pages, the escalation list and a JSON API (/v1/...), "
        "with the numbers of `jalkal report`, behind a login.",
    ),
    "dashboard-user": (
        "jalkal.dashboard.command",
        "dashboard_user_cmd",
        "Add or remove a dashboard account in a users file: passwords are kept "
        "only as scrypt hashes with a salt of their own; the file is owner-only "
        "(0600).",
    ),
    "replay": (
        "jalkal.ingest.command",
        "replay_cmd",
        "Send logged frames (files or directories, as `decode` reads them) to a"
        " server.",
    ),
    "vboard": (
        "jalkal.virtual.command",
        "vboard_cmd",
        "A virtual board on a pseudo-terminal, for mpremote and jalkal's field tools.",
    ),
}


def load_command(name: str) -> click.Command:
    """The click command `name` (its module imported now)."""
    module, attr, _short = COMMANDS[name]
    cmd = getattr(importlib.import_module(module), attr)
    assert isinstance(cmd, click.Command)
    return cmd


class LazyGroup(click.Group):
    """Commands from COMMANDS, imported only when one is run (or its help shown)."""

    def list_commands(self, ctx: click.Context) -> list[str]:
        return list(COMMANDS)

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        if cmd_name not in COMMANDS:
            return None
        return load_command(cmd_name)

    def format_commands(
        self, ctx: click.Context, formatter: click.HelpFormatter
    ) -> None:
        limit = formatter.width - 6 - max(len(name) for name in COMMANDS)
        rows = [
            (name, make_default_short_help(text, limit))
            for name, (_m, _a, text) in COMMANDS.items()
        ]
        with formatter.section("Commands"):
            formatter.write_dl(rows)


def version_text() -> str:
    """jalkal's version, the firmware's and the protocol's it carries, and the
    MicroPython the firmware needs."""
    import jkfw
    from jkproto import codec

    from .field.deploy import MIN_MICROPYTHON

    def dotted(v: tuple[int, ...]) -> str:
        return ".".join(map(str, v))

    return (
        f"jalkal {__version__}\n"
        f"firmware: jkfw {dotted(jkfw.VERSION)}, for MicroPython "
        f"{dotted(MIN_MICROPYTHON)} or newer\n"
        f"protocol: frame version {codec.VERSION}"
    )


def show_version(ctx: click.Context, _param: click.Parameter, value: bool) -> None:
    if value and not ctx.resilient_parsing:
        click.echo(version_text())
        ctx.exit()


@click.group(
    cls=LazyGroup,
    invoke_without_command=True,
    context_settings={"help_option_names": ["-h", "--help"]},
)
@click.option(
    "--version",
    is_flag=True,
    expose_value=False,
    is_eager=True,
    callback=show_version,
    help="Show the versions of jalkal, its firmware and protocol, and the "
    "MicroPython the firmware needs.",
)
@click.pass_context
def cli(ctx: click.Context) -> None:
    """jalkal: village water-scheme controller toolkit.

    Frames from the board's SD log or SIM uplink are decoded, verified with the
    device keys, and turned into tables and reports."""
    if ctx.invoked_subcommand is None:
        click.echo(ctx.get_help())


def main(argv: list[str] | None = None) -> int:
    """Entry point: one-line errors, never a traceback; exit status 2 for a wrong
    command line (as click, esptool and mpremote), 1 for any other error."""
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
        return 2  # as click and esptool: the command line itself was wrong
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
