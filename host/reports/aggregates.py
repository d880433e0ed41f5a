"""Daily aggregates kept in the store: the report's daily detail per device-day
(litres, completeness, pump hours, lockouts, faults, night flow: DAY_COLUMNS),
computed by the report's own day rules and kept current as frames arrive.

The ingest marks, in each batch's own transaction, the device-days the batch
touched (``jalkal_touched``: device, UTC date, a batch number; store.py,
pgstore.py). ``refresh`` recomputes the daily rows of every marked device from its
stored frames with ``daily.compute`` (the same function `jalkal report` runs over
all frames), replaces that device's rows in ``jalkal_days`` and its notes in
``jalkal_agg_devices``, and removes exactly the marks it read (a mark written
meanwhile has another batch number and stays), all in one transaction. A device
is recomputed whole, not day by day: its days depend on each other (the reading
at midnight closes the day before, the K-factor of the boot frame holds until the
next one, a frame logged without a clock lands on a day only when a later clock
frame of its boot arrives, a gap or an unplaced frame taints every day it may
cover), and the day rules are per device, so a device's rows from its own frames
are exactly its rows in a report over every frame.

A device is also recomputed when its registry rows change (each device's rows are
fingerprinted), and all are when the day rules' version, the meter's maximum flow
or the columns change. ``report`` gives the Report (daily table, notes) of the
aggregates as `jalkal report` would of all frames; ``read_only`` computes the
marked devices in memory without writing (a store opened read-only)."""

from __future__ import annotations

import hashlib
import json
import secrets
from collections.abc import Callable
from dataclasses import fields
from datetime import timezone
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from jkproto import codec as c
from jkproto import objects as ob

from ..errors import JalkalError
from ..ingest.store import FrameStore, is_postgres
from ..registry import Registry, Village
from .aggdb import DAYS, DEVICES, META, MONTHS, TOUCHED, Db, Steps
from .daily import COLUMNS, DailyResult, closing_notes, compute
from .frames import TABLE_COLUMNS
from .period_sql import MONTHS_SCHEMA, device_months, village_key
from .periods import DAY_SCHEMA, Months, Report, days_table, report_of
from .plausible import DEFAULT_MAX_FLOW_M3H

RULES_VERSION = "3"  # raise when a day rule changes: every device is recomputed
# 3: each device's months kept beside its days (jalkal_agg_months)
CHUNK = 64  # devices read from the store at a time
READ_COLUMNS = [x for x in TABLE_COLUMNS if x != "status"]
UPLOAD_COLUMNS = ["csq", "received", "via"]
ROWS = ("days", "detail", "max_flow_m3h", "unverified")  # not kept per device
# what a daily or period report reads of a device besides its rows
NOTES = ("key", "store", "unknown", "outside", "placed", "unplaced", "notes")


def rules_key(max_flow_m3h: float) -> str:
    """What every stored row depends on besides its device's frames and rows."""
    return json.dumps([RULES_VERSION, float(max_flow_m3h), DAY_SCHEMA.names])


_VILLAGE = tuple(f.name for f in fields(Village))  # in order, as astuple gave them


def device_key(reg: Registry, device: str) -> str:
    """A fingerprint of a device's registry rows."""
    rows = [[str(getattr(v, f)) for f in _VILLAGE] for v in reg.rows(device)]
    return hashlib.sha256(json.dumps(rows).encode()).hexdigest()[:16]


def _marks(db: Db, have: set[str]) -> pa.Table:
    if TOUCHED not in have:
        return pa.table({"device": pa.array([], pa.int64()),
                         "day": pa.array([], pa.date32()),
                         "batch": pa.array([], pa.int64())})  # fmt: skip
    return db.read(f"SELECT device, day, batch FROM {TOUCHED}")


def _stored_infos(
    db: Db, have: set[str], timeline: bool = False
) -> dict[str, dict[str, Any]]:
    """Each device's notes and figures; timeline: its events and timeline too."""
    if DEVICES not in have:
        return {}
    cols = ["device", "info", "timeline"] if timeline else ["device", "info"]
    tb = db.read_as(DEVICES, cols)
    out = {
        d: json.loads(i)
        for d, i in zip(tb["device"].to_pylist(), tb["info"].to_pylist(), strict=True)
    }
    if timeline:
        for d, t in zip(out, tb["timeline"].to_pylist(), strict=True):
            out[d].update(json.loads(t))
    return out


def _frames(info: dict[str, Any] | None) -> int:
    """How many stored frames a device's rows were computed from."""
    return int(((info or {}).get("store") or {}).get("frames") or 0)


def _stored_rules(db: Db, have: set[str]) -> str | None:
    if META not in have:
        return None
    tb = db.read_as(META, ["value"], "WHERE key = 'rules'")
    return str(tb.column(0)[0]) if tb.num_rows else None


def changes(st: FrameStore) -> tuple[int, str | None]:
    """(device-days marked and not yet aggregated, the aggregates' generation: a
    new one at every refresh that changed them): a reader that saw both before
    has nothing new to read."""
    db = Db(st)
    have = db.tables()
    n = db.read(f"SELECT count(*) AS n FROM {TOUCHED}") if TOUCHED in have else None
    g = (
        db.read_as(META, ["value"], "WHERE key = 'generation'")
        if META in have
        else None
    )
    return (
        int(n["n"][0].as_py()) if n is not None else 0,
        str(g["value"][0]) if g is not None and g.num_rows else None,
    )


def _all_devices(db: Db) -> list[int]:
    tb = db.read("SELECT DISTINCT device FROM frames")
    return sorted(int(x) for x in tb.column(0).to_pylist())


def compute_devices(
    db: Db, devices: list[int], reg: Registry, max_flow_m3h: float
) -> tuple[list[dict[str, Any]], dict[str, dict[str, Any]]]:
    """The daily detail rows and the rest of the DailyResult of these devices,
    each computed from its own frames alone (daily.compute works per device)."""
    detail: list[dict[str, Any]] = []
    infos: dict[str, dict[str, Any]] = {}
    cols = ", ".join(f'"{c}"' for c in READ_COLUMNS + UPLOAD_COLUMNS)
    for i in range(0, len(devices), CHUNK):
        part = devices[i : i + CHUNK]
        tb = db.st.query(
            f"SELECT {cols} FROM frames WHERE device = ANY({db.p}) "
            "ORDER BY device, boot, seq",
            [part],
        )
        dev = tb.column("device").to_numpy()
        starts = np.searchsorted(dev, np.array(part, dev.dtype), "left")
        ends = np.searchsorted(dev, np.array(part, dev.dtype), "right")
        for d, a, b in zip(part, starts.tolist(), ends.tolist(), strict=True):
            if a == b:
                continue  # no frames (any more): no rows
            name = ob.device_str(d)
            one = tb.slice(a, b - a)
            res = compute(one, reg, max_flow_m3h)
            detail.extend(res.detail)
            infos[name] = _info(res, name, reg) | {"store": uploads_of(one)}
    return detail, infos


def uploads_of(tb: pa.Table) -> dict[str, Any]:
    """A device's stored frames (in (boot, seq) order): how many, the last
    receive time, the way in of the last frame, the signal of the last reading
    (what the dashboard's device list shows beside the report's figures)."""
    rec = pc.max(tb["received"]).as_py()
    kinds = tb["kind"].to_numpy()
    readings = np.flatnonzero(kinds == c.READING)
    csq = int(tb["csq"][int(readings[-1])].as_py() or 0) if readings.size else None
    return {
        "frames": tb.num_rows,
        "last_received": int(rec.replace(tzinfo=timezone.utc).timestamp())
        if rec is not None
        else None,
        "via": tb["via"][tb.num_rows - 1].as_py(),
        "csq": csq,
    }


def _info(res: DailyResult, dev: str, reg: Registry) -> dict[str, Any]:
    """A one-device DailyResult without its rows (those are in jalkal_days) and
    without the notes compute adds at the end (made again when merging)."""
    info: dict[str, Any] = {"key": device_key(reg, dev)}
    for f in fields(DailyResult):
        if f.name not in ROWS:
            info[f.name] = getattr(res, f.name)
    info["notes"] = res.notes[: len(res.notes) - len(closing_notes(res))]
    return info


def _merge(infos: dict[str, dict[str, Any]], max_flow_m3h: float) -> DailyResult:
    """The devices' DailyResults as one, as daily.compute makes it over all
    their frames: per device in device order, then the closing notes."""
    res = DailyResult(days=[], max_flow_m3h=float(max_flow_m3h))
    names = [f.name for f in fields(DailyResult) if f.name not in ROWS]
    for dev in sorted(infos, key=lambda d: int(d, 16)):
        info = infos[dev]
        for name in names:
            if name not in info:
                continue
            have, v = getattr(res, name), info[name]
            if isinstance(have, dict):
                have.update(v)
            elif isinstance(have, list):
                have.extend(v)
            elif isinstance(have, int) and not isinstance(have, bool):
                setattr(res, name, have + v)
    res.seen = {d: (int(a), int(b)) for d, (a, b) in res.seen.items()}
    for name in ("quiet", "boots"):
        setattr(res, name, {
            d: [(int(a), int(b)) for a, b in v] for d, v in getattr(res, name).items()
        })  # fmt: skip
    res.notes.extend(closing_notes(res))
    return res


def _split(info: dict[str, Any]) -> tuple[str, str]:
    """A device's info as JSON: its notes and figures, and its timeline."""
    a = {k: v for k, v in info.items() if k in NOTES}
    b = {k: v for k, v in info.items() if k not in NOTES}
    return json.dumps(a, default=_plain), json.dumps(b, default=_plain)


def _plain(x: Any) -> Any:
    """numpy scalars (and anything else with .item()) as Python's, for JSON."""
    if hasattr(x, "item"):
        return x.item()
    if hasattr(x, "isoformat"):
        return x.isoformat()
    raise TypeError(f"{type(x).__name__} in a DailyResult")


def _detail_table(detail: list[dict[str, Any]]) -> pa.Table:
    return days_table(detail)


def refresh(
    st: FrameStore,
    reg: Registry,
    max_flow_m3h: float = DEFAULT_MAX_FLOW_M3H,
    write: bool = True,
    timeline: bool = True,
    days: bool = True,
) -> tuple[pa.Table, dict[str, dict[str, Any]], int]:
    """Bring the aggregates up to date: (every device's daily rows, every
    device's notes, how many devices were recomputed). write=False: computed in
    memory from the stored rows and the marked devices' frames, nothing written.
    timeline=False: the devices' events and timelines are not read (a daily or
    period report does without them); days=False (with write): nor the days
    (a month or year report reads the devices' months: stored_months)."""
    db = Db(st)
    have = db.tables()
    rules = rules_key(max_flow_m3h)
    whole = _stored_rules(db, have) != rules or DAYS not in have
    marks = _marks(db, have)
    infos = {} if whole else _stored_infos(db, have, timeline and not write)
    if whole:
        dirty = set(_all_devices(db))
    else:
        dirty = {int(x) for x in marks["device"].to_pylist()}
        for name, info in infos.items():
            if info.get("key") != device_key(reg, name):
                dirty.add(int(name, 16))
    devices = sorted(dirty)
    detail, fresh = compute_devices(db, devices, reg, max_flow_m3h)
    new_rows = _detail_table(detail)
    names = [ob.device_str(d) for d in devices]
    kept_old: set[str] = set()  # lost devices whose stored rows were left as they are
    if write and (devices or whole):

        def plan(lost: set[int]) -> tuple[Steps, list[tuple[str, pa.Table]]]:
            kept_old.clear()
            kept_old.update(() if whole else (ob.device_str(d) for d in lost))
            again = sorted(lost) if whole else []
            if whole:  # everything is rewritten, and the lost marked again
                lost = set()
            keep = [ob.device_str(d) for d in devices if d not in lost]
            rows = new_rows
            if lost:
                rows = rows.filter(
                    pc.is_in(rows["device"], pa.array(keep, pa.string()))
                )
            mine = {k: v for k, v in fresh.items() if int(k, 16) not in lost}
            p = db.p
            steps: Steps = [(s, []) for s in db.create_sql(whole)]
            if keep:
                steps += [
                    (f"DELETE FROM {t} WHERE device = ANY({p})", [keep])
                    for t in (DAYS, DEVICES, MONTHS)
                ]
            if marks.num_rows:  # exactly the marks read: one made meanwhile stays
                steps.append((db.delete_marks_sql(), [
                    marks[x].to_pylist() for x in ("device", "day", "batch")
                ]))  # fmt: skip
            if again:
                steps.append((db.remark_sql(), [again]))
            steps += [
                (f"DELETE FROM {META} WHERE key IN ('rules', 'generation')", []),
                (f"INSERT INTO {META} VALUES ('rules', {p})", [rules]),
                (f"INSERT INTO {META} VALUES ('generation', {p})",
                 [secrets.token_hex(8)]),
            ]  # fmt: skip
            parts = [_split(v) for v in mine.values()]
            info_tb = pa.table({
                "device": pa.array(list(mine), pa.string()),
                "info": pa.array([a for a, _ in parts], pa.string()),
                "timeline": pa.array([b for _, b in parts], pa.string()),
            })  # fmt: skip
            return steps, [
                (DAYS, rows), (DEVICES, info_tb), (MONTHS, device_months(rows)),
            ]  # fmt: skip

        db.write(plan, marks)
        have = db.tables()
    if write:
        rows = _stored_days(db) if days else DAY_SCHEMA.empty_table()
        stored = _stored_infos(db, have, timeline)
        # a device marked again while this ran keeps its older rows in the store
        # (the next refresh replaces them): this answer has the rows it computed,
        # from every frame committed before its read, when those are more frames
        newer = sorted(n for n in kept_old if n in fresh
                       and _frames(fresh[n]) > _frames(stored.get(n)))  # fmt: skip
        if newer:
            mine = pa.array(newer, pa.string())
            if days:
                rows = pa.concat_tables([
                    rows.filter(pc.invert(pc.is_in(rows["device"], mine))),
                    new_rows.filter(pc.is_in(new_rows["device"], mine)),
                ])  # fmt: skip
            for n in newer:  # as the store would give it back
                a, b = _split(fresh[n])
                stored[n] = json.loads(a) | (json.loads(b) if timeline else {})
        return rows, stored, len(devices)
    kept = _stored_days(db) if not whole and DAYS in have else new_rows.slice(0, 0)
    if names and kept.num_rows:
        kept = kept.filter(pc.invert(pc.is_in(kept["device"], pa.array(names))))
    infos = {k: v for k, v in infos.items() if int(k, 16) not in dirty} | fresh
    return pa.concat_tables([kept, new_rows]), infos, len(devices)


def _stored_days(db: Db, where: str = "", params: list[Any] | None = None) -> pa.Table:
    tb = db.read_as(DAYS, DAY_SCHEMA.names, where, params)
    return pa.table(
        {f.name: tb[f.name].cast(f.type) for f in DAY_SCHEMA}, schema=DAY_SCHEMA
    )


def stored_months(st: FrameStore) -> Months:
    """The devices' months as refresh() keeps them, with the day rows of every
    village more than one device served (its village-days join their rows)."""
    db = Db(st)
    tb = db.read_as(MONTHS, MONTHS_SCHEMA.names)
    tb = pa.table({f.name: tb[f.name].cast(f.type) for f in MONTHS_SCHEMA},
                  schema=MONTHS_SCHEMA)  # fmt: skip
    keys = ["s", "di", "b", "v"]
    n = tb.group_by(keys).aggregate([("device", "count_distinct")])
    shared = n.filter(pc.greater(n["device_count_distinct"], 1))
    days = DAY_SCHEMA.empty_table()
    if shared.num_rows:
        days = _stored_days(db, f"WHERE village = ANY({db.p})",
                            [shared["v"].to_pylist()])  # fmt: skip
        want = pc.binary_join_element_wise(*(shared[k] for k in keys), "\x1f")
        days = days.filter(pc.is_in(village_key(days), want))
    return Months(tb, days)


def report(
    st: FrameStore,
    reg: Registry,
    max_flow_m3h: float = DEFAULT_MAX_FLOW_M3H,
    write: bool = True,
    note: Callable[[str], None] | None = None,
    detail: bool = True,
    timeline: bool = True,
    months: bool = False,
) -> tuple[Report, dict[str, dict[str, Any]]]:
    """The Report of the aggregates: the days table, events, timelines and notes
    `jalkal report` gives over every frame (periods.build), and per device with
    frames in the store its upload figures (uploads_of). detail=False leaves
    the days out of result.detail and result.days (the alerts and the daily
    output read them); timeline=False leaves out the events and timelines;
    months=True (a month or year report, a store written): the devices' months
    instead of the days (Report.months; Report.days is left empty)."""
    months = months and write
    days, infos, n = refresh(st, reg, max_flow_m3h, write, timeline, not months)
    if note is not None and n:
        note(f"daily aggregates: {n} device(s) recomputed")
    res = _merge(infos, max_flow_m3h)
    rep = report_of(res, reg)
    rep.days = days
    if months:
        rep.months = stored_months(st)
    if detail:  # the days in the report's order (periods need none)
        rep.days = days = days.sort_by([("village", "ascending"),
                                        ("date", "ascending"),
                                        ("device", "ascending")])  # fmt: skip
        res.detail = detail_rows(days)
        res.days = [{k: r[k] for k in COLUMNS} for r in res.detail]
    return rep, {d: i.get("store", {}) for d, i in infos.items()}


def detail_rows(days: pa.Table) -> list[dict[str, Any]]:
    """The days table as DailyResult.detail dicts (dates as ISO text)."""
    rows = days.to_pylist()
    for r in rows:
        r["date"] = r["date"].isoformat()
    return rows


def from_store(
    where: str,
    reg: Registry,
    max_flow_m3h: float = DEFAULT_MAX_FLOW_M3H,
    note: Callable[[str], None] | None = None,
    detail: bool = True,
    months: bool = False,
) -> tuple[Report, set[str]] | None:
    """`report --store`'s daily table from the aggregates, refreshed and kept in
    the store; None for a DuckDB file a running `jalkal serve` holds (the report
    then reads the server's snapshot of the frames). A store this user cannot
    write is read as it is, the marked devices computed in memory."""
    from ..ingest.store import open_store
    from . import live

    if not is_postgres(where) and live.find(where) is not None:
        return None
    try:
        st = open_store(where)
        write = True
    except JalkalError:
        if is_postgres(where):
            raise
        # in use by a reader (a dashboard), or not ours to write: read it as it
        # is; held by a writer without a sidecar: the frames path says what to do
        try:
            st = open_store(where, read_only=True)
        except JalkalError as e:
            if "in use by another process" in str(e):
                return None
            raise
        write = False
    with st:
        if st.count() == 0:
            raise JalkalError(f"store {where} holds no frames: nothing to report")
        rep, ups = report(st, reg, max_flow_m3h, write, note, detail, False, months)
        return rep, set(ups)
