"""The daily table of many devices at once, for Parquet at district and State scale.

``days(frames, registry)`` gives exactly what ``periods.build(frames, registry).days``
gives (the DAY_COLUMNS table, same rows, same values, same order) for frames in
the store's order (device, boot, seq), but works on whole columns of every device
at once instead of one device at a time.

It does so only for **regular** devices, whose streams need none of the report's
special cases, and hands every other device to ``daily.compute`` itself, so the
rules stay in one place (host/daily.py) and an irregular device is reported by
the same code as from the store. A device is regular when, over all its frames:

* every frame has a clock (time quality not ``none``): no clock fix-ups;
* there is no ``gap`` frame; no two frames share (boot, seq);
* its first frame is a ``boot`` frame, and every boot frame has the same
  ``interval_s`` and the same K-factor (``supply_pulses_per_m3`` > 0);
* no boot after a power loss (reset ``power_on``/``brownout``) except the first
  frame (power-off hours then come from the ``mains`` input alone);
* its readings are in time order in the stream, at distinct times, all on the
  board's grid (UTC multiples of ``interval_s``), no total goes backwards and no
  interval is implausible (plausible.py: the same test, vectorised here);
* local midnight is on that grid on every day of its span.

For such a device every rule of host/daily.py reduces to sums and counts per
(device, local day), computed here with numpy over the whole table; the rounding
is the report's (half-up on exact integers). tests/test_export.py checks the two
agree on simulated villages and on synthetic streams, regular and not.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import date, datetime
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from jkproto import codec as c
from jkproto import objects as ob

from ..registry import Registry, Village, as_registry, zone
from . import daily, measures, periods
from .frames import TABLE_COLUMNS
from .plausible import BACKWARDS, DEFAULT_MAX_FLOW_M3H, M32, too_fast

# the frame columns the daily table needs (the store's names; an export is read
# with these: the measure frame's columns are read only where a table has them)
COLUMNS = [x for x in TABLE_COLUMNS if x not in ("status", *measures.FRAME_COLUMNS)]
_POWER = np.array(daily.POWER_RESETS)
_MAINS = 1 << ob.INPUTS.index("mains")
_LOCKOUT = ob.EVENTS.index("lockout")
_RAISED = ob.EVENTS.index("fault_raised")


@dataclass
class Days:
    """The daily table and what the report says beside it."""

    table: pa.Table  # periods.DAY_COLUMNS, sorted by village, date, device
    unknown: dict[str, int] = field(default_factory=dict)  # device -> frames
    regular: int = 0  # devices computed here
    fallback: list[str] = field(default_factory=list)  # devices given to report
    # daily.compute's notes, in parts (so the notes of device sets merge):
    head: list[str] = field(default_factory=list)  # per device, device order
    outside: dict[str, int] = field(default_factory=dict)  # days no row covers
    placed: int = 0  # frames placed by a later clock frame
    unplaced: list[str] = field(default_factory=list)  # notes on unplaced frames

    @property
    def notes(self) -> list[str]:
        """The notes as daily.compute gives them, in its order."""
        out = list(self.head)
        out += [
            f"device {d}: {n} day(s) of data outside its registry rows' from/to "
            "dates, not reported"
            for d, n in sorted(self.outside.items())
        ]
        if self.placed:
            out.append(
                f"{self.placed} frames logged before the board had a clock were "
                "placed on the timeline from a later clock frame of their boot"
            )
        return out + self.unplaced


def _np(tb: pa.Table, name: str, dtype: Any = np.int64) -> np.ndarray:
    col = tb.column(name)
    if col.null_count:
        col = pc.fill_null(col, 0)
    return np.asarray(col.to_numpy(), dtype)


def _by_device(a: np.ndarray, di: np.ndarray, nd: int) -> np.ndarray:
    """Per device: is any a true."""
    return np.bincount(di[a], minlength=nd) > 0


def _half_up(num: np.ndarray, den: np.ndarray | int, q: int) -> np.ndarray:
    """floor(num / den * q + 1/2) / q for non-negative integers: daily.round_half_up."""
    d = np.asarray(den, np.int64)
    return np.asarray((2 * q * num + d) // (2 * d) / q, np.float64)


_EPOCH = date(1970, 1, 1).toordinal()


@dataclass
class _Zones:
    """Local midnights of every time zone over the devices' spans."""

    names: list[str]  # zone names
    lo: list[int]  # first day (days since 1970-01-01) of each zone's midnights
    mids: list[np.ndarray]  # midnights (UTC seconds) from that day on
    zid: np.ndarray  # per device: its zone
    off: np.ndarray  # per device: its first day's index in its zone's midnights

    def index(self, dev: np.ndarray, t: np.ndarray, side: str) -> np.ndarray:
        """searchsorted of times t (of devices dev) in their zone's midnights,
        relative to each device's first midnight."""
        g = np.zeros(t.size, np.int64)
        for j, m in enumerate(self.mids):
            s = self.zid[dev] == j
            g[s] = np.searchsorted(m, t[s], side=side)  # type: ignore[call-overload]
        return g - self.off[dev]

    def midnight(self, dev: np.ndarray, k: np.ndarray) -> np.ndarray:
        """The k-th local midnight of each device (k = 0: its first day's)."""
        out = np.zeros(dev.size, np.int64)
        for j, m in enumerate(self.mids):
            s = self.zid[dev] == j
            out[s] = m[self.off[dev[s]] + k[s]]
        return out


def days(
    frames: pa.Table,
    registry: Registry | Mapping[str, Any],
    max_flow_m3h: float = DEFAULT_MAX_FLOW_M3H,
) -> Days:
    """The DAY_COLUMNS table of every registered device in frames (a table with
    the store's columns, at least COLUMNS; device as the 32-bit number);
    max_flow_m3h: the supply meters' maximum flow (plausible.py)."""
    reg = as_registry(registry)
    if frames.num_rows == 0:
        return Days(periods.DAY_SCHEMA.empty_table())
    frames = frames.select(
        measures.present([*COLUMNS, *measures.FRAME_COLUMNS], frames.column_names)
    )
    dev = _np(frames, "device")
    boot = _np(frames, "boot")
    seq = _np(frames, "seq")
    key_ok = np.ones(dev.size, bool)
    key_ok[1:] = (dev[1:] > dev[:-1]) | (
        (dev[1:] == dev[:-1])
        & ((boot[1:] > boot[:-1]) | ((boot[1:] == boot[:-1]) & (seq[1:] > seq[:-1])))
    )
    if not key_ok.all():  # not in (device, boot, seq) order: sort (stable)
        o = np.lexsort((seq, boot, dev))
        frames = frames.take(pa.array(o))
        dev, boot, seq = dev[o], boot[o], seq[o]
        key_ok[1:] = (dev[1:] != dev[:-1]) | (boot[1:] != boot[:-1])
        key_ok[1:] |= seq[1:] != seq[:-1]
    del boot, seq
    udev, start, count = np.unique(dev, return_index=True, return_counts=True)
    names = [ob.device_str(int(d)) for d in udev.tolist()]
    out = Days(periods.DAY_SCHEMA.empty_table())
    known = np.array([bool(reg.rows(n)) for n in names], bool)
    for i in np.flatnonzero(~known).tolist():
        out.unknown[names[i]] = int(count[i])
    nd = udev.size
    di = np.repeat(np.arange(nd), count)
    del dev

    kind = _np(frames, "kind", np.int8)
    t = _np(frames, "t")
    # --- which devices are regular ---------------------------------------------
    bad = ~known
    bad |= _by_device((_np(frames, "flags", np.int8) & c.TQ_MASK) == 0, di, nd)
    bad |= _by_device(kind == c.GAP, di, nd)
    bad |= _by_device(~key_ok, di, nd)
    bad |= kind[start] != c.BOOT
    isb = np.flatnonzero(kind == c.BOOT)
    bsub = frames.take(pa.array(isb))
    biv = _np(bsub, "interval_s")
    biv = np.where(biv > 0, biv, daily.DEFAULT_INTERVAL_S)
    bk = _np(bsub, "supply_pulses_per_m3")
    bdi = di[isb]
    iv = np.zeros(nd, np.int64)
    kf = np.zeros(nd, np.int64)
    iv[bdi] = biv  # any boot frame's: they must all agree
    kf[bdi] = bk
    bad |= _by_device((biv != iv[bdi]) | (bk != kf[bdi]), bdi, nd)
    bad |= kf <= 0
    power = np.isin(_np(bsub, "reset"), _POWER) & (isb != start[bdi])
    bad |= _by_device(power, bdi, nd)

    isr = np.flatnonzero(kind == c.READING)
    rdi, rt = di[isr], t[isr]
    rp = _np(frames, "supply_pulses")[isr]
    same = np.zeros(isr.size, bool)  # the reading before is the same device's
    same[1:] = rdi[1:] == rdi[:-1]
    dt = np.zeros(isr.size, np.int64)
    dt[1:] = rt[1:] - rt[:-1]
    inc = np.zeros(isr.size, np.int64)
    inc[1:] = (rp[1:] - rp[:-1]) % M32
    del rp
    bad |= _by_device(same & ((dt <= 0) | (inc >= BACKWARDS)), rdi, nd)
    bad |= _by_device(same & too_fast(inc, kf[rdi], dt, max_flow_m3h), rdi, nd)
    bad |= _by_device(rt % np.maximum(iv[rdi], 1) != 0, rdi, nd)
    inc[~same] = 0
    dt[~same] = 0

    # --- local days: midnights per time zone over the whole span -----------------
    tmin = np.minimum.reduceat(t, start)
    tmax = np.maximum.reduceat(t, start)
    tzs = [reg.rows(n)[0].tz if k else "" for n, k in zip(names, known, strict=True)]
    first = np.zeros(nd, np.int64)  # the device's first day, days since 1970-01-01
    nday = np.zeros(nd, np.int64)  # its days
    for i in np.flatnonzero(known).tolist():
        z = zone(tzs[i])
        a = datetime.fromtimestamp(int(tmin[i]), z).date()
        b = max(datetime.fromtimestamp(int(tmax[i]) - 1, z).date(), a)
        first[i] = a.toordinal() - _EPOCH
        nday[i] = (b - a).days + 1
    znames = sorted({tzs[i] for i in np.flatnonzero(known).tolist()})
    zs = _Zones(znames, [], [], np.zeros(nd, np.int64), np.zeros(nd, np.int64))
    for j, name in enumerate(znames):
        sel = np.array([x == name for x in tzs], bool)
        lo, hi = int(first[sel].min()), int((first[sel] + nday[sel]).max())
        zi = zone(name)
        zs.lo.append(lo)
        zs.mids.append(
            np.array(
                [
                    daily.midnight(date.fromordinal(d + _EPOCH), zi)
                    for d in range(lo, hi + 1)
                ],
                np.int64,
            )
        )
        zs.zid[sel] = j
        zs.off[sel] = first[sel] - lo
    for i in np.flatnonzero(known & ~bad).tolist():
        m = zs.mids[zs.zid[i]]
        if (m[zs.off[i] : zs.off[i] + nday[i] + 1] % iv[i]).any():
            bad[i] = True  # local midnight off the reading grid

    regular = known & ~bad
    out.fallback = [names[i] for i in np.flatnonzero(known & bad).tolist()]
    out.regular = int(regular.sum())
    tables = []
    fb: daily.DailyResult | None = None
    if out.fallback:
        rows = np.flatnonzero((known & bad)[di])
        fb = daily.compute(frames.take(pa.array(rows)), reg, max_flow_m3h)
        tables.append(periods.days_table(fb.detail))
    if fb is not None:
        tail = len(fb.outside) + (1 if fb.placed else 0) + len(fb.unplaced)
        out.head = fb.notes[: len(fb.notes) - tail]
        out.unplaced = fb.notes[len(fb.notes) - len(fb.unplaced) :]
        out.outside = dict(fb.outside)
        out.placed = fb.placed
    if regular.any():
        reg_days = _Regular(reg, names, regular, zs, first, nday, iv, kf)
        tables.append(reg_days.table(frames, di, kind, t, isr, inc, dt, out.outside))
    tb = pa.concat_tables(tables) if tables else periods.DAY_SCHEMA.empty_table()
    out.table = tb.sort_by(
        [("village", "ascending"), ("date", "ascending"), ("device", "ascending")]
    )
    return out


@dataclass
class _Regular:
    """The day rows of the regular devices (see the module's docstring)."""

    reg: Registry
    names: list[str]
    regular: np.ndarray
    zs: _Zones
    first: np.ndarray
    nday: np.ndarray
    iv: np.ndarray
    kf: np.ndarray

    def table(
        self,
        frames: pa.Table,
        di: np.ndarray,
        kind: np.ndarray,
        t: np.ndarray,
        isr: np.ndarray,
        inc: np.ndarray,
        dt: np.ndarray,
        outside: dict[str, int],
    ) -> pa.Table:
        regular, nday, iv, kf, zs = self.regular, self.nday, self.iv, self.kf, self.zs
        nd = regular.size
        ndays = np.where(regular, nday, 0)
        base = np.concatenate(([0], np.cumsum(ndays)))  # flat index of day 0
        total = int(base[-1])
        fdev = np.repeat(np.arange(nd), ndays)  # every flat day: its device
        fday = np.arange(total) - base[fdev]  # and its day number
        b0 = zs.midnight(fdev, fday)  # the day is (b0, b1]
        b1 = zs.midnight(fdev, fday + 1)
        fiv = iv[fdev]

        def day_of(d: np.ndarray, x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
            """(flat day, in range) of times x of devices d: b0 < x <= b1."""
            k = zs.index(d, x, "left") - 1
            ok = regular[d] & (k >= 0) & (k < nday[d])
            return np.where(ok, base[d] + k, 0), ok

        # readings
        rdi, rt = di[isr], t[isr]
        rd, inr = day_of(rdi, rt)
        fr = rd[inr]
        present = np.bincount(fr, minlength=total)
        pump_s = _np(frames, "pump_s")[isr]
        pump = np.bincount(fr, weights=pump_s[inr], minlength=total).astype(np.int64)
        pulses = np.bincount(fr, weights=inc[inr], minlength=total).astype(np.int64)
        # midnight readings: boundary k of a device is there when a reading is at it
        nb = np.where(regular, nday + 1, 0)
        base2 = np.concatenate(([0], np.cumsum(nb)))
        k = zs.index(rdi, rt, "left")
        ok = regular[rdi] & (k >= 0) & (k <= nday[rdi])
        at = np.zeros(rt.size, bool)
        at[ok] = zs.midnight(rdi[ok], k[ok]) == rt[ok]
        mid = np.zeros(int(base2[-1]), bool)
        mid[base2[rdi[at]] + k[at]] = True
        both = mid[base2[fdev] + fday] & mid[base2[fdev] + fday + 1]
        expected = b1 // fiv - b0 // fiv
        complete = both & (present == expected)

        # supply: intervals after a reading of the device in which water went out
        riv = iv[rdi]
        span = np.minimum(dt, riv)
        flow = inr & (inc > 0) & (span > 0)
        sup = np.bincount(rd[flow], weights=span[flow], minlength=total)
        sup = sup.astype(np.int64)
        ff = np.full(total, np.iinfo(np.int64).max)
        np.minimum.at(ff, rd[flow], np.maximum(rt[flow] - span[flow], b0[rd[flow]]))

        # power off: intervals without mains (no power-loss boot here)
        inputs = _np(frames, "inputs")[isr]
        nomains = inr & ((inputs & _MAINS) == 0)
        poff = np.bincount(rd[nomains], weights=riv[nomains], minlength=total)
        poff = poff.astype(np.int64)

        # the night (00:00-04:00 local): every reading there, the smallest flow
        night = inr & (rt <= b0[rd] + daily.NIGHT_S) & (dt == riv)
        n_night = np.bincount(rd[night], minlength=total)
        rk = kf[rdi]
        lph = inc[night] * 1000 / rk[night] * 3600 / riv[night]
        nmin = np.full(total, np.inf)
        np.minimum.at(nmin, rd[night], lph)
        night_ok = (n_night == daily.NIGHT_S // fiv) & (daily.NIGHT_S % fiv == 0)

        # events
        ise = np.flatnonzero((kind == c.EVENT) & regular[di])
        ev = _np(frames, "event")[ise]
        ed, ein = day_of(di[ise], t[ise])
        lock = np.bincount(ed[ein], weights=ev[ein] == _LOCKOUT, minlength=total)
        raised = np.bincount(ed[ein], weights=ev[ein] == _RAISED, minlength=total)

        # the registry row of every day (days no row covers are left out)
        dates = self.first[fdev] + fday  # days since 1970-01-01
        rowid = np.full(total, -1, np.int64)
        vrows: list[Village] = []
        for i in np.flatnonzero(regular).tolist():
            sl = slice(int(base[i]), int(base[i + 1]))
            part = rowid[sl]  # a view
            for v in self.reg.rows(self.names[i]):
                lo = v.start.toordinal() - _EPOCH if v.start else -(1 << 40)
                hi = v.end.toordinal() - _EPOCH if v.end else 1 << 40
                m = (dates[sl] >= lo) & (dates[sl] < hi) & (part < 0)
                part[m] = len(vrows)
                vrows.append(v)
            miss = int(np.count_nonzero(part < 0))
            if miss:
                outside[self.names[i]] = miss
        sel = np.flatnonzero(rowid >= 0)
        rid = rowid[sel]
        pop = np.array([v.population for v in vrows] or [1], np.int64)[rid]
        kk = kf[fdev[sel]]
        s = pulses[sel]
        has = both[sel]
        comp = complete[sel]
        lpcd = _half_up(s * 1000, kk * pop, 10)
        band = np.where(
            lpcd >= daily.FULLY_LPCD,
            "fully",
            np.where(lpcd > daily.NON_LPCD, "partially", "non"),
        )
        ex = expected[sel]
        fsup = sup[sel]
        ridx = pa.array(rid)

        def text(attr: str) -> pa.Array:
            vals = pa.array([getattr(v, attr) for v in vrows] or [""], pa.string())
            return vals.take(ridx)

        nm = nmin[sel].tolist()
        nok = night_ok[sel].tolist()
        dev_names = pa.array(self.names, pa.string()).take(pa.array(fdev[sel]))
        cols = {
            "village": text("village"),
            "device": dev_names,
            "date": pa.array(dates[sel].astype("datetime64[D]"), pa.date32()),
            "litres": pa.array(_half_up(s * 1000, kk, 10), pa.float64(), mask=~has),
            "population": pa.array(pop, pa.int64()),
            "lpcd": pa.array(lpcd, pa.float64(), mask=~comp),
            "band": pa.array(band, pa.string(), mask=~comp),
            "pump_hours": pa.array(_half_up(pump[sel], 3600, 100), pa.float64()),
            "completeness": pa.array(
                _half_up(np.minimum(present[sel], ex), np.maximum(ex, 1), 1000)
                * (ex > 0),
                pa.float64(),
            ),
            "complete": pa.array(comp, pa.bool_()),
            "implausible_litres": pa.array(np.zeros(sel.size), pa.float64()),
            "block": text("block"),
            "district": text("district"),
            "state": text("state"),
            "tz": text("tz"),
            "supply_hours": pa.array(_half_up(fsup, 3600, 100), pa.float64()),
            "supply_start_min": pa.array(
                (np.where(fsup > 0, ff[sel], b0[sel]) - b0[sel]) // 60,
                pa.int64(),
                mask=fsup == 0,
            ),
            "lockouts": pa.array(lock[sel].astype(np.int64), pa.int64()),
            "power_off_hours": pa.array(_half_up(poff[sel], 3600, 100), pa.float64()),
            "faults_raised": pa.array(raised[sel].astype(np.int64), pa.int64()),
            "night_min_lph": pa.array(
                [round(x, 1) if o else None for x, o in zip(nm, nok, strict=True)],
                pa.float64(),
            ),
        }
        ism = np.flatnonzero((kind == c.MEASURE) & regular[di])
        sens = measures.bulk_columns(frames, ism, di[ism], t[ism], day_of, b0, total)
        cols.update({k: a.take(pa.array(sel)) for k, a in sens.items()})
        return pa.table(cols, schema=periods.DAY_SCHEMA)


__all__ = ["COLUMNS", "Days", "days"]
