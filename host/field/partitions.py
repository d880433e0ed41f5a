"""ESP-IDF partition tables, read as ESP-IDF's bootloader reads them
(esp_partition_table_verify): rows of 32 bytes, each a partition (the bytes AA 50,
type, subtype, offset, size, label, flags) inside the flash, at most one MD5 row
(the bytes EB EB, then at byte 16 the MD5 of the rows before it), then an end row
of 0xFF; anything else, and the bootloader refuses the table and the board does
not start."""

from __future__ import annotations

import hashlib
import struct
from dataclasses import dataclass

PARTITION_MAGIC = b"\xaa\x50"
MD5_MAGIC = b"\xeb\xeb"
TABLE_END = b"\xff\xff\xff\xff"  # magic 0xFFFF, type and subtype 0xFF
TABLE_MAX = 0xC00  # ESP_PARTITION_TABLE_MAX_LEN
PARTITION_TABLE_OFFSET = 0x8000  # ESP-IDF's default, and MicroPython's


class TableError(Exception):
    """A partition table ESP-IDF's bootloader refuses; `cut`: the bytes end first."""

    def __init__(self, why: str, cut: bool = False) -> None:
        super().__init__(why)
        self.cut = cut


@dataclass(frozen=True)
class Partition:
    type: int  # 0 app, 1 data
    subtype: int  # app: 0 factory, 0x10.. ota_0..; data: 0 otadata
    offset: int
    size: int
    label: str


def cstr(b: bytes) -> str:
    """A NUL-terminated ASCII field."""
    return b.split(b"\0", 1)[0].decode("ascii", "replace")


def read_table(raw: bytes, flash_bytes: int) -> list[Partition]:
    """The partitions of a table as ESP-IDF's bootloader reads it; TableError
    saying why the bootloader would refuse it."""
    out: list[Partition] = []
    md5_row = False
    for n in range(TABLE_MAX // 32):
        row = raw[n * 32 : n * 32 + 32]
        if len(row) < 32:
            raise TableError(f"it ends inside row {n + 1}", cut=True)
        if row[:2] == PARTITION_MAGIC:
            _m, typ, sub, off, size, label, _flags = struct.unpack("<2sBBII16sI", row)
            if off > flash_bytes or off + size > flash_bytes:
                raise TableError(
                    f"partition {cstr(label)!r} ({off:#x}, {size:,} bytes) ends "
                    f"past the {flash_bytes >> 20} MB of flash"
                )
            out.append(Partition(typ, sub, off, size, cstr(label)))
        elif row[:2] == MD5_MAGIC:
            if md5_row:
                raise TableError("it has two MD5 rows")
            if hashlib.md5(raw[: n * 32]).digest() != row[16:]:
                raise TableError("its MD5 does not match its rows")
            md5_row = True
        elif row[:4] == TABLE_END:
            return out
        else:
            raise TableError(f"row {n + 1} is not a partition (magic {row[:2].hex()})")
    raise TableError(f"it has no end row in its {TABLE_MAX:#x} bytes")


def boot_partition(table: list[Partition]) -> Partition | None:
    """The app ESP-IDF's bootloader starts on a blank OTA data partition: the
    factory app, else ota_0."""
    apps = [p for p in table if p.type == 0]
    for sub in (0, 0x10):
        for p in apps:
            if p.subtype == sub:
                return p
    return apps[0] if apps else None
