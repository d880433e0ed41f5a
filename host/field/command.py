"""The field tools' commands: each opens what its tool needs (a Board through
mpremote, a serial port, esptool's port) and hands it to the tool's run()."""

from __future__ import annotations

import contextlib
import time
from pathlib import Path
from typing import Any

import click

from ..console import plural, say
from ..errors import JalkalError
from . import broker, calibrate, deploy, doctor, flash, monitor, provision, pull
from . import romfs as romfs_deploy
from .board import connect, find_port, serial_ports


def _port_or_the_one(
    ctx: click.Context, param: click.Parameter, value: str | None
) -> str | None:
    """PORT as given, else the one USB serial port plugged in."""
    if value or ctx.resilient_parsing:
        return value
    try:
        return find_port()
    except JalkalError as e:
        raise click.UsageError(f"Missing option '--port': {e}") from None


# the --port option of every command that talks to a board
port_option = click.option(
    "--port",
    "-p",
    envvar="JALKAL_PORT",
    show_envvar=True,
    callback=_port_or_the_one,
    metavar="PORT",
    help="Serial port (/dev/ttyUSB0, COM3), the vboard's pty, or a socket:// / "
    "rfc2217:// URL [default: the one USB serial port plugged in].",
)


# --- ports --------------------------------------------------------------------


@click.command("ports")
@click.option(
    "--all", "show_all", is_flag=True, help="Also list serial ports that are not USB."
)
def ports_cmd(show_all: bool) -> None:
    """List the serial ports a board can be on.

    Each with its description, USB vendor and product id (VID:PID) and serial
    number. A board command given no -p PORT (and no JALKAL_PORT) uses the one USB
    serial port listed here, and asks for -p when there are several."""
    ports = serial_ports(usb_only=not show_all)
    if not ports:
        raise JalkalError(
            f"no {'' if show_all else 'USB '}serial port found: plug the board in (a "
            "charge-only cable shows none; a CP210x or CH340 board may need its driver)"
        )
    rows = [("PORT", "DESCRIPTION", "VID:PID", "SERIAL")] + [
        (p.device, p.description, p.vid_pid or "-", p.serial or "-") for p in ports
    ]
    w0, w1, w2 = (max(len(r[i]) for r in rows) for i in range(3))
    for dev, desc, vid_pid, serial in rows:
        click.echo(f"{dev:<{w0}}  {desc:<{w1}}  {vid_pid:<{w2}}  {serial}")


# --- provision ----------------------------------------------------------------
SENSOR_OPTIONS = (  # the sensors and their calibration (calibrate.py)
    ("--bore", {"metavar": "K=V,...", "help": "Borewell transducer: in (adc, ads0-"
                "ads3), range_m, install_m, intake_m, ... (docs/sensors.md)."}),
    ("--tank", {"metavar": "K=V,...", "help": "Tank level: in (sonar, adc, ads0-ads3)"
                ", height_m, diameter_m or shape=rect,length_m,width_m, mount_mm; "
                "sonar=trigger for a JSN-SR04T with R27 = 120k."}),
    ("--ph-in", {"metavar": "IN", "help": "The pH board's input (adc, ads0-ads3)."}),
    ("--ph-cal", {"multiple": True, "metavar": "MV=PH",
                  "help": "A pH buffer's reading, twice: --ph-cal 2500=7.00 ..."}),
    ("--ec-in", {"metavar": "IN", "help": "The EC board's input (adc, ads0-ads3)."}),
    ("--ec-cal", {"multiple": True, "metavar": "MV=USCM",
                  "help": "An EC standard's reading = its uS/cm at 25 C, twice."}),
    ("--cal-temp", {"type": float, "metavar": "C",
                    "help": "The buffers' or standards' temperature [pH: 25]."}),
    ("--tds-factor", {"type": float, "metavar": "K", "help": "TDS = K x EC25."}),
    ("--ct-ratio", {"type": float, "metavar": "A_PER_V",
                    "help": "The motor's CT, amps per volt (SCT-013-030: 30)."}),
    ("--motor-aux", {"is_flag": True, "help": "The motor's auxiliary contact."}),
    ("--cal-date", {"metavar": "YYYY-MM-DD", "help": "Calibrated on [today]."}),
)  # fmt: skip


def sensor_options(f: Any) -> Any:
    for name, kw in reversed(SENSOR_OPTIONS):
        f = click.option(name, **kw)(f)
    return f


@click.command("provision")
@click.option("--board", required=True, metavar="NAME", help="Board file in boards/.")
@click.option("--village", required=True, metavar="NAME", help="Village name.")
@click.option(
    "--population",
    required=True,
    type=click.IntRange(1, 10_000_000),
    help="People served (lpcd is litres / population).",
)
@click.option("--device", metavar="ID", help="8 hex digits; default: a new random id.")
@click.option(
    "--out", required=True, metavar="DIR", help="Folder for this board's config.json."
)
@click.option("--keys", metavar="FILE", help="Keys file [default: DIR/keys.json].")
@click.option(
    "--villages", metavar="FILE", help="Village registry [default: DIR/villages.csv]."
)
@click.option("--block", default="", help="Block, for reports.")
@click.option("--district", default="", help="District, for reports.")
@click.option("--state", default="", help="State, for reports.")
@click.option(
    "--tz",
    default=provision.DEFAULT_TZ,
    show_default=True,
    help="The village's time zone.",
)
@click.option("--uplink", metavar="URL", help="Ingest server, e.g. http://HOST:8080.")
@click.option("--apn", metavar="APN", help="The SIM operator's APN.")
@click.option(
    "--sms", multiple=True, metavar="NUMBER", help="Send SMS alerts here (repeat)."
)
@click.option(
    "--sms-allow",
    multiple=True,
    metavar="NUMBER",
    help="Accept SMS commands from this number (repeat).",
)
@click.option(
    "--sms-pin",
    metavar="PIN",
    help="4-8 digits every SMS command must end with [default: a new random one].",
)
@click.option(
    "--country-code",
    default=provision.DEFAULT_COUNTRY,
    show_default=True,
    metavar="CC",
    help="Country code of SMS numbers given without one.",
)
@click.option(
    "--meter-litres-per-pulse",
    "litres_per_pulse",
    type=click.FloatRange(0, 10000, min_open=True),
    metavar="L",
    help="Litres per meter pulse, both meters [default: the firmware's, 10].",
)
@click.option(
    "--source-litres-per-pulse",
    type=click.FloatRange(0, 10000),
    metavar="L",
    help="The borewell (source) meter's, if it differs; 0: no source meter.",
)
@click.option(
    "--set",
    "settings",
    multiple=True,
    metavar="KEY=VALUE",
    help="Any other firmware setting, e.g. --set max_run_s=7200 (repeat).",
)
@click.option(
    "--force", is_flag=True, help="Re-provision a device of the same village."
)
@click.option(
    "--server-cert", metavar="PEM",
    help="https:// or mqtts:// (SIM7600): the server's certificate, pinned.",
)  # fmt: skip
@click.option(
    "--mosquitto",
    metavar="DIR",
    help="Add the device's MQTT login to the broker's password file in DIR "
    "(made by `jalkal broker`).",
)
@sensor_options
def provision_cmd(
    board: str,
    village: str,
    population: int,
    device: str | None,
    out: str,
    keys: str | None,
    villages: str | None,
    block: str,
    district: str,
    state: str,
    tz: str,
    uplink: str | None,
    apn: str | None,
    sms: tuple[str, ...],
    sms_allow: tuple[str, ...],
    sms_pin: str | None,
    country_code: str,
    litres_per_pulse: float | None,
    source_litres_per_pulse: float | None,
    settings: tuple[str, ...],
    force: bool,
    mosquitto: str | None,
    server_cert: str | None,
    **sensors: Any,
) -> None:
    """Make a device id and key, write the board's config.json, and add the device
    to the keys file and the village registry.

    Every value is checked by the firmware's own config validator first; nothing is
    written if anything is wrong. The keys file and config.json are owner-only."""
    req = provision.Request(
        board=board,
        village=village,
        population=population,
        out=Path(out),
        device=device,
        keys=Path(keys) if keys else None,
        villages=Path(villages) if villages else None,
        block=block,
        district=district,
        state=state,
        tz=tz,
        uplink=uplink,
        apn=apn,
        sms=sms,
        sms_allow=sms_allow,
        sms_pin=sms_pin,
        country_code=country_code,
        litres_per_pulse=litres_per_pulse,
        source_litres_per_pulse=source_litres_per_pulse,
        settings=dict(provision.parse_setting(s) for s in settings),
        force=force,
        mosquitto=Path(mosquitto) if mosquitto else None,
        server_cert=Path(server_cert) if server_cert else None,
        calibration=calibrate.Calibration(tz=tz, **sensors),
    )
    click.echo(provision.summary(req, provision.provision(req)))


# --- broker -------------------------------------------------------------------


@click.command("broker")
@click.option("--keys", required=True, metavar="FILE", help="The keys file.")
@click.option("--out", required=True, metavar="DIR", help="Folder for the files.")
@click.option(
    "--server-user",
    "servers",
    multiple=True,
    metavar="USER",
    help=f"An account for a `jalkal serve` worker (repeat for several) "
    f"[default: {broker.SERVER_USER}].",
)
@click.option(
    "--port",
    type=click.IntRange(0, 65535),
    default=1883,
    show_default=True,
    help="Plain MQTT listener (0: none).",
)
@click.option(
    "--tls-port",
    type=click.IntRange(1, 65535),
    default=8883,
    show_default=True,
    help="MQTT over TLS listener (with --tls-cert and --tls-key).",
)
@click.option("--bind", metavar="ADDRESS", help="Listen on this address only.")
@click.option("--tls-cert", metavar="PEM", help="The broker's certificate (chain).")
@click.option("--tls-key", metavar="PEM", help="The broker's private key.")
def broker_cmd(
    keys: str,
    out: str,
    servers: tuple[str, ...],
    port: int,
    tls_port: int,
    bind: str | None,
    tls_cert: str | None,
    tls_key: str | None,
) -> None:
    """Write Mosquitto's password file, ACL file and config for every device of a
    keys file and the servers' accounts.

    Each device logs in with its id and a password derived from its key, publishes
    only on its own jalkal/v1/<device>/up and reads only its own .../ack; each server
    account (password in DIR/<user>.password, owner-only, kept when it exists) reads
    every up and publishes every ack. No anonymous clients; the broker uses the user
    name as client id, so no one can take over another's session."""
    ls = broker.Listeners(
        port=port,
        bind=bind,
        tls_port=tls_port,
        tls_cert=Path(tls_cert) if tls_cert else None,
        tls_key=Path(tls_key) if tls_key else None,
    )
    click.echo(
        broker.summary(broker.write_all(Path(keys), Path(out), list(servers), ls))
    )


# --- flash --------------------------------------------------------------------


@click.command("flash")
@port_option
@click.option(
    "--chip",
    type=click.Choice(sorted(flash.CHIPS)),
    help="The board's chip; the image must match [default: the image's].",
)
@click.option(
    "--baud",
    type=click.IntRange(9600, 3_000_000),
    default=460800,
    show_default=True,
    help="Speed for writing (connecting is always at 115200).",
)
@click.option(
    "--erase/--no-erase",
    default=None,
    help="Erase the whole flash first [default: yes for a full firmware, no for "
    "an app alone]. Erasing removes the board's config and its logs in flash.",
)
@click.option(
    "--connect-attempts",
    type=click.IntRange(0, 100),
    default=7,
    show_default=True,
    help="Tries to reach the board's bootloader (0: keep trying).",
)
@click.argument("firmware", metavar="FIRMWARE.bin")
def flash_cmd(
    port: str,
    chip: str | None,
    baud: int,
    erase: bool | None,
    connect_attempts: int,
    firmware: str,
) -> None:
    """Put MicroPython on a board: check the image, erase, write, verify.

    FIRMWARE.bin is MicroPython's downloadable firmware for the board's chip
    (bootloader, partition table and app in one file); it is checked before the
    board is touched. An app image alone updates a board that already has a
    bootloader (with --no-erase), at the app partition the board's own partition
    table names (read from the board first)."""
    fw = flash.load(firmware, chip)
    if erase is None:
        erase = fw.kind == "full"
    if erase and fw.kind == "app":
        raise JalkalError(
            f"{firmware} is an app alone; after an erase the board would have no "
            "bootloader. Use the full firmware .bin, or --no-erase to update the app "
            "of a board that already runs MicroPython"
        )
    click.echo(f"{fw.name}: {fw.describe()}")
    flash.flash_board(fw, port, baud, erase, connect_attempts)
    click.echo(f"done: {fw.chip.label} flashed and verified; it is restarting")
    click.echo(f"next: jalkal deploy --port {port} --config DIR/config.json")


# --- deploy -------------------------------------------------------------------


@click.command("deploy")
@port_option
@click.option(
    "--config",
    "config_path",
    required=True,
    metavar="FILE",
    help="The board's config.json (from jalkal provision).",
)
@click.option(
    "--source", is_flag=True, help="Copy the .py sources instead of mpy-cross bytecode."
)
@click.option(
    "--boot-wait",
    "boot_wait",
    type=click.FloatRange(0.5, 120),
    default=deploy.BOOT_WAIT_S,
    show_default=True,
    metavar="S",
    help="Seconds to watch the board boot after the reset.",
)
@click.option("--no-boot-check", is_flag=True,
              help="Do not reset the board afterwards.")  # fmt: skip
@click.option(
    "--romfs",
    is_flag=True,
    help="Also write the firmware to the board's romfs partition and boot it from "
    "there (its bytecode runs from flash, not copied into the heap). Needs a "
    "MicroPython built with ROMFS and a romfs partition.",
)
def deploy_cmd(
    port: str,
    config_path: str,
    source: bool,
    boot_wait: float,
    no_boot_check: bool,
    romfs: bool,
) -> None:
    """Put the firmware, config.json and main.py on a board; check it boots.

    Only files whose sha256 differs are copied. The firmware goes into the slot
    the board is not running and is switched to at the end, so an interrupted
    deploy leaves the previous version bootable: run it again. With --romfs the
    slot is then the fallback while the romfs partition is written."""
    t0 = time.monotonic()
    if romfs and source:
        raise click.UsageError("--romfs and --source cannot go together")
    prep = deploy.prepare(config_path, source)
    say(f"connecting to {port}")
    with connect(port) as b:
        if romfs:
            res = romfs_deploy.run(b, prep, boot_wait, not no_boot_check)
        else:
            res = deploy.run(b, prep, boot_wait, not no_boot_check)
    took = time.monotonic() - t0
    click.echo(
        f"deployed jkfw {deploy.firmware_version()} to {port} in {took:.0f} s"
        f" ({deploy.summary(res)})" + (f"; running {res.booted}" if res.booted else "")
    )
    click.echo(f"next: jalkal doctor --port {port}")


# --- doctor -------------------------------------------------------------------


@click.command("doctor")
@port_option
@click.option(
    "--test-relay",
    is_flag=True,
    help="Also switch the pump relay on for 2 s (never while dry-run reads asserted).",
)
@click.option(
    "--set-clock",
    is_flag=True,
    help="Set the board's clock from this laptop's when it is off.",
)
@click.option("--no-restart", is_flag=True,
              help="Leave the firmware stopped afterwards.")  # fmt: skip
def doctor_cmd(port: str, test_relay: bool, set_clock: bool, no_restart: bool) -> None:
    """Check a board: MicroPython, heap, firmware files, config, SD card, flash,
    clock, modem and SIM, uploads, switches and meters; a fix for each ✗.

    Never switches the pump unless --test-relay. Exit status 1 if any check fails."""
    with connect(port) as b:
        checks, head = doctor.run(b, set_clock, test_relay, not no_restart)
    click.echo(doctor.render(checks, head))
    bad = sum(1 for c in checks if c.status == doctor.BAD)
    if bad:
        raise JalkalError(
            f"{plural(bad, 'check')} failed ({doctor.BAD} above, each with its fix)"
        )


# --- pull ---------------------------------------------------------------------


@click.command("pull")
@port_option
@click.option(
    "--out",
    "out_dir",
    required=True,
    metavar="DIR",
    help="Folder on the laptop; the logs go to DIR/<device>/.",
)
@click.option(
    "--clear-after",
    is_flag=True,
    help="Then delete the SD logs that verified, except today's and any "
    "not yet uploaded.",
)
@click.option("--no-restart", is_flag=True,
              help="Leave the firmware stopped afterwards.")  # fmt: skip
def pull_cmd(port: str, out_dir: str, clear_after: bool, no_restart: bool) -> None:
    """Copy the board's SD and flash logs to the laptop, verified.

    Run it again to fetch only what is new. The board keeps every file unless
    --clear-after, and then only SD logs that were copied and verified."""
    with connect(port) as b:
        res = pull.run(b, out_dir, clear_after, not no_restart)
    click.echo(pull.totals(res))
    if clear_after:
        click.echo(
            f"removed {plural(len(res.removed), 'file')} from the board"
            + (f": {', '.join(res.removed)}" if res.removed else "")
            + (f"; kept {', '.join(res.kept)}" if res.kept else "")
        )
    click.echo(f"logs in {res.out}")
    click.echo(
        f"next: jalkal report {res.out} --villages villages.csv --keys keys.json"
    )


# --- monitor ------------------------------------------------------------------


@click.command("monitor")
@port_option
@click.option(
    "--keys", "keys", metavar="FILE", help="Keys file: check each frame's MAC."
)
@click.option(
    "--restart",
    "do_restart",
    is_flag=True,
    help="Soft-reset the board first, to watch it boot.",
)
@click.option("--seconds", type=click.FloatRange(0, None), metavar="S",
              help="Stop after S seconds (default: until Ctrl-C).")  # fmt: skip
def monitor_cmd(
    port: str, keys: str | None, do_restart: bool, seconds: float | None
) -> None:
    """Show what a running board prints, with its frames decoded. Ctrl-C stops.

    Only listens: the firmware keeps running (unless --restart, which soft-resets
    it once at the start)."""
    ser = monitor.open_port(port)
    try:
        p = monitor.run(ser, keys, seconds, do_restart)
    finally:
        with contextlib.suppress(Exception):
            ser.close()
    click.echo(f"monitor: {p.frames} frames, {p.lines} other lines", err=True)
