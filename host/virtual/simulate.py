"""`jalkal sim`: a simulated village, its SD card, registry, keys and ground truth."""

from __future__ import annotations

import os
import re
import sys
import time
from pathlib import Path

from ..errors import JalkalError

SNAPSHOT = re.compile(r"\d{8}-\d{4}\.png")  # what display_snapshots names its PNGs


def display_snapshots(v, out: Path, every_h: float = 6.0) -> None:
    """Fit the board with a simulated SSD1306 and save its screen as PNGs."""
    from jksim import fbuf

    sys.modules.setdefault("framebuf", fbuf)
    from jkfw.display import Display
    from jkfw.ssd1306 import SSD1306

    class Bus:
        def writeto(self, addr, buf):
            pass

    out.mkdir(parents=True, exist_ok=True)
    screen = SSD1306(Bus(), 0x3C)
    disp = Display(screen, "ssd1306")
    clock = v.clock

    def snap():
        ctl = v.ctl
        if ctl is not None and v.plant.board_alive:
            disp.render(ctl.status())  # rendered only here: pure-Python pixels are slow
            t = v.plant.utc() + v.sc["tz_offset_min"] * 60
            stamp = time.strftime("%Y%m%d-%H%M", time.gmtime(t))
            fbuf.to_png(screen, 128, 64, str(out / f"{stamp}.png"), scale=3)
        clock.at(clock.ms + int(every_h * 3600 * 1000), snap)

    clock.at(int(every_h * 3600 * 1000) - 2, snap)


def check_out(out: Path, force: bool) -> None:
    """Refuse an --out folder the run would spoil: one that holds something and is
    not an earlier run's output (unless force), and, even with force, any file a
    run did not write at a name a run writes (sd/, flash/, villages.csv,
    keys.json, truth.json: a real keys file there holds keys found nowhere else)."""
    from jksim import village

    if not out.exists():
        can_make("--out", out)
        return
    if not out.is_dir():
        raise JalkalError(f"--out {out}: exists and is not a folder")
    if not os.access(out, os.W_OK | os.X_OK):
        raise JalkalError(f"--out {out}: read-only; give a folder you can write")
    try:
        busy = any(out.iterdir())
        bad = village.foreign(out)
    except OSError as e:
        raise JalkalError(f"--out {out}: cannot read it: {e.strerror or e}")
    earlier = village.earlier_run(out) is not None
    if busy and not earlier and not force:
        raise JalkalError(
            f"--out {out}: not empty and not an earlier `jalkal sim` output (no "
            f"{village.MARKER}); give a new or empty folder, or add --force to "
            "write beside what is there"
        )
    if bad:
        named = ", ".join(str(out / b) for b in bad[:3])
        more = f" and {len(bad) - 3} more" if len(bad) > 3 else ""
        raise JalkalError(
            f"--out {out}: {named}{more} not written by jalkal sim (or changed "
            "since); it never replaces or deletes such files, even with --force: "
            "move them away or give another --out"
        )


def check_display(out: Path) -> None:
    """Refuse a --display folder holding anything but earlier snapshots."""
    if not out.exists():
        can_make("--display", out)
        return
    if not out.is_dir():
        raise JalkalError(f"--display {out}: exists and is not a folder")
    if not os.access(out, os.W_OK | os.X_OK):
        raise JalkalError(f"--display {out}: read-only; give a folder you can write")
    try:
        other = [p.name for p in out.iterdir() if not SNAPSHOT.fullmatch(p.name)]
    except OSError as e:
        raise JalkalError(f"--display {out}: cannot read it: {e.strerror or e}")
    if other:
        raise JalkalError(
            f"--display {out}: holds {other[0]}, not a display snapshot; give a "
            "new or empty folder (or one with only earlier snapshots)"
        )


def can_make(option: str, folder: Path) -> None:
    """Refuse a folder that cannot be made: a file or a read-only folder in the
    way."""
    up = folder.absolute().parent
    while not up.exists() and up != up.parent:
        up = up.parent
    if not up.is_dir():
        raise JalkalError(f"{option} {folder}: {up} is a file, not a folder")
    if not os.access(up, os.W_OK | os.X_OK):
        raise JalkalError(f"{option} {folder}: folder {up} is read-only")


def uplink_ok(url: str) -> bool:
    from urllib.parse import urlsplit

    try:
        u = urlsplit(url)
        return u.scheme in ("http", "mqtt") and bool(u.hostname) and bool(u.port)
    except ValueError:
        return False


def uplink_line(v) -> str:  # type: ignore[no-untyped-def]
    m = v.modem
    if m is None:
        return ""
    up = v.ctl.uplink if v.ctl is not None else None
    left = f", {up.backlog:,} B waiting" if up is not None else ""
    return (
        f"uplink    {m.posts} posts, {m.air_bytes:,} B of SIM data (estimated), "
        f"{m.uart.tx_bytes + m.uart.rx_bytes:,} B on the modem UART{left}\n"
    )
