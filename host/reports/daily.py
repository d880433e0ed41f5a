"""Daily delivery report: litres, lpcd and JJM functionality band per village and day.

Rules (see also DESIGN.md, "Host rules"):

* Days are LOCAL days in the village's time zone (registry column ``tz``, default
  Asia/Kolkata). Day D is the window (D 00:00, D+1 00:00] local: a reading belongs to
  the day in which the interval it closes ends, so the reading at exactly midnight
  closes the previous day.
* Litres delivered = supply-meter litres. Readings carry the cumulative
  ``supply_pulses`` modulo 2**32; consecutive readings (in time order) are unwrapped
  by differences modulo 2**32. A difference of 2**31 or more is a total that went
  *backwards* (a restore from an older checkpoint, a replaced counter): that interval
  counts 0 litres and every day it spans is incomplete. Litres per pulse is
  1000 / ``supply_pulses_per_m3`` of the latest ``boot`` frame before the reading in
  the device's stream; with no such boot frame (or a 0 K-factor) litres are unknown.
  Day D's litres = sum of the interval litres of the readings in (D 00:00, D+1 00:00],
  i.e. total(D+1 00:00) - total(D 00:00) when the K-factor is constant.
* An interval whose pulses imply a flow above the meter's maximum (K-factor x
  ``max_flow_m3h``, default 60 m3/h: a forged frame, a faulty meter) counts 0 litres;
  its litres are the day's ``implausible_litres`` and the day is incomplete. One
  absurd reading (a spike: the next total comes back down) is stepped over: the
  interval around it is counted. The rules are in plausible.py.
* Pump hours = sum of ``pump_s`` of the day's readings / 3600.
* Completeness: the board writes readings on the wall-clock grid, at UTC multiples
  of ``interval_s`` (boot frame; 900 s without one). expected = grid times in
  (D 00:00, D+1 00:00], present = distinct readings exactly on that grid in the
  day; completeness = present / expected (0..1, 3 decimals). ``complete`` is true
  only when: both midnight readings exist, every expected reading is present, the
  interval is the same for the whole day, the K-factor is known, no ``gap`` frame
  (either meter) falls in or covers the day, no total went backwards in the day, no
  interval in the day is implausible, and no reading without a clock (time quality
  "none") may belong to the day.
* ``litres`` is given (as the best estimate) whenever both midnight readings exist and
  the K-factor is known, even for an incomplete day; otherwise it is null. ``lpcd``
  and ``band`` are null on every incomplete day: a day without full data is never
  reported as low supply.
* lpcd = litres / population, rounded half-up to 1 decimal; the band is taken from
  that rounded value (so the output is self-consistent): "fully" >= 55, "partially"
  > 40 and < 55, "non" <= 40 (JJM Table 11).
* Frames with no clock (``ts`` null) are not placed on days: the clock fix-ups (a
  later ``clock`` frame of the same boot) come later. Until then such a reading (or a
  gap frame with neither start nor ts) taints every day between the nearest timed
  frames of the same device before and after it in the stream.
* Duplicate frames (same device, boot, seq, kind and t) count once, the first copy in
  stream order; a whole file of copies is left out before that, where the files are
  read (decode.streams.read_stream), so no copy lands out of place in the stream.
  Frames that failed their MAC check (``verified`` false) are not counted.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from fractions import Fraction
from typing import Any, TypeAlias
from zoneinfo import ZoneInfo

import numpy as np

from jkproto import codec as c
from jkproto import objects as ob

from ..registry import Registry, Village, as_registry, zone
from . import measures
from .frames import Cols, Frames, columns
from .plausible import DEFAULT_MAX_FLOW_M3H, implausible, intervals
from .windows import covered, day_index, taint_days

FULLY_LPCD = 55
NON_LPCD = 40
DEFAULT_INTERVAL_S = 900
NIGHT_S = 4 * 3600  # the night window: 00:00-04:00 local
POWER_RESETS = (1, 6)  # boot after power_on / brownout: the board was without power

COLUMNS = (
    "village", "device", "date", "litres", "population", "lpcd", "band",
    "pump_hours", "completeness", "complete", "implausible_litres",
)  # fmt: skip
# the daily detail (periods.DAY_COLUMNS): COLUMNS plus these
DETAIL = (
    "block", "district", "state", "tz", "supply_hours", "supply_start_min",
    "lockouts", "power_off_hours", "faults_raised", "night_min_lph",
    *measures.DAY_NAMES,
)  # fmt: skip

RegistryLike: TypeAlias = "Registry | Mapping[str, Any]"


# --- the computation ------------------------------------------------------------


@dataclass
class DailyResult:
    days: list[dict[str, Any]]  # the keys of COLUMNS
    unknown: dict[str, int] = field(default_factory=dict)  # device -> frames skipped
    unverified: int = 0  # frames that failed the MAC check (not counted)
    notes: list[str] = field(default_factory=list)  # advice for stderr
    # the same days with the keys of COLUMNS + DETAIL (periods.DAY_COLUMNS)
    detail: list[dict[str, Any]] = field(default_factory=list)
    # events on the timeline: device, boot, seq, t, event, reason, value (codes)
    events: list[dict[str, Any]] = field(default_factory=list)
    # frames with no clock that no later clock frame of their boot could place:
    # one dict per (device, boot): device, boot, first_seq, last_seq, frames,
    # readings, after_t (the last timed frame before them), before_t (the next)
    unplaced: list[dict[str, Any]] = field(default_factory=list)
    placed: int = 0  # frames placed on the timeline by a later clock frame
    # per device: first and last frame time (timed or placed), UTC seconds
    seen: dict[str, tuple[int, int]] = field(default_factory=dict)
    # per device: stretches of an hour or more with no frame, (from_t, to_t)
    quiet: dict[str, list[tuple[int, int]]] = field(default_factory=dict)
    outside: dict[str, int] = field(default_factory=dict)  # device -> days no row
    # per device: (boot, time of its first timed frame), in time order
    boots: dict[str, list[tuple[int, int]]] = field(default_factory=dict)
    # implausible intervals (plausible.py): device, date, boot, seq, t (the
    # reading), from_t (the one before), pulses, litres, m3h, spike, max_m3h
    implausible: list[dict[str, Any]] = field(default_factory=list)
    max_flow_m3h: float = DEFAULT_MAX_FLOW_M3H
    # sensor fault episodes of the measure frames (measures.fault_spans)
    sensor_faults: list[dict[str, Any]] = field(default_factory=list)


def daily(
    frames: Frames, registry: RegistryLike, max_flow_m3h: float = DEFAULT_MAX_FLOW_M3H
) -> list[dict[str, Any]]:
    """One dict per (device, local day): the keys of COLUMNS, sorted by village,
    date, device.

    frames: the Arrow table of ``bulk.decode`` (or several concatenated) or the
    objects ``jalkal decode`` prints, in stream order. registry: a Registry, or
    device id -> Village (or a mapping with village, population and optionally
    tz). max_flow_m3h: the supply meters' maximum flow (plausible.py)."""
    return compute(frames, registry, max_flow_m3h).days


def compute(
    frames: Frames, registry: RegistryLike, max_flow_m3h: float = DEFAULT_MAX_FLOW_M3H
) -> DailyResult:
    """daily() plus the detail, events, clock fix-ups and what was left out:
    unknown devices, MAC failures, implausible intervals, advice."""
    reg = as_registry(registry)
    cols = columns(frames)
    res = DailyResult(days=[], max_flow_m3h=float(max_flow_m3h))
    res.unverified = int(np.count_nonzero(cols.ok & ~cols.verified))
    cols = cols.take(np.flatnonzero(cols.ok & cols.verified))
    cols = cols.take(_dedup(cols))
    devs, counts = np.unique(cols.device, return_counts=True)
    order = np.argsort(cols.device, kind="stable")
    bounds = np.concatenate(([0], np.cumsum(counts)))
    for i, d in enumerate(devs.tolist()):
        dev = ob.device_str(d)
        rows = reg.rows(dev)
        if not rows:
            res.unknown[dev] = int(counts[i])
            continue
        sub = cols.take(order[bounds[i] : bounds[i + 1]])
        sub = _fix_clock(sub, dev, res)
        _device_timeline(sub, dev, res)
        res.detail.extend(_device_days(sub, rows, res))
    res.notes.extend(closing_notes(res))
    res.detail.sort(key=lambda r: (r["village"], r["date"], r["device"]))
    res.days = [{k: r[k] for k in COLUMNS} for r in res.detail]
    return res


def closing_notes(res: DailyResult) -> list[str]:
    """The notes after the devices' own: days outside the registry rows, frames
    placed by a clock frame, frames left unplaced (aggregates.py merges the
    devices' results and adds these the same way)."""
    notes = [
        f"device {dev}: {n} day(s) of data outside its registry rows' from/to "
        "dates, not reported"
        for dev, n in sorted(res.outside.items())
    ]
    if res.placed:
        notes.append(
            f"{res.placed} frames logged before the board had a clock were placed "
            "on the timeline from a later clock frame of their boot"
        )
    for u in res.unplaced:
        notes.append(
            f"device {u['device']} boot {u['boot']}: {u['frames']} frames "
            f"(seq {u['first_seq']}..{u['last_seq']}, {u['readings']} readings) have "
            "no clock and no later clock frame in their boot: not placed, the days "
            "they may belong to are incomplete"
        )
    return notes


def _fix_clock(f: Cols, dev: str, res: DailyResult) -> Cols:
    """Frames of quality `none` placed from the next clock frame of their boot:
    t = clock.t - clock.at_uptime_s + uptime (SPEC, kind 6). The rest are listed
    in res.unplaced and stay untimed."""
    n = len(f)
    untimed = (f.flags & c.TQ_MASK) == 0
    if not untimed.any():
        return f
    idx = np.arange(n)
    isclock = (f.kind == c.CLOCK) & ~untimed
    nxt = np.minimum.accumulate(np.where(isclock, idx, n)[::-1])[::-1]
    ok = untimed & (nxt < n)
    j = np.minimum(nxt, n - 1)
    ok &= (f.boot[j] == f.boot) & (f.at_uptime[j] >= f.t)
    if ok.any():
        f = f.take(idx)  # a copy: the caller's arrays stay as decoded
        f.t = f.t.copy()
        f.flags = f.flags.copy()
        f.t[ok] = f.t[j[ok]] - f.at_uptime[j[ok]] + f.t[ok]
        f.flags[ok] = (f.flags[ok] & ~c.TQ_MASK) | (f.flags[j[ok]] & c.TQ_MASK)
        res.placed += int(np.count_nonzero(ok))
    left = np.flatnonzero(untimed & ~ok)
    if left.size:
        timed = (f.flags & c.TQ_MASK) != 0
        prev = np.maximum.accumulate(np.where(timed, idx, -1))
        after = np.minimum.accumulate(np.where(timed, idx, n)[::-1])[::-1]
        for b in np.unique(f.boot[left]).tolist():
            sel = left[f.boot[left] == b]
            p, a = int(prev[sel[0]]), int(after[sel[-1]])
            res.unplaced.append(
                {
                    "device": dev,
                    "boot": int(b),
                    "first_seq": int(f.seq[sel].min()),
                    "last_seq": int(f.seq[sel].max()),
                    "frames": int(sel.size),
                    "readings": int(np.count_nonzero(f.kind[sel] == c.READING)),
                    "after_t": int(f.t[p]) if p >= 0 else None,
                    "before_t": int(f.t[a]) if a < n else None,
                }
            )
    return f


def _device_timeline(f: Cols, dev: str, res: DailyResult) -> None:
    """Events, first/last frame time and quiet stretches of one device."""
    timed = (f.flags & c.TQ_MASK) != 0
    t = np.sort(f.t[timed])
    if t.size:
        res.seen[dev] = (int(t[0]), int(t[-1]))
        d = np.diff(t)
        q = np.flatnonzero(d >= 3600)
        if q.size:
            res.quiet[dev] = [(int(t[i]), int(t[i + 1])) for i in q.tolist()]
    if t.size:
        bt, bb = f.t[timed], f.boot[timed]
        o = np.lexsort((bt, bb))
        ub, first = np.unique(bb[o], return_index=True)
        ft = bt[o][first]
        res.boots[dev] = sorted(
            zip(ub.tolist(), ft.tolist(), strict=True), key=lambda x: x[1]
        )
    ev = np.flatnonzero((f.kind == c.EVENT) & timed)
    for i in ev.tolist():
        res.events.append(
            {
                "device": dev,
                "boot": int(f.boot[i]),
                "seq": int(f.seq[i]),
                "t": int(f.t[i]),
                "event": int(f.event[i]),
                "reason": int(f.reason[i]),
                "value": int(f.value[i]),
            }
        )
    ms = np.flatnonzero((f.kind == c.MEASURE) & timed)
    res.sensor_faults += measures.fault_spans(
        dev, f.t[ms], f.measure[ms, measures.FAULTS]
    )


def _dedup(cols: Cols) -> np.ndarray:
    """Indices (in stream order) of the first copy of every frame."""
    if len(cols) == 0:
        return np.zeros(0, np.int64)
    key = np.stack([cols.device, cols.boot, cols.seq, cols.kind, cols.t], axis=1)
    _, first = np.unique(key, axis=0, return_index=True)
    return np.sort(first)


def midnight(d: date, tz: ZoneInfo) -> int:
    return int(datetime(d.year, d.month, d.day, tzinfo=tz).timestamp())


def local_date(t: int, tz: ZoneInfo) -> date:
    return datetime.fromtimestamp(t, tz).date()


def round_half_up(x: Fraction, nd: int) -> float:
    """Half-up rounding of a non-negative exact value to nd decimals."""
    q = 10**nd
    return math.floor(x * q + Fraction(1, 2)) / q


def band_of(lpcd: float) -> str:
    """JJM Table 11 quantity band of an lpcd (rounded to 1 decimal): "fully" at 55
    and above, "partially" above 40 and below 55, "non" at 40 and below (the
    table leaves exactly 40 out; it is not above 40, so it is not partially)."""
    if lpcd >= FULLY_LPCD:
        return "fully"
    if lpcd > NON_LPCD:
        return "partially"
    return "non"


def _device_days(
    f: Cols, rows: list[Village], res: DailyResult
) -> list[dict[str, Any]]:
    notes = res.notes
    dev = rows[0].device
    tz = zone(rows[0].tz)
    n = len(f)
    timed = (f.flags & c.TQ_MASK) != 0
    # Frames with ts null (no clock) that no clock frame could place are not put
    # on days; they only taint days, below.
    if not timed.any():
        return []
    idx = np.arange(n)
    # configuration in effect: the latest boot frame before each frame (stream order)
    lb = np.maximum.accumulate(np.where(f.kind == c.BOOT, idx, -1))
    has_cfg = lb >= 0
    lbc = np.maximum(lb, 0)
    iv_all = np.where(has_cfg, f.interval_s[lbc], 0)
    iv_all = np.where(iv_all > 0, iv_all, DEFAULT_INTERVAL_S)
    k_all = np.where(has_cfg, f.kfactor[lbc], 0)

    t_timed = f.t[timed]
    first = local_date(int(t_timed.min()), tz)
    last = max(local_date(int(t_timed.max()) - 1, tz), first)
    dates = [first + timedelta(days=i) for i in range((last - first).days + 2)]
    b = np.array([midnight(d, tz) for d in dates], np.int64)
    nd = b.size - 1

    # readings on the timeline, in time order (stream order among equal times)
    rsel = np.flatnonzero((f.kind == c.READING) & timed)
    rsel = rsel[np.argsort(f.t[rsel], kind="stable")]
    rt, rp = f.t[rsel], f.supply[rsel]
    rps, riv, rk = f.pump_s[rsel], iv_all[rsel], k_all[rsel]
    rd = day_index(b, rt)
    inr = (rd >= 0) & (rd < nd)
    rdi = rd[inr]

    # interval pulses: differences mod 2**32 (the first reading has no interval),
    # implausible ones left out (plausible.py)
    ivs = intervals(rt, rp, rk, res.max_flow_m3h)
    inc, back = ivs.inc, ivs.back
    taint = np.zeros(nd, bool)
    bi = np.flatnonzero(back)
    if bi.size:
        taint |= taint_days(b, rt[bi - 1] + 1, rt[bi])
    odd = inr & (ivs.bad | ivs.bridged)
    taint[rd[odd]] = True
    found, note = implausible(ivs, rt, rk, rd, f.boot[rsel], f.seq[rsel], dates,
                              dev, res.max_flow_m3h)  # fmt: skip
    res.implausible += found
    res.notes += note

    # gap frames: [start, start + seconds]; unknown length ends at the frame's own
    # time; unknown start: the frame's own time
    g = f.kind == c.GAP
    gs, gl, gt = f.gap_start, f.gap_seconds, f.t
    known = g & (gs > 0)
    end = np.where(gl > 0, gs + gl, np.where(timed & (gt > gs), gt, gs))
    own = g & (gs == 0) & timed
    lo_t = np.concatenate((gs[known], gt[own]))
    hi_t = np.concatenate((end[known], gt[own]))
    if lo_t.size:
        taint |= taint_days(b, lo_t, hi_t)

    # readings without a clock (and gap frames placed nowhere) may belong to any day
    # between the timed frames of this device around them in the stream
    loose = np.flatnonzero(~timed & ((f.kind == c.READING) | (g & (gs == 0))))
    if loose.size:
        prev = np.maximum.accumulate(np.where(timed, idx, -1))[loose]
        nxt = np.minimum.accumulate(np.where(timed, idx, n)[::-1])[::-1][loose]
        lo_t = np.where(prev >= 0, f.t[np.maximum(prev, 0)] + 1, b[0])
        hi_t = np.where(nxt < n, f.t[np.minimum(nxt, n - 1)] - 1, b[-1])
        taint |= taint_days(b, lo_t, np.maximum(hi_t, lo_t))

    # the interval of a day: the one in effect for its last reading (or the latest
    # reading before it); mixed intervals within a day make it incomplete
    j = np.searchsorted(rt, b[1:], side="right") - 1
    fallback = int(iv_all[np.flatnonzero(f.kind == c.BOOT)[0]]) if has_cfg.any() else 0
    iv_day = np.full(nd, fallback or DEFAULT_INTERVAL_S, np.int64)
    if rt.size:
        iv_day = np.where(j >= 0, riv[np.maximum(j, 0)], iv_day)
    count = np.bincount(rdi, minlength=nd)
    mn = np.full(nd, np.iinfo(np.int64).max)
    mx = np.zeros(nd, np.int64)
    np.minimum.at(mn, rdi, riv[inr])
    np.maximum.at(mx, rdi, riv[inr])
    mixed = (count > 0) & (mn != mx)

    # readings on the board's grid (UTC multiples of interval_s, as its
    # readings_task writes them), each grid time counted once
    on = inr.copy()
    on[inr] = (rt[inr] % iv_day[rdi] == 0) & (riv[inr] == iv_day[rdi])
    grid_t = np.unique(rt[on])
    present = np.bincount(day_index(b, grid_t), minlength=nd)
    expected = b[1:] // iv_day - b[:-1] // iv_day
    off_grid = (b[1:] % iv_day != 0) | (b[:-1] % iv_day != 0)
    if off_grid.any():
        notes.append(
            f"device {dev}: with interval_s {int(iv_day[off_grid][0])} the "
            f"board's reading grid misses local midnight in {rows[0].tz}, so its "
            "days cannot be complete; use an interval that divides the UTC offset"
        )
    mid = np.isin(b, rt)
    both = mid[:-1] & mid[1:]

    kbad = np.bincount(rdi, weights=(rk[inr] <= 0), minlength=nd) > 0
    pump = np.bincount(rdi, weights=rps[inr], minlength=nd)

    # litres per day, exact: pulses summed per (day, K-factor), then 1000 / K each
    good = inr & (rk > 0)
    pairs, inv = np.unique(np.stack([rd[good], rk[good]]), axis=1, return_inverse=True)
    sums = np.bincount(inv.reshape(-1), weights=inc[good], minlength=pairs.shape[1])
    bsums = np.bincount(inv.reshape(-1), weights=ivs.bad_pulses[good],
                        minlength=pairs.shape[1])  # fmt: skip
    litres: list[Fraction] = [Fraction(0)] * nd
    held: list[Fraction] = [Fraction(0)] * nd  # implausible litres
    for (day, k), s, h in zip(pairs.T.tolist(), sums.tolist(), bsums.tolist(),
                              strict=True):  # fmt: skip
        litres[day] += Fraction(int(s) * 1000, k)
        held[day] += Fraction(int(h) * 1000, k)

    if rt.size and k_all[rsel[0]] <= 0 and not has_cfg[rsel[0]]:
        notes.append(
            f"device {dev}: readings before any boot "
            "frame have no meter K-factor, so no litres; include the log files "
            "from the boot before them"
        )

    # supply: intervals (after a reading of this device) in which water went out
    span = np.zeros(rt.size, np.int64)
    if rt.size > 1:
        span[1:] = np.minimum(rt[1:] - rt[:-1], riv[1:])
    flow = inr & (inc > 0) & (span > 0)
    sup_s = np.bincount(rd[flow], weights=span[flow], minlength=nd)
    first_flow = np.full(nd, np.iinfo(np.int64).max)
    np.minimum.at(first_flow, rd[flow], np.maximum(rt[flow] - span[flow], b[rd[flow]]))

    # events by day
    ev = (f.kind == c.EVENT) & timed
    ed = day_index(b, f.t[ev])
    ein = (ed >= 0) & (ed < nd)
    lockouts = np.bincount(ed[ein], weights=f.event[ev][ein] == 7, minlength=nd)
    raised = np.bincount(ed[ein], weights=f.event[ev][ein] == 3, minlength=nd)

    # power off: from the last timed frame before a boot after a power loss to
    # that boot frame; and reading intervals that saw no mains
    pb = np.flatnonzero((f.kind == c.BOOT) & timed & np.isin(f.reset, POWER_RESETS))
    tidx = np.where(timed, idx, -1)
    before = np.maximum.accumulate(np.concatenate(([-1], tidx[:-1])))[pb]
    pb, before = pb[before >= 0], before[before >= 0]
    nomains = inr & ((f.inputs[rsel] & 0x10) == 0)
    off_lo = np.concatenate((f.t[before], rt[nomains] - riv[nomains]))
    off_hi = np.concatenate((f.t[pb], rt[nomains]))
    power_off = covered(b, off_lo, off_hi)

    # the night (00:00-04:00): every grid reading present, the smallest flow
    follows = np.zeros(rt.size, bool)  # the reading one interval before is there
    follows[1:] = rt[:-1] == rt[1:] - riv[1:]
    night = on & (rt <= b[np.clip(rd, 0, nd - 1)] + NIGHT_S) & (rk > 0)
    night &= follows & ~back & ~ivs.bad & ~ivs.bridged
    n_night = np.bincount(rd[night], minlength=nd)
    lph = np.full(rt.size, np.inf)
    lph[night] = inc[night] * 1000 / rk[night] * 3600 / riv[night]
    night_min = np.full(nd, np.inf)
    np.minimum.at(night_min, rd[night], lph[night])
    night_ok = (n_night == NIGHT_S // iv_day) & (NIGHT_S % iv_day == 0)

    ms = np.flatnonzero((f.kind == c.MEASURE) & timed)
    sensed = measures.day_columns(f.t[ms], f.measure[ms], b, f.boot[ms])
    out: list[dict[str, Any]] = []
    for i in range(nd):
        v = _row_at(rows, dates[i])
        if v is None:
            res.outside[dev] = res.outside.get(dev, 0) + 1
            continue
        has_litres = bool(both[i]) and not kbad[i]
        complete = bool(
            has_litres and present[i] == expected[i] and not taint[i] and not mixed[i]
        )
        lt = litres[i] if has_litres else None
        lpcd = (
            round_half_up(lt / v.population, 1) if complete and lt is not None else None
        )
        ex = int(expected[i])
        frac = Fraction(min(int(present[i]), ex), ex) if ex else Fraction(0)
        ff = int(first_flow[i])
        out.append(
            {
                "village": v.village,
                "device": dev,
                "date": dates[i].isoformat(),
                "litres": round_half_up(lt, 1) if lt is not None else None,
                "population": v.population,
                "lpcd": lpcd,
                "band": band_of(lpcd) if lpcd is not None else None,
                "pump_hours": round_half_up(Fraction(int(pump[i]), 3600), 2),
                "completeness": round_half_up(frac, 3),
                "complete": complete,
                "implausible_litres": round_half_up(held[i], 1),
                "block": v.block,
                "district": v.district,
                "state": v.state,
                "tz": v.tz,
                "supply_hours": round_half_up(Fraction(int(sup_s[i]), 3600), 2),
                "supply_start_min": (ff - int(b[i])) // 60 if sup_s[i] else None,
                "lockouts": int(lockouts[i]),
                "power_off_hours": round_half_up(Fraction(int(power_off[i]), 3600), 2),
                "faults_raised": int(raised[i]),
                "night_min_lph": round(float(night_min[i]), 1) if night_ok[i] else None,
                **sensed[i],
            }
        )
    return out


def _row_at(rows: list[Village], d: date) -> Village | None:
    for v in rows:
        if v.covers(d):
            return v
    return None
