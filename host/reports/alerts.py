"""The escalation list: what an engineer should follow up, since when, and why.

    alerts(build(frames, registry), as_of=None, fault_days=3, low_days=3,
           silent_days=2, night_lpph=1.0, night_nights=3, lockouts=4,
           lockout_days=1) -> pa.Table (ALERT_COLUMNS)

One row per episode (rules in docs/reports.md, "Alerts"):

* ``open_fault``: a fault raised and not cleared for ``fault_days`` days or more.
* ``low_supply``: a village at or below 40 lpcd on ``low_days`` or more consecutive
  complete days (an incomplete day ends a run: it is never counted as low).
* ``silent``: a registered device with no frame for ``silent_days`` days or more.
* ``night_flow``: the smallest 15-minute flow between 00:00 and 04:00 local stayed
  above ``night_lpph`` litres per person per hour on ``night_nights`` or more
  consecutive nights (water running all night: a possible leak).
* ``lockouts``: ``lockouts`` or more dry-run lockouts of a pump within
  ``lockout_days`` days (the source cannot keep up with the pump).
* ``implausible``: a device-day with reading intervals whose pulses imply a flow
  above the meter's maximum (plausible.py): a forged frame or a faulty meter.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import date, datetime, timedelta, timezone
from functools import lru_cache
from typing import Any

import pyarrow as pa

from ..registry import Village, zone
from .daily import NON_LPCD
from .periods import VILLAGE_DAY, Report, village_day
from .sensor_alerts import KINDS as SENSOR_KINDS
from .sensor_alerts import sensor_alerts

KINDS = ("open_fault", "low_supply", "silent", "night_flow", "lockouts", "implausible",
         *SENSOR_KINDS)  # fmt: skip
LOCKOUTS = 4  # lockouts within LOCKOUT_DAYS that make an alert (docs/reports.md)
LOCKOUT_DAYS = 1.0
LOCKOUT_EVENT = 7  # jkproto event `lockout`: a dry-run (or no-flow) lockout entered
ALERT_SCHEMA = pa.schema(
    [
        ("kind", pa.string()), ("village", pa.string()), ("block", pa.string()),
        ("district", pa.string()), ("state", pa.string()), ("device", pa.string()),
        ("since", pa.timestamp("s", tz="UTC")), ("until", pa.timestamp("s", tz="UTC")),
        ("active", pa.bool_()), ("days", pa.float64()), ("what", pa.string()),
        ("evidence", pa.string()),
    ]
)  # fmt: skip
ALERT_COLUMNS = tuple(ALERT_SCHEMA.names)
DAY = 86400


def _iso(t: int) -> str:
    return datetime.fromtimestamp(t, timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


@lru_cache(maxsize=65536)  # a district's year asks for each (day, zone) 700 times
def _midnight(d: date, tz: str) -> int:
    return int(datetime(d.year, d.month, d.day, tzinfo=zone(tz)).timestamp())


def as_of_time(rep: Report, as_of: date | datetime | int | None) -> int:
    """UTC seconds: an int as is; a datetime (naive = UTC); a date: the end of that
    local day (Asia/Kolkata, or the first device's zone); None: the latest frame
    time of any device."""
    if as_of is None:
        seen = rep.result.seen.values()
        return max((b for _a, b in seen), default=0)
    if isinstance(as_of, int):
        return as_of
    if isinstance(as_of, datetime):
        if as_of.tzinfo is None:
            as_of = as_of.replace(tzinfo=timezone.utc)
        return int(as_of.timestamp())
    tz = next(iter(rep.registry), None)
    return _midnight(as_of + timedelta(days=1), tz.tz if tz else "Asia/Kolkata")


def alerts(
    rep: Report,
    as_of: date | datetime | int | None = None,
    *,
    fault_days: float = 3,
    low_days: int = 3,
    silent_days: float = 2,
    night_lpph: float = 1.0,
    night_nights: int = 3,
    lockouts: int = LOCKOUTS,
    lockout_days: float = LOCKOUT_DAYS,
    **sensors: Any,
) -> pa.Table:
    """Every episode, ALERT_COLUMNS; active ones first, then by kind and since.
    sensors: the options of sensor_alerts.sensor_alerts (table_weeks, ...)."""
    now = as_of_time(rep, as_of)
    rows: list[dict[str, Any]] = []
    rows += _faults(rep, now, fault_days)
    vdays = _village_days(rep, now)
    rows += _low(vdays, now, low_days)
    rows += _silent(rep, now, silent_days)
    rows += _night(vdays, now, night_lpph, night_nights)
    rows += _lockouts(rep, now, lockouts, lockout_days)
    rows += _implausible(rep, now)
    rows += sensor_alerts(
        rep, now, lambda d, t: _where(_row_for(rep, d, t), d), _episode, **sensors
    )
    rows.sort(key=lambda r: (not r["active"], KINDS.index(r["kind"]), r["since"] or 0))
    cols = {k: [r.get(k) for r in rows] for k in ALERT_COLUMNS}
    return pa.table(cols, schema=ALERT_SCHEMA)


def _where(v: Village | None, dev: str | None) -> dict[str, Any]:
    return {
        "village": v.village if v else None,
        "block": v.block if v else None,
        "district": v.district if v else None,
        "state": v.state if v else None,
        "device": dev,
    }


def _row_for(rep: Report, dev: str, t: int) -> Village | None:
    rows = rep.registry.rows(dev)
    if not rows:
        return None
    d = datetime.fromtimestamp(t, zone(rows[0].tz)).date()
    return rep.registry.at(dev, d) or rows[-1]


def _episode(
    kind: str, since: int, until: int | None, now: int, **rest: Any
) -> dict[str, Any]:
    end = now if until is None else until
    return {
        "kind": kind,
        "since": since,
        "until": until,
        "active": until is None,
        "days": round((end - since) / DAY, 2),
        **rest,
    }


# --- open faults -------------------------------------------------------------------


def _faults(rep: Report, now: int, fault_days: float) -> list[dict[str, Any]]:
    """A fault is open from its raise until a fault_cleared of the same reason, or
    until a later boot that does not raise it again (the board forgets its faults
    when it restarts and raises again those that still hold)."""
    out: list[dict[str, Any]] = []
    evs = [e for e in rep.result.events if e["event"] in (3, 4) and e["t"] <= now]
    by_dev: dict[str, list[dict[str, Any]]] = {}
    for e in evs:
        by_dev.setdefault(e["device"], []).append(e)
    from jkproto import objects as ob

    for dev, es in sorted(by_dev.items()):
        es.sort(key=lambda e: (e["t"], e["boot"], e["seq"]))
        boots = [(b, t) for b, t in rep.result.boots.get(dev, []) if t <= now]
        done = _fault_episodes(es, boots, now)
        for raises, until, how in done:
            first = raises[0]
            end = now if until is None else until
            if end - first["t"] < fault_days * DAY:
                continue
            reason = (
                ob.REASONS[first["reason"]]
                if first["reason"] < len(ob.REASONS)
                else str(first["reason"])
            )
            again = sorted(
                {r["boot"] for r in raises[1:] if r["boot"] != first["boot"]}
            )
            ev = (
                f"fault_raised {reason} {_iso(first['t'])} (device {dev} boot "
                f"{first['boot']} seq {first['seq']})"
                + (
                    f"; raised again in boot {', '.join(map(str, again))}"
                    if again
                    else ""
                )
                + f"; {how}"
            )
            out.append(
                _episode(
                    "open_fault",
                    first["t"],
                    until,
                    now,
                    what=f"fault {reason} open for {(end - first['t']) / DAY:.1f} days",
                    evidence=ev,
                    **_where(_row_for(rep, dev, first["t"]), dev),
                )
            )
    return out


Episode = tuple[list[dict[str, Any]], int | None, str]


def _fault_episodes(
    es: list[dict[str, Any]], boots: list[tuple[int, int]], now: int
) -> list[Episode]:
    """(raises, until or None, how it ended) per fault episode of one device."""
    open_: dict[int, list[dict[str, Any]]] = {}  # reason -> raises
    done: list[Episode] = []
    raised = {(e["boot"], e["reason"]) for e in es if e["event"] == 3}

    def forget(upto: int) -> None:
        # a boot started before `upto` that did not raise the fault: gone
        for reason, raises in list(open_.items()):
            last = raises[-1]
            for b, t in boots:
                if b != last["boot"] and last["t"] < t <= upto:
                    if (b, reason) not in raised:
                        done.append((raises, t, f"boot {b} did not raise it again"))
                        del open_[reason]
                        break

    for e in es:
        forget(e["t"])
        if e["event"] == 3:
            open_.setdefault(e["reason"], []).append(e)
        elif e["reason"] in open_:
            how = f"cleared {_iso(e['t'])} (boot {e['boot']} seq {e['seq']})"
            done.append((open_.pop(e["reason"]), e["t"], how))
    forget(now)
    for raises in open_.values():
        done.append((raises, None, "not cleared"))
    return done


# --- village days -----------------------------------------------------------------


DAY_READ = ["state", "district", "block", "village", "device", "date", "tz",
            "night_min_lph", *VILLAGE_DAY]  # fmt: skip


def _village_days(rep: Report, now: int) -> dict[tuple[str, ...], dict[date, Any]]:
    """(state, district, block, village) -> date -> village-day (devices summed),
    days up to as_of only, from the DAY_READ columns of the days table."""
    per: dict[tuple[str, ...], dict[date, list[dict[str, Any]]]] = {}
    for r in rep.days.select(DAY_READ).to_pylist():
        d = r["date"]
        if _midnight(d, r["tz"]) >= now:  # the day had not begun
            continue
        key = (r["state"], r["district"], r["block"], r["village"])
        per.setdefault(key, {}).setdefault(d, []).append(r)
    out: dict[tuple[str, ...], dict[date, Any]] = {}
    for vkey, days in per.items():
        out[vkey] = {}
        for d, rs in sorted(days.items()):
            if len(rs) == 1:  # the row itself (read for this only): no copy
                vd = rs[0]
                vd["supply"] = (vd["supply_hours"] or 0) > 0
                vd["devices"] = [vd["device"]]
            else:
                vd = village_day(rs)
                vd["devices"] = sorted({r["device"] for r in rs})
            vd["tz"] = rs[0]["tz"]
            vd["night"] = [
                (r["night_min_lph"], r["population"])
                for r in rs
                if r["night_min_lph"] is not None
            ]
            vd["all_night"] = len(vd["night"]) == len(rs)
            out[vkey][d] = vd
    return out


def _runs(days: Mapping[date, Any], hit: Any) -> list[list[date]]:
    """Maximal runs of consecutive dates d with hit(day) true."""
    runs: list[list[date]] = []
    for d in sorted(days):
        if not hit(days[d]):
            continue
        if runs and runs[-1][-1] == d - timedelta(days=1):
            runs[-1].append(d)
        else:
            runs.append([d])
    return runs


def _run_where(
    key: tuple[str, ...], days: Mapping[date, Any], run: list[date]
) -> dict[str, str]:
    """_where() for a run of village-days: the village of key (state, district,
    block, village) and the devices that logged the run."""
    devs = sorted({x for d in run for x in days[d]["devices"]})
    return {"village": key[3], "block": key[2], "district": key[1],
            "state": key[0], "device": ",".join(devs)}  # fmt: skip


VillageDays = dict[tuple[str, ...], dict[date, Any]]


def _low(vdays: VillageDays, now: int, low_days: int) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    for key, days in sorted(vdays.items()):

        def low(vd: dict[str, Any]) -> bool:
            return bool(
                vd["complete"] and vd["lpcd"] is not None and vd["lpcd"] <= NON_LPCD
            )

        for run in _runs(days, low):
            if len(run) < low_days:
                continue
            tz = days[run[0]]["tz"]
            after = [d for d in days if d > run[-1] and days[d]["complete"]]
            until = _midnight(run[-1] + timedelta(days=1), tz) if after else None
            vals = ", ".join(f"{days[d]['lpcd']:.1f}" for d in run)
            out.append(
                _episode(
                    "low_supply",
                    _midnight(run[0], tz),
                    until,
                    now,
                    **_run_where(key, days, run),
                    what=f"{len(run)} consecutive complete days at or below "
                    f"{NON_LPCD} lpcd",
                    evidence=f"lpcd {vals} on {run[0]}..{run[-1]}"
                    + (f"; next complete day {after[0]} above" if after else ""),
                )
            )
    return out


def _night(
    vdays: VillageDays, now: int, night_lpph: float, night_nights: int
) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    for key, days in sorted(vdays.items()):

        def high(vd: dict[str, Any]) -> bool:
            if not vd["all_night"] or not vd["night"]:
                return False
            lph = sum(x for x, _p in vd["night"])
            return bool(lph / vd["population"] > night_lpph)

        for run in _runs(days, high):
            if len(run) < night_nights:
                continue
            tz = days[run[0]]["tz"]
            nxt = run[-1] + timedelta(days=1)
            later = [d for d in days if d > run[-1] and days[d]["night"]]
            until = _midnight(nxt, tz) if later else None
            pop = days[run[0]]["population"]
            vals = ", ".join(
                f"{d} {sum(x for x, _ in days[d]['night']):.0f} L/h" for d in run
            )
            out.append(
                _episode(
                    "night_flow",
                    _midnight(run[0], tz),
                    until,
                    now,
                    **_run_where(key, days, run),
                    what=f"water ran all night on {len(run)} nights (minimum "
                    f"00:00-04:00 flow above {night_lpph:g} L per person per hour): "
                    "possible leak",
                    evidence=f"minimum night flow {vals} (population {pop})",
                )
            )
    return out


# --- repeated lockouts -------------------------------------------------------------


def _lockouts(
    rep: Report, now: int, least: int, within_days: float
) -> list[dict[str, Any]]:
    """Stretches of time in which `least` or more lockouts of one device fell in
    the last `within_days` days: each window of `least` consecutive lockouts
    closer than that holds from its last lockout until its first one is
    `within_days` old; overlapping windows are one episode."""
    from jkproto import objects as ob

    out: list[dict[str, Any]] = []
    span = within_days * DAY
    by_dev: dict[str, list[dict[str, Any]]] = {}
    for e in rep.result.events:
        if e["event"] == LOCKOUT_EVENT and e["t"] <= now:
            by_dev.setdefault(e["device"], []).append(e)
    for dev, es in sorted(by_dev.items()):
        es.sort(key=lambda e: (e["t"], e["boot"], e["seq"]))
        t = [e["t"] for e in es]
        runs: list[list[int]] = []  # [first lockout, last lockout, end time]
        for i in range(len(t) - max(least, 1) + 1):
            j = i + max(least, 1) - 1
            if t[j] - t[i] >= span:
                continue
            if runs and t[j] <= runs[-1][2]:
                runs[-1][1:] = [j, max(runs[-1][2], int(t[i] + span))]
            else:
                runs.append([i, j, int(t[i] + span)])
        for i, j, end in runs:
            run = es[i : j + 1]
            why: dict[str, int] = {}
            for e in run:
                r = e["reason"]
                name = ob.REASONS[r] if r < len(ob.REASONS) else str(r)
                why[name] = why.get(name, 0) + 1
            boots = sorted({e["boot"] for e in run})
            hours = (t[j] - t[i]) / 3600
            out.append(
                _episode(
                    "lockouts",
                    t[i],
                    end if end <= now else None,
                    now,
                    what=f"{len(run)} dry-run lockouts in {hours:.1f} hours "
                    f"({least} or more within {within_days:g} "
                    f"day{'' if within_days == 1 else 's'}): the borewell runs dry "
                    "again and again, the source cannot keep up with the pumping",
                    evidence=f"lockouts {_iso(t[i])} .. {_iso(t[j])} (device {dev} "
                    f"boot {', '.join(map(str, boots))}); "
                    + ", ".join(f"{k} {n}" for k, n in sorted(why.items()))
                    + f"; longest retry wait {max(e['value'] for e in run)} s",
                    **_where(_row_for(rep, dev, t[i]), dev),
                )
            )
    return out


# --- implausible readings --------------------------------------------------------


def _implausible(rep: Report, now: int) -> list[dict[str, Any]]:
    """One episode per device and local day with implausible intervals, from the
    first one's start to the last one's reading; active while no reading of the
    device came after it (the meter may still be reading nonsense)."""
    by: dict[tuple[str, str], list[dict[str, Any]]] = {}
    for x in rep.result.implausible:
        if x["t"] <= now:
            by.setdefault((x["device"], x["date"]), []).append(x)
    out = []
    for (dev, day), xs in sorted(by.items()):
        last = rep.result.seen.get(dev, (0, 0))[1]
        litres = sum(x["litres"] for x in xs)
        ev = "; ".join(
            f"reading boot {x['boot']} seq {x['seq']} {_iso(x['t'])}: "
            f"{x['pulses']:,} pulses in {x['t'] - x['from_t']} s = {x['m3h']:,.0f} m3/h"
            + (" (a spike: the next reading came back down)" if x["spike"] else "")
            for x in xs[:3]
        ) + (f"; {len(xs) - 3} more" if len(xs) > 3 else "")
        out.append(
            _episode(
                "implausible",
                xs[0]["from_t"],
                xs[-1]["t"] if min(last, now) > xs[-1]["t"] else None,
                now,
                what=f"{len(xs)} reading interval(s) on {day} implied more than "
                f"{xs[0]['max_m3h']:g} m3/h through the supply meter (a forged "
                f"frame or a faulty meter): {litres:,.0f} litres not counted",
                evidence=ev,
                **_where(_row_for(rep, dev, xs[0]["t"]), dev),
            )
        )
    return out


# --- silent devices ---------------------------------------------------------------


def _silent(rep: Report, now: int, silent_days: float) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    need = silent_days * DAY
    for dev, rows in sorted(rep.registry.by_device.items()):
        tz = rows[0].tz
        today = datetime.fromtimestamp(now, zone(tz)).date() if now else None
        live = today is None or any(v.covers(today) for v in rows)
        seen = rep.result.seen.get(dev)
        if seen is None:
            if live:
                v = rep.registry.at(dev, today) if today else rows[-1]
                out.append(
                    {
                        "kind": "silent",
                        "since": None,
                        "until": None,
                        "active": True,
                        "days": None,
                        "what": "no frame ever received from this device",
                        "evidence": f"device {dev} is in the registry; no frames",
                        **_where(v or rows[-1], dev),
                    }
                )
            continue
        stretches = [(a, b) for a, b in rep.result.quiet.get(dev, []) if a < now]
        if seen[1] < now and live:
            stretches.append((seen[1], now))
        for a, b in stretches:
            ongoing = b >= now  # nothing heard yet as of `now`
            b = min(b, now)
            if b - a < need:
                continue
            out.append(
                _episode(
                    "silent",
                    a,
                    None if ongoing else b,
                    now,
                    what=f"no frame for {(b - a) / DAY:.1f} days",
                    evidence=f"last frame {_iso(a)}"
                    + (f"; next frame {_iso(b)}" if not ongoing else "; none since"),
                    **_where(_row_for(rep, dev, a), dev),
                )
            )
    return out


def to_text(tb: pa.Table) -> str:
    """One paragraph per alert: ACTIVE or ended, what, where, since, evidence."""
    rows = tb.to_pylist()
    if not rows:
        return "no alerts\n"
    out = []
    for r in rows:
        where = r["village"] or "?"
        extra = ", ".join(x for x in (r["block"], r["district"], r["state"]) if x)
        if extra:
            where += f" ({extra})"
        since = r["since"].strftime("%Y-%m-%d %H:%MZ") if r["since"] else "never"
        state = (
            "ACTIVE"
            if r["active"]
            else f"ended {r['until'].strftime('%Y-%m-%d %H:%MZ')}"
        )
        out.append(
            f"{r['kind']:<10}  {state}  {where}  device {r['device']}\n"
            f"    {r['what']}; since {since}"
            + (f" ({r['days']:.1f} days)" if r["days"] is not None else "")
            + f"\n    evidence: {r['evidence']}\n"
        )
    return "\n".join(out)
