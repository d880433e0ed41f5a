"""`jalkal deploy --romfs`: the firmware in the board's romfs partition.

A module imported from the flash file system has its bytecode, names and constants
copied into the heap (about 74 KB for jkfw with every sensor, an OLED and a modem:
docs/sensors.md "Heap and code size"). From a ROMFS image the bytecode runs in place,
memory-mapped from flash, as frozen modules do, and the firmware's peak heap falls
to about 61 KB. The board needs a MicroPython built with ROMFS (MICROPY_VFS_ROM) and
a partition named "romfs" (ports/esp32/partitions-4MiB-romfs.csv: 128 KB); the
image is mounted at /rom at boot.

The image holds the build's files and its MANIFEST, made by mpremote's ROMFS
builder (what `mpremote romfs build` makes). It is written as `mpremote romfs
deploy` writes one to an ESP32 (the partition's blocks erased, then written), then
read back and checked by sha256 before /app/active names "rom". The same build is
first put in a flash slot (an ordinary deploy) and made active, so a write cut short
leaves a board that boots that slot.
"""

from __future__ import annotations

import base64
import hashlib
from dataclasses import dataclass

from ..console import progress, say
from ..errors import JalkalError
from . import deploy
from .board import SETTLE, Board, BoardError

ROM = "rom"  # /app/active's word for the firmware in the romfs partition
WRITE = 2048  # bytes per exec: 2.7 KB of base64 on the wire


def image_of(files: dict[str, bytes]) -> bytes:
    """A ROMFS image of `files` (paths from the image's root), made by mpremote's
    builder as `mpremote romfs build DIR --no-mpy` makes it from a folder of them."""
    import contextlib
    import io
    import tempfile
    from pathlib import Path

    from mpremote.romfs import make_romfs

    with tempfile.TemporaryDirectory(prefix="jalkal-romfs-") as tmp:
        for name, data in files.items():
            dst = Path(tmp) / name
            dst.parent.mkdir(parents=True, exist_ok=True)
            dst.write_bytes(data)
        with contextlib.redirect_stdout(io.StringIO()):  # its tree listing
            return bytes(make_romfs(tmp, mpy_cross=False))


def image(bld: deploy.Build) -> bytes:
    """The ROMFS image of a build: its files and its MANIFEST at the root."""
    files = {f.name: f.data for f in bld.files}
    files[deploy.MANIFEST] = bld.manifest()
    return image_of(files)


@dataclass(frozen=True)
class Partition:
    size: int
    block: int


# run on the board: the partition, as vfs.rom_ioctl(2, 0) gives it on an ESP32 (an
# esp32.Partition with ioctl, readblocks and writeblocks), or why there is none
QUERY = """
import vfs
if not hasattr(vfs, 'rom_ioctl'):
    print('no-romfs')
elif vfs.rom_ioctl(1) < 1:
    print('no-partition')
else:
    _jk_rom = vfs.rom_ioctl(2, 0)
    if not hasattr(_jk_rom, 'writeblocks'):
        print('not-esp32')
    else:
        print(_jk_rom.ioctl(4, 0), _jk_rom.ioctl(5, 0))
"""

# the sha256 of the partition's first n bytes, read a block at a time
SHA = """
def _jk_romsha(n, bs):
    import hashlib, binascii
    h = hashlib.sha256()
    buf = bytearray(bs)
    b = 0
    while n > 0:
        _jk_rom.readblocks(b, buf)
        h.update(buf if n >= bs else memoryview(buf)[:n])
        n -= bs
        b += 1
    print(binascii.hexlify(h.digest()).decode())
"""


def query(b: Board) -> Partition:
    """The board's romfs partition; JalkalError when its MicroPython has none."""
    words = b.exec(QUERY).decode(errors="replace").split()
    if words[:1] == ["no-romfs"]:
        raise JalkalError(
            "the board's MicroPython has no ROMFS (vfs.rom_ioctl): flash a MicroPython "
            "built with MICROPY_VFS_ROM and a partition named romfs (ports/esp32/"
            "partitions-4MiB-romfs.csv), or deploy without --romfs"
        )
    if words[:1] == ["no-partition"]:
        raise JalkalError(
            "the board's MicroPython has ROMFS but its partition table has no romfs "
            "partition: flash one built with ports/esp32/partitions-4MiB-romfs.csv, "
            "or deploy without --romfs"
        )
    if words[:1] == ["not-esp32"] or len(words) != 2:
        raise JalkalError(
            "the board's romfs partition is not an ESP32's (vfs.rom_ioctl(2, 0) has "
            "no writeblocks): jalkal deploy --romfs writes ESP32 boards only"
        )
    count, block = int(words[0]), int(words[1])
    return Partition(count * block, block)


def rom_sha(b: Board, part: Partition, n: int) -> str:
    b.exec(SHA)
    return b.exec(f"_jk_romsha({n}, {part.block})").decode().strip()


def leave_rom(b: Board) -> bool:
    """Before the partition is rewritten: a stopped firmware whose code is in it logs
    what its meters counted (while its code is whole), then a soft reset from the
    raw REPL gives a fresh interpreter without main.py, so nothing runs code from
    the partition while it changes. True when the firmware ran from it."""
    where = b.eval(
        "getattr(__import__('sys').modules.get('jkfw.main'), '__file__', '')"
    )
    if not str(where).startswith(deploy.slot_dir(ROM) + "/"):
        return False
    b.exec(SETTLE)
    b.stop(soft_reset=True)
    return True


def write(b: Board, img: bytes, part: Partition) -> None:
    """Erase the blocks the image needs, write it, and check what the partition
    holds by sha256."""
    b.exec("import vfs\ntry:\n    vfs.umount('/rom')\nexcept OSError:\n    pass")
    blocks = (len(img) + part.block - 1) // part.block
    with progress("writing the romfs partition", len(img), label_alone=False) as adv:
        for n in range(blocks):
            b.exec(f"_jk_rom.ioctl(6, {n})")  # erase
            b.keepalive()
        b.exec("from binascii import a2b_base64")
        for off in range(0, len(img), WRITE):
            chunk = base64.b64encode(img[off : off + WRITE])  # bytes: a board's C
            # a2b_base64 takes str too, micropython-lib's (the vboard's) bytes only
            blk, within = divmod(off, part.block)
            b.exec(f"_jk_rom.writeblocks({blk}, a2b_base64({chunk!r}), {within})")
            adv(min(WRITE, len(img) - off))
            b.keepalive()
    if rom_sha(b, part, len(img)) != hashlib.sha256(img).hexdigest():
        raise BoardError(
            "the romfs partition does not hold what was written (flash failing?): "
            "the board boots its flash slot; run jalkal deploy --romfs again"
        )


def run(
    b: Board,
    prep: deploy.Prepared,
    boot_wait_s: float = deploy.BOOT_WAIT_S,
    check_boot: bool = True,
) -> deploy.DeployResult:
    """The build in a flash slot (active: the fallback), then in the romfs
    partition, then /app/active "rom" and a boot from /rom checked."""
    if prep.arch is None:
        raise JalkalError("--romfs and --source cannot go together")
    img = image(prep.build)
    part = query(b)
    if len(img) > part.size:
        raise JalkalError(
            f"the firmware's ROMFS image is {len(img):,} bytes, the board's romfs "
            f"partition {part.size:,}: deploy without --romfs"
        )
    if deploy.read_active(b, rom=True) == ROM:
        say("the board runs /rom: the build goes to a flash slot first")
    res = deploy.run(b, prep, check_boot=False)  # a flash slot, made active
    if rom_sha(b, part, len(img)) == hashlib.sha256(img).hexdigest():
        say(f"romfs partition: this build is there already ({len(img):,} bytes)")
    else:
        if leave_rom(b):
            say(
                "the firmware ran from the romfs partition: its meters logged, the "
                "board soft-reset before the partition is written"
            )
            part = query(b)  # a fresh interpreter
        say(
            f"writing the romfs partition: {len(img):,} of {part.size:,} bytes "
            f"(the board boots {deploy.APP}/{res.slot} until it is checked)"
        )
        write(b, img, part)
    b.write_atomic(deploy.ACTIVE, ROM.encode())  # the switch
    res.slot = ROM
    say(f"{deploy.ACTIVE}: {ROM} (the romfs partition, at {deploy.slot_dir(ROM)})")
    if check_boot:
        say(f"restarting the board, watching it boot for {boot_wait_s:g} s")
        out = b.restart(boot_wait_s, until=b"\r\n>>> ")
        res.booted = deploy.boot_check(out, prep.build, ROM)
        say(f"the board runs {res.booted}")
    return res
