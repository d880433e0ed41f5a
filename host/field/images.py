"""What a firmware file is, before `jalkal flash` writes it.

An ESP image (esptool's format: magic 0xE9, 1 to 16 segments, a checksum, an
appended SHA-256) for the ESP32 or the ESP32-S3, and either

- a full firmware: bootloader, partition table and app in one file, as MicroPython
  ships it, written at the chip's bootloader offset. The partition table must pass
  the checks of ESP-IDF's bootloader (partitions.py), and the app the bootloader
  starts must be whole; or
- an app alone, for a board that already has a bootloader: the board's own
  partition table says where it goes (flash.py reads it).

Every refusal is an ImageError whose `reason` is one of REASONS (UNREADABLE: the
file could not be read).
"""

from __future__ import annotations

import hashlib
import re
import struct
from dataclasses import dataclass, replace
from pathlib import Path

from ..errors import JalkalError
from .partitions import (
    MD5_MAGIC,
    PARTITION_MAGIC,
    PARTITION_TABLE_OFFSET,
    TABLE_MAX,
    TableError,
    boot_partition,
    cstr,
    read_table,
)

IMAGE_MAGIC = 0xE9  # esptool: ESPLoader.ESP_IMAGE_MAGIC
ESP8266_V2_MAGIC = 0xEA  # esptool: ESP8266V2FirmwareImage.IMAGE_V2_MAGIC
CHECKSUM_SEED = 0xEF  # esptool: ESPLoader.ESP_CHECKSUM_MAGIC
HEADER_LEN = 24  # 8-byte common header + 16-byte extended header (ESP32 and later)
ESP8266_HEADER_LEN = 8  # the common header alone
MAX_SEGMENTS = 16
MAX_SEGMENT_BYTES = 16 << 20  # esptool refuses a segment this long
APP_DESC_MAGIC = 0xABCD5432  # esp_app_desc_t, at the start of an app's first segment
APP_OFFSET = 0x10000  # the factory app partition in MicroPython's tables
MAX_IMAGE_BYTES = 16 << 20
# MicroPython's banner (MICROPY_BANNER_NAME_AND_VERSION), in every build's app
BANNER = re.compile(rb"MicroPython (v\d[\w.+-]*) on (\d{4}-\d\d-\d\d)")

NOT_AN_IMAGE = "not an image"
DAMAGED = "damaged"
WRONG_CHIP = "wrong chip"
NO_APP = "bootloader only"
TABLE_DAMAGED = "partition table damaged"
CUT_SHORT = "cut short"
UNREADABLE = "unreadable"
REASONS = (NOT_AN_IMAGE, DAMAGED, WRONG_CHIP, NO_APP, TABLE_DAMAGED, CUT_SHORT)


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
    """The file is not a firmware image jalkal can put on a board; `reason` says
    which kind of problem (one of REASONS, or UNREADABLE), `chip` names the chip a
    file of another chip is for."""

    def __init__(
        self, message: str, reason: str = DAMAGED, chip: str | None = None
    ) -> None:
        super().__init__(message)
        self.reason = reason
        self.chip = chip


@dataclass(frozen=True)
class AppDesc:
    project: str
    version: str
    idf: str
    date: str = ""
    banner: str = ""  # "MicroPython v1.17 (2021-09-02)", found in the app

    def title(self) -> str:
        if self.project and self.version:
            return f"{self.project} {self.version}"
        if self.banner:
            return self.banner
        if self.project or self.version:
            return f"{self.project or 'an app'} {self.version}".strip()
        if self.idf:
            return f"an app built {' '.join(self.date.split())} with ESP-IDF {self.idf}"
        return "firmware"


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
    address: int  # flash offset of the file's first byte (an app: MicroPython's)
    app: AppDesc | None
    flash_bytes: int  # what the bootloader is built for ("full" only; else 0)

    def describe(self) -> str:
        title = self.app.title() if self.app else "firmware"
        if self.kind == "full":
            return (
                f"{title} for the {self.chip.label} (bootloader, partition table and "
                f"app); {len(self.data):,} bytes at {self.address:#x}"
            )
        return (
            f"{title} for the {self.chip.label} (an app alone, for a board that has a "
            f"bootloader); {len(self.data):,} bytes, for the app partition the "
            "board's partition table names"
        )


def chip_label(chip_id: int) -> str | None:
    """A chip id's name, from esptool's own table; None if esptool knows none."""
    for c in CHIPS.values():
        if c.image_chip_id == chip_id:
            return c.label
    from esptool.targets import CHIP_DEFS

    for cls in CHIP_DEFS.values():
        if getattr(cls, "IMAGE_CHIP_ID", None) == chip_id:
            return str(cls.CHIP_NAME)
    return None


def _segments(
    data: bytes, at: int, head: int, nseg: int, where: str
) -> tuple[int, AppDesc | None]:
    """Walk the segments of the image at `at` (header `head` bytes): the offset
    just past its checksum byte, and its app description if it has one."""
    pos = at + head
    checksum = CHECKSUM_SEED
    app = None
    for i in range(nseg):
        if pos + 8 > len(data):
            raise ImageError(
                f"{where}: the file ends inside segment {i + 1} of {nseg}: it is cut "
                "short (an interrupted download?); get the file again",
                CUT_SHORT,
            )
        _addr, size = struct.unpack_from("<II", data, pos)
        pos += 8
        if size >= MAX_SEGMENT_BYTES:
            raise ImageError(
                f"{where}: segment {i + 1} of {nseg} claims {size:,} bytes, more "
                "than any flash holds: the file is damaged; get it again",
                DAMAGED,
            )
        if pos + size > len(data):
            raise ImageError(
                f"{where}: segment {i + 1} of {nseg} needs {size:,} bytes, the file "
                f"has {len(data) - pos:,} left: it is cut short (an interrupted "
                "download?); get the file again",
                CUT_SHORT,
            )
        seg = data[pos : pos + size]
        if app is None and size >= 144 and seg[:4] == struct.pack("<I", APP_DESC_MAGIC):
            app = AppDesc(
                cstr(seg[48:80]), cstr(seg[16:48]), cstr(seg[112:144]),
                f"{cstr(seg[96:112])} {cstr(seg[80:96])}".strip(),
            )  # fmt: skip
        for b in seg:
            checksum ^= b
        pos += size
    end = pos + 15 - (pos - at) % 16  # the checksum ends a 16-byte block
    if end >= len(data):
        raise ImageError(
            f"{where}: the file ends before the image's checksum: it is cut short; "
            "get the file again",
            CUT_SHORT,
        )
    if data[end] != checksum:
        raise ImageError(
            f"{where}: checksum mismatch ({data[end]:#04x}, computed {checksum:#04x}):"
            " the file is damaged; get it again"
        )
    return end + 1, app


def _header(data: bytes, at: int, where: str) -> bytes:
    """The image header at file offset `at`; ImageError (cut short) if the file
    ends first."""
    head = data[at : at + HEADER_LEN]
    if len(head) < HEADER_LEN:
        raise ImageError(
            f"{where}: {len(head)} bytes, too short for an image header: the file is "
            "cut short (an interrupted copy?)",
            CUT_SHORT,
        )
    return head


def parse_image(data: bytes, at: int, name: str) -> Image:
    """The ESP image at file offset `at`; ImageError saying what is wrong."""
    where = f"{name}" if at == 0 else f"{name} (image at {at:#x})"
    head = _header(data, at, where)
    magic, nseg, _mode, size_freq, _entry = struct.unpack_from("<BBBBI", head)
    if magic != IMAGE_MAGIC:
        raise ImageError(
            f"{where}: not an ESP firmware image (first byte {magic:#04x}, "
            f"expected {IMAGE_MAGIC:#04x})",
            NOT_AN_IMAGE,
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
    end, app = _segments(data, at, HEADER_LEN, nseg, where)
    if digest:
        if end + 32 > len(data):
            raise ImageError(
                f"{where}: the file ends inside the image's SHA-256: it is cut short; "
                "get the file again",
                CUT_SHORT,
            )
        if hashlib.sha256(data[at:end]).digest() != data[end : end + 32]:
            raise ImageError(
                f"{where}: SHA-256 mismatch: the file is damaged; get it again"
            )
        end += 32
    if app is not None:
        found = BANNER.search(data, at, end)
        if found:
            v, day = (g.decode() for g in found.groups())
            app = replace(app, banner=f"MicroPython {v} ({day})")
    return Image(at, end - at, chip_id, nseg, 1 << (20 + (size_freq >> 4)), app)


def _is_esp8266(data: bytes, at: int) -> bool:
    """Whether a whole ESP8266 image, checksum right, starts at `at`: esptool reads
    an image as one when its header is not an ESP32-family header."""
    if data[at : at + 1] == bytes([ESP8266_V2_MAGIC]):
        # "v2": a header, the flash-mapped segment, then an image as below
        if len(data) < at + 16:
            return False
        at += 16 + struct.unpack_from("<I", data, at + 12)[0]
    if data[at : at + 1] != bytes([IMAGE_MAGIC]) or len(data) < at + 8:
        return False
    try:
        _segments(data, at, ESP8266_HEADER_LEN, data[at + 1], "")
    except ImageError:
        return False
    return True


def _image_chip(data: bytes, at: int, name: str) -> Chip:
    """The chip the image at `at` is for; ImageError for any other chip."""
    head = _header(data, at, name)
    chip_id = struct.unpack_from("<H", head, 12)[0]
    label = chip_label(chip_id) if head[23] in (0, 1) else None
    if label is None:  # no ESP32-family header
        if _is_esp8266(data, at):
            label = "ESP8266"
        else:
            raise ImageError(
                f"{name}: damaged image header (chip id {chip_id}, hash flag "
                f"{head[23]}): the file is damaged; get it again"
            )
    for c in CHIPS.values():
        if c.label == label:
            return c
    raise ImageError(
        f"{name}: built for the {label}; jalkal boards are "
        + " or ".join(c.label for c in CHIPS.values())
        + ": use MicroPython's firmware .bin for the board's chip",
        WRONG_CHIP,
        label,
    )


def _not_an_image(data: bytes, name: str) -> ImageError:
    if not data:
        return ImageError(f"{name}: the file is empty", NOT_AN_IMAGE)
    if data[:2] in (PARTITION_MAGIC, MD5_MAGIC):
        try:
            read_table(data[:TABLE_MAX], MAX_IMAGE_BYTES)
        except TableError as e:
            if not e.cut:
                return ImageError(
                    f"{name}: a partition table, and a damaged one ({e}); it is not "
                    "a firmware image either: use MicroPython's firmware .bin",
                    TABLE_DAMAGED,
                )
        rows = data[:TABLE_MAX:32].count(PARTITION_MAGIC[:1])
        return ImageError(
            f"{name}: a partition table alone ({rows} partitions), not a firmware "
            "image; use MicroPython's firmware .bin, which holds one",
            NOT_AN_IMAGE,
        )
    if data.startswith(b"\x7fELF"):
        return ImageError(
            f"{name}: an ELF file, not a flashable image; use the .bin built from it",
            NOT_AN_IMAGE,
        )
    if data.startswith(b"UF2\n"):
        return ImageError(
            f"{name}: a UF2 file (for drag-and-drop boards); use MicroPython's .bin "
            "for the ESP32",
            NOT_AN_IMAGE,
        )
    if data.startswith(b"PK\x03\x04"):
        return ImageError(
            f"{name}: a zip archive; unpack it and give the .bin inside", NOT_AN_IMAGE
        )
    return ImageError(
        f"{name}: not an ESP firmware image (it starts with {data[:4].hex(' ')}, an "
        f"image starts with {IMAGE_MAGIC:02x}); use MicroPython's firmware .bin for "
        "the board's chip",
        NOT_AN_IMAGE,
    )


def _first_image(data: bytes, name: str) -> int:
    """Where the first image starts: 0, or after blank flash up to the ESP32's
    bootloader (a whole-flash image from 0x0: esptool merge-bin without
    --target-offset)."""
    if data[:1] == bytes([IMAGE_MAGIC]):
        return 0
    lead = max(c.bootloader_offset for c in CHIPS.values())
    if len(data) > lead and data[lead] == IMAGE_MAGIC and data[:lead] == b"\xff" * lead:
        return lead
    if data[:1] == bytes([ESP8266_V2_MAGIC]) and _is_esp8266(data, 0):
        raise ImageError(
            f"{name}: built for the ESP8266; jalkal boards are ESP32 or ESP32-S3",
            WRONG_CHIP,
            "ESP8266",
        )
    raise _not_an_image(data, name)


def _has_table(data: bytes, pt_at: int, app_at: int) -> bool:
    """Whether the file holds a partition table, whole or not: a partition row in
    its first two rows, or an image where MicroPython's app goes."""
    rows = (data[pt_at : pt_at + 2], data[pt_at + 32 : pt_at + 34])
    return PARTITION_MAGIC in rows or data[app_at : app_at + 1] == bytes([IMAGE_MAGIC])


def identify(data: bytes, name: str) -> Firmware:
    """What the file is, where it goes, for which chip; ImageError if unusable."""
    if len(data) > MAX_IMAGE_BYTES:
        raise ImageError(
            f"{name}: {len(data):,} bytes, larger than any ESP32 flash", NOT_AN_IMAGE
        )
    boot_at = _first_image(data, name)
    chip = _image_chip(data, boot_at, name)
    first = parse_image(data, boot_at, name)
    address = chip.bootloader_offset - boot_at
    if address < 0:
        raise ImageError(
            f"{name}: the bootloader is at {boot_at:#x} in the file, the "
            f"{chip.label}'s goes at {chip.bootloader_offset:#x} in flash",
            DAMAGED,
        )
    if boot_at == 0 and first.app is not None:
        return Firmware(name, data, chip, "app", APP_OFFSET, first.app, 0)
    pt_at = PARTITION_TABLE_OFFSET - address
    end = boot_at + first.length
    if end > pt_at or not _has_table(data, pt_at, APP_OFFSET - address):
        rest = data[end:]  # a merged image pads with 0xFF up to the table
        if end <= pt_at and rest and rest == b"\xff" * len(rest):
            raise ImageError(
                f"{name}: the file ends at {len(data):,} bytes, before the partition "
                f"table (at {PARTITION_TABLE_OFFSET:#x} in flash): it is cut short; "
                "get the file again",
                CUT_SHORT,
            )
        raise ImageError(
            f"{name}: an {chip.label} image with no app in it, a bootloader alone "
            "(or a program that runs from RAM), not a firmware. Use MicroPython's "
            "firmware .bin, which holds bootloader, partition table and app",
            NO_APP,
        )
    try:
        table = read_table(data[pt_at : pt_at + TABLE_MAX], first.flash_bytes)
    except TableError as e:
        if e.cut:
            raise ImageError(
                f"{name}: the file ends inside the partition table ({e}): it is cut "
                "short; get the file again",
                CUT_SHORT,
            )
        raise ImageError(
            f"{name}: the partition table (at {PARTITION_TABLE_OFFSET:#x}) is "
            f"damaged: {e}. The bootloader would refuse it and the board would not "
            "start; get the file again",
            TABLE_DAMAGED,
        )
    part = boot_partition(table)
    if part is None:
        raise ImageError(
            f"{name}: its partition table has no app partition: the board would not "
            "start; get the file again",
            TABLE_DAMAGED,
        )
    app_at = part.offset - address
    if app_at >= len(data):
        raise ImageError(
            f"{name}: the file ends before the app (partition {part.label!r} at "
            f"{part.offset:#x}): it is cut short; get the file again",
            CUT_SHORT,
        )
    if data[app_at] != IMAGE_MAGIC:
        raise ImageError(
            f"{name}: no app image at {part.offset:#x}, where its partition table "
            f"puts the app ({part.label!r}): the file is damaged; get it again"
        )
    app = parse_image(data, app_at, name)
    if app.chip_id != first.chip_id:
        raise ImageError(
            f"{name}: the bootloader is for the {chip.label}, the app for the "
            f"{chip_label(app.chip_id) or f'chip id {app.chip_id}'}: the file is "
            "damaged or badly built; get MicroPython's firmware .bin again",
            WRONG_CHIP,
            chip_label(app.chip_id),
        )
    if app.length > part.size:
        raise ImageError(
            f"{name}: the app ({app.length:,} bytes) is larger than its partition "
            f"{part.label!r} ({part.size:,} bytes): the file is damaged or badly "
            "built; get MicroPython's firmware .bin again"
        )
    return Firmware(name, data, chip, "full", address, app.app, first.flash_bytes)


def load(path: str, chip: str | None) -> Firmware:
    """Read and check a firmware file; `chip`: the one the technician named."""
    p = Path(path)
    try:
        data = p.read_bytes()
    except IsADirectoryError:
        raise ImageError(f"{p}: a directory; give the firmware .bin file", UNREADABLE)
    except FileNotFoundError:
        raise ImageError(f"{p}: no such file", UNREADABLE)
    except OSError as e:
        raise ImageError(f"cannot read {p}: {e.strerror or e}", UNREADABLE)
    fw = identify(data, str(p))
    if chip is not None and CHIPS[chip] != fw.chip:
        raise ImageError(
            f"{p} is built for the {fw.chip.label}, not the {CHIPS[chip].label} "
            f"(--chip {chip}); use the {CHIPS[chip].label} firmware (nothing was "
            "written)",
            WRONG_CHIP,
            fw.chip.label,
        )
    return fw
