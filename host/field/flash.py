"""`jalkal flash`: MicroPython onto a board, through esptool.

The image is checked before the board is touched (images.py: an ESP image for the
board's chip, whole and undamaged; a full firmware whose partition table ESP-IDF's
bootloader accepts and whose app is whole, or an app alone). Then esptool connects,
the chip it finds must be the image's, and it erases, writes and verifies. An app
alone goes to the app partition the board's own partition table names, read from
the board first; where that table does not say it plainly, nothing is written.
"""

from __future__ import annotations

import struct
from collections.abc import Callable
from dataclasses import replace
from typing import Any

from ..console import show
from ..errors import JalkalError
from .images import (
    APP_OFFSET,
    CHECKSUM_SEED,
    CHIPS,
    IMAGE_MAGIC,
    Chip,
    Firmware,
    ImageError,
    identify,
    load,
    parse_image,
)
from .partitions import (
    PARTITION_TABLE_OFFSET,
    TABLE_MAX,
    Partition,
    TableError,
    read_table,
)

__all__ = [
    "APP_OFFSET",
    "CHECKSUM_SEED",
    "CHIPS",
    "IMAGE_MAGIC",
    "Chip",
    "Firmware",
    "ImageError",
    "app_partition",
    "flash_board",
    "identify",
    "load",
    "parse_image",
]

ROM_BAUD = 115200

# --- the board ------------------------------------------------------------------

NO_ANSWER = (
    "no board answered on {port}. Check that the USB cable carries data (not a "
    "charge-only cable) and the board has power; then hold the BOOT button, press "
    "and release EN (RST), release BOOT, and run this again"
)
NO_PORT = (
    "cannot open {port} ({why}). Is the board plugged in (ls /dev/ttyUSB* "
    "/dev/ttyACM*)? Is another program using the port (jalkal monitor, screen, an "
    "IDE)? On Linux your user must be in the dialout group"
)
BROKEN = (
    "{stage} failed: {why}. The board will not start until a flash completes: run "
    "the same command again (if it does not connect, hold BOOT while pressing EN)"
)


def _esptool() -> Any:
    """esptool's command functions (esptool 5: esptool.cmds)."""
    import esptool

    major = int(str(getattr(esptool, "__version__", "0")).split(".")[0] or 0)
    if major < 5:
        raise JalkalError(
            f"jalkal flash needs esptool 5 or newer (this is {esptool.__version__}): "
            "pip install 'esptool>=5'"
        )
    from esptool import cmds

    return cmds


def _why(e: BaseException) -> str:
    text = " ".join(str(e).split("\nFor troubleshooting")[0].split())
    return text or type(e).__name__


def _errors() -> tuple[type[BaseException], ...]:
    from esptool.util import FatalError
    from serial import SerialException

    return (FatalError, SerialException, OSError, StopIteration, struct.error)


def flash_board(
    fw: Firmware,
    port: str,
    baud: int = 460800,
    erase: bool = True,
    connect_attempts: int = 7,
    say: Callable[[str], None] = show,
    cmds: Any = None,
) -> None:
    """Connect, check the chip, erase (if asked), write, verify, reset."""
    cmds = cmds or _esptool()
    errors = _errors()
    step = 0
    total = 5 if erase else 4

    def stage(text: str) -> str:
        nonlocal step
        step += 1
        say(f"[{step}/{total}] {text}")
        return text

    stage(f"connecting to {port}")
    try:
        esp = cmds.detect_chip(port, ROM_BAUD, "default-reset", False, connect_attempts)
    except errors as e:
        why = _why(e)
        if "could not open" in why.lower() or "busy or doesn't exist" in why:
            detail = why.split("(", 1)[1].rsplit(")", 1)[0] if "(" in why else why
            raise JalkalError(NO_PORT.format(port=port, why=detail))
        raise JalkalError(NO_ANSWER.format(port=port) + f" ({why})")
    with esp:
        if getattr(esp, "IMAGE_CHIP_ID", None) != fw.chip.image_chip_id:
            raise JalkalError(
                f"the board on {port} is an {esp.CHIP_NAME}, but {fw.name} is built "
                f"for the {fw.chip.label}: use the {esp.CHIP_NAME} firmware (nothing "
                "was written)"
            )
        doing = "preparing the board"
        try:
            esp = cmds.run_stub(esp)
            if baud != ROM_BAUD:
                esp.change_baud(baud)
            cmds.attach_flash(esp)
            size_name = cmds.detect_flash_size(esp)
            say(f"      board: {_describe(esp)}, {size_name or 'unknown size'} flash")
            if fw.kind == "app":
                fw = _place_app(cmds, esp, fw, size_name, say)
            _check_fits(fw, size_name)
            if erase:
                doing = stage(
                    "erasing the whole flash (its files too: config, logs in flash)"
                )
                cmds.erase_flash(esp)
            doing = stage(f"writing {len(fw.data):,} bytes at {fw.address:#x}")
            cmds.write_flash(esp, [(fw.address, fw.data)])
            doing = stage("verifying what was written")
            cmds.verify_flash(esp, [(fw.address, fw.data)])
            doing = stage("restarting the board")
            cmds.reset_chip(esp, "hard-reset")
        except JalkalError:
            raise
        except errors as e:
            raise JalkalError(BROKEN.format(stage=doing, why=_why(e)))


def _describe(esp: Any) -> str:
    try:
        return str(esp.get_chip_description())
    except Exception:  # only a label: never stop a flash for it
        return str(esp.CHIP_NAME)


def _flash_bytes(size_name: str | None) -> int:
    """The board's flash in bytes, from esptool's name for it; 0 if unknown."""
    if not size_name:
        return 0
    from esptool.util import flash_size_bytes

    return int(flash_size_bytes(size_name) or 0)


def _check_fits(fw: Firmware, size_name: str | None) -> None:
    have = _flash_bytes(size_name)
    if not have:
        return
    need = max(fw.address + len(fw.data), fw.flash_bytes)
    if need > have:
        raise JalkalError(
            f"{fw.name} needs {need >> 20 or 1} MB of flash, this board has "
            f"{size_name}: use the build for {size_name} boards (nothing was written)"
        )


FULL_INSTEAD = (
    "flash the full firmware .bin instead (bootloader, partition table and app; "
    "its erase removes the board's files: pull its logs first). Nothing was written"
)


def app_partition(raw: bytes, flash_bytes: int, name: str, size: int) -> Partition:
    """Where an app alone (`size` bytes) goes on a board whose partition table
    reads `raw`: its factory app partition, when the table is whole and no OTA
    slot could start instead (ESP-IDF's bootloader starts the factory app unless
    an OTA data partition names an OTA slot)."""
    try:
        table = read_table(raw, flash_bytes or 1 << 32)
    except TableError as e:
        raise JalkalError(
            f"the board's partition table (at {PARTITION_TABLE_OFFSET:#x}) is "
            f"damaged ({e}), so where {name} goes is unknown: {FULL_INSTEAD}"
        )
    if not table:
        raise JalkalError(
            f"the board has no partition table (blank flash at "
            f"{PARTITION_TABLE_OFFSET:#x}), so where {name} goes is unknown: "
            f"{FULL_INSTEAD}"
        )
    apps = [p for p in table if p.type == 0]
    ota = [p.label for p in apps if 0x10 <= p.subtype < 0x20]
    if ota and any(p.type == 1 and p.subtype == 0 for p in table):
        raise JalkalError(
            f"the board's partition table has OTA app slots ({', '.join(ota)}): "
            f"which one starts depends on the board's OTA data, and jalkal will not "
            f"guess where {name} goes: {FULL_INSTEAD}"
        )
    factory = [p for p in apps if p.subtype == 0]
    if not factory:
        raise JalkalError(
            "the board's partition table has no factory app partition (it has "
            f"{', '.join(p.label for p in apps) or 'no app partition'}), so where "
            f"{name} goes is unknown: {FULL_INSTEAD}"
        )
    part = factory[0]
    if size > part.size:
        raise JalkalError(
            f"{name} ({size:,} bytes) is larger than the board's app partition "
            f"{part.label!r} ({part.size:,} bytes): {FULL_INSTEAD}"
        )
    return part


def _place_app(
    cmds: Any, esp: Any, fw: Firmware, size_name: str | None, say: Callable[[str], None]
) -> Firmware:
    """The app alone, at the app partition of the board's own partition table."""
    try:
        raw = cmds.read_flash(esp, PARTITION_TABLE_OFFSET, TABLE_MAX, no_progress=True)
    except _errors() as e:
        raise JalkalError(
            f"could not read the board's partition table ({_why(e)}). Nothing was "
            "written: run the same command again"
        )
    part = app_partition(bytes(raw), _flash_bytes(size_name), fw.name, len(fw.data))
    say(
        f"      app partition: {part.label!r} at {part.offset:#x}, {part.size:,} "
        "bytes (from the board's partition table)"
    )
    return replace(fw, address=part.offset)
