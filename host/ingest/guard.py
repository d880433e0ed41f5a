"""The failed-MAC throttle of `jalkal serve` (docs/uplink.md#the-failed-mac-throttle).

Per device (of the keys file): every frame whose MAC fails (``bad_mac``) is one
failure. A device may fail FREE_FAILURES times; each failure past that locks it for
BASE_LOCK_S * 2 ** (failures - FREE_FAILURES - 1) seconds, at most MAX_LOCK_S. A
request carrying frames of a locked device is refused as a whole (``throttled``, HTTP
429 with Retry-After) before any MAC of it is computed. Once its lock has run out, a
device with failures has a budget of one failure: the MACs of a request are answered
up to its first failing frame, and its frames after that one are not answered at
all (outcome ``throttled``; never stored, never confirmed), so a body of 9,709
guesses tests one, not 9,709. A genuine board's frames all verify: it never meets a
budget. A device with failures is also let in one request at a time.

Per source (the HTTP client's address; over MQTT the topic's device): a token bucket
of SOURCE_BURST failing requests, refilled at SOURCE_PER_HOUR an hour; an empty bucket
refuses the source's requests (429) until a token is back. It counts requests, not
frames, and unknown devices count only here (they have no key to guess), so one
misconfigured board behind a carrier's NAT, retrying with its back-off, never locks
out the other boards behind the same address.

Nothing refused is lost: the board sends it again later. Counters are forgotten
FORGET_S after the last failure; a restart forgets them.
"""

from __future__ import annotations

import math
import os
import threading
import time
from collections.abc import Callable, Iterable, Mapping

from ..errors import JalkalError
from .ack import BodyError

FREE_FAILURES = 10  # failed MACs a device may make before any lockout
BASE_LOCK_S = 1.0  # the first lockout; each further failure doubles it
MAX_LOCK_S = 3600.0  # the longest lockout (reached after FREE_FAILURES + 13 failures)
FORGET_S = 7 * 24 * 3600.0  # a device with no failure for a week starts again
SOURCE_BURST = 100  # failing requests a source may make at once
SOURCE_PER_HOUR = 100.0  # and then this many an hour
MAX_TRACKED = 100_000  # sources remembered; the oldest go first
ENV = "JALKAL_THROTTLE"  # "FREE,BASE_S,MAX_S[,SOURCE_PER_HOUR]": for tests and drills


class _Entry:
    __slots__ = ("failures", "last", "until", "busy")

    def __init__(self) -> None:
        self.failures = 0
        self.last = 0.0  # monotonic time of the last failure
        self.until = 0.0  # locked until this monotonic time
        self.busy = False  # a request of it is being checked (one at a time)


class _Bucket:
    __slots__ = ("tokens", "t")

    def __init__(self, tokens: float, t: float) -> None:
        self.tokens, self.t = tokens, t


class Throttle:
    """Thread-safe failed-MAC counters per device and failing-request buckets per
    source."""

    def __init__(
        self,
        free: int = FREE_FAILURES,
        base_s: float = BASE_LOCK_S,
        max_s: float = MAX_LOCK_S,
        forget_s: float = FORGET_S,
        log: Callable[[str], None] | None = None,
        clock: Callable[[], float] = time.monotonic,
        source_per_hour: float = SOURCE_PER_HOUR,
        source_burst: int = SOURCE_BURST,
    ):
        self.free, self.base_s, self.max_s = free, base_s, max_s
        self.forget_s = forget_s
        self.rate = source_per_hour / 3600.0  # tokens a second
        self.burst = float(source_burst)
        self.log = log or (lambda line: None)
        self.clock = clock
        self.lock = threading.Lock()
        self.devices: dict[int, _Entry] = {}
        self.sources: dict[str, _Bucket] = {}
        self.refused = 0  # requests refused while locked
        self.failed_macs = 0  # frames whose MAC failed
        self.unanswered = 0  # frames past a device's budget, left unanswered
        self.lockouts = 0

    # --- the checks ---------------------------------------------------------------

    def _tokens(self, b: _Bucket, now: float) -> float:
        b.tokens = min(self.burst, b.tokens + (now - b.t) * self.rate)
        b.t = now
        return b.tokens

    def _source_wait(self, source: str | None, now: float) -> float:
        b = self.sources.get(source) if source is not None else None
        if b is None or self.rate <= 0:
            return 0.0
        left = self._tokens(b, now)
        return 0.0 if left >= 1 else (1 - left) / self.rate

    def source_wait(self, source: str | None) -> float:
        """Seconds the source must still wait (0: it may send); counts a refusal."""
        with self.lock:
            wait = self._source_wait(source, self.clock())
            if wait:
                self.refused += 1
            return wait

    def admit(
        self, source: str | None, devices: Iterable[int]
    ) -> tuple[float, dict[int, int], list[_Entry]]:
        """Before a request's MACs are checked: (seconds to wait, {}, []) when the
        source or a device is locked or a device already has a request in flight
        (refused); else (0, failures each device may still reveal in this request,
        the entries held for `settle`): FREE_FAILURES for a device without failures,
        what is left of them, and one once they are spent and its lock has run
        out."""
        now = self.clock()
        with self.lock:
            wait = self._source_wait(source, now)
            held: list[_Entry] = []
            budget: dict[int, int] = {}
            for d in devices:
                budget[d] = self.free
                e = self.devices.get(d)
                if e is None or not e.failures:
                    continue
                if now - e.last > self.forget_s and e.until <= now:
                    e.failures = 0
                    continue
                held.append(e)
                budget[d] = max(1, self.free - e.failures)
            wait = max([wait] + [e.until - now for e in held])
            if wait <= 0 and any(e.busy for e in held):
                wait = min(self.base_s, 1.0)  # one request at a time: come back soon
            if wait > 0:
                self.refused += 1
                return wait, {}, []
            for e in held:
                e.busy = True
            return 0.0, budget, held

    def settle(
        self,
        held: list[_Entry],
        source: str | None,
        failed: Mapping[int, int],
        failing_request: bool,
        unanswered: int = 0,
    ) -> None:
        """After the MAC checks: release what admit held; count each device's failed
        MACs (failed: device -> frames), and one failing request against the source
        when any frame failed or named an unknown device."""
        now = self.clock()
        with self.lock:
            for e in held:
                e.busy = False
            self.unanswered += unanswered
            for d, n in failed.items():
                if n:
                    self.failed_macs += n
                    self._fail(d, n, now)
            if failing_request and source is not None and self.rate > 0:
                b = self.sources.get(source)
                if b is None:
                    if len(self.sources) >= MAX_TRACKED:
                        self._prune(now)
                    b = self.sources[source] = _Bucket(self.burst, now)
                had = self._tokens(b, now) >= 1
                b.tokens = max(0.0, b.tokens - 1)
                if had and b.tokens < 1:
                    self.lockouts += 1
                    self.log(
                        f"throttle: source {source} held back after "
                        f"{int(self.burst)} failing requests; "
                        f"{self.rate * 3600:g} an hour from now on"
                    )

    def _fail(self, d: int, n: int, now: float) -> None:
        e = self.devices.get(d)
        if e is None:
            e = self.devices[d] = _Entry()  # a device of the keys file: bounded
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
                    f"throttle: device {d:08x} locked for {math.ceil(e.until - now)} s "
                    f"after {e.failures} failed MACs"
                )

    def _prune(self, now: float) -> None:
        """Forget the half of the sources whose buckets are fullest (the least
        suspect)."""
        full = sorted(
            ((self._tokens(b, now), k) for k, b in self.sources.items()), reverse=True
        )
        for _, k in full[: max(1, len(full) // 2)]:
            del self.sources[k]

    # --- what /v1/health shows ----------------------------------------------------

    def stats(self) -> dict[str, int]:
        now = self.clock()
        with self.lock:
            return {
                "locked_devices": sum(e.until > now for e in self.devices.values()),
                "locked_sources": sum(
                    self._tokens(b, now) < 1 for b in self.sources.values()
                ),
                "refused_requests": self.refused,
                "failed_macs": self.failed_macs,
                "unanswered_frames": self.unanswered,
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
        free, base, top, *rate = text.split(",")
        per_hour = float(rate[0]) if rate else SOURCE_PER_HOUR
        if len(rate) > 1:
            raise ValueError
        return Throttle(int(free), float(base), float(top), log=log,
                        source_per_hour=per_hour,
                        source_burst=max(1, int(per_hour)))  # fmt: skip
    except ValueError:
        raise JalkalError(
            f"${ENV}={text!r}: give FREE,BASE_S,MAX_S[,SOURCE_PER_HOUR], "
            "e.g. 10,1,3600,100"
        )


def retry_after(wait: float) -> int:
    """The Retry-After header's whole seconds for a wait (at least 1)."""
    return max(1, math.ceil(wait))
