"""`jalkal sim` and `jalkal vboard`."""

from __future__ import annotations

import time
from datetime import datetime
from pathlib import Path

import click

from .. import console
from ..errors import JalkalError
from . import simulate, vboard

# --- simulate -----------------------------------------------------------------


@click.command("sim")
@click.option("--scenario", "scenario_name", required=True, metavar="NAME|FILE",
              help="normal, power-cuts, dry-borewell, overflow-fault, sensor-faults, "
              "sd-fault, sim-outage, sensors, bore-open, motor-faults, "
              "quality-drift, water-table-decline, solar-week, tank-level, or a "
              "TOML file (docs/scenarios.md).")  # fmt: skip
@click.option(
    "--days", type=click.IntRange(1, 3660), help="Override the scenario's days."
)
@click.option("--seed", type=int, help="Override the scenario's seed.")
@click.option(
    "--start", metavar="DATE", help="Override the start date (YYYY-MM-DD, local)."
)
@click.option(
    "--out", required=True, metavar="DIR", help="Where to write sd/, truth.json…"
)
@click.option(
    "--force", is_flag=True,
    help="Write into a non-empty DIR that is not an earlier run's output (files "
    "jalkal sim did not write are still never replaced or deleted).",
)  # fmt: skip
@click.option(
    "--display", "display_dir", metavar="DIR", help="Save display PNGs every 6 h."
)
@click.option(
    "--uplink", metavar="URL",
    help="The board's modem uploads to this server: http://HOST:PORT (jalkal serve) "
    "or mqtt://HOST:PORT (its broker; SIM7600 boards).",
)  # fmt: skip
def sim_cmd(
    scenario_name: str,
    days: int | None,
    seed: int | None,
    start: str | None,
    out: str,
    force: bool,
    display_dir: str | None,
    uplink: str | None,
) -> None:
    """Simulate a village scheme: the real firmware on virtual time and a plant.

    Writes DIR/sd/ (the SD card as the firmware wrote it), DIR/flash/,
    DIR/villages.csv, DIR/keys.json, DIR/truth.json (exact litres per local day)
    and DIR/.jalkal-sim (what it wrote: the next run into DIR replaces exactly
    that). A non-empty DIR that is not an earlier run's output is refused unless
    --force; a file jalkal sim did not write is never replaced or deleted."""
    from jksim import scenario, village

    if uplink is not None and not simulate.uplink_ok(uplink):
        raise JalkalError(
            f"--uplink: {uplink!r} is not a server address; give http://HOST:PORT or "
            "mqtt://HOST:PORT"
        )
    try:
        sc = scenario.load(scenario_name, days, seed, start)
    except scenario.ScenarioError as e:
        raise JalkalError(f"scenario: {e}")
    except UnicodeDecodeError:
        raise JalkalError(f"scenario {scenario_name}: not UTF-8 text (TOML expected)")
    outp = Path(out)
    simulate.check_out(outp, force)
    if display_dir:
        simulate.check_display(Path(display_dir))
    t0 = time.perf_counter()
    label = (
        f"{sc['village']['name']} ({sc['name']}, {sc['days']} days, seed {sc['seed']})"
    )
    with console.progress(
        f"simulating {label}", total=sc["days"] * 86400 * 1000
    ) as advance:
        done = [0]

        def progress(t: int, end: int) -> None:
            advance(t - done[0])
            done[0] = t

        def setup(v: village.Village) -> None:
            if display_dir:
                simulate.display_snapshots(v, Path(display_dir))

        try:
            v = village.simulate(sc, outp, progress, setup, uplink)
        except (OSError, ValueError, RuntimeError) as e:  # FileNotFoundError: board
            raise JalkalError(f"simulation failed: {e}")
    secs = time.perf_counter() - t0
    truth = v.truth()
    litres = sum(d["litres"] for d in truth["days"])
    pop = sc["village"]["population"]
    starts = sum(1 for _t, w in truth["trace"] if w == "relay_on")
    files = (
        sorted(p.name for p in (outp / "sd" / "log").glob("*"))
        if (outp / "sd" / "log").exists()
        else []
    )
    faults = ", ".join(sorted({f["kind"] for f in sc["fault"]})) or "none"
    virt = sc["days"] * 86400
    lpcd = litres / pop / sc["days"]
    hours = sum(d["pump_hours"] for d in truth["days"])
    click.echo(
        f"village   {sc['village']['name']}  (device {v.device}, population {pop})\n"
        f"days      {sc['days']} from {sc['start']} ({sc['tz']})\n"
        f"faults    {faults}\n"
        f"supplied  {litres:,.0f} L, mean {lpcd:.1f} lpcd (truth)\n"
        f"pump      {starts} starts, {hours:.1f} h\n"
        f"board     {v.boots} boots, {len(files)} log files on the SD card\n"
        + simulate.uplink_line(v)
        + f"took      {secs:.1f} s ({virt / max(secs, 1e-9):,.0f}x real time)\n"
        f"wrote     {outp}/sd/  villages.csv  keys.json  truth.json\n"
        f"next      jalkal report {outp}/sd --villages {outp}/villages.csv "
        f"--keys {outp}/keys.json"
    )


# --- vboard -------------------------------------------------------------------


@click.command("vboard")
@click.option(
    "--fs",
    "fs_dir",
    metavar="DIR",
    help="Host folder that is the board's flash '/' (kept across runs; created "
    "if missing). Default: a temporary folder removed on exit.",
)
@click.option(
    "--board",
    "board",
    metavar="NAME",
    help="Board from boards/ (its name and chip show in the banner).",
)
@click.option(
    "--speed",
    type=float,
    default=1.0,
    show_default=True,
    help="The board's clock runs this many times faster than real time (ticks, "
    "sleeps, asyncio waits, the RTC, the plant); the watchdog counts real time.",
)
@click.option(
    "--no-clock",
    is_flag=True,
    help="The RTC starts unset (2000-01-01) instead of at the host's UTC time.",
)
@click.option(
    "--clock-start",
    "clock_start",
    metavar="TIME",
    help="The RTC starts at TIME (ISO 8601 with a zone, e.g. "
    "2026-03-01T23:40+05:30) instead of the host's: a day's end, or a month's, "
    "without waiting for it.",
)
@click.option(
    "--no-sd",
    is_flag=True,
    help="No SD card in the slot (the folder DIR/sd is the card otherwise).",
)
@click.option(
    "--romfs",
    "romfs",
    metavar="FILE",
    help="The board's MicroPython has ROMFS and a 128 KB romfs partition (as "
    "built with partitions-4MiB-romfs.csv), its bytes kept in FILE (created "
    "erased): for jalkal deploy --romfs and mpremote romfs.",
)
def vboard_cmd(
    fs_dir: str | None,
    board: str | None,
    speed: float,
    no_clock: bool,
    clock_start: str | None,
    no_sd: bool,
    romfs: str | None,
) -> None:
    """A virtual board on a pseudo-terminal, for mpremote and jalkal's field tools.

    Real MicroPython answers on the port printed first (`port: /dev/pts/N`): REPL,
    raw REPL, Ctrl-C and soft reset like a board. Its `machine` drives a simulated
    tank, pump and village (relay, level switches, meters), an SD card (DIR/sd) and
    a display, so deployed firmware runs. Serves until Ctrl-C or SIGTERM."""
    start = None
    if clock_start is not None:
        try:
            start = datetime.fromisoformat(clock_start)
        except ValueError:
            raise click.BadParameter(
                f"{clock_start!r}: not a time like 2026-03-01T23:40+05:30",
                param_hint="--clock-start",
            ) from None
    vboard.run(
        fs_dir, board, speed=speed, clock=not no_clock, sd=not no_sd, start=start,
        romfs=romfs,
    )  # fmt: skip
