"""jalkal flash: image checks on images made by esptool itself, and real esptool
talking to a fake ESP bootloader on a TCP port (socket://), so no board is needed."""

from __future__ import annotations

import hashlib
import socket
import struct
import threading
import time
import zlib
from pathlib import Path

import esptool
import pytest
from esptool.bin_image import LoadFirmwareImage
from esptool.loader import ESPLoader
from esptool.targets import CHIP_DEFS

from jalkal.cli import main
from jalkal.field import flash

# --- images, made with esptool's own elf2image and merge-bin --------------------

LAYOUT = {  # chip: (ELF machine, DROM, IRAM, bootloader DRAM, bootloader IRAM)
    "esp32": (0x5E, 0x3F400020, 0x40080000, 0x3FFF0000, 0x40078000),
    "esp32s3": (0x5E, 0x3C000020, 0x40370000, 0x3FCE3000, 0x403C9000),
    "esp32c3": (0xF3, 0x3C000020, 0x40380000, 0x3FCD5000, 0x403CE000),
}
PARTITIONS = [  # (type, subtype, offset, size, label): MicroPython's 4 MB table
    (1, 2, 0x9000, 0x6000, b"nvs"),
    (1, 1, 0xF000, 0x1000, b"phy_init"),
    (0, 0, 0x10000, 0x1F0000, b"factory"),
    (1, 0x81, 0x200000, 0x200000, b"vfs"),
]


def elf(machine: int, sections: list[tuple[str, int, bytes]], entry: int) -> bytes:
    """A minimal 32-bit little-endian ELF executable with these sections."""
    names = b"\0" + b"".join(n.encode() + b"\0" for n, _a, _d in sections)
    names += b".shstrtab\0"
    body = bytearray(52)
    offsets = []
    for _n, _a, d in sections:
        offsets.append(len(body))
        body += d + b"\0" * (-len(d) % 4)
    str_off = len(body)
    body += names + b"\0" * (-len(names) % 4)
    shoff = len(body)
    body += bytes(40)  # section 0
    at = 1
    for (n, a, d), o in zip(sections, offsets, strict=True):
        body += struct.pack("<10I", at, 1, 6, a, o, len(d), 0, 0, 4, 0)
        at += len(n) + 1
    body += struct.pack("<10I", at, 3, 0, 0, str_off, len(names), 0, 0, 1, 0)
    nsec = len(sections) + 2
    body[:52] = struct.pack(
        "<16sHHIIIIIHHHHHH", b"\x7fELF\x01\x01\x01" + bytes(9), 2, machine, 1,
        entry, 0, shoff, 0, 52, 32, 0, 40, nsec, nsec - 1,
    )  # fmt: skip
    return bytes(body)


def app_desc(version: str = "v1.26.0") -> bytes:
    """esp_app_desc_t as ESP-IDF puts it at the start of an app."""
    return struct.pack(
        "<II8s32s32s16s16s32s32sHHB3s72s", 0xABCD5432, 0, b"", version.encode(),
        b"micropython", b"12:00:00", b"Jan  1 2026", b"v5.4.1", bytes(32), 0, 0,
        0, b"", b"",
    )  # fmt: skip


def partition_table(parts=PARTITIONS) -> bytes:
    """The rows, then the end row (no MD5 row: ESP-IDF takes a table without one)."""
    table = b"".join(
        struct.pack("<2sBBII16sI", b"\xaa\x50", t, s, o, n, label, 0)
        for t, s, o, n, label in parts
    )
    return table + b"\xff" * 32


def esptool_run(*argv: str) -> None:
    esptool.main(list(argv))


def build(tmp: Path, chip: str) -> dict[str, Path]:
    machine, drom, iram, bdram, biram = LAYOUT[chip]
    code = b"\x36\x41\x00" * 300 + b"\0"
    rodata = app_desc() + bytes(range(256)) * 40
    (tmp / "app.elf").write_bytes(
        elf(
            machine,
            [(".flash.appdesc", drom, rodata), (".iram0.text", iram, code)],
            iram,
        )  # fmt: skip
    )
    (tmp / "boot.elf").write_bytes(
        elf(
            machine,
            [
                (".dram0.data", bdram, bytes(range(256)) * 2),
                (".iram_loader.text", biram, code),
            ],
            biram,
        )  # fmt: skip
    )
    for name in ("app", "boot"):
        out, src = str(tmp / f"{name}.bin"), str(tmp / f"{name}.elf")
        esptool_run("--chip", chip, "elf2image", "--flash-size", "4MB", "-o", out, src)
    (tmp / "pt.bin").write_bytes(partition_table())
    boot_at = hex(CHIP_DEFS[chip].BOOTLOADER_FLASH_OFFSET)
    parts = [boot_at, str(tmp / "boot.bin"), "0x8000", str(tmp / "pt.bin"),
             "0x10000", str(tmp / "app.bin")]  # fmt: skip
    # as MicroPython ships it: written at the bootloader's offset
    esptool_run("--chip", chip, "merge-bin", "-o", str(tmp / "firmware.bin"),
                "--target-offset", boot_at, *parts)  # fmt: skip
    # a whole-flash image from 0x0
    esptool_run("--chip", chip, "merge-bin", "-o", str(tmp / "flash0.bin"), *parts)
    return {p.stem: p for p in tmp.glob("*.bin")}


@pytest.fixture(scope="module")
def images(tmp_path_factory) -> dict[str, dict[str, Path]]:
    return {chip: build(tmp_path_factory.mktemp(chip), chip) for chip in LAYOUT}


# --- a fake ESP bootloader (ROM, then the flasher stub) on a TCP port -----------


def slip(data: bytes) -> bytes:
    return (
        b"\xc0"
        + data.replace(b"\xdb", b"\xdb\xdd").replace(b"\xc0", b"\xdb\xdc")
        + (b"\xc0")
    )


class FakeBoard:
    """Answers esptool's serial protocol over socket:// like a chip in download
    mode: sync, registers, chip detection, the stub upload, erase, compressed
    writes into a flash array, MD5. `ops` records every command in order."""

    def __init__(self, chip: str = "esp32", flash_mb: int = 4, silent: bool = False,
                 corrupt: bool = False):  # fmt: skip
        self.rom = CHIP_DEFS[chip]
        self.silent = silent
        self.corrupt = corrupt
        self.flash = bytearray(b"\xaa" * (flash_mb << 20))  # an old firmware
        self.flash[0x8000 : 0x8000 + 0xC00] = partition_table().ljust(0xC00, b"\xff")
        self.flash_id = (0x13 + flash_mb.bit_length()) << 16 | 0x40EF
        self.regs: dict[int, int] = {}
        self.ops: list[tuple[str, bytes]] = []
        self.stub = False
        self.names = {v: k for k, v in self.rom.ESP_CMDS.items()}
        self.srv = socket.create_server(("127.0.0.1", 0))
        self.url = "socket://127.0.0.1:%d" % self.srv.getsockname()[1]
        threading.Thread(target=self._serve, daemon=True).start()

    def close(self) -> None:
        self.srv.close()

    def op_names(self) -> list[str]:
        return [n for n, _ in self.ops]

    def _serve(self) -> None:
        while True:
            try:
                conn, _ = self.srv.accept()
            except OSError:
                return
            with conn:
                try:
                    self._talk(conn)
                except OSError:
                    pass

    def _talk(self, conn: socket.socket) -> None:
        pkt: bytearray | None = None
        esc = False
        while data := conn.recv(65536):
            if self.silent:
                continue
            for b in data:
                if pkt is None:
                    if b == 0xC0:
                        pkt = bytearray()
                elif esc:
                    pkt.append({0xDC: 0xC0, 0xDD: 0xDB}[b])
                    esc = False
                elif b == 0xDB:
                    esc = True
                elif b != 0xC0:
                    pkt.append(b)
                elif pkt:
                    for out in self._handle(bytes(pkt)):
                        conn.sendall(slip(out))
                    pkt = None

    def _reply(
        self, op: int, val: int = 0, data: bytes = b"", ok: bool = True
    ) -> bytes:
        status = b"\x00\x00" if ok else b"\x01\x05"
        body = data + status + (b"" if self.stub else b"\x00\x00")  # ROM: 4 bytes
        return struct.pack("<BBHI", 1, op, len(body), val) + body

    def _handle(self, pkt: bytes) -> list[bytes]:
        if len(pkt) < 8:  # esptool's acknowledgement of a READ_FLASH block
            return []
        _d, op, size, _chk = struct.unpack_from("<BBHI", pkt)
        data = pkt[8 : 8 + size]
        if op == 0x08:  # SYNC: the ROM answers eight times
            self.ops.append(("SYNC", b""))
            return [self._reply(op, 0 if self.stub else 0x20120707)] * 8
        if op == 0x0A:  # READ_REG
            return [self._reply(op, self._read(struct.unpack("<I", data[:4])[0]))]
        if op == 0x09:  # WRITE_REG
            for i in range(0, len(data) - 15, 16):
                addr, val, mask, _delay = struct.unpack_from("<IIII", data, i)
                self.regs[addr] = (self.regs.get(addr, 0) & ~mask) | (val & mask)
            return [self._reply(op)]
        self.ops.append((self.names.get(op, hex(op)), data[:16]))
        if op == 0x14:  # GET_SECURITY_INFO: only chips after the ESP32 know it
            if self.rom.USES_MAGIC_VALUE:
                return [self._reply(op, ok=False)]
            info = struct.pack("<IBBBBBBBBII", 0, *[0] * 8, self.rom.IMAGE_CHIP_ID, 0)
            return [self._reply(op, data=info)]
        if op == 0x06:  # MEM_END: the stub runs and says hello
            out = [self._reply(op)]
            self.stub = True
            return [*out, b"OHAI"]
        if op == 0xD0:  # ERASE_FLASH
            self.flash[:] = b"\xff" * len(self.flash)
        elif op == 0x10:  # FLASH_DEFL_BEGIN
            self.pos = struct.unpack_from("<I", data, 12)[0]
            self.z = zlib.decompressobj()
        elif op == 0x11:  # FLASH_DEFL_DATA
            out = bytearray(self.z.decompress(data[16:]))
            if self.corrupt and out:
                out[0] ^= 1
            self.flash[self.pos : self.pos + len(out)] = out
            self.pos += len(out)
        elif op == 0xD2:  # READ_FLASH (the stub): blocks, then their MD5
            addr, n, block, _ = struct.unpack_from("<IIII", data)
            got = bytes(self.flash[addr : addr + n])
            blocks = [got[i : i + block] for i in range(0, n, block)]
            return [self._reply(op), *blocks, hashlib.md5(got).digest()]
        elif op == 0x13:  # SPI_FLASH_MD5
            addr, n = struct.unpack_from("<II", data)
            md5 = hashlib.md5(self.flash[addr : addr + n]).digest()
            return [self._reply(op, data=md5 if self.stub else md5.hex().encode())]
        elif op not in (0x05, 0x07, 0x0B, 0x0D, 0x0F, 0x12):
            return [self._reply(op, ok=False)]
        return [self._reply(op)]

    def _read(self, addr: int) -> int:
        rom = self.rom
        base = rom.SPI_REG_BASE
        if addr == rom.CHIP_DETECT_MAGIC_REG_ADDR and rom.USES_MAGIC_VALUE:
            return int(rom.MAGIC_VALUE)
        if addr == base:  # SPI_CMD_REG: the user command has finished
            return 0
        if addr == base + rom.SPI_W0_OFFS:  # the answer to RDID (0x9F)
            cmd = self.regs.get(base + rom.SPI_USR2_OFFS, 0) & 0xFF
            return self.flash_id if cmd == 0x9F else 0
        return self.regs.get(addr, 0)


@pytest.fixture
def board(request):
    boards: list[FakeBoard] = []

    def make(*args, **kw) -> FakeBoard:
        b = FakeBoard(*args, **kw)
        boards.append(b)
        return b

    yield make
    for b in boards:
        b.close()


def jalkal_flash(*args: str) -> list[str]:
    return ["flash", "--connect-attempts", "1", *args]


# --- constants agree with esptool's own tables ----------------------------------


def test_chip_numbers_are_esptools():
    for name, chip in flash.CHIPS.items():
        rom = CHIP_DEFS[name]
        assert chip.image_chip_id == rom.IMAGE_CHIP_ID
        assert chip.bootloader_offset == rom.BOOTLOADER_FLASH_OFFSET
        assert chip.label == rom.CHIP_NAME
    assert flash.CHIPS["esp32"].image_chip_id == 0
    assert flash.CHIPS["esp32s3"].image_chip_id == 9
    assert flash.CHIPS["esp32"].bootloader_offset == 0x1000
    assert flash.CHIPS["esp32s3"].bootloader_offset == 0x0
    assert flash.IMAGE_MAGIC == ESPLoader.ESP_IMAGE_MAGIC == 0xE9
    assert flash.CHECKSUM_SEED == ESPLoader.ESP_CHECKSUM_MAGIC


# --- image checks ---------------------------------------------------------------


@pytest.mark.parametrize("chip", ["esp32", "esp32s3"])
def test_full_firmware_is_recognised(images, chip):
    fw = flash.load(str(images[chip]["firmware"]), None)
    assert fw.chip is flash.CHIPS[chip] and fw.kind == "full"
    assert fw.address == CHIP_DEFS[chip].BOOTLOADER_FLASH_OFFSET
    assert fw.app is not None and fw.app.version == "v1.26.0"
    assert fw.app.project == "micropython" and fw.flash_bytes == 4 << 20
    assert "bootloader, partition table and app" in fw.describe()
    # the same content as a whole-flash image from 0x0 goes at 0x0
    fw0 = flash.load(str(images[chip]["flash0"]), chip)
    assert fw0.kind == "full" and fw0.address == 0
    assert fw0.data[fw.address :] == fw.data


@pytest.mark.parametrize("chip", ["esp32", "esp32s3"])
def test_images_parse_as_esptool_parses_them(images, chip):
    for name in ("app", "boot"):
        data = images[chip][name].read_bytes()
        ours = flash.parse_image(data, 0, name)
        theirs = LoadFirmwareImage(chip, data)
        assert ours.chip_id == theirs.chip_id == CHIP_DEFS[chip].IMAGE_CHIP_ID
        assert ours.segments == len(theirs.segments)
        assert ours.length == theirs.data_length + 32  # plus the appended SHA-256
        assert (ours.app is not None) == (name == "app")


def test_app_alone_goes_to_the_app_partition(images):
    fw = flash.load(str(images["esp32"]["app"]), "esp32")
    assert (fw.kind, fw.address) == ("app", flash.APP_OFFSET)


def test_bootloader_alone_is_refused(images):
    with pytest.raises(flash.ImageError, match="a bootloader alone"):
        flash.load(str(images["esp32"]["boot"]), None)


@pytest.mark.parametrize(
    "image, chip, says",
    [
        ("esp32s3", "esp32", "built for the ESP32-S3, not the ESP32 (--chip esp32)"),
        ("esp32", "esp32s3", "built for the ESP32, not the ESP32-S3 (--chip esp32s3)"),
    ],
)
def test_wrong_chip_is_refused_before_touching_the_board(
    images, board, capsys, image, chip, says
):
    b = board(chip)
    assert main(jalkal_flash("--port", b.url, "--chip", chip,
                             str(images[image]["firmware"]))) == 1  # fmt: skip
    err = capsys.readouterr().err
    assert says in err and "nothing was written" in err
    assert b.ops == []  # never connected


def test_image_for_another_chip_family(images):
    with pytest.raises(flash.ImageError, match="built for the ESP32-C3; jalkal boards"):
        flash.load(str(images["esp32c3"]["firmware"]), None)


def _damaged(images, tmp_path, how):
    data = bytearray(images["esp32"]["firmware"].read_bytes())
    out = tmp_path / "bad.bin"
    out.write_bytes(how(data))
    return str(out)


@pytest.mark.parametrize(
    "how, says",
    [
        (lambda d: d[: len(d) - 200], "cut short"),
        (lambda d: d[:0x7100], "the file ends before the app"),
        (lambda d: d[:0x2000], "before the partition table"),
        (lambda d: d[:300], "cut short"),
        (lambda d: d[:10], "too short for an image header"),
        (lambda d: d[:0], "the file is empty"),
        (
            lambda d: d[:0xF040] + bytes([d[0xF040] ^ 0xFF]) + d[0xF041:],
            "checksum mismatch",
        ),  # fmt: skip
        (lambda d: d[: len(d) - 1] + bytes([d[-1] ^ 1]), "SHA-256 mismatch"),
        (lambda d: bytes([0xE9, 40]) + d[2:], "40 segments"),
        (lambda d: b"\x00" * 64 + d, "not an ESP firmware image (it starts with 00"),
        (lambda d: b"\x7fELF" + d, "an ELF file"),
        (lambda d: b"UF2\n" + d, "a UF2 file"),
        (lambda d: b"PK\x03\x04" + d, "a zip archive"),
        (lambda d: b"<!DOCTYPE html><html>404</html>", "not an ESP firmware image"),
    ],
)
def test_bad_files_are_refused_with_a_reason(images, tmp_path, capsys, how, says):
    path = _damaged(images, tmp_path, how)
    assert main(jalkal_flash("--port", "socket://127.0.0.1:1", path)) == 1
    err = capsys.readouterr().err
    assert says in err and err.startswith("jalkal: ") and "Traceback" not in err
    assert "connecting" not in capsys.readouterr().out


def test_missing_file_and_directory(tmp_path, capsys):
    assert main(jalkal_flash("--port", "x", str(tmp_path / "nope.bin"))) == 1
    assert "nope.bin: no such file" in capsys.readouterr().err
    assert main(jalkal_flash("--port", "x", str(tmp_path))) == 1
    assert "a directory; give the firmware .bin" in capsys.readouterr().err


@pytest.mark.parametrize(
    "args, says, status",
    [  # 2: the command line is wrong (as click and esptool); 1: the file is
        (["fw.bin"], "Missing option '--port'", 2),
        (["--port", "x"], "Missing argument 'FIRMWARE.bin'", 2),
        (["--port", "x", "--chip", "esp8266", "fw.bin"], "'esp8266' is not one of", 2),
        (["--port", "x", "--baud", "9", "fw.bin"], "--baud", 2),
        (["--port", "x", "--erase", "--no-erase", "fw.bin"], "no such file", 1),
    ],
)
def test_argument_errors(capsys, args, says, status):
    assert main(["flash", *args]) == status
    assert says in capsys.readouterr().err


# --- against the fake board -----------------------------------------------------


def _flash_writes(b: FakeBoard) -> list[tuple[int, ...]]:
    return [struct.unpack("<IIII", d) for n, d in b.ops if n == "FLASH_DEFL_BEGIN"]


@pytest.mark.parametrize("chip", ["esp32", "esp32s3"])
def test_flash_erases_writes_at_the_chips_offset_and_verifies(
    images, board, capsys, chip
):
    b = board(chip)
    path = images[chip]["firmware"]
    data = path.read_bytes()
    assert main(jalkal_flash("--port", b.url, str(path))) == 0
    out = capsys.readouterr().out
    at = CHIP_DEFS[chip].BOOTLOADER_FLASH_OFFSET
    assert bytes(b.flash[at : at + len(data)]) == data
    assert b.flash[at + len(data) :] == b"\xff" * (len(b.flash) - at - len(data))
    names = b.op_names()
    assert names.index("ERASE_FLASH") < names.index("FLASH_DEFL_BEGIN")
    assert [w[3] for w in _flash_writes(b)] == [at]
    md5 = [struct.unpack("<II", d[:8]) for n, d in b.ops if n == "SPI_FLASH_MD5"]
    assert md5[-1] == (at, len(data))  # verify_flash after write_flash's own check
    assert "[5/5] restarting the board" in out
    assert "next: jalkal deploy --port" in out


def test_app_update_keeps_the_rest_of_the_flash(images, board, capsys):
    b = board("esp32")
    before = bytes(b.flash[:0x10000])  # bootloader and MicroPython's table
    path = images["esp32"]["app"]
    assert main(jalkal_flash("--port", b.url, str(path))) == 0
    assert "ERASE_FLASH" not in b.op_names()
    assert [w[3] for w in _flash_writes(b)] == [0x10000]
    data = path.read_bytes()
    assert bytes(b.flash[0x10000 : 0x10000 + len(data)]) == data
    assert b.flash[:0x10000] == before  # bootloader and table untouched
    assert "[4/4]" in capsys.readouterr().out


def test_app_with_erase_is_refused(images, board, capsys):
    b = board("esp32")
    args = jalkal_flash("--port", b.url, "--erase", str(images["esp32"]["app"]))
    assert main(args) == 1
    assert "the board would have no bootloader" in capsys.readouterr().err
    assert b.ops == []


def test_no_erase_keeps_the_files(images, board):
    b = board("esp32")
    path = images["esp32"]["firmware"]
    assert main(jalkal_flash("--port", b.url, "--no-erase", str(path))) == 0
    assert "ERASE_FLASH" not in b.op_names()
    assert b.flash[0x200000:0x200010] == b"\xaa" * 16  # the vfs partition


def test_board_of_another_chip_is_refused_before_erasing(images, board, capsys):
    b = board("esp32")
    assert main(jalkal_flash("--port", b.url, str(images["esp32s3"]["firmware"]))) == 1
    err = capsys.readouterr().err
    assert "is an ESP32, but" in err and "built for the ESP32-S3" in err
    assert "ERASE_FLASH" not in b.op_names() and "MEM_BEGIN" not in b.op_names()


def test_too_small_flash_is_refused_before_erasing(images, board, capsys):
    b = board("esp32", flash_mb=2)
    assert main(jalkal_flash("--port", b.url, str(images["esp32"]["firmware"]))) == 1
    assert "needs 4 MB of flash, this board has 2MB" in capsys.readouterr().err
    assert "ERASE_FLASH" not in b.op_names()


def test_bad_write_says_what_to_do(images, board, capsys):
    b = board("esp32", corrupt=True)
    assert main(jalkal_flash("--port", b.url, str(images["esp32"]["firmware"]))) == 1
    err = capsys.readouterr().err
    assert err.startswith("jalkal: writing ") and "run the same command again" in err


def test_silent_port_gives_no_board_answered_in_bounded_time(images, board, capsys):
    b = board("esp32", silent=True)
    t = time.monotonic()
    assert main(jalkal_flash("--port", b.url, str(images["esp32"]["firmware"]))) == 1
    assert time.monotonic() - t < 10
    err = capsys.readouterr().err
    assert f"no board answered on {b.url}" in err and "hold the BOOT button" in err


def test_port_that_cannot_be_opened(images, capsys):
    s = socket.create_server(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()  # nothing listens there now
    for url in (f"socket://127.0.0.1:{port}", f"rfc2217://127.0.0.1:{port}"):
        args = jalkal_flash("--port", url, str(images["esp32"]["firmware"]))
        assert main(args) == 1
        err = capsys.readouterr().err
        assert f"cannot open {url}" in err and "Connection refused" in err
    assert main(jalkal_flash("--port", "/dev/ttyJALKAL9",
                             str(images["esp32"]["firmware"]))) == 1  # fmt: skip
    assert "cannot open /dev/ttyJALKAL9" in capsys.readouterr().err


def test_old_esptool_is_named(images, monkeypatch, capsys):
    monkeypatch.setattr(esptool, "__version__", "4.8.1")
    args = jalkal_flash("--port", "socket://127.0.0.1:1", str(images["esp32"]["app"]))
    assert main(args) == 1
    assert "needs esptool 5 or newer (this is 4.8.1)" in capsys.readouterr().err


def test_help_order(capsys):
    assert main([]) == 0
    out = capsys.readouterr().out.split("Commands:")[1]
    names = [ln.split()[0] for ln in out.splitlines() if ln.strip()]
    assert names[:2] == ["provision", "flash"]
