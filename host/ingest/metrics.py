"""Prometheus metrics and the load balancer's health check of `jalkal serve`
(``GET /metrics``, ``GET /healthz``; docs/uplink.md#running-it-for-a-state).

Each server has its own CollectorRegistry (never the process-wide one), so tests
and embedders can run several servers in one process. Counters and the latency
histogram are updated as batches are answered (`Log.hooks`); the store's size, the
devices' silence, the throttle and the keys are read when scraped.

Last heard, for 50,000 devices: one time series per device would be 50,000 series
on every scrape, so the scrape gives counts instead (``jalkal_devices_silent``:
devices of the keys file not heard for more than 1 h, 24 h, 7 d, and never heard),
and the per-device gauge only on request: ``GET /metrics?device=all`` (or
``?device=0a1b2c3d&device=...``). A device is heard when a frame of it is
acknowledged (stored or duplicate); at start the last-heard times are read from
the store in the background (its ``received`` column). On a store several workers
share (PostgreSQL), each worker also reads the frames received since its last look
every HEARD_REFRESH_S seconds ($JALKAL_HEARD_REFRESH): who the others heard, so any
one worker's silence gauges hold for the whole service. There a worker starts from
the frames received in the last 8 days; a device heard only before that counts as
silent for more than 7 days (not "never") and has no age until heard again."""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs

from jkproto import objects as ob

from .ack import DUPLICATE, REASONS, STORED, IngestResult

SILENT = (("1h", 3600), ("24h", 86400), ("7d", 7 * 86400))
LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0,
                   2.5, 5.0, 10.0)  # fmt: skip
CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
TEXT = "text/plain; charset=utf-8"
HEALTHZ_PATH, METRICS_PATH = "/healthz", "/metrics"
PATHS = (HEALTHZ_PATH, METRICS_PATH)
HEARD_REFRESH_S = 30.0  # a shared store: read who the other workers heard
HEARD_SEED_S = 8 * 86400  # a shared store's start reads the frames this far back
LONG_AGO = 0.0  # heard before that: silent > 7d, not "never", no age known
HEARD_MARGIN_S = 120.0  # looked at again: commits in flight, clocks of other hosts
THROTTLE_COUNTERS = ("refused_requests", "failed_macs", "unanswered_frames",
                     "lockouts")  # fmt: skip


def outcome(res: IngestResult) -> str:
    """A batch's outcome label: ok (every frame acknowledged), partial (some
    rejected), rejected (none acknowledged) or the body-level reason."""
    if res.error:
        return res.error
    if not res.rejected:
        return "ok"
    return "partial" if res.acked else "rejected"


class Metrics:
    """The metrics of one server. `store`, `guard`, `httpd` and `keys` (a KeyWatch)
    are read at scrape time; any may be None."""

    def __init__(self) -> None:
        from prometheus_client import CollectorRegistry, Counter, Histogram

        self.registry = CollectorRegistry(auto_describe=True)
        r = self.registry
        self.frames = Counter("jalkal_frames_stored", "Frames stored (new).",
                              ["transport"], registry=r)  # fmt: skip
        self.dups = Counter("jalkal_frames_duplicate", "Frames acknowledged "
                            "that were stored already.", ["transport"],
                            registry=r)  # fmt: skip
        self.rejected = Counter("jalkal_frames_rejected", "Frames rejected, by "
                                "reason.", ["reason"], registry=r)  # fmt: skip
        self.batches = Counter("jalkal_batches", "Batches answered, by transport "
                               "and outcome.", ["transport", "outcome"],
                               registry=r)  # fmt: skip
        self.latency = Histogram("jalkal_batch_seconds", "Seconds from a batch "
                                 "received whole to its answer (store COMMIT "
                                 "included).", ["transport"],
                                 buckets=LATENCY_BUCKETS, registry=r)  # fmt: skip
        for via in ("http", "mqtt"):
            self.frames.labels(via)
            self.dups.labels(via)
        for reason in REASONS[2:]:
            self.rejected.labels(reason)
        self.lock = threading.Lock()
        self.heard: dict[int, float] = {}  # device -> unix time of last acked frame
        self.store: Any = None
        self.guard: Any = None
        self.httpd: Any = None
        self.keys: Any = None
        self.clock: Callable[[], float] = time.time
        self.stopped = threading.Event()
        self.note: Callable[[str], None] | None = None  # a line for the log
        r.register(Scraped(self))

    # --- as batches are answered ---------------------------------------------------

    def batch(self, via: str, res: IngestResult) -> None:
        """Log hook: count a batch answered."""
        stored, dup = res.stored, res.duplicate
        if stored:
            self.frames.labels(via).inc(stored)
        if dup:
            self.dups.labels(via).inc(dup)
        for code in set(res.outcome.tolist()) - {STORED, DUPLICATE}:
            self.rejected.labels(REASONS[code]).inc(res.count(code))
        self.batches.labels(via, outcome(res)).inc()
        self.latency.labels(via).observe(res.seconds)
        if stored or dup:
            ok = res.device[res.outcome <= DUPLICATE]
            now = self.clock()
            with self.lock:
                for d in set(ok.tolist()):
                    self.heard[int(d)] = now

    def seed(self, store: Any, since: float | None = None) -> int | None:
        """Last-heard times from the store, of the frames received since `since`
        (None: all); best effort, in a thread. The devices read, None if not."""
        try:
            shared = getattr(store, "heard_since", None)
            if callable(shared):  # its own connection: batches do not wait
                got: Any = shared(since)
            else:
                tb = store.query("SELECT device, epoch(max(received)) AS t "
                                 "FROM frames GROUP BY device")  # fmt: skip
                got = zip(tb["device"].to_pylist(), tb["t"].to_pylist(), strict=True)
        except Exception:  # the store is busy or gone: keep what we have
            return None
        n = 0
        with self.lock:
            for d, t in got:
                n += 1
                if t is not None and self.heard.get(int(d), 0) < float(t):
                    self.heard[int(d)] = float(t)
        return n

    def seed_in_background(self, store: Any) -> None:
        """Read the store's last-heard times now and, on a store other workers
        write too, what they heard every refresh_s() seconds until stop()."""
        threading.Thread(target=self.follow, args=(store,), daemon=True).start()

    def follow(self, store: Any) -> None:
        """A DuckDB file: every device's last frame, once (the process owns the
        store and hears every frame itself). A shared store (PostgreSQL): the
        frames received in the last HEARD_SEED_S (through the BRIN index; a read
        of the whole table at every start slowed the other workers' batches for
        minutes after it: measured), the devices with older frames only (a probe
        each), then the newly received frames every refresh_s()."""
        shared = callable(getattr(store, "heard_since", None))
        start = t0 = self.clock()
        while (n := self.seed(store, t0 - HEARD_SEED_S if shared else None)) is None:
            if self.stopped.wait(refresh_s()):
                return
        if not shared:
            return
        old = self.seed_long_ago(store)
        if self.note is not None:
            self.note(f"metrics: last heard of {n} devices read from the store "
                      f"(frames of the last {HEARD_SEED_S // 86400} days; {old} "
                      f"more heard before) in {self.clock() - t0:.1f} s")  # fmt: skip
        while not self.stopped.wait(refresh_s()):
            now = self.clock()
            if self.seed(store, start - HEARD_MARGIN_S) is not None:
                start = now

    def seed_long_ago(self, store: Any) -> int:
        """Devices of the keys file with frames stored but none in the window
        read: heard LONG_AGO. How many."""
        with self.lock:
            unseen = [d for d in self.known() if d not in self.heard]
        if not unseen:
            return 0
        try:
            have = store.have_frames(unseen)
        except Exception:
            return 0
        with self.lock:
            for d in have:
                self.heard.setdefault(d, LONG_AGO)
        return len(have)

    def stop(self) -> None:
        self.stopped.set()

    # --- scraping --------------------------------------------------------------------

    def known(self) -> list[int]:
        """The devices of the keys file in use."""
        if self.keys is not None:
            return [int(d, 16) for d in self.keys.keys]
        return [int(d, 16) for d in getattr(self.store, "signers", None) or {}]

    def exposition(self, devices: list[str] | None = None) -> bytes:
        """The text exposition; devices: also their last-heard age ("all": every
        device of the keys file)."""
        from prometheus_client import CollectorRegistry, generate_latest

        out = generate_latest(self.registry)
        if devices:
            extra = CollectorRegistry(auto_describe=True)
            extra.register(PerDevice(self, devices))
            out += generate_latest(extra)
        return out


def refresh_s() -> float:
    """Seconds between looks at who the other workers heard ($JALKAL_HEARD_REFRESH,
    for tests; default HEARD_REFRESH_S)."""
    try:
        v = float(os.environ.get("JALKAL_HEARD_REFRESH", HEARD_REFRESH_S))
    except ValueError:
        return HEARD_REFRESH_S
    return v if v > 0 else HEARD_REFRESH_S


def healthz(store: Any) -> tuple[int, bytes]:
    """200 "ok" when the store answers and its last COMMIT worked, else 503 and
    why (for a load balancer: one cheap query, no JSON)."""
    if store is None:
        return 503, b"starting\n"
    try:
        ping = getattr(store, "ping", None)
        ping() if callable(ping) else store.count()
        failure = store.failure
    except Exception as e:
        failure = f"the store failed: {(str(e).splitlines() or [repr(e)])[0]}"
    if failure:
        return 503, f"store_error: {failure}\n".encode()
    return 200, b"ok\n"


def answer(
    metrics: Metrics | None, store: Any, path: str, query: str
) -> tuple[int, str, bytes]:
    """(status, Content-Type, body) of GET /healthz or GET /metrics."""
    if path == HEALTHZ_PATH:
        status, body = healthz(store)
        return status, TEXT, body
    if metrics is None:
        return 503, TEXT, b"metrics off: prometheus-client is not installed\n"
    devices = parse_qs(query).get("device")
    try:
        return 200, CONTENT_TYPE, metrics.exposition(devices)
    except Exception as e:  # never let a scrape stop the server
        return 500, TEXT, f"metrics failed: {e!r}\n".encode()


def store_bytes(store: Any) -> int | None:
    """The store file's size with its write-ahead log (an embedded store), or what
    the database server says its tables take (PostgreSQL)."""
    sized = getattr(store, "size_bytes", None)
    if callable(sized):
        try:
            return int(sized())
        except Exception:
            return None
    path = getattr(store, "path", None)
    if not isinstance(path, Path) or not path.is_file():
        return None
    total = 0
    for p in (path, path.with_name(path.name + ".wal")):
        try:
            total += os.stat(p).st_size
        except OSError:
            pass
    return total


class Scraped:
    """What is read at scrape time: store size, silence, throttle, keys,
    connections."""

    def __init__(self, m: Metrics):
        self.m = m

    def describe(self) -> list[Any]:
        return []  # collected on every scrape; never checked for clashes

    def collect(self) -> Iterator[Any]:
        from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily

        def gauge(name: str, doc: str, value: float) -> Any:
            return GaugeMetricFamily(name, doc, value=value)

        m = self.m
        if m.store is not None:
            try:
                yield gauge("jalkal_store_frames", "Frames in the store.",
                            m.store.count())  # fmt: skip
            except Exception:
                pass
            size = store_bytes(m.store)
            if size is not None:
                yield gauge("jalkal_store_bytes", "Size of the store: the file "
                            "and its write-ahead log, or the database tables "
                            "with their indexes.", size)  # fmt: skip
        known = m.known()
        now = m.clock()
        with m.lock:
            ages = [now - m.heard[d] if d in m.heard else None for d in known]
        yield gauge("jalkal_devices", "Devices in the keys file.", len(known))
        g = GaugeMetricFamily("jalkal_devices_silent", "Devices of the keys file "
                              "not heard for more than this long (never heard: "
                              "over=\"never\").", labels=["over"])  # fmt: skip
        for label, s in SILENT:
            g.add_metric([label], sum(1 for a in ages if a is None or a > s))
        g.add_metric(["never"], sum(1 for a in ages if a is None))
        yield g
        if m.guard is not None:
            st = m.guard.stats()
            for k in THROTTLE_COUNTERS:
                yield CounterMetricFamily(f"jalkal_throttle_{k}", f"Failed-MAC "
                                          f"throttle: {k.replace('_', ' ')}.",
                                          value=st.get(k, 0))  # fmt: skip
            for k in ("locked_devices", "locked_sources"):
                yield gauge(f"jalkal_throttle_{k}", f"Failed-MAC throttle: "
                            f"{k.replace('_', ' ')} now.", st.get(k, 0))  # fmt: skip
        if m.keys is not None:
            c = CounterMetricFamily("jalkal_keys_reloads", "Keys file reloads, by "
                                    "result.", labels=["result"])  # fmt: skip
            c.add_metric(["ok"], m.keys.reloads)
            c.add_metric(["failed"], m.keys.failures)
            yield c
            yield gauge("jalkal_keys_loaded_timestamp_seconds", "When the keys in "
                        "use were loaded (Unix time).", m.keys.loaded_at)  # fmt: skip
        if m.httpd is not None:
            h = m.httpd.health()
            yield gauge("jalkal_http_connections", "HTTP connections open.",
                        h["open"])  # fmt: skip
            yield CounterMetricFamily("jalkal_http_refused_busy", "Connections "
                                      "refused at the cap (503 busy).",
                                      value=h["refused_busy"])  # fmt: skip
            yield CounterMetricFamily("jalkal_http_timed_out", "Requests not "
                                      "received whole in time (408).",
                                      value=h["timed_out"])  # fmt: skip


class PerDevice:
    """``jalkal_device_last_heard_age_seconds{device=...}``, on request only."""

    def __init__(self, m: Metrics, devices: Iterable[str]):
        self.m, self.devices = m, list(devices)

    def describe(self) -> list[Any]:
        return []

    def collect(self) -> Iterator[Any]:
        from prometheus_client.core import GaugeMetricFamily

        m = self.m
        if "all" in self.devices:
            want = sorted(m.known())
        else:
            want = sorted({int(d, 16) for d in self.devices if ob_ok(d)})
        g = GaugeMetricFamily("jalkal_device_last_heard_age_seconds", "Seconds "
                              "since a frame of the device was last acknowledged "
                              "(devices never heard are left out).",
                              labels=["device"])  # fmt: skip
        now = m.clock()
        with m.lock:
            for d in want:
                if m.heard.get(d, LONG_AGO) != LONG_AGO:  # never, or age unknown
                    g.add_metric([ob.device_str(d)], round(now - m.heard[d], 3))
        yield g


def ob_ok(text: str) -> bool:
    """Whether text is a device id (8 lowercase hex digits)."""
    return len(text) == 8 and all(ch in "0123456789abcdef" for ch in text)
