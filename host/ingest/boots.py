"""How far ahead of its stored boots a frame may be (docs/uplink.md#future-boots).

A board's boot number (the frame key's epoch) goes up by one at every reset and wraps
from 65535 to 0. A frame whose boot cannot be reached from the device's latest stored
boot in steps of at most ``ahead`` boots, stepping only on boots of the same batch's
authentic frames, is refused (``future_boot``): a frame far in a device's future
would take (device, boot, seq) keys that the genuine board will write later. A device
with no stored frame starts from boot 0. Boots behind the latest (an old backlog) are
never refused; "behind" is serial-number arithmetic (RFC 1982): less than 32768 back.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

MAX_BOOT_AHEAD = 1024  # boots: months of daily power cuts with no upload at all
WRAP = 0x10000
HALF = 0x8000


def latest_boot(boots: np.ndarray) -> int:
    """The newest of a device's boots, wrap included: the boot just before the
    largest circular gap of the distinct boots."""
    b = np.unique(boots.astype(np.int64))
    if b.size == 1:
        return int(b[0])
    gaps = (np.roll(b, -1) - b) % WRAP
    return int(b[int(np.argmax(gaps))])


class BootCeiling:
    """Each device's latest stored boot, loaded when first needed (a store opened
    only to report never reads them) and advanced on commit."""

    def __init__(self, ahead: int = MAX_BOOT_AHEAD):
        self.ahead = ahead
        self.latest: dict[int, int] = {}
        self.source: Callable[[], tuple[np.ndarray, np.ndarray]] | None = None

    def load_from(self, source: Callable[[], tuple[np.ndarray, np.ndarray]]) -> None:
        """Every distinct stored (device, boot), read by `source` at first use."""
        self.latest = {}
        self.source = source

    def _loaded(self) -> None:
        if self.source is not None:
            source, self.source = self.source, None
            self.load(*source())

    def load(self, device: np.ndarray, boot: np.ndarray) -> None:
        """From every distinct (device, boot) stored."""
        self.latest = {}
        self.source = None
        self.advance(device, boot)

    def advance(self, device: np.ndarray, boot: np.ndarray) -> None:
        """After a commit of frames with these keys."""
        self._loaded()
        if device.size == 0:
            return
        order = np.argsort(device, kind="stable")
        d, b = device[order], boot[order].astype(np.int64)
        starts = np.flatnonzero(np.r_[True, d[1:] != d[:-1]])
        for s, e in zip(
            starts.tolist(), np.r_[starts[1:], d.size].tolist(), strict=True
        ):
            dev = int(d[s])
            old = self.latest.get(dev)
            bs = b[s:e] if old is None else np.r_[b[s:e], old]
            self.latest[dev] = latest_boot(bs)

    def too_far(self, device: np.ndarray, boot: np.ndarray) -> np.ndarray:
        """Which frames (their device and boot) are too far ahead."""
        self._loaded()
        if device.size == 0:
            return np.zeros(0, bool)
        devs, inv = np.unique(device, return_inverse=True)
        inv = inv.reshape(-1)
        base = np.array([self.latest.get(x, -1) for x in devs.tolist()], np.int64)
        base = base[inv]
        known = base >= 0
        b = boot.astype(np.int64)
        ahead = np.where(known, (b - base) % WRAP, b)
        ahead[known & (ahead >= HALF)] = 0  # behind the latest: an old backlog
        # walk up each device's boots of the batch: a step longer than `ahead`
        # breaks the walk, and every boot past the break is too far
        order = np.lexsort((ahead, inv))
        g, a = inv[order], ahead[order]
        first = np.r_[True, g[1:] != g[:-1]]
        step = a - np.r_[0, a[:-1]]
        step[first] = a[first]
        brk = (step > self.ahead).astype(np.int64)
        c = np.cumsum(brk)
        start = np.maximum.accumulate(np.where(first, np.arange(a.size), 0))
        before = c[start] - brk[start]  # breaks of earlier devices
        out = np.zeros(a.size, bool)
        out[order] = c - before > 0
        return out

    def reload(self, devices: list[int], device: np.ndarray, boot: np.ndarray) -> None:
        """These devices' boots as read again from the store (another writer may
        have stored newer ones): every distinct (device, boot) stored for them."""
        self._loaded()
        for d in devices:
            self.latest.pop(int(d), None)
        self.advance(device, boot)
