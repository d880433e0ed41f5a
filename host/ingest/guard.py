"""The failed-MAC throttle of `jalkal serve` (docs/uplink.md#the-failed-mac-throttle).

Every frame that fails its MAC check (``bad_mac``) or names a device the keys file
does not hold (``unknown_device``) counts as one failure against the frame's device
and against the request's source (the HTTP client's address; over MQTT the device of
the topic). A device or source may fail FREE_FAILURES times; every failure past that
locks it for BASE_LOCK_S * 2 ** (failures - FREE_FAILURES - 1) seconds, at most
MAX_LOCK_S. While locked, a request of that source or carrying frames of that device
is refused as a whole (``throttled``, HTTP 429 with Retry-After) before any MAC of it
is computed; nothing of it is stored, and the board sends it again later: a stranger
can delay a device's uploads, never make it lose a frame. A device or source with
failures is let in one request at a time, so parallel connections cannot each guess
in the same unlocked moment. Counters are forgotten FORGET_S after the last failure.
"""

from __future__ import annotations

import math
import os
import threading
import time
from collections.abc import Callable, Iterable
from typing import Any

from ..errors import JalkalError
from .ack import BodyError

FREE_FAILURES = 10  # failed MACs a device or source may make before any lockout
BASE_LOCK_S = 1.0  # the first lockout; each further failure doubles it
MAX_LOCK_S = 3600.0  # the longest lockout (reached after FREE_FAILURES + 13 failures)
FORGET_S = 7 * 24 * 3600.0  # a counter with no failure for a week starts again
MAX_TRACKED = 100_000  # devices (and sources) remembered; the oldest go first
ENV = "JALKAL_THROTTLE"  # "FREE,BASE_S,MAX_S": other numbers, for tests and drills


class _Entry:
    __slots__ = ("failures", "last", "until", "busy")

    def __init__(self) -> None:
        self.failures = 0
        self.last = 0.0  # monotonic time of the last failure
        self.until = 0.0  # locked until this monotonic time
        self.busy = False  # a request of it is being checked (one at a time)


class Throttle:
    """Thread-safe counters of failed MACs per device and per source."""

    def __init__(
        self,
        free: int = FREE_FAILURES,
        base_s: float = BASE_LOCK_S,
        max_s: float = MAX_LOCK_S,
        forget_s: float = FORGET_S,
        log: Callable[[str], None] | None = None,
        clock: Callable[[], float] = time.monotonic,
    ):
        self.free, self.base_s, self.max_s, self.forget_s = (
            free,
            base_s,
            max_s,
            forget_s,
        )
        self.log = log or (lambda line: None)
        self.clock = clock
        self.lock = threading.Lock()
        self.devices: dict[int, _Entry] = {}
        self.sources: dict[str, _Entry] = {}
        self.refused = 0  # requests refused while locked
        self.failed_macs = 0  # frames that failed (bad_mac, unknown_device)
        self.lockouts = 0

    # --- the checks ---------------------------------------------------------------

    def source_wait(self, source: str | None) -> float:
        """Seconds the source is still locked for (0: not locked); counts a refusal."""
        if source is None:
            return 0.0
        with self.lock:
            e = self.sources.get(source)
            wait = max(0.0, e.until - self.clock()) if e else 0.0
            if wait:
                self.refused += 1
            return wait

    def admit(
        self, source: str | None, devices: Iterable[int]
    ) -> tuple[float, list[_Entry]]:
        """Before a request's MACs are checked: (seconds to wait, []) when the source
        or a device is locked or already has a request in flight (refused), else
        (0, the entries held for `settle`)."""
        now = self.clock()
        with self.lock:
            found = [self.devices.get(d) for d in devices]
            if source is not None:
                found.append(self.sources.get(source))
            held = [e for e in found if e is not None and e.failures]
            wait = max((e.until - now for e in held), default=0.0)
            if wait <= 0 and any(e.busy for e in held):
                wait = min(self.base_s, 1.0)  # one request at a time: come back soon
            if wait > 0:
                self.refused += 1
                return wait, []
            for e in held:
                e.busy = True
            return 0.0, held

    def settle(
        self, held: list[_Entry], source: str | None, failed: Iterable[int]
    ) -> None:
        """After the MAC checks: release what admit held; count the failures (one
        device id per failed frame) against their devices and the source."""
        now = self.clock()
        per_device: dict[int, int] = {}
        for d in failed:
            per_device[d] = per_device.get(d, 0) + 1
        total = sum(per_device.values())
        with self.lock:
            for e in held:
                e.busy = False
            if not total:
                return
            self.failed_macs += total
            for d, n in per_device.items():
                self._fail(self.devices, d, n, now, f"device {d:08x}")
            if source is not None:
                self._fail(self.sources, source, total, now, f"source {source}")

    def _fail(self, table: dict[Any, _Entry], key: Any, n: int, now: float,
              who: str) -> None:  # fmt: skip
        e = table.get(key)
        if e is None:
            if len(table) >= MAX_TRACKED:
                self._prune(table, now)
            e = table[key] = _Entry()
        elif now - e.last > self.forget_s and e.until <= now:
            e.failures = 0
        e.failures += n
        e.last = now
        over = e.failures - self.free
        if over > 0:
            lock = min(self.base_s * 2.0 ** min(over - 1, 64), self.max_s)
            was_locked = e.until > now
            e.until = max(e.until, now + lock)
            if not was_locked:
                self.lockouts += 1
                self.log(
                    f"throttle: {who} locked for {math.ceil(e.until - now)} s after "
                    f"{e.failures} failed MACs"
                )

    def _prune(self, table: dict[Any, _Entry], now: float) -> None:
        """Forget the oldest half of the entries that are not locked (all of the
        oldest half when every one is)."""
        free = [(e.last, k) for k, e in table.items() if e.until <= now and not e.busy]
        pool = free or [(e.last, k) for k, e in table.items() if not e.busy]
        for _, k in sorted(pool)[: max(1, len(pool) // 2)]:
            del table[k]

    # --- what /v1/health shows ----------------------------------------------------

    def stats(self) -> dict[str, int]:
        now = self.clock()
        with self.lock:
            return {
                "locked_devices": sum(e.until > now for e in self.devices.values()),
                "locked_sources": sum(e.until > now for e in self.sources.values()),
                "refused_requests": self.refused,
                "failed_macs": self.failed_macs,
                "lockouts": self.lockouts,
            }


class Throttled(BodyError):
    """Refused by the throttle: send again in retry_after seconds."""

    def __init__(self, wait_s: int):
        super().__init__(
            "throttled",
            "too many failed MACs from this source or for this device: locked; "
            f"send again in {wait_s} s",
        )
        self.retry_after = wait_s


def from_env(log: Callable[[str], None] | None = None) -> Throttle:
    """The throttle `jalkal serve` uses: the constants above, or $JALKAL_THROTTLE."""
    text = os.environ.get(ENV, "")
    if not text:
        return Throttle(log=log)
    try:
        free, base, top = text.split(",")
        return Throttle(int(free), float(base), float(top), log=log)
    except ValueError:
        raise JalkalError(f"${ENV}={text!r}: give FREE,BASE_S,MAX_S, e.g. 10,1,3600")


def retry_after(wait: float) -> int:
    """The Retry-After header's whole seconds for a wait (at least 1)."""
    return max(1, math.ceil(wait))
