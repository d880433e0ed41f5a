"""jalkal flash's image check against `esptool image-info`, on real images nobody
here made (esptool's own test images and MicroPython's v1.17 ESP32 release, in
../shared/esp-images or $JALKAL_ESP_IMAGES) and on damaged copies of them.

For every file the two must agree: is it something jalkal may write (a full
firmware or an app alone for the ESP32 or ESP32-S3), for which chip, and, refused,
why (not an image / damaged / wrong chip / bootloader only / partition table
damaged / cut short). esptool reads one image; for a full firmware the truth is
esptool on the bootloader, ESP-IDF's partition table rules (docs: "Partition
Tables"; the bootloader's esp_partition_table_verify) written out again below,
and esptool on the app where the table puts it.

The app-alone flash reads the board's partition table first: that is tested here
with a fake esptool (no board is needed)."""

from __future__ import annotations

import hashlib
import os
import re
import struct
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest
from esptool.bin_image import ELFSection, ESP32FirmwareImage
from esptool.targets import CHIP_DEFS

from jalkal.errors import JalkalError
from jalkal.field import flash, images

ROOT = Path(__file__).resolve().parents[1]
# the published images beside the project (../shared/esp-images), wherever the
# clone sits on this machine's work tree; $JALKAL_ESP_IMAGES says otherwise
_PLACES = [ROOT.parent / "shared" / "esp-images", Path("/work/shared/esp-images")]
IMAGES = Path(
    os.environ.get("JALKAL_ESP_IMAGES")
    or next((p for p in _PLACES if p.is_dir()), _PLACES[0])
)
V117 = "micropython/esp32-20210902-v1.17.bin"
WRITABLE = {"ESP32", "ESP32-S3"}
BOOT_AT = {c.CHIP_NAME: c.BOOTLOADER_FLASH_OFFSET for c in CHIP_DEFS.values()}
BLANK = 0x1000  # blank flash before the ESP32's bootloader in a whole-flash image
MB16 = 16 << 20


# --- esptool image-info, read -------------------------------------------------


@dataclass(frozen=True)
class Info:
    """What `esptool image-info` printed about a file."""

    text: str
    detected: str | None  # "Detected image type: ..."
    error: str | None  # "A fatal error occurred: ..."
    chip: str | None  # "Chip ID: n (NAME)"
    checksum: bool | None
    digest: bool | None  # None: no SHA-256 appended
    app: bool  # an "Application Information" section
    end: int | None  # where the image ends, from its segment table
    flash_mb: int | None  # "Flash size: 4MB"


INFO: dict[bytes, Info] = {}  # by content: many damaged copies share their app


def image_info(data: bytes, tmp: Path) -> Info:
    key = hashlib.sha256(data).digest()
    if key not in INFO:
        INFO[key] = read_info(data, tmp)
    return INFO[key]


def read_info(data: bytes, tmp: Path) -> Info:
    tmp.write_bytes(data)
    run = subprocess.run(
        [sys.executable, "-m", "esptool", "image-info", str(tmp)],
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    text = run.stdout + run.stderr

    def find(pattern: str) -> str | None:
        m = re.search(pattern, text, re.M)
        return m.group(1) if m else None

    rows = re.findall(
        r"^\s*\d+\s+(0x[0-9a-f]+)\s+0x[0-9a-f]+\s+(0x[0-9a-f]+)", text, re.M
    )
    end = None
    if rows:
        length, offs = (int(x, 16) for x in rows[-1])
        end = (offs + 8 + length) // 16 * 16 + 16  # the checksum ends a 16-byte block
        if "Validation hash:" in text:
            end += 32
    ok = {"valid": True, "invalid": False, None: None}
    return Info(
        text,
        find(r"Detected image type: (\S+)"),
        find(r"A fatal error occurred: (.*)$"),
        find(r"^Chip ID: \d+ \((.*)\)$"),
        ok[find(r"^Checksum: 0x[0-9a-f]+ \((valid|invalid)")],
        ok[find(r"^Validation hash: [0-9a-f]+ \((valid|invalid)\)")],
        "Application Information" in text,
        end,
        int(find(r"^Flash size: (\d+)MB$") or 0) or None,
    )


# --- ESP-IDF's partition table rules, from its documentation --------------------


def table_says(raw: bytes, flash_bytes: int) -> tuple[str, list[tuple]]:
    """("ok" | "cut" | "bad", app partitions as (subtype, offset, size))."""
    apps, seen_md5 = [], False
    for i in range(0, 0xC00, 32):
        row = raw[i : i + 32]
        if len(row) < 32:
            return "cut", apps
        magic, typ, sub, off, size = struct.unpack_from("<HBBII", row)
        if magic == 0x50AA:  # the bytes AA 50
            if off + size > flash_bytes:
                return "bad", apps
            if typ == 0:
                apps.append((sub, off, size))
        elif magic == 0xEBEB:
            if seen_md5 or row[16:] != hashlib.md5(raw[:i]).digest():
                return "bad", apps
            seen_md5 = True
        elif (magic, typ, sub) == (0xFFFF, 0xFF, 0xFF):
            return "ok", apps
        else:
            return "bad", apps
    return "bad", apps


# --- the truth: esptool's reading, put together ------------------------------


def truth(data: bytes, tmp: Path) -> tuple[str, str | None]:
    """(what the file is, its chip): "full" / "app", or a refusal reason."""
    info = image_info(data, tmp)
    if info.detected is None:  # esptool: empty, or no image magic
        if len(data) > BLANK and data[:BLANK] == b"\xff" * BLANK:
            return image(data, BLANK, tmp)
        if data[:2] in (b"\xaa\x50", b"\xeb\xeb"):
            if table_says(data, MB16)[0] == "bad":
                return images.TABLE_DAMAGED, None
        return images.NOT_AN_IMAGE, None
    return image(data, 0, tmp, info)


def damaged_or_cut(info: Info, have: int) -> str:
    if info.error:
        m = re.search(r"End of file reading segment .*, length (\d+)", info.error)
        return images.CUT_SHORT if m and int(m.group(1)) < MB16 else images.DAMAGED
    if info.end is not None and have < info.end:
        return images.CUT_SHORT
    return images.DAMAGED


def image(
    data: bytes, start: int, tmp: Path, info: Info | None = None
) -> tuple[str, str | None]:
    info = info or image_info(data[start:], tmp)
    if info.detected == "ESP8266":  # esptool's reading of a header no ESP32 has
        if info.error is None and info.checksum:
            return images.WRONG_CHIP, "ESP8266"
        return images.DAMAGED, None
    chip = info.chip or info.detected
    if chip not in BOOT_AT:
        return images.DAMAGED, None
    if chip not in WRITABLE:
        return images.WRONG_CHIP, chip
    if info.error or not info.checksum or info.digest is False:
        return damaged_or_cut(info, len(data) - start), None
    if info.app:
        return ("app", chip) if start == 0 else (images.DAMAGED, None)
    address = BOOT_AT[chip] - start  # where the file's first byte goes
    table_at = 0x8000 - address
    assert info.end is not None
    end = start + info.end
    if end > table_at or len(data) <= table_at:  # a bootloader, and no table
        rest = data[end:]  # esptool merge-bin pads with 0xFF up to the table
        if rest and rest == b"\xff" * len(rest) and end <= table_at:
            return images.CUT_SHORT, None
        return images.NO_APP, None
    assert info.flash_mb is not None
    verdict, apps = table_says(data[table_at : table_at + 0xC00], info.flash_mb << 20)
    if verdict == "cut":
        return images.CUT_SHORT, None
    if verdict == "bad" or not apps:
        return images.TABLE_DAMAGED, None
    # a blank OTA data partition: the factory app, else ota_0
    _sub, off, psize = min(apps, key=lambda a: {0: 0, 0x10: 1}.get(a[0], 2))
    at = off - address
    if at >= len(data):
        return images.CUT_SHORT, None
    app = image_info(data[at:], tmp)
    if app.detected is None:
        return images.DAMAGED, None
    if (app.chip or app.detected) != chip:
        return images.WRONG_CHIP, app.chip or app.detected
    if app.error or not app.checksum or app.digest is False:
        return damaged_or_cut(app, len(data) - at), None
    if app.end is not None and app.end > psize:
        return images.DAMAGED, None
    return "full", chip


def jalkal_says(path: Path) -> tuple[str, str | None]:
    try:
        fw = flash.load(str(path), None)
    except flash.ImageError as e:
        return e.reason, e.chip
    return fw.kind, fw.chip.label


# --- the files ------------------------------------------------------------------


def flip(d: bytes, at: int, mask: int = 0xFF) -> bytes:
    return d[:at] + bytes([d[at] ^ mask]) + d[at + 1 :]


def table_bytes(rows: bytes, md5: bool = True) -> bytes:
    """Partition rows, then (as gen_esp32part writes it) the MD5 row, then 0xFF."""
    if md5:
        rows += b"\xeb\xeb" + b"\xff" * 14 + hashlib.md5(rows).digest()
    return rows.ljust(0xC00, b"\xff")


def with_table(d: bytes, rows: list[tuple[int, int, int, int, bytes]]) -> bytes:
    """The v1.17 image with another partition table, MD5 row and all."""
    table = b"".join(
        struct.pack("<HBBII16sI", 0x50AA, t, s, o, n, label, 0)
        for t, s, o, n, label in rows
    )
    return d[:0x7000] + table_bytes(table) + d[0x7C00:]


V117_APP = 0xF000  # the factory app (0x10000 in flash) in the file
V117_MD5 = 0x7000 + 4 * 32  # the MD5 row after its four partitions
V117_LEN = 1527504
V117_BOOT = 0x58D0  # the bootloader's length, with its SHA-256
HELLO = "esptool/secure_images__hello-world-signed.bin"
HELLO_LEN = 0x2FF90  # its image, up to its SHA-256
NVS, PHY = (1, 2, 0x9000, 0x6000, b"nvs"), (1, 1, 0xF000, 0x1000, b"phy_init")
FACTORY = (0, 0, 0x10000, 0x1F0000, b"factory")
MICROPYTHON = [NVS, PHY, FACTORY, (1, 0x81, 0x200000, 0x200000, b"vfs")]
OTA = [
    (1, 2, 0x9000, 0x4000, b"nvs"),
    (1, 0, 0xD000, 0x2000, b"otadata"),
    PHY,
    (0, 0x10, 0x10000, 0x180000, b"ota_0"),
    (0, 0x11, 0x190000, 0x180000, b"ota_1"),
]
TOO_BIG = [NVS, PHY, FACTORY, (1, 0x81, 0x200000, 0x300000, b"vfs")]
APP_AT_2 = [NVS, PHY, (0, 0, 0x20000, 0x1E0000, b"factory")]
APP_SMALL = [NVS, PHY, (0, 0, 0x10000, 0x100000, b"factory")]
BLANK_TABLE = b"\xff" * 0xC00

DAMAGED = {  # name: (made from, how)
    "v1.17 partition table MD5 corrupted": (V117, lambda d: flip(d, V117_MD5 + 20)),
    "v1.17 partition label changed, MD5 stale": (
        V117, lambda d: flip(d, 0x7000 + 96 + 12, 0x20)
    ),
    "v1.17 partition row magic broken": (V117, lambda d: flip(d, 0x7000 + 32)),
    "v1.17 partition table blank": (
        V117, lambda d: d[:0x7000] + BLANK_TABLE + d[0x7C00:]
    ),
    "v1.17 partitions past a 4 MB flash": (V117, lambda d: with_table(d, TOO_BIG)),
    "v1.17 table puts the app at 0x20000": (V117, lambda d: with_table(d, APP_AT_2)),
    "v1.17 app partition too small": (V117, lambda d: with_table(d, APP_SMALL)),
    "v1.17 OTA table (ota_0 at 0x10000)": (V117, lambda d: with_table(d, OTA)),
    "v1.17 bootloader flash mode flipped": (V117, lambda d: flip(d, 2)),
    "v1.17 bootloader segment count flipped": (V117, lambda d: flip(d, 1)),
    "v1.17 bootloader chip id flipped": (V117, lambda d: flip(d, 12)),
    "v1.17 bootloader hash flag flipped": (V117, lambda d: flip(d, 23)),
    "v1.17 bootloader checksum broken": (V117, lambda d: flip(d, V117_BOOT - 33)),
    "v1.17 app magic flipped": (V117, lambda d: flip(d, V117_APP)),
    "v1.17 app header byte flipped": (V117, lambda d: flip(d, V117_APP + 2)),
    "v1.17 app segment size flipped": (
        V117, lambda d: flip(d, V117_APP + 24 + 6, 0x10)
    ),
    "v1.17 app checksum broken": (V117, lambda d: flip(d, V117_LEN - 33)),
    "v1.17 app byte flipped": (V117, lambda d: flip(d, V117_APP + 0x50000)),
    "v1.17 cut inside the app": (V117, lambda d: d[: V117_APP + 100_000]),
    "v1.17 cut inside the app's SHA-256": (V117, lambda d: d[:-20]),
    "v1.17 cut before the app": (V117, lambda d: d[:0x9000]),
    "v1.17 cut inside the partition table": (V117, lambda d: d[:0x7010]),
    "v1.17 cut before the partition table": (V117, lambda d: d[:0x6800]),
    "v1.17 cut inside the bootloader": (V117, lambda d: d[:0x2000]),
    "v1.17 as a whole-flash image from 0x0": (V117, lambda d: b"\xff" * BLANK + d),
    "v1.17 app alone": (V117, lambda d: d[V117_APP:]),
    "v1.17 partition table alone": (V117, lambda d: d[0x7000:0x7C00]),
    "v1.17 partition table alone, MD5 corrupted": (
        V117, lambda d: flip(d, V117_MD5 + 20)[0x7000:0x7C00]
    ),
    "hello-world app cut short": (HELLO, lambda d: d[:100_000]),
    "hello-world app byte flipped": (HELLO, lambda d: flip(d, 0x8F)),
    "hello-world app checksum broken": (HELLO, lambda d: flip(d, HELLO_LEN - 1)),
    "ESP32 bootloader hash flag flipped": (
        "esptool/images__bootloader_esp32_v5_2.bin", lambda d: flip(d, 23)
    ),
    "ESP8266 image checksum broken": (
        "esptool/images__esp8266_deepsleep.bin", lambda d: flip(d, 100)
    ),
    "ESP32-C3 bootloader cut short": (
        "esptool/images__bootloader_esp32c3.bin", lambda d: d[:5000]
    ),
}  # fmt: skip


def real_files() -> list[str]:
    if not IMAGES.is_dir():
        return []
    return sorted(
        p.relative_to(IMAGES).as_posix() for p in IMAGES.rglob("*") if p.is_file()
    )


@pytest.fixture(scope="module")
def verdicts(tmp_path_factory) -> dict[str, tuple[tuple, tuple]]:
    """Every file: (esptool's truth, jalkal's verdict)."""
    if not IMAGES.is_dir():
        pytest.skip(f"no ESP images at {IMAGES} (set JALKAL_ESP_IMAGES)")
    tmp = tmp_path_factory.mktemp("esp-images")
    files = {name: IMAGES / name for name in real_files()}
    for i, (name, (src, how)) in enumerate(DAMAGED.items()):
        files[name] = tmp / f"damaged{i}.bin"
        files[name].write_bytes(how((IMAGES / src).read_bytes()))

    out = {}
    for i, (name, path) in enumerate(files.items()):
        out[name] = (truth(path.read_bytes(), tmp / f"info{i}.bin"), jalkal_says(path))
    return out


def test_every_real_file_is_judged(verdicts):
    assert set(real_files()) <= set(verdicts)
    assert len(real_files()) >= 60  # esptool's test images and MicroPython's


def test_jalkal_agrees_with_esptool_on_every_file(verdicts):
    table = [
        f"{name:60} esptool: {t[0]:24} {t[1] or '':9} jalkal: {j[0]:24} {j[1] or ''}"
        for name, (t, j) in sorted(verdicts.items())
    ]
    print("\n".join(table))
    wrong = [
        f"{n}: esptool {t}, jalkal {j}"
        for n, (t, j) in verdicts.items()
        if t[0] != j[0] or (t[0] in ("full", "app", images.WRONG_CHIP) and t != j)
    ]
    assert wrong == []


@pytest.mark.parametrize(
    "name, expected",
    [
        (V117, ("full", "ESP32")),
        ("v1.17 partition table MD5 corrupted", (images.TABLE_DAMAGED, None)),
        ("v1.17 partition row magic broken", (images.TABLE_DAMAGED, None)),
        ("esptool/images__partitions_singleapp.bin", (images.NOT_AN_IMAGE, None)),
        ("esptool/images__bootloader_esp8266.bin", (images.WRONG_CHIP, "ESP8266")),
        ("esptool/images__esp8266_deepsleep.bin", (images.WRONG_CHIP, "ESP8266")),
        ("esptool/secure_images__bootloader_signed.bin", (images.NO_APP, None)),
        ("esptool/secure_images__hello-world-signed.bin", ("app", "ESP32")),
        ("v1.17 cut inside the app", (images.CUT_SHORT, None)),
        ("v1.17 app checksum broken", (images.DAMAGED, None)),
        ("v1.17 bootloader hash flag flipped", (images.DAMAGED, None)),
        ("v1.17 OTA table (ota_0 at 0x10000)", ("full", "ESP32")),
    ],
)
def test_the_cases_issue_16_names(verdicts, name, expected):
    """The truth itself, for the cases the image check got wrong before."""
    assert verdicts[name][0] == expected


def test_micropython_v117_is_named_by_its_banner():
    if not (IMAGES / V117).is_file():
        pytest.skip(f"no {V117} at {IMAGES}")
    fw = flash.load(str(IMAGES / V117), None)
    assert fw.app is not None and fw.app.project == "" and fw.app.version == ""
    assert fw.describe().startswith(
        "MicroPython v1.17 (2021-09-02) for the ESP32 (bootloader, partition table "
        "and app); 1,527,504 bytes at 0x1000"
    )


def test_refusals_say_what_to_do(tmp_path):
    if not (IMAGES / V117).is_file():
        pytest.skip(f"no {V117} at {IMAGES}")
    d = (IMAGES / V117).read_bytes()
    bad = tmp_path / "bad.bin"
    bad.write_bytes(flip(d, V117_MD5 + 20))
    with pytest.raises(flash.ImageError, match="partition table .* is damaged: its "
                       "MD5 does not match its rows.*get the file again"):  # fmt: skip
        flash.load(str(bad), None)
    with pytest.raises(flash.ImageError, match="built for the ESP8266; jalkal boards"):
        flash.load(str(IMAGES / "esptool/images__esp8266_deepsleep.bin"), None)
    with pytest.raises(flash.ImageError, match="a partition table alone"):
        flash.load(str(IMAGES / "esptool/images__partitions_singleapp.bin"), None)


# --- an app alone goes where the board's partition table says -------------------


def app_image(size: int = 0) -> bytes:
    """An ESP32 app, built by esptool's own image writer."""
    desc = struct.pack(
        "<II8s32s32s16s16s32s32sHHB3s72s", 0xABCD5432, 0, b"", b"v1.26.0",
        b"micropython", b"12:00:00", b"Jan  1 2026", b"v5.4.1", bytes(32), 0, 0, 0,
        b"", b"",
    )  # fmt: skip
    img = ESP32FirmwareImage()
    img.entrypoint = 0x40080000
    img.segments = [
        ELFSection(b".flash.appdesc", 0x3F400020, desc + bytes(size), 0),
        ELFSection(b".iram0.text", 0x40080000, b"\x36\x41\x00\x00" * 64, 0),
    ]
    return img.save(None)


def table(rows, md5: bool = True) -> bytes:
    out = b"".join(
        struct.pack("<HBBII16sI", 0x50AA, t, s, o, n, label, 0)
        for t, s, o, n, label in rows
    )
    return table_bytes(out, md5)


class FakeEsptool:
    """esptool.cmds as flash_board calls it, over a board whose flash is a
    bytearray; `ops` records the calls."""

    def __init__(self, partition_table: bytes | None) -> None:
        self.flash = bytearray(b"\xff" * (4 << 20))
        if partition_table is not None:
            self.flash[0x8000 : 0x8000 + len(partition_table)] = partition_table
        self.ops: list[tuple] = []

    class Esp:
        IMAGE_CHIP_ID = 0
        CHIP_NAME = "ESP32"

        def __enter__(self):
            return self

        def __exit__(self, *exc):
            return False

        def get_chip_description(self):
            return "ESP32-D0WD-V3 (revision v3.1)"

        def change_baud(self, baud):
            pass

    def detect_chip(self, *args):
        return self.Esp()

    def run_stub(self, esp):
        return esp

    def attach_flash(self, esp):
        pass

    def detect_flash_size(self, esp):
        return "4MB"

    def read_flash(self, esp, address, size, **kw):
        from esptool.util import FatalError

        self.ops.append(("read", address, size))
        if not self.flash:
            raise FatalError("Failed to read flash (result was 0105)")
        return bytes(self.flash[address : address + size])

    def erase_flash(self, esp):
        self.ops.append(("erase",))

    def write_flash(self, esp, parts):
        for address, data in parts:
            self.ops.append(("write", address, len(data)))
            self.flash[address : address + len(data)] = data

    def verify_flash(self, esp, parts):
        self.ops.append(("verify", parts[0][0]))

    def reset_chip(self, esp, how):
        self.ops.append(("reset",))


def flash_app(tmp_path, cmds, data: bytes | None = None) -> list[str]:
    path = tmp_path / "app.bin"
    path.write_bytes(data or app_image())
    fw = flash.load(str(path), None)
    assert fw.kind == "app"
    said: list[str] = []
    flash.flash_board(fw, "fake", erase=False, say=said.append, cmds=cmds)
    return said


@pytest.mark.parametrize(
    "rows, at",
    [
        (MICROPYTHON, 0x10000),
        (APP_AT_2, 0x20000),
        (
            [
                (0, 0, 0x10000, 0x100000, b"factory"),
                (0, 0x10, 0x110000, 0x100000, b"ota_0"),
            ],
            0x10000,
        ),  # fmt: skip
    ],
)
def test_app_goes_to_the_boards_factory_partition(tmp_path, rows, at):
    cmds = FakeEsptool(table(rows))
    said = flash_app(tmp_path, cmds)
    assert cmds.ops[0] == ("read", 0x8000, 0xC00)
    writes = [op for op in cmds.ops if op[0] == "write"]
    assert [w[1] for w in writes] == [at] and ("erase",) not in cmds.ops
    assert f"app partition: 'factory' at {at:#x}" in "\n".join(said)
    assert f"writing {len(app_image()):,} bytes at {at:#x}" in "\n".join(said)


@pytest.mark.parametrize(
    "board_table, says",
    [
        (table(OTA), "has OTA app slots (ota_0, ota_1)"),
        (None, "the board has no partition table (blank flash at 0x8000)"),
        (flip(table(MICROPYTHON), 4 * 32 + 20), "is damaged (its MD5 does not match"),
        (b"\xaa" * 0xC00, "is damaged (row 1 is not a partition"),
        (table([NVS]), "has no factory app partition"),
        (table([(0, 0, 0x10000, 0x100, b"factory")]), "is larger than the board's app"),
        (b"", "could not read the board's partition table"),
    ],
    ids=["ota", "blank", "md5", "garbage", "no-factory", "too-small", "unreadable"],
)
def test_app_is_refused_where_the_board_does_not_say(tmp_path, board_table, says):
    cmds = FakeEsptool(board_table)
    if board_table == b"":
        cmds.flash = bytearray()  # the read fails
    with pytest.raises(JalkalError, match=re.escape(says)) as e:
        flash_app(tmp_path, cmds)
    assert "Nothing was written" in str(e.value)
    if "could not read" not in says:
        assert "flash the full firmware .bin instead" in str(e.value)
    assert [op[0] for op in cmds.ops] == ["read"]


def test_full_firmware_does_not_read_the_table(tmp_path):
    """A full image carries its own table: nothing to read before writing."""
    if not (IMAGES / V117).is_file():
        pytest.skip(f"no {V117} at {IMAGES}")
    cmds = FakeEsptool(None)
    fw = flash.load(str(IMAGES / V117), "esp32")
    flash.flash_board(fw, "fake", erase=True, say=lambda s: None, cmds=cmds)
    assert [op[0] for op in cmds.ops] == ["erase", "write", "verify", "reset"]
    assert cmds.flash[0x1000 : 0x1000 + len(fw.data)] == fw.data
