"""`jalkal sim`: a simulated village, its SD card, registry, keys and ground truth."""

from __future__ import annotations

import sys
import time
from pathlib import Path


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
