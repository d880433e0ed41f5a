"""`jalkal sim`: a simulated village, its SD card, registry, keys and ground truth."""

from __future__ import annotations

import sys
import time
from pathlib import Path

import click

from .errors import JalkalError


def _display_snapshots(v, out: Path, every_h: float = 6.0) -> None:
    """Fit the board with a simulated SSD1306 and save its screen as PNGs."""
    from jksim import fbuf

    sys.modules.setdefault("framebuf", fbuf)
    from jkfw.display import Display
    from jkfw.ssd1306 import SSD1306

    class Bus:
        def writeto(self, addr, buf):
            pass

    out.mkdir(parents=True, exist_ok=True)
    screen = SSD1306(Bus(), 0x3C)
    disp = Display(screen, "ssd1306")
    clock = v.clock

    def snap():
        ctl = v.ctl
        if ctl is not None and v.plant.board_alive:
            disp.render(ctl.status())  # rendered only here: pure-Python pixels are slow
            t = v.plant.utc() + v.sc["tz_offset_min"] * 60
            stamp = time.strftime("%Y%m%d-%H%M", time.gmtime(t))
            fbuf.to_png(screen, 128, 64, str(out / f"{stamp}.png"), scale=3)
        clock.at(clock.ms + int(every_h * 3600 * 1000), snap)

    clock.at(int(every_h * 3600 * 1000) - 2, snap)


def _uplink_ok(url: str) -> bool:
    from urllib.parse import urlsplit

    try:
        u = urlsplit(url)
        return u.scheme in ("http", "mqtt") and bool(u.hostname) and bool(u.port)
    except ValueError:
        return False


def _uplink_line(v) -> str:  # type: ignore[no-untyped-def]
    m = v.modem
    if m is None:
        return ""
    up = v.ctl.uplink if v.ctl is not None else None
    left = f", {up.backlog:,} B waiting" if up is not None else ""
    return (
        f"uplink    {m.posts} posts, {m.air_bytes:,} B of SIM data (estimated), "
        f"{m.uart.tx_bytes + m.uart.rx_bytes:,} B on the modem UART{left}\n"
    )


@click.command("sim")
@click.option("--scenario", "scenario_name", required=True, metavar="NAME|FILE",
              help="normal, power-cuts, dry-borewell, overflow-fault, sensor-faults, "
              "sd-fault, sim-outage, or a TOML file (docs/scenarios.md).")  # fmt: skip
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
    "--display", "display_dir", metavar="DIR", help="Save display PNGs every 6 h."
)
@click.option(
    "--uplink", metavar="URL",
    help="The board's modem uploads to this server: http://HOST:PORT (jalkal serve) "
    "or mqtt://HOST:PORT (its broker; SIM7600 boards).",
)  # fmt: skip
def sim(
    scenario_name: str,
    days: int | None,
    seed: int | None,
    start: str | None,
    out: str,
    display_dir: str | None,
    uplink: str | None,
) -> None:
    """Simulate a village scheme: the real firmware on virtual time and a plant.

    Writes DIR/sd/ (the SD card as the firmware wrote it), DIR/villages.csv,
    DIR/keys.json and DIR/truth.json (exact litres per local day)."""
    from jksim import scenario, village

    if uplink is not None and not _uplink_ok(uplink):
        raise JalkalError(
            f"--uplink: {uplink!r} is not a server address; give http://HOST:PORT or "
            "mqtt://HOST:PORT"
        )
    try:
        sc = scenario.load(scenario_name, days, seed, start)
    except scenario.ScenarioError as e:
        raise JalkalError(f"scenario: {e}")
    outp = Path(out)
    if outp.exists() and not outp.is_dir():
        raise JalkalError(f"{out}: exists and is not a directory")
    t0 = time.perf_counter()
    label = (
        f"{sc['village']['name']} ({sc['name']}, {sc['days']} days, seed {sc['seed']})"
    )
    with click.progressbar(
        length=sc["days"] * 86400 * 1000, label=f"simulating {label}", file=sys.stderr,
        show_eta=False,
    ) as bar:  # fmt: skip
        done = [0]

        def progress(t: int, end: int) -> None:
            bar.update(t - done[0])
            done[0] = t

        def setup(v: village.Village) -> None:
            if display_dir:
                _display_snapshots(v, Path(display_dir))

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
        + _uplink_line(v)
        + f"took      {secs:.1f} s ({virt / max(secs, 1e-9):,.0f}x real time)\n"
        f"wrote     {outp}/sd/  villages.csv  keys.json  truth.json\n"
        f"next      jalkal report {outp}/sd --villages {outp}/villages.csv "
        f"--keys {outp}/keys.json"
    )
