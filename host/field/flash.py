"""`jalkal flash`: MicroPython onto a board, through esptool.

The image is checked before the board is touched: it must be an ESP image (magic
0xE9, a sane segment count, every segment inside the file, the checksum and the
appended SHA-256 right) for the board's chip (the extended header's chip id), and it
must be either a full firmware (bootloader, partition table and app: MicroPython's
downloadable firmware.bin, written at the chip's bootloader offset) or an app alone
(written at the app partition, over a bootloader already on the board). Then esptool
connects, the chip it finds must be the image's, and it erases, writes and verifies.
"""

from __future__ import annotations

import hashlib
import struct
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..console import show
from ..errors import JalkalError

IMAGE_MAGIC = 0xE9  # esptool: ESPLoader.ESP_IMAGE_MAGIC
CHECKSUM_SEED = 0xEF  # esptool: ESPLoader.ESP_CHECKSUM_MAGIC
HEADER_LEN = 24  # 8-byte common header + 16-byte extended header (ESP32 and later)
MAX_SEGMENTS = 16
APP_DESC_MAGIC = 0xABCD5432  # esp_app_desc_t, at the start of an app's first segment
PARTITION_MAGIC = b"\xaa\x50"
PARTITION_TABLE_OFFSET = 0x8000  # ESP-IDF's default, and MicroPython's
APP_OFFSET = 0x10000  # the factory app partition in MicroPython's tables
ROM_BAUD = 115200
MAX_IMAGE_BYTES = 16 << 20


@dataclass(frozen=True)
class Chip:
    name: str  # esptool's --chip name
    label: str  # esptool's CHIP_NAME
    image_chip_id: int  # the image header's chip id (esptool: IMAGE_CHIP_ID)
    bootloader_offset: int  # where the bootloader goes (BOOTLOADER_FLASH_OFFSET)


# checked against esptool's targets/ in the tests
CHIPS = {
    "esp32": Chip("esp32", "ESP32", 0, 0x1000),
    "esp32s3": Chip("esp32s3", "ESP32-S3", 9, 0x0),
}


class ImageError(JalkalError):
    """The file is not a firmware image jalkal can put on a board."""


@dataclass(frozen=True)
class AppDesc:
    project: str
    version: str
    idf: str


@dataclass(frozen=True)
class Image:
    """One ESP image inside a file."""

    at: int  # offset in the file
    length: int  # bytes, up to and with the checksum and digest
    chip_id: int
    segments: int
    flash_bytes: int  # flash size the header names
    app: AppDesc | None


@dataclass(frozen=True)
class Firmware:
    name: str
    data: bytes
    chip: Chip
    kind: str  # "full": bootloader + partition table + app; "app": an app alone
    address: int  # flash offset of the file's first byte
    app: AppDesc | None
    flash_bytes: int  # what the bootloader is built for ("full" only; else 0)

    def describe(self) -> str:
        what = (
            "bootloader, partition table and app"
            if self.kind == "full"
            else "an app alone, for a board that has a bootloader"
        )
        app = self.app
        title = f"{app.project} {app.version}" if app else "firmware"
        return (
            f"{title} for the {self.chip.label} ({what}); {len(self.data):,} bytes "
            f"at {self.address:#x}"
        )


def chip_label(chip_id: int) -> str:
    """A chip id's name, from esptool's own table."""
    for c in CHIPS.values():
        if c.image_chip_id == chip_id:
            return c.label
    try:
        from esptool.targets import CHIP_DEFS

        for cls in CHIP_DEFS.values():
            if getattr(cls, "IMAGE_CHIP_ID", None) == chip_id:
                return str(cls.CHIP_NAME)
    except ImportError:  # pragma: no cover - esptool is a dependency
        pass
    return f"unknown chip id {chip_id}"


def _cstr(b: bytes) -> str:
    return b.split(b"\0", 1)[0].decode("ascii", "replace")


def parse_image(data: bytes, at: int, name: str) -> Image:
    """The ESP image at file offset `at`; ImageError saying what is wrong."""
    where = f"{name}" if at == 0 else f"{name} (image at {at:#x})"
    head = data[at : at + HEADER_LEN]
    if len(head) < HEADER_LEN:
        raise ImageError(
            f"{where}: {len(head)} bytes, too short for an image header: the file is "
            "cut short (an interrupted copy?)"
        )
    magic, nseg, _mode, size_freq, _entry = struct.unpack_from("<BBBBI", head)
    if magic != IMAGE_MAGIC:
        raise ImageError(
            f"{where}: not an ESP firmware image (first byte {magic:#04x}, "
            f"expected {IMAGE_MAGIC:#04x})"
        )
    if not 1 <= nseg <= MAX_SEGMENTS:
        raise ImageError(
            f"{where}: {nseg} segments (an image has 1 to {MAX_SEGMENTS}): the file "
            "is damaged or not a firmware image"
        )
    chip_id = struct.unpack_from("<H", head, 12)[0]
    digest = head[23]
    if digest not in (0, 1):
        raise ImageError(f"{where}: damaged image header (hash flag {digest})")
    pos = at + HEADER_LEN
    checksum = CHECKSUM_SEED
    app = None
    for i in range(nseg):
        if pos + 8 > len(data):
            raise ImageError(
                f"{where}: the file ends inside segment {i + 1} of {nseg}: it is cut "
                "short (an interrupted download?); get the file again"
            )
        _addr, size = struct.unpack_from("<II", data, pos)
        pos += 8
        if pos + size > len(data):
            raise ImageError(
                f"{where}: segment {i + 1} of {nseg} needs {size:,} bytes, the file "
                f"has {len(data) - pos:,} left: it is cut short (an interrupted "
                "download?); get the file again"
            )
        seg = data[pos : pos + size]
        if (
            app is None
            and size >= 144
            and struct.unpack_from("<I", seg)[0] == (APP_DESC_MAGIC)
        ):
            app = AppDesc(_cstr(seg[48:80]), _cstr(seg[16:48]), _cstr(seg[112:144]))
        for b in seg:
            checksum ^= b
        pos += size
    end = pos + 15 - (pos - at) % 16  # the checksum ends a 16-byte block
    if end >= len(data):
        raise ImageError(f"{where}: the file ends before the image's checksum")
    if data[end] != checksum:
        raise ImageError(
            f"{where}: checksum mismatch ({data[end]:#04x}, computed {checksum:#04x}):"
            " the file is damaged; get it again"
        )
    end += 1
    if digest:
        if end + 32 > len(data):
            raise ImageError(f"{where}: the file ends inside the image's SHA-256")
        if hashlib.sha256(data[at:end]).digest() != data[end : end + 32]:
            raise ImageError(
                f"{where}: SHA-256 mismatch: the file is damaged; get it again"
            )
        end += 32
    return Image(at, end - at, chip_id, nseg, 1 << (20 + (size_freq >> 4)), app)


def _partitions(data: bytes, at: int) -> list[tuple[int, int, int, int, str]]:
    """(type, subtype, offset, size, label) of the partition table at `at`."""
    out = []
    for pos in range(at, min(at + 0xC00, len(data) - 31), 32):
        if data[pos : pos + 2] != PARTITION_MAGIC:
            break
        _m, typ, sub, off, size, label, _flags = struct.unpack_from(
            "<2sBBII16sI", data, pos
        )
        out.append((typ, sub, off, size, _cstr(label)))
    return out


def _not_an_image(data: bytes, name: str) -> ImageError:
    if not data:
        return ImageError(f"{name}: the file is empty")
    if data.startswith(b"\x7fELF"):
        return ImageError(
            f"{name}: an ELF file, not a flashable image; use the .bin built from it"
        )
    if data.startswith(b"UF2\n"):
        return ImageError(
            f"{name}: a UF2 file (for drag-and-drop boards); use MicroPython's .bin "
            "for the ESP32"
        )
    if data.startswith(b"PK\x03\x04"):
        return ImageError(f"{name}: a zip archive; unpack it and give the .bin inside")
    return ImageError(
        f"{name}: not an ESP firmware image (it starts with {data[:4].hex(' ')}, an "
        f"image starts with {IMAGE_MAGIC:02x}); use MicroPython's firmware .bin for "
        "the board's chip"
    )


def _chip(chip_id: int, name: str) -> Chip:
    for c in CHIPS.values():
        if c.image_chip_id == chip_id:
            return c
    raise ImageError(
        f"{name}: built for the {chip_label(chip_id)}; jalkal boards are "
        + " or ".join(c.label for c in CHIPS.values())
    )


def identify(data: bytes, name: str) -> Firmware:
    """What the file is, where it goes, for which chip; ImageError if unusable."""
    if len(data) > MAX_IMAGE_BYTES:
        raise ImageError(f"{name}: {len(data):,} bytes, larger than any ESP32 flash")
    boot_at = 0
    if data[:1] != bytes([IMAGE_MAGIC]):
        # a whole-flash image from 0x0 (esptool merge-bin without --target-offset):
        # erased flash (0xFF) up to the ESP32's bootloader at 0x1000
        lead = max(c.bootloader_offset for c in CHIPS.values())
        if not (
            len(data) > lead
            and data[lead] == IMAGE_MAGIC
            and data[:lead] == b"\xff" * lead
        ):
            raise _not_an_image(data, name)
        boot_at = lead
    first = parse_image(data, boot_at, name)
    chip = _chip(first.chip_id, name)
    address = chip.bootloader_offset - boot_at
    if address < 0:
        raise ImageError(
            f"{name}: the bootloader is at {boot_at:#x} in the file, the "
            f"{chip.label}'s goes at {chip.bootloader_offset:#x} in flash"
        )
    if boot_at == 0 and first.app is not None:
        return Firmware(name, data, chip, "app", APP_OFFSET, first.app, 0)
    pt_at = PARTITION_TABLE_OFFSET - address
    if data[pt_at : pt_at + 2] == PARTITION_MAGIC:
        if first.at + first.length > pt_at:
            raise ImageError(f"{name}: the bootloader runs into the partition table")
        apps = [p for p in _partitions(data, pt_at) if p[0] == 0]
        if not apps:
            raise ImageError(f"{name}: its partition table has no app partition")
        _t, _s, app_off, app_size, label = apps[0]
        app_at = app_off - address
        if app_at >= len(data):
            raise ImageError(
                f"{name}: the file ends before the app (partition {label!r} at "
                f"{app_off:#x}): it is cut short; get the file again"
            )
        app = parse_image(data, app_at, name)
        if app.chip_id != first.chip_id:
            raise ImageError(
                f"{name}: the bootloader is for the {chip.label}, the app for the "
                f"{chip_label(app.chip_id)}"
            )
        if app.length > app_size:
            raise ImageError(
                f"{name}: the app ({app.length:,} bytes) is larger than its partition "
                f"{label!r} ({app_size:,} bytes)"
            )
        return Firmware(name, data, chip, "full", address, app.app, first.flash_bytes)
    if len(data) < pt_at + 2 and first.at + first.length < len(data):
        raise ImageError(
            f"{name}: the file ends at {len(data):,} bytes, before the partition "
            f"table (at {PARTITION_TABLE_OFFSET:#x} in flash): it is cut short; get "
            "the file again"
        )
    raise ImageError(
        f"{name}: an {chip.label} image, but neither a full firmware (no partition "
        f"table at {PARTITION_TABLE_OFFSET:#x}) nor an app (no app description): a "
        "bootloader alone? Use MicroPython's firmware .bin, which holds all three"
    )


def load(path: str, chip: str | None) -> Firmware:
    """Read and check a firmware file; `chip`: the one the technician named."""
    p = Path(path)
    try:
        data = p.read_bytes()
    except IsADirectoryError:
        raise ImageError(f"{p}: a directory; give the firmware .bin file")
    except FileNotFoundError:
        raise ImageError(f"{p}: no such file")
    except OSError as e:
        raise ImageError(f"cannot read {p}: {e.strerror or e}")
    fw = identify(data, str(p))
    if chip is not None and CHIPS[chip] != fw.chip:
        raise ImageError(
            f"{p} is built for the {fw.chip.label}, not the {CHIPS[chip].label} "
            f"(--chip {chip}); use the {CHIPS[chip].label} firmware (nothing was "
            "written)"
        )
    return fw


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


def _check_fits(fw: Firmware, size_name: str | None) -> None:
    if not size_name:
        return
    from esptool.util import flash_size_bytes

    have = flash_size_bytes(size_name) or 0
    if not have:
        return
    need = max(fw.address + len(fw.data), fw.flash_bytes)
    if need > have:
        raise JalkalError(
            f"{fw.name} needs {need >> 20 or 1} MB of flash, this board has "
            f"{size_name}: use the build for {size_name} boards (nothing was written)"
        )
