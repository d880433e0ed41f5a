"""The store the dashboard shows, read the way `jalkal report --store` reads it:
a PostgreSQL URL directly, a DuckDB file directly, or, while `jalkal serve` holds
the file, through that server's snapshot (reports/live.py). A thread asks the
store for its frame count every `poll_s`; when the count changed (or, on the wall
clock, every `rebuild_s`) the View is built again and the waiting pages told."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import pyarrow as pa

from jkproto import codec as c

from .. import console
from ..errors import JalkalError
from ..ingest.store import FrameStore, is_postgres, open_store
from ..registry import Registry
from ..reports import aggregates, live
from ..reports.frames import TABLE_COLUMNS
from ..reports.sources import opened
from .model import DAY, View, build_view, empty_view, view_time

COLUMNS = [x for x in TABLE_COLUMNS if x != "status"] + ["csq", "received", "via"]
POLL_S = 1.0
REBUILD_S = 60.0  # on the wall clock, "today" and "silent" move with time
EARLY_S = 1.0  # a View that took this long is first shown with the last alerts
RECENT_S = 3 * 86400  # frames read besides the aggregates: every midnight of today


def parse_time(text: str) -> int:
    """UTC seconds of an ISO time (2026-03-12T06:30Z; no zone: UTC)."""
    try:
        t = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        raise JalkalError(
            f"--as-of must be now, latest or a time like 2026-03-12T06:30Z, "
            f"got {text!r}"
        )
    if t.tzinfo is None:
        t = t.replace(tzinfo=timezone.utc)
    return int(t.timestamp())


class StoreReader:
    """The frame count and frames of one store."""

    def __init__(self, where: str):
        self.where = where
        self.pg: Any = None
        if is_postgres(where):
            self.pg = open_store(where, read_only=True)
        elif not Path(where).is_file():
            raise JalkalError(f"store {where}: no such file")

    def read(self, have: int) -> tuple[int, pa.Table | None]:
        """(frame count, the frames if the count is not `have`, else None)."""
        if self.pg is not None:
            n = self.pg.count()
            tb = self.pg.table(COLUMNS) if n != have else None
            # a PostgreSQL reader keeps one snapshot per transaction (count and
            # frames agree): end it, so that the next read sees new frames
            self.pg.conn.rollback()
            return (n if tb is None else tb.num_rows), tb
        srv = live.find(self.where)
        if srv is not None:
            try:
                n = live.count(srv)
                if n == have:
                    return n, None
                tb = live.fetch(srv, COLUMNS)
                return tb.num_rows, tb
            except live.Unreachable:
                pass
        with opened(self.where):
            with open_store(self.where, read_only=True) as st:
                n = st.count()
                return n, (st.table(COLUMNS) if n != have else None)

    def close(self) -> None:
        if self.pg is not None:
            self.pg.close()

    def poll(
        self,
        have: int,
        aged: bool,
        reg: Registry,
        now: int | None,
        early: Callable[[View], None] | None = None,
        early_alerts: list[dict[str, Any]] | None = None,
    ) -> View | None:
        """A new View when the frame count is not `have` (or `aged`), else None
        (early: not used; the frames are rebuilt at once)."""
        count, tb = self.read(have)
        if tb is None and not aged:
            return None
        if tb is not None:
            self.frames = tb
        return build_view(self.frames, reg, count, now)

    frames: pa.Table | None = None


class AggregateReader:
    """The store through its daily aggregates (reports/aggregates.py): the View
    from the aggregates and the frames of the last days only.

    `store`: a store this process holds (`jalkal serve --dashboard`), or a
    PostgreSQL URL (opened read-write, once): the aggregates are kept current
    there, and a View is built when frames were committed since the last one
    (the store marks the device-days each batch touched) or another reader
    refreshed them. A DuckDB file is opened read-only for each read (a
    `jalkal report --store` may open it meanwhile): a View is built when its
    frame count changed, with the marked devices computed in memory (`jalkal
    report --store` and `jalkal serve --dashboard` store them); while a `jalkal
    serve` holds the file, its snapshot's frames are read (StoreReader)."""

    def __init__(self, where: str, store: FrameStore | None = None):
        self.where, self.store = where, store
        self.pg: FrameStore | None = None
        if store is None and is_postgres(where):
            try:
                self.pg = open_store(where)
            except JalkalError as e:  # a role that may only read: aggregates
                console.say(f"dashboard: {e}; reading it as it is")  # in memory
                self.pg = open_store(where, read_only=True)
        self.frames_path: StoreReader | None = None
        self.generation: str | None = None  # of the aggregates of the last View
        if store is None and self.pg is None and not Path(where).is_file():
            raise JalkalError(f"store {where}: no such file")

    @contextmanager
    def opened(self) -> Iterator[tuple[FrameStore | None, bool]]:
        """(the store, whether the aggregates are written in it); None while a
        `jalkal serve` holds the DuckDB file."""
        held = self.store or self.pg
        if held is not None:
            try:
                yield held, not held.read_only
            finally:
                if held.read_only:  # end its snapshot: the next read sees new frames
                    pg: Any = held
                    pg.conn.rollback()
            return
        if live.find(self.where) is not None:
            yield None, False
            return
        with opened(self.where):
            with open_store(self.where, read_only=True) as st:
                yield st, False

    def poll(
        self,
        have: int,
        aged: bool,
        reg: Registry,
        now: int | None,
        early: Callable[[View], None] | None = None,
        early_alerts: list[dict[str, Any]] | None = None,
    ) -> View | None:
        """A new View when frames were committed (or `aged`), else None. early:
        given first a View whose alerts are early_alerts, the last View's (the
        alerts over every village-day take half a district's rebuild; the litres,
        the pump and the days need not wait for them)."""
        with self.opened() as (st, write):
            if st is None:  # a server holds the file: its snapshot's frames
                self.frames_path = self.frames_path or StoreReader(self.where)
                return self.frames_path.poll(have, aged, reg, now)
            self.frames_path = None
            if write:
                marked, gen = aggregates.changes(st)
                if have >= 0 and not aged and not marked and gen == self.generation:
                    return None
            else:
                count = st.count()
                if count == have and not aged:
                    return None
            rep, stored = aggregates.report(st, reg, write=write, detail=False)
            if write:
                self.generation = aggregates.changes(st)[1]
            cols = ", ".join(f'"{c}"' for c in COLUMNS)
            at = view_time(rep, now)
            tb = aggregates.Db(st).read(
                f"SELECT {cols} FROM frames WHERE kind = {c.BOOT} OR t >= ? "
                "OR received > ? ORDER BY device, boot, seq",
                [at - RECENT_S, datetime.fromtimestamp(at - DAY, timezone.utc)
                 .replace(tzinfo=None)],
            )  # fmt: skip
        count = sum(int(u.get("frames", 0)) for u in stored.values())
        if early is not None:  # the last View's alerts (their rows, as they were)
            early(build_view(tb, reg, count, now, rep=rep, stored=stored,
                             known_alerts=early_alerts))  # fmt: skip
        return build_view(tb, reg, count, now, rep=rep, stored=stored)

    def close(self) -> None:
        if self.pg is not None:
            self.pg.close()
        if self.frames_path is not None:
            self.frames_path.close()


class Live:
    """The current View, rebuilt by a thread; `wait(version)` blocks until a
    newer one (for /events). A rebuild that took early_s or more last time is
    published twice: at once with the last View's alerts (the alerts over every
    village-day are half a district's rebuild), then whole."""

    def __init__(
        self,
        reader: StoreReader | AggregateReader,
        reg: Registry,
        as_of: str = "now",
        poll_s: float = POLL_S,
        rebuild_s: float = REBUILD_S,
        early_s: float = EARLY_S,
    ):
        self.reader, self.reg, self.as_of = reader, reg, as_of
        self.now()  # a wrong --as-of fails here
        self.poll_s, self.rebuild_s, self.early_s = poll_s, rebuild_s, early_s
        self.cond = threading.Condition()
        self.version = 0
        self.error: str | None = None
        self.stopping = threading.Event()
        self.view: View = empty_view(reg, self.now())
        self.built = False
        self.thread: threading.Thread | None = None

    def now(self) -> int | None:
        if self.as_of == "now":
            return int(time.time())
        return None if self.as_of == "latest" else parse_time(self.as_of)

    def refresh(self) -> bool:
        """Read the store once; True when the View changed."""
        aged = self.as_of == "now" and time.time() - self.view.now >= self.rebuild_s
        # a View that took long: first one with the last View's alerts
        early = self.built and self.view.built_s >= self.early_s
        view = self.reader.poll(
            self.view.count if self.built else -1, aged, self.reg, self.now(),
            self.publish if early else None, self.view.alerts,
        )  # fmt: skip
        if view is None:
            return False
        self.built = True
        self.publish(view)
        return True

    def publish(self, view: View) -> None:
        with self.cond:
            self.view = view
            self.version += 1
            self.error = None
            self.cond.notify_all()

    def start(self) -> None:
        self.refresh()  # the first View before the first page
        self.thread = threading.Thread(
            target=self.run, name="dashboard-store", daemon=True
        )
        self.thread.start()

    def run(self) -> None:
        while not self.stopping.wait(self.poll_s):
            try:
                self.refresh()
            except JalkalError as e:
                if str(e) != self.error:
                    console.say(f"dashboard: reading the store failed: {e}")
                self.error = str(e)
            except Exception as e:  # never let one bad read stop the updates
                console.say(f"dashboard: reading the store failed: {e!r}")
                self.error = repr(e)

    def wait(self, version: int, timeout: float) -> int:
        with self.cond:
            if self.version == version:
                self.cond.wait(timeout)
            return self.version

    def stop(self) -> None:
        self.stopping.set()
        with self.cond:
            self.cond.notify_all()
        if self.thread is not None:
            self.thread.join(10)
        self.reader.close()
