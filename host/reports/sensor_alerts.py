"""The sensors' alerts on the escalation list (alerts.py; rules in docs/sensors.md,
"Reports and alerts"):

* ``water_table``: the borewell's 06:00 depth (measures.py) deepened by more than
  ``table_fall_m`` metres a week, Sen's slope (the median of the slopes between
  every two days; a few odd days do not move it) over the last
  ``table_weeks`` weeks (at least half of those days with a value, spread over
  at least three quarters of the window): a falling water table.
* ``quality``: the day's median pH or TDS outside BIS 10500's acceptable limits
  (pH 6.5-8.5, TDS 500 mg/L) on ``quality_days`` or more consecutive days (a day
  without a median ends a run).
* ``motor_relay``: the motor/relay disagreements the controller raised
  (fault_raised motor_not_running or motor_without_relay), consecutive
  occurrences of one device and reason as one episode (first raise, last, how
  many, cleared or still open; motor_episodes).
* ``sensor_fault``: a sensor's fault bit set in every measure frame for
  ``sensor_fault_days`` days or more (open loop, short, no echo, no probe).
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import date, datetime, timedelta, timezone
from functools import lru_cache
from typing import Any

import numpy as np
import pyarrow.compute as pc

from jkproto import objects as ob

from ..registry import zone
from .measures import PH_MAX, PH_MIN, TDS_ACCEPTABLE
from .periods import Report

KINDS = ("water_table", "quality", "motor_relay", "sensor_fault")
TABLE_WEEKS = 4.0
TABLE_FALL_M = 0.5  # metres a week
QUALITY_DAYS = 3
SENSOR_FAULT_DAYS = 1.0
DAY = 86400
AGREE_S = 300  # the relay this long with the motor agreeing: an episode is over
MOTOR = {
    ob.REASONS.index("motor_not_running"): "relay on, motor not running (tripped "
    "overload, burnt winding or lost phase)",
    ob.REASONS.index("motor_without_relay"): "motor running with the relay off "
    "(bypassed or welded starter)",
}
Where = Callable[[str, int], dict[str, Any]]
Episode = Callable[..., dict[str, Any]]


def _iso(t: int) -> str:
    return datetime.fromtimestamp(t, timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


@lru_cache(maxsize=65536)
def _day_start(d: date, tz: str) -> int:
    return int(datetime(d.year, d.month, d.day, tzinfo=zone(tz)).timestamp())


def sensor_alerts(
    rep: Report,
    now: int,
    where: Where,
    episode: Episode,
    *,
    table_weeks: float = TABLE_WEEKS,
    table_fall_m: float = TABLE_FALL_M,
    quality_days: int = QUALITY_DAYS,
    sensor_fault_days: float = SENSOR_FAULT_DAYS,
) -> list[dict[str, Any]]:
    """The episodes of KINDS as alerts.py's rows. where(device, t): its place
    columns; episode(kind, since, until, now, **rest): one row."""
    tb = rep.days.select(
        ["device", "date", "tz", "bore_0600_m", "ph", "tds_mgl", "water_quality"]
    )
    sensed = pc.is_valid(tb["bore_0600_m"])  # only devices with a level or probe
    for c in ("ph", "tds_mgl", "water_quality"):
        sensed = pc.or_(sensed, pc.is_valid(tb[c]))
    devices = pc.unique(tb["device"].filter(sensed))
    days = tb.filter(pc.is_in(tb["device"], devices)).to_pylist()
    by_dev: dict[str, list[dict[str, Any]]] = {}
    for r in days:
        by_dev.setdefault(r["device"], []).append(r)
    rows: list[dict[str, Any]] = []
    for dev, rs in sorted(by_dev.items()):
        rs.sort(key=lambda r: r["date"])
        rs = [r for r in rs if _day_start(r["date"], r["tz"]) < now]
        rows += _table(dev, rs, now, where, episode, table_weeks, table_fall_m)
        rows += _quality(dev, rs, now, where, episode, quality_days)
    rows += _motor(rep, now, where, episode)
    rows += _sensor_faults(rep, now, where, episode, sensor_fault_days)
    return rows


def _table(
    dev: str,
    rs: list[dict[str, Any]],
    now: int,
    where: Where,
    episode: Episode,
    weeks: float,
    fall: float,
) -> list[dict[str, Any]]:
    """Falling water table: the slope of the 06:00 depth over the window ending
    on each day; an episode from the end of the first day above the threshold to
    the end of the first day back below it."""
    pts = [(r["date"], r["bore_0600_m"]) for r in rs if r["bore_0600_m"] is not None]
    if len(pts) < 3:
        return []
    tz = rs[0]["tz"]
    x = np.array([d.toordinal() for d, _v in pts], np.float64)
    y = np.array([v for _d, v in pts], np.float64)
    win = weeks * 7
    out: list[dict[str, Any]] = []
    since: tuple[int, str] | None = None
    for i, (d, _v) in enumerate(pts):
        sel = (x > x[i] - win) & (x <= x[i])
        xs, ys = x[sel], y[sel]
        enough = xs.size >= max(3, win / 2) and xs[-1] - xs[0] >= 0.75 * (win - 1)
        slope = sen_slope(xs, ys) * 7 if enough else 0.0
        end = _day_start(d + timedelta(days=1), tz)
        if slope > fall and since is None:
            ev = (
                f"06:00 depth {ys[0]:.2f} m on {date.fromordinal(int(xs[0]))} to "
                f"{ys[-1]:.2f} m on {d}: {slope:.2f} m a week over {xs.size} days "
                f"(threshold {fall:g} m a week over {weeks:g} weeks)"
            )
            since = (min(end, now), ev)
        elif slope <= fall and since is not None:
            out.append(_table_row(dev, since, end, now, where, episode))
            since = None
    if since is not None:
        out.append(_table_row(dev, since, None, now, where, episode))
    return out


def sen_slope(x: np.ndarray, y: np.ndarray) -> float:
    """Sen's slope: the median of the slopes between every two points (robust to
    a few odd days, the usual trend measure for groundwater levels)."""
    i, j = np.triu_indices(x.size, 1)
    return float(np.median((y[j] - y[i]) / (x[j] - x[i])))


def _table_row(
    dev: str,
    since: tuple[int, str],
    until: int | None,
    now: int,
    where: Where,
    episode: Episode,
) -> dict[str, Any]:
    return episode(
        "water_table", since[0], until, now,
        what="borewell water table falling", evidence=since[1],
        **where(dev, since[0]),
    )  # fmt: skip


def _out(r: dict[str, Any]) -> str | None:
    """Why a day's medians are outside BIS 10500's acceptable limits, or None."""
    why = []
    if r["ph"] is not None and not PH_MIN <= r["ph"] <= PH_MAX:
        why.append(f"pH {r['ph']:g}")
    if r["tds_mgl"] is not None and r["tds_mgl"] > TDS_ACCEPTABLE:
        why.append(f"TDS {r['tds_mgl']:g} mg/L")
    return ", ".join(why) or None


def _quality(
    dev: str,
    rs: list[dict[str, Any]],
    now: int,
    where: Where,
    episode: Episode,
    k: int,
) -> list[dict[str, Any]]:
    """Runs of consecutive days outside the acceptable limits, k days or more."""
    out: list[dict[str, Any]] = []
    run: list[tuple[date, str]] = []

    def close(until: int | None) -> None:
        if len(run) >= k:
            a = _day_start(run[0][0], rs[0]["tz"])
            ev = "; ".join(f"{d}: {why}" for d, why in run[:5])
            ev += f"; and {len(run) - 5} more days" if len(run) > 5 else ""
            out.append(
                episode(
                    "quality",
                    a,
                    until,
                    now,
                    what=f"water outside BIS 10500 acceptable limits on "
                    f"{len(run)} days",
                    evidence=ev + " (daily medians; pH 6.5-8.5, TDS <= 500 mg/L)",
                    **where(dev, a),
                )  # fmt: skip
            )
        run.clear()

    for r in rs:
        d = r["date"]
        why = _out(r) if r["water_quality"] is not None else None
        if run and (why is None or (d - run[-1][0]).days != 1):
            # the run ends with the first day after it (in limits or not judged)
            close(_day_start(run[-1][0] + timedelta(days=1), r["tz"]))
        if why is not None:
            run.append((d, why))
    if run:
        close(None)
    return out


def _motor(
    rep: Report, now: int, where: Where, episode: Episode
) -> list[dict[str, Any]]:
    """The motor/relay disagreement episodes (events fault_raised / cleared of
    reasons 28 and 29), one row per run of consecutive occurrences of the same
    device and reason (motor_episodes)."""
    out: list[dict[str, Any]] = []
    by_dev: dict[str, list[dict[str, Any]]] = {}
    for e in rep.result.events:
        if e["t"] <= now and (
            e["event"] in (1, 2) or (e["event"] in (3, 4) and e["reason"] in MOTOR)
        ):
            by_dev.setdefault(e["device"], []).append(e)
    for dev, es in sorted(by_dev.items()):
        if not any(e["event"] in (3, 4) for e in es):
            continue  # its pump events alone: no disagreement raised
        es.sort(key=lambda e: (e["t"], e["boot"], e["seq"]))
        boots = [t for _b, t in rep.result.boots.get(dev, []) if t <= now]
        last = min(rep.result.seen.get(dev, (now, now))[1], now)
        for reason in sorted(MOTOR):
            for occ in motor_episodes(es, reason, boots, last):
                out.append(_motor_row(dev, reason, occ, now, where, episode))
    return out


Occurrence = tuple[dict[str, Any], int | None, str]  # raise, end or None, how


def motor_episodes(
    es: list[dict[str, Any]], reason: int, boots: list[int], last: int
) -> list[list[Occurrence]]:
    """One device's occurrences of a motor/relay disagreement (a raise, until its
    fault_cleared or the next boot: the board forgets its faults and raises
    again those that still hold), grouped into episodes: the next occurrence is
    the same episode unless the relay stayed, between the two, AGREE_S or more
    in the state that shows this disagreement (on for motor_not_running, off
    for motor_without_relay) without it: the motor and the relay agreed. A
    board that raises it at every start, or after every reboot, of one tripped
    overload or one bypassed starter gives one episode. es: the device's pump
    and fault events in time order; boots: its boots' first frame times; last:
    its last frame time."""
    occ: list[Occurrence] = []
    open_: dict[str, Any] | None = None
    for e in es:
        if e["event"] not in (3, 4) or e["reason"] != reason:
            continue
        if open_ is not None:
            reboot = [b for b in boots if open_["t"] < b <= e["t"]]
            if reboot:  # the board restarted while it was open
                occ.append((open_, reboot[0], f"the board restarted {_iso(reboot[0])}"))
                open_ = None
        if e["event"] == 3 and open_ is None:
            open_ = e
        elif e["event"] == 4 and open_ is not None:
            occ.append((open_, e["t"], f"fault_cleared {_iso(e['t'])}"))
            open_ = None
    if open_ is not None:
        reboot = [b for b in boots if b > open_["t"]]
        if reboot:
            occ.append((open_, reboot[0], f"the board restarted {_iso(reboot[0])}"))
        else:
            occ.append((open_, None, "not cleared"))
    shows = reason == ob.REASONS.index("motor_not_running")  # relay on: it shows
    stretches = _relay(es, boots, last, shows)
    out: list[list[Occurrence]] = []
    for o in occ:
        prev = out[-1][-1] if out else None
        if prev is not None and prev[1] is not None:
            a, b = prev[1], o[0]["t"]
            if not any(min(y, b) - max(x, a) >= AGREE_S for x, y in stretches):
                out[-1].append(o)
                continue
        out.append([o])
    return out


def _relay(
    es: list[dict[str, Any]], boots: list[int], last: int, on: bool
) -> list[tuple[int, int]]:
    """The stretches (from, to) the relay was on (on=True) or off, from the
    pump_start and pump_stop events; the relay is off at every boot."""
    moves = sorted(
        [(t, False) for t in boots]
        + [(e["t"], e["event"] == 1) for e in es if e["event"] in (1, 2)]
    )  # fmt: skip
    out = []
    for i, (t, state) in enumerate(moves):
        if state == on:
            end = moves[i + 1][0] if i + 1 < len(moves) else max(last, t)
            out.append((t, end))
    return out


def _motor_row(
    dev: str,
    reason: int,
    occ: list[Occurrence],
    now: int,
    where: Where,
    episode: Episode,
) -> dict[str, Any]:
    first, last = occ[0][0], occ[-1][0]
    n = len(occ)
    until, how = occ[-1][1], occ[-1][2]
    boots = sorted({o[0]["boot"] for o in occ})
    ev = f"fault_raised {ob.REASONS[reason]} {_iso(first['t'])} (device {dev} boot "
    ev += f"{first['boot']} seq {first['seq']})"
    if n > 1:
        ev += (
            f"; raised {n} times, the last {_iso(last['t'])} (boot {last['boot']} "
            f"seq {last['seq']})"
            + (f" in boots {', '.join(map(str, boots))}" if len(boots) > 1 else "")
            + f", never {AGREE_S // 60} minutes of the relay "
            + ("on" if reason == ob.REASONS.index("motor_not_running") else "off")
            + " without it between two"
        )
    what = MOTOR[reason] + (f", {n} times" if n > 1 else "")
    return episode(
        "motor_relay", first["t"], until, now, what=what, evidence=f"{ev}; {how}",
        **where(dev, first["t"]),
    )  # fmt: skip


def _sensor_faults(
    rep: Report, now: int, where: Where, episode: Episode, days: float
) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    for s in rep.result.sensor_faults:
        if s["since"] > now:
            continue
        until = s["until"] if s["until"] is not None and s["until"] <= now else None
        end = now if until is None else until
        if end - s["since"] < days * DAY:
            continue
        out.append(
            episode(
                "sensor_fault",
                s["since"],
                until,
                now,
                what=f"{s['sensor']} sensor in fault for "
                f"{(end - s['since']) / DAY:.1f} days",
                evidence=f"{s['frames']} measure frames from {_iso(s['since'])} to "
                f"{_iso(s['last'])} with the {s['sensor']} fault bit and no value"
                + (f"; a value again {_iso(until)}" if until else ""),
                **where(s["device"], s["since"]),
            )  # fmt: skip
        )
    return out
