"""`jalkal pull`: the board's frame logs onto the laptop, for manual retrieval.

What is copied: the SD card's daily logs (/sd/log/*.jkl) and the internal-flash ring
(/flash/ring/NN.jkl, kept while the card was away). They land in OUT/<device>/sd/log/
and OUT/<device>/ring/ (a ring slot as g<generation>.jkl: a slot reused later is a
new file, never an overwrite).

Resumable: a file already here with the board's sha256 is skipped; one that is a
prefix of the board's (the day's log grew) gets only the missing tail; a copy cut
short waits in OUT/<device>/.partial/ and is continued; a local file that is not a
prefix of the board's (a new card) is moved to OUT/<device>/superseded/. Every copy
is checked against the board's sha256 of the whole file before it takes its name,
then scanned for frames (CRC) and garbage. Nothing is deleted from the board unless
--clear-after, and then only SD logs that verified, are not today's (or the newest)
and are already uploaded.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import struct
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from jkproto import objects as ob

from ..console import plural, progress, say
from ..errors import JalkalError
from .board import Board
from .layout import CONFIG, RING, RING_HDR_FMT, RING_HDR_LEN, RING_MAGIC, SD_LOG, STATE

CHUNK = 32768  # bytes per read from the board (then appended to NAME.part)
SD_PINS = ("sd_cs", "sd_sck", "sd_miso", "sd_mosi")  # config.json's, to mount a card
MAX_GPIO = 48  # the highest GPIO of the chips in boards/ (ESP32-S3)
DEVICE_ID = re.compile(r"[0-9a-f]{8}")  # as jalkal provision writes it


@dataclass
class Remote:
    path: str  # on the board
    size: int
    local: Path
    kind: str  # "sd" | "ring"
    day: int = 0  # YYYYMMDD of an SD log, 0 for nodate / ring


@dataclass
class Copied:
    remote: Remote
    action: str  # "copied", "tail", "resumed", "up to date"
    new_bytes: int
    verified: bool
    stats: dict[str, int] = field(default_factory=dict)


def gpio(pins: Any, role: str) -> int | None:
    """config.json's pin for a role when it is a GPIO number (an int 0-48), else
    None: the only form a configured pin takes in code sent to the board."""
    v = pins.get(role) if isinstance(pins, dict) else None
    return v if type(v) is int and 0 <= v <= MAX_GPIO else None


def gpios(pins: Any, roles: tuple[str, ...]) -> dict[str, int]:
    """The roles' pins that are GPIO numbers (see gpio), by role."""
    return {r: n for r in roles if (n := gpio(pins, r)) is not None}


def plain_name(name: Any) -> bool:
    """A name from the board's listing that is one file name here: no folder part,
    not "." or "..", no control character."""
    return (
        isinstance(name, str)
        and name not in ("", ".", "..")
        and not any(c in name for c in "/\\:")
        and all(c >= " " and not "\x7f" <= c <= "\x9f" for c in name)
    )


def inside(out: Path, *parts: str) -> Path:
    """out/parts, refused unless it stays inside out (no "..", no absolute part)."""
    p = out.joinpath(*parts)
    top = os.path.abspath(out)
    if os.path.commonpath([top, os.path.abspath(p)]) != top:
        raise JalkalError(f"{p}: outside {out}, not written")
    return p


def read_json(b: Board, path: str) -> Any:
    if b.size(path) < 0:
        return None
    try:
        return json.loads(b.read(path))
    except ValueError:
        return None


def board_state(b: Board) -> dict[str, Any]:
    """The firmware's persisted state (jkfw.store's state.json), {} if none."""
    if b.size(STATE) < 0:
        return {}
    raw = b.read(STATE)
    k = raw.find(b',"state":')
    try:
        st = json.loads(raw[k + 9 :].rstrip()[:-1]) if k > 0 else {}
    except ValueError:
        return {}
    return st if isinstance(st, dict) else {}


def board_today(b: Board, tz_offset_min: int) -> int | None:
    """The board's local day (YYYYMMDD) from its clock; None if the clock is unset."""
    import calendar

    b.exec("import time")
    t = b.eval("time.gmtime()")
    y = int(t[0])
    if y < 2024:
        return None
    utc = calendar.timegm(tuple(int(x) for x in t[:6]) + (0, 0, 0))  # type: ignore[arg-type]
    lt = time.gmtime(utc + tz_offset_min * 60)
    return lt.tm_year * 10000 + lt.tm_mon * 100 + lt.tm_mday


def remote_files(b: Board, out: Path, pins: dict[str, Any]) -> tuple[list[Remote], str]:
    """The logs on the board and where each goes; how the SD card was found."""
    sd = b.sd(gpios(pins, SD_PINS))
    files: list[Remote] = []
    for name, is_dir, size in sorted(b.listdir(SD_LOG)):
        if is_dir or not str(name).endswith(".jkl") or not named(name, SD_LOG):
            continue
        stem = name[:-4]
        day = int(stem) if stem.isdigit() and len(stem) == 8 else 0
        local = inside(out, "sd", "log", name)
        files.append(Remote(f"{SD_LOG}/{name}", size, local, "sd", day))
    for name, is_dir, size in sorted(b.listdir(RING)):
        if is_dir or not str(name).endswith(".jkl") or size < RING_HDR_LEN:
            continue
        if not named(name, RING):
            continue
        path = f"{RING}/{name}"
        head = b.read(path, 0, RING_HDR_LEN)
        if head[:4] != RING_MAGIC:
            continue  # torn before its header was whole: an empty slot
        gen = struct.unpack(RING_HDR_FMT, head)[1]
        files.append(Remote(path, size, inside(out, "ring", f"g{gen:08d}.jkl"), "ring"))
    return files, sd


def named(name: Any, folder: str) -> bool:
    """Whether a listed name is a plain file name; saying so when it is not."""
    if not plain_name(name):
        say(f"  skipped {name!r} in {folder}: not a plain file name")
    return plain_name(name)


def _sha(path: Path, n: int | None = None) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        left = n
        while left is None or left > 0:
            chunk = f.read(65536 if left is None else min(65536, left))
            if not chunk:
                break
            h.update(chunk)
            if left is not None:
                left -= len(chunk)
    return h.hexdigest()


def _free_name(p: Path) -> Path:
    i = 1
    while p.with_name(f"{p.name}.{i}").exists():
        i += 1
    return p.with_name(f"{p.name}.{i}")


def _aside(r: Remote, what: str) -> Path:
    """Where a partial copy or a superseded file waits: outside sd/ and ring/, so
    that `jalkal report OUT/<device>/sd` never reads it."""
    root = r.local.parents[2] if r.kind == "sd" else r.local.parents[1]
    d = root / what / r.kind
    d.mkdir(parents=True, exist_ok=True)
    return d / r.local.name


def copy_one(
    b: Board, r: Remote, advance: Callable[[float], None] | None = None
) -> Copied:
    """Copy (or finish, or skip) one file; verified against the board's sha256."""
    r.local.parent.mkdir(parents=True, exist_ok=True)
    part = _aside(r, ".partial")
    board_sha = b.sha256(r.path)
    start = 0
    action = "copied"
    if r.local.exists():
        n = r.local.stat().st_size
        if n == r.size and _sha(r.local) == board_sha:
            return Copied(r, "up to date", 0, True, scan(r))
        if 0 < n < r.size and _sha(r.local) == b.sha256(r.path, n):
            part.write_bytes(r.local.read_bytes())
            start, action = n, "tail"
        else:
            keep = _free_name(_aside(r, "superseded"))
            os.replace(
                r.local, keep
            )  # never overwrite frames: the board's file changed
            say(f"  {r.local.name} differs from the board's: kept as {keep}")
    elif part.exists():
        n = part.stat().st_size
        if 0 < n <= r.size and _sha(part) == b.sha256(r.path, n):
            start, action = n, "resumed"
        else:
            part.unlink()
    if start == 0:
        part.write_bytes(b"")
    done = start
    with open(part, "ab") as f:
        while done < r.size:
            data = b.read(r.path, done, min(CHUNK, r.size - done))
            if not data:
                break
            f.write(data)
            f.flush()
            done += len(data)
            if advance:
                advance(len(data))
            b.keepalive()
    ok = part.stat().st_size == r.size and _sha(part) == board_sha
    if not ok:
        raise JalkalError(
            f"{r.path}: the copy does not match the board's file (sha256); it was kept "
            f"as {part}: run jalkal pull again"
        )
    os.replace(part, r.local)
    return Copied(r, action, r.size - start, True, scan(r))


def scan(r: Remote) -> dict[str, int]:
    """Frames and garbage in a copied file (the CRC check), with the host decoder."""
    from ..decode.bulk import ChainState, decode

    data = r.local.read_bytes()
    if r.kind == "ring":
        data = data[RING_HDR_LEN:]
    stats = ob.new_stats()
    decode(data, None, ChainState(), stats)
    return stats


def describe(c: Copied) -> str:
    st = c.stats
    what = f"{st.get('frames', 0):,} frames"
    if st.get("skipped_bytes"):
        what += (
            f", {st['skipped_bytes']:,} bytes of garbage in "
            f"{plural(st['skipped_runs'], 'place')} ("
            f"{plural(st['crc_errors'], 'CRC failure')}, {st['truncated']:,} torn)"
        )
    else:
        what += ", CRC ok"
    new = f", {c.new_bytes:,} new bytes" if c.action in ("tail", "resumed") else ""
    return (
        f"{c.remote.local.name:<16} {c.remote.size:>9,} bytes  {c.action}{new}; {what}"
    )


def clearable(
    copied: list[Copied], today: int | None, cfg: dict[str, Any], state: dict[str, Any]
) -> tuple[list[Copied], list[str]]:
    """SD logs that may go (verified, closed, uploaded) and why the others stay."""
    sd = [c for c in copied if c.remote.kind == "sd" and c.remote.day]
    newest = max((c.remote.day for c in sd), default=0)
    up = state.get("up")
    cursor_day = up[0] if isinstance(up, list) and up and isinstance(up[0], int) else 0
    uplink = bool(cfg.get("uplink_url"))
    go, kept = [], []
    for c in sd:
        name = c.remote.local.name
        if not c.verified:
            kept.append(f"{name} (copy not verified)")
        elif c.remote.day == today:
            kept.append(f"{name} (today's, still open)")
        elif c.remote.day == newest:
            kept.append(f"{name} (the newest: the board may still write to it)")
        elif today is not None and c.remote.day > today:
            kept.append(f"{name} (dated after the board's today)")
        elif uplink and (not cursor_day or c.remote.day >= cursor_day):
            kept.append(f"{name} (not yet uploaded)")
        else:
            go.append(c)
    return go, kept


@dataclass
class PullResult:
    out: Path
    copied: list[Copied]
    removed: list[str]
    kept: list[str]
    sd: str


def run(
    b: Board, out_dir: str, clear_after: bool = False, restart: bool = True
) -> PullResult:
    """Copy a connected board's logs into OUT_DIR/<device>/, verified.

    A board without /config.json was never provisioned, and one whose config gives
    no device id of 8 lowercase hex digits has no identity: JalkalError saying so,
    after copying whatever logs it holds into OUT_DIR/unknown/ (none is cleared)."""
    provisioned = b.size(CONFIG) >= 0
    cfg = read_json(b, CONFIG) if provisioned else None
    cfg = cfg if isinstance(cfg, dict) else {}
    device = cfg.get("device")
    known = isinstance(device, str) and DEVICE_ID.fullmatch(device) is not None
    out = inside(Path(out_dir), str(device) if known else "unknown")
    problem = "" if known else unprovisioned(b.port)
    if provisioned and not known:
        problem = bad_device(b.port, device)
    pins = cfg.get("pins") or {}
    files, sd = remote_files(b, out, pins)
    if problem and not files:
        if restart:
            b.restart(1.0)
        raise JalkalError(f"nothing to pull: {problem}")
    if sd.startswith("none"):
        has = len(gpios(pins, SD_PINS)) == len(SD_PINS)
        why = sd[6:] if has else "no SD pins in config.json"
        say(f"SD card not mounted ({why}): pulling the flash ring only")
    total = sum(r.size for r in files)
    say(
        f"pulling {plural(len(files), 'log file')}, {total:,} bytes, from device "
        f"{device} to {out}",
    )
    copied = []
    # a bar with the time left on a terminal; the line per file stays (the record)
    with progress("copying", total, label_alone=False) as advance:
        for i, r in enumerate(files, 1):
            c = copy_one(b, r, advance)
            copied.append(c)
            say(f"[{i}/{len(files)}] {describe(c)}")
    removed: list[str] = []
    kept: list[str] = []
    if clear_after and not problem:  # a board of unknown identity: keep all
        tz = int(cfg.get("tz_offset_min", 330))
        today = board_today(b, tz)
        go, kept = clearable(copied, today, cfg, board_state(b))
        for c in go:
            if b.sha256(c.remote.path) != _sha(c.remote.local):
                kept.append(f"{c.remote.local.name} (changed on the board)")
                continue
            b.remove(c.remote.path)
            removed.append(c.remote.local.name)
    if restart:
        b.restart(1.0)  # the firmware runs again, as after power-on
    res = PullResult(out, copied, removed, kept, sd)
    if problem:
        raise JalkalError(f"{totals(res)}, into {out}; but {problem}")
    return res


def unprovisioned(port: str) -> str:
    """What to say of a board without /config.json, and what to do."""
    return (
        f"the board on {port} has no /config.json: it was never provisioned. Give it "
        "its identity with jalkal provision --board BOARD ... --out DIR, then "
        f"jalkal deploy --port {port} --config DIR/config.json"
    )


def bad_device(port: str, device: Any) -> str:
    """What to say of a board whose config.json gives no usable device id."""
    what = "no device id" if device is None else f"device {device!r}"
    return (
        f"the board on {port} has {what} in /config.json, not 8 lowercase hex "
        "digits: its logs are not filed under it. Make its config.json again with "
        f"jalkal provision, then jalkal deploy --port {port} --config DIR/config.json"
    )


def totals(res: PullResult) -> str:
    frames = sum(c.stats.get("frames", 0) for c in res.copied)
    garbage = sum(c.stats.get("skipped_bytes", 0) for c in res.copied)
    new = sum(c.new_bytes for c in res.copied)
    fresh = sum(1 for c in res.copied if c.action != "up to date")
    line = (
        f"pulled {fresh} of {plural(len(res.copied), 'file')}, {new:,} new bytes; "
        f"{len(res.copied) - fresh} up to date; all verified (sha256); "
        f"{frames:,} frames"
    )
    line += f", {garbage:,} bytes of garbage" if garbage else ", CRC ok"
    return line
