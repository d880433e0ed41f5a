"""The dashboard's numbers: one View of the store, built with the report's own
functions (reports.periods.build, periods.periods, alerts.alerts), so a page can
never show a figure `jalkal report` would not.

Per village (its registry key: State, district, block, village) the View holds
today's status, the pump's state now, litres today so far, yesterday's lpcd and
band (the `--period day` row), this month's mean lpcd so far (the `--period
month` row) and its band, the open alerts, and the daily rows of the last 90
days. "Now" is the wall clock, or the latest frame in the store (as `report
--alerts` without --as-of)."""

from __future__ import annotations

import hashlib
import time
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta, timezone
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from jkproto import codec as c

from ..registry import Registry, Village, zone
from ..reports.alerts import alerts, as_of_time
from ..reports.daily import band_of
from ..reports.periods import Report, build, periods
from ..reports.plausible import DEFAULT_MAX_FLOW_M3H, intervals
from .days import DAYS_SHOWN, ChartDays, days_from

RECENT_DAYS = DAYS_SHOWN + 10  # the days read for the day and month rows
STATUSES = ("water", "none", "silent", "locked")
STATUS_LABELS = {
    "water": "water today",
    "none": "no water yet today",
    "silent": "board silent",
    "locked": "pump locked out",
}
BANDS = ("fully", "partially", "non", "no_data")
BAND_LABELS = {
    "fully": "fully (≥ 55)",
    "partially": "partially (> 40)",
    "non": "non (≤ 40)",
    "no_data": "no complete day",
}
PUMP_STATES = {
    "pump_start": "on",
    "pump_stop": "off",
    "lockout": "locked out",
    "lockout_end": "off",
}
TODAY_EVENTS = (
    "pump_start",
    "pump_stop",
    "fault_raised",
    "fault_cleared",
    "lockout",
    "lockout_end",
)
DAY = 86400
UPLOAD_WINDOW_S = DAY  # uploads counted over the last day


def village_id(key: tuple[str, str, str, str]) -> str:
    """A short stable id for a village key (its names may hold any character)."""
    return hashlib.sha256("\x1f".join(key).encode()).hexdigest()[:12]


def iso(t: int | None) -> str | None:
    if t is None:
        return None
    return datetime.fromtimestamp(t, timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def _jsonable(x: Any) -> Any:
    if isinstance(x, datetime):
        return iso(int(x.timestamp()))
    if isinstance(x, date):
        return x.isoformat()
    return x


def rows_of(tb: pa.Table) -> list[dict[str, Any]]:
    """A table's rows as JSON-ready dicts (dates ISO, times ISO UTC)."""
    return [{k: _jsonable(v) for k, v in r.items()} for r in tb.to_pylist()]


@dataclass
class View:
    """Everything the pages and the API show, for one frame count of the store."""

    count: int
    now: int
    built_s: float
    villages: list[dict[str, Any]] = field(default_factory=list)
    by_id: dict[str, dict[str, Any]] = field(default_factory=dict)
    days: dict[str, list[dict[str, Any]]] = field(default_factory=dict)  # ChartDays
    months: list[dict[str, Any]] = field(default_factory=list)
    alerts: list[dict[str, Any]] = field(default_factory=list)
    devices: list[dict[str, Any]] = field(default_factory=list)
    events: dict[str, list[dict[str, Any]]] = field(default_factory=dict)
    report_days: pa.Table | None = None  # the report's DAY_COLUMNS, for /v1/periods


def empty_view(reg: Registry, now: int | None) -> View:
    """The View of a store with no frames yet: every village, nothing heard."""
    return build_view(None, reg, 0, now)


def view_time(rep: Report, now: int | None) -> int:
    """'Now' of a View: the given time, else the latest frame's (the wall clock
    for a store without one)."""
    at = as_of_time(rep, now) if now is not None or rep.result.seen else 0
    return at or int(time.time())


def build_view(
    table: pa.Table | None,
    reg: Registry,
    count: int,
    now: int | None,
    max_flow_m3h: float = DEFAULT_MAX_FLOW_M3H,
    rep: Report | None = None,
    stored: dict[str, dict[str, Any]] | None = None,
    known_alerts: list[dict[str, Any]] | None = None,
) -> View:
    """The View of the frames `table` (the store's columns, (device, boot, seq)
    order); now: UTC seconds, None for the latest frame time. rep: the Report
    of every frame, from the daily aggregates (reports/aggregates.py), with
    `stored` (each device's frames, last upload, way in and signal,
    aggregates.uploads_of); `table` then holds only the frames of the last
    days (today's litres so far, uploads of the last day) and every boot frame
    (the K-factor). known_alerts: the alerts to show, not computed (a View made
    at once from a newer store with the last View's alerts)."""
    t0 = time.perf_counter()
    frames = table if table is not None and table.num_rows else _no_frames()
    if rep is None:
        rep = build(frames, reg, max_flow_m3h)
    at = view_time(rep, now)
    view = View(count=count, now=at, built_s=0.0)
    view.alerts = rows_of(alerts(rep, at)) if known_alerts is None else known_alerts
    view.report_days = rep.days
    # a period's rows need only its own days: yesterday's (in any zone) for
    # every village now, this month's, and a village's 90 days when it is shown
    utc = datetime.fromtimestamp(at, timezone.utc).date()
    day_rows = periods(days_from(rep.days, utc - timedelta(2)), "day", "village",
                       registry=reg).to_pylist()  # fmt: skip
    month_rows = periods(days_from(rep.days, (utc - timedelta(1)).replace(day=1)),
                         "month", "village", registry=reg).to_pylist()  # fmt: skip
    view.days = ChartDays(days_from(rep.days, utc - timedelta(RECENT_DAYS)), reg)
    pumps = _pump_states(rep, at)
    groups = _villages(reg, at)
    arrays = Arrays(frames)
    uploads = _uploads(frames, arrays, at)
    for dev, u in (stored or {}).items():
        got = uploads.setdefault(dev, {"uploads_day": 0})
        got["frames"], got["via"], got["signal_csq"] = u["frames"], u["via"], u["csq"]
        got["last_upload"] = iso(u["last_received"])
    by_day: dict[tuple[Any, ...], dict[date, dict[str, Any]]] = {}
    for r in day_rows:
        key = (r["state"], r["district"], r["block"], r["village"])
        by_day.setdefault(key, {})[r["start"]] = r
    by_month = {
        (r["state"], r["district"], r["block"], r["village"], r["period"]): r
        for r in month_rows
    }
    # the events of the last days (every village's midnight is after `since`)
    since = pa.scalar(at - 2 * DAY, pa.timestamp("s", tz="UTC"))
    late: dict[str, list[dict[str, Any]]] = {}
    for e in rep.events.filter(pc.greater(rep.events["t"], since)).to_pylist():
        late.setdefault(e["device"], []).append(e)
    active: dict[str, list[dict[str, Any]]] = {}
    for a in view.alerts:
        if a["active"]:
            active.setdefault(a["device"], []).append(a)
    for key, rows in sorted(groups.items()):
        vid = village_id(key)
        tz = rows[0].tz
        today = datetime.fromtimestamp(at, zone(tz)).date()
        devs = sorted({v.device for v in rows})
        midnight = int(
            datetime(today.year, today.month, today.day, tzinfo=zone(tz)).timestamp()
        )
        so_far = [litres_so_far(arrays, d, midnight, at, max_flow_m3h) for d in devs]
        litres = None if any(x is None for x in so_far) else sum(so_far)  # type: ignore[arg-type]
        seen = [t for d in devs if (t := heard(rep, arrays, d, at)) is not None]
        dmap = by_day.get(key, {})
        yest = dmap.get(today - timedelta(days=1))
        month = by_month.get((*key, f"{today.year}-{today.month:02d}"))
        mean = month["mean_lpcd"] if month else None
        open_alerts = [a for d in devs for a in active.get(d, ())]
        pump = _worst_pump([pumps.get(d) for d in devs])
        status = (
            "silent"
            if any(a["kind"] == "silent" for a in open_alerts)
            else "locked"
            if pump == "locked out"
            else "water"
            if litres
            else "none"
        )
        v = {
            "id": vid,
            "village": key[3],
            "block": key[2],
            "district": key[1],
            "state": key[0],
            "population": max(r.population for r in rows),
            "devices": devs,
            "tz": tz,
            "today": today.isoformat(),
            "status": status,
            "last_heard": iso(max(seen)) if seen else None,
            "pump": pump or "unknown",
            "litres_today": None if litres is None else round(litres, 1),
            "yesterday": {
                "date": (today - timedelta(days=1)).isoformat(),
                "lpcd": yest["mean_lpcd"] if yest else None,
                "band": yest["quantity"] if yest else None,
                "complete": bool(yest and yest["days_complete"]),
                "litres": yest["litres"] if yest else None,
            },
            "month": {
                "period": f"{today.year}-{today.month:02d}",
                "mean_lpcd": mean,
                "band": band_of(mean) if mean is not None else "no_data",
                "days_complete": month["days_complete"] if month else 0,
                "days": month["days"] if month else 0,
                "functionality": month["functionality"] if month else None,
            },
            "open_alerts": len(open_alerts),
        }
        view.villages.append(v)
        view.by_id[vid] = v
        view.days.shown[vid] = (key, today)
        view.events[vid] = _today_events(late, devs, midnight, at)
        if month:
            view.months.append({k: _jsonable(x) for k, x in month.items()})
    view.devices = _devices(reg, rep, frames, pumps, uploads)
    view.built_s = time.perf_counter() - t0
    return view


def _no_frames() -> pa.Table:
    return pa.table(
        {
            "device": pa.array([], pa.uint32()),
            "kind": pa.array([], pa.uint8()),
            "flags": pa.array([], pa.uint8()),
            "t": pa.array([], pa.uint32()),
        }
    )


def _villages(reg: Registry, at: int) -> dict[tuple[Any, ...], list[Village]]:
    """Village key -> its registry rows that cover today (or the device's latest
    row when none does: a village is listed as long as it is registered)."""
    out: dict[tuple[str, ...], list[Village]] = {}
    for dev, rows in reg.by_device.items():
        today = datetime.fromtimestamp(at, zone(rows[0].tz)).date()
        v = reg.at(dev, today) or rows[-1]
        out.setdefault(v.key(), []).append(v)
    return out


def _col(tb: pa.Table, name: str) -> np.ndarray:
    if name not in tb.column_names:
        return np.zeros(tb.num_rows, np.int64)
    return np.asarray(pc.fill_null(tb.column(name), 0).to_numpy(), np.int64)


class Arrays:
    """The frame columns the dashboard reads, as numpy arrays, with each device's
    rows (the store gives them in (device, boot, seq) order)."""

    def __init__(self, tb: pa.Table):
        self.device = _col(tb, "device")
        self.flags = _col(tb, "flags")
        self.t = _col(tb, "t")
        self.kind = _col(tb, "kind")
        self.kfactor = _col(tb, "supply_pulses_per_m3")
        self.supply = _col(tb, "supply_pulses")
        order = np.argsort(self.device, kind="stable")
        devs, first = np.unique(self.device[order], return_index=True)
        bounds = [*first.tolist(), int(order.size)]
        self.rows = {
            f"{d:08x}": order[bounds[i] : bounds[i + 1]]
            for i, d in enumerate(devs.tolist())
        }


def heard(rep: Report, a: Arrays, device: str, at: int) -> int | None:
    """The device's last frame time up to `at` (the report's, when not later)."""
    seen = rep.result.seen.get(device)
    if seen is not None and seen[1] <= at:
        return seen[1]
    idx = a.rows.get(device)
    if idx is None:
        return None
    t = a.t[idx][((a.flags[idx] & c.TQ_MASK) != 0) & (a.t[idx] <= at)]
    return int(t.max()) if t.size else None


def litres_so_far(
    a: Arrays, device: str, midnight: int, now: int, max_flow_m3h: float
) -> float | None:
    """Supply-meter litres of the device from local midnight to `now`: the day
    rule's intervals (plausible.intervals) from the midnight reading (or the day's
    first, when the board started later) to the latest reading, with the K-factor
    of the latest boot frame; None without one. Implausible intervals count 0, as
    in the report."""
    idx = a.rows.get(device)
    if idx is None:
        return None
    t, kind = a.t[idx], a.kind[idx]
    ok = ((a.flags[idx] & c.TQ_MASK) != 0) & (t <= now)
    kf = a.kfactor[idx]
    boots = np.flatnonzero(ok & (kind == c.BOOT) & (kf > 0))
    if boots.size == 0:
        return None
    k = int(kf[boots[np.argsort(t[boots], kind="stable")[-1]]])
    sel = ok & (kind == c.READING)
    rt, tot = t[sel], a.supply[idx][sel]
    order = np.argsort(rt, kind="stable")
    rt, first = np.unique(rt[order], return_index=True)
    tot = tot[order][first]
    start = max(int(np.searchsorted(rt, midnight, side="right")) - 1, 0)
    rt, tot = rt[start:], tot[start:]
    if rt.size < 2 or rt[-1] <= midnight:
        return 0.0
    iv = intervals(rt, tot, np.full(rt.size, k, np.int64), max_flow_m3h)
    return float(iv.inc[1:].sum()) * 1000.0 / k


def _pump_states(rep: Report, at: int) -> dict[str, str]:
    """Device -> the pump's state after its last pump event up to `at`."""
    ev = rep.events
    upto = pa.scalar(at, pa.int64()).cast(pa.timestamp("s")).cast(ev["t"].type)
    ev = ev.filter(
        pc.and_(
            pc.is_in(ev["event"], pa.array(list(PUMP_STATES))),
            pc.less_equal(ev["t"], upto),
        )
    )
    devs = ev["device"].to_numpy(zero_copy_only=False)
    # each device's last one: events are in time order per device
    _, back = np.unique(devs[::-1], return_index=True)
    last = (devs.size - 1 - back).tolist()
    what = ev["event"].take(pa.array(last, pa.int64())).to_pylist()
    return {str(devs[i]): PUMP_STATES[w] for i, w in zip(last, what, strict=True)}


def _worst_pump(states: list[str | None]) -> str | None:
    for s in ("locked out", "on", "off"):
        if s in states:
            return s
    return None


def _today_events(
    late: dict[str, list[dict[str, Any]]], devs: list[str], midnight: int, at: int
) -> list[dict[str, Any]]:
    """The pump's starts, stops, lockouts and faults of these devices today, in
    the report's event order. late: the recent events by device."""
    out = []
    for e in (e for d in devs for e in late.get(d, ())):
        t = int(e["t"].timestamp()) if e["t"] is not None else None
        if t is not None and midnight < t <= at and e["event"] in TODAY_EVENTS:
            out.append(
                {
                    "t": iso(t),
                    "device": e["device"],
                    "event": e["event"],
                    "reason": e["reason"],
                    "boot": e["boot"],
                    "seq": e["seq"],
                }
            )
    return out


def _uploads(tb: pa.Table, a: Arrays, at: int) -> dict[str, dict[str, Any]]:
    """Device -> uploads (distinct receive times) in the last day, the last one,
    frames stored, the last signal (csq) and the way in."""
    out: dict[str, dict[str, Any]] = {}
    names = tb.column_names
    rec = (
        tb.column("received")
        .cast(pa.timestamp("s"))
        .cast(pa.int64())
        .fill_null(0)
        .to_numpy()
        if "received" in names
        else np.zeros(tb.num_rows, np.int64)
    )
    csq = _col(tb, "csq")
    via = tb.column("via") if "via" in names else None
    for dev, idx in a.rows.items():
        r = rec[idx]
        reading = idx[a.kind[idx] == c.READING]
        last = int(r.max()) if r.size else 0
        recent = r[(r > at - UPLOAD_WINDOW_S) & (r <= at)]
        out[dev] = {
            "frames": int(idx.size),
            "last_upload": iso(last) if last > 0 else None,
            "uploads_day": int(np.unique(recent).size),
            "signal_csq": int(csq[reading[-1]]) if reading.size else None,
            "via": via[int(idx[-1])].as_py() if via is not None else None,
        }
    return out


def _devices(
    reg: Registry,
    rep: Report,
    tb: pa.Table,
    pumps: dict[str, str],
    uploads: dict[str, dict[str, Any]],
) -> list[dict[str, Any]]:
    out = []
    for dev, rows in sorted(reg.by_device.items()):
        v = rows[-1]
        seen = rep.result.seen.get(dev)
        up = uploads.get(dev, {})
        out.append(
            {
                "device": dev,
                "village_id": village_id(v.key()),
                "village": v.village,
                "block": v.block,
                "district": v.district,
                "state": v.state,
                "last_frame": iso(seen[1]) if seen else None,
                "pump": pumps.get(dev, "unknown"),
                "frames": up.get("frames", 0),
                "last_upload": up.get("last_upload"),
                "uploads_day": up.get("uploads_day", 0),
                "signal_csq": up.get("signal_csq"),
                "via": up.get("via"),
            }
        )
    return out


def summary(
    view: View, state: str | None = None, district: str | None = None
) -> dict[str, Any]:
    """Counts of villages by today's status and this month's band, one row per
    State (no filter), district (state) or block (state and district)."""
    level = "state" if state is None else "district" if district is None else "block"
    rows: dict[str, dict[str, Any]] = {}
    total = _counts()
    for v in view.villages:
        if state is not None and v["state"] != state:
            continue
        if district is not None and v["district"] != district:
            continue
        g = rows.setdefault(v[level], _counts())
        for acc in (g, total):
            acc["villages"] += 1
            acc["status"][v["status"]] += 1
            acc["band"][v["month"]["band"]] += 1
    return {
        "level": level,
        "state": state,
        "district": district,
        "rows": [{"name": k, **rows[k]} for k in sorted(rows)],
        "total": total,
    }


def _counts() -> dict[str, Any]:
    return {
        "villages": 0,
        "status": dict.fromkeys(STATUSES, 0),
        "band": dict.fromkeys(BANDS, 0),
    }


def select(view: View, **where: str | None) -> list[dict[str, Any]]:
    """The villages matching every given filter (state, district, block, status,
    band: this month's)."""
    out = []
    for v in view.villages:
        ok = True
        for k, want in where.items():
            if want is None or want == "":
                continue
            have = v["month"]["band"] if k == "band" else v.get(k)
            ok = ok and have == want
        if ok:
            out.append(v)
    return out
