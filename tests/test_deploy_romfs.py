"""jalkal deploy --romfs on the virtual board with a romfs partition (`jalkal vboard
--romfs FILE`: what vfs.rom_ioctl gives on an ESP32 built with ROMFS, an
esp32.Partition whose writes only clear bits, as NOR flash's do). The firmware
written there boots from /rom; the real mpremote reads back the image jalkal wrote;
a write cut short, or a partition gone bad, boots the flash slot; a board whose
MicroPython has no ROMFS is refused before anything is written."""

from __future__ import annotations

import re
import subprocess
import sys

import pytest
from fieldtools_util import VBoard, jalkal, mpremote, provision
from test_deploy import boot_banner, deploy_killed_at

from jalkal.field import deploy, romfs

pytestmark = pytest.mark.micropython


@pytest.fixture(scope="module")
def tools(mpy):
    pytest.importorskip("mpremote")
    return mpy


@pytest.fixture
def rvb(tools, tmp_path):
    b = VBoard(tmp_path / "flash", "--romfs", str(tmp_path / "romfs.bin"))
    yield b
    assert b.stop() == 0


def deploy_romfs(port, cfg):
    return jalkal("deploy", "--port", port, "--config", cfg, "--romfs",
                  "--boot-wait", 3)  # fmt: skip


def test_deploy_romfs_boots_from_rom(rvb, tmp_path):
    cfg = provision(tmp_path)
    rc, out, err = deploy_romfs(rvb.port, cfg)
    assert rc == 0, err
    bld = deploy.build("xtensawin")
    img = romfs.image(bld)
    assert f"running jkfw 0.1.0 build {bld.build_id} from /rom" in out
    flash = tmp_path / "flash"
    assert (flash / "app" / "active").read_text() == "rom"
    assert (flash / "app" / "a" / "MANIFEST").is_file()  # the fallback, complete
    part = (tmp_path / "romfs.bin").read_bytes()
    assert len(part) == 128 * 1024 and part[: len(img)] == img
    assert set(part[len(img) :]) == {0xFF}  # erased flash past the image
    # the real mpremote finds the image jalkal wrote
    q = mpremote(rvb.port, "resume", "romfs", "query").stdout.decode()
    raw = re.search(r"Raw contents: ([0-9a-f:]+)", q)
    size = re.search(r"ROMFS image size: (\d+)", q)
    assert raw and size, q
    assert bytes.fromhex(raw.group(1).replace(":", "")) == img[:12]
    assert 4 <= len(img) - int(size.group(1)) <= 8  # its size is after the header
    # the running firmware's modules were imported from the partition
    got = mpremote(rvb.port, "resume", "exec",
                   "import sys; print(sys.modules['jkfw.main'].__file__)")  # fmt: skip
    assert got.stdout.decode().strip() == "/rom/jkfw/main.mpy"
    rc, out, err = jalkal("doctor", "--port", rvb.port)
    n = len(bld.files)
    assert f"build {bld.build_id} in /rom: all {n} files match" in out, out
    # again: the partition already holds this build, nothing is written
    before = (tmp_path / "romfs.bin").stat().st_mtime_ns
    rc, out, err = deploy_romfs(rvb.port, cfg)
    assert rc == 0, err
    assert "romfs partition: this build is there already" in err
    assert "from /rom" in out
    assert (tmp_path / "romfs.bin").stat().st_mtime_ns == before
    # a byte of the partition changed (a file's sha256 in its MANIFEST: the board
    # still boots from it): the next deploy rewrites the partition under the
    # firmware running from it, which first logs its meters and is soft-reset
    rom = bytearray((tmp_path / "romfs.bin").read_bytes())
    at = bytes(rom).index(bld.manifest()) + bld.manifest().index(b"\n") + 1
    rom[at] = ord("0") if rom[at] != ord("0") else ord("1")
    (tmp_path / "romfs.bin").write_bytes(rom)
    assert boot_banner(rvb.port) == "/rom"  # a fresh start reads the partition
    rc, out, err = deploy_romfs(rvb.port, cfg)
    assert rc == 0, err
    assert "the firmware ran from the romfs partition: its meters logged" in err
    assert f"running jkfw 0.1.0 build {bld.build_id} from /rom" in out
    assert (tmp_path / "romfs.bin").read_bytes()[: len(img)] == img


def test_cut_write_and_bad_partition_boot_the_flash_slot(rvb, tmp_path):
    cfg = provision(tmp_path)
    flash = tmp_path / "flash"
    deploy_killed_at(rvb.port, cfg, b"writing the romfs partition", "--romfs")
    # the flash slot was made active before the partition was touched
    assert (flash / "app" / "active").read_text() == "a"
    assert boot_banner(rvb.port) == "/app/a"
    rc, out, err = deploy_romfs(rvb.port, cfg)
    assert rc == 0 and "from /rom" in out, err
    # the partition erased behind the board's back (a failed flash chip): /rom is
    # not mounted at the next start, and main.py boots the slot behind it
    (tmp_path / "romfs.bin").write_bytes(b"\xff" * 128 * 1024)
    assert (flash / "app" / "active").read_text() == "rom"
    assert boot_banner(rvb.port) == "/app/a"


def test_a_board_without_romfs_is_refused_first(tools, tmp_path):
    vb = VBoard(tmp_path / "flash")  # a stock ESP32 build: no vfs.rom_ioctl
    try:
        cfg = provision(tmp_path)
        rc, out, err = deploy_romfs(vb.port, cfg)
        listed = mpremote(vb.port, "resume", "fs", "ls", ":").stdout.decode()
    finally:
        assert vb.stop() == 0
    assert rc == 1
    assert "the board's MicroPython has no ROMFS (vfs.rom_ioctl)" in err, err
    assert "main.py" not in listed and "app" not in listed  # nothing written


def test_image_is_what_mpremote_builds(tmp_path):
    """The image holds the build's files and its MANIFEST, as `mpremote romfs
    build` makes it from a folder of them."""
    bld = deploy.build("xtensawin")
    src = tmp_path / "src"
    for f in bld.files:
        (src / f.name).parent.mkdir(parents=True, exist_ok=True)
        (src / f.name).write_bytes(f.data)
    (src / deploy.MANIFEST).write_bytes(bld.manifest())
    out = tmp_path / "fw.romfs"
    proc = subprocess.run(
        [sys.executable, "-m", "mpremote", "romfs", "-o", str(out), "--no-mpy",
         "build", str(src)],
        capture_output=True,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    img = romfs.image(bld)
    assert out.read_bytes() == img
    assert len(img) <= 128 * 1024  # partitions-4MiB-romfs.csv
