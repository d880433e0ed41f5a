"""The sensors' day columns: borewell depth, tank level, water quality against BIS
10500, motor hours and sensor faults, from the `measure` frames (kind 7).

Rules (docs/sensors.md, "Reports and alerts"):

* A measure frame belongs to local day D when D 00:00 < t <= D+1 00:00 (the day
  rule of the readings, daily.py). A field with no value (the all-ones NO_VALUE:
  a sensor not fitted or in fault) is never a value: it is left out of every
  minimum, maximum, mean and median. A day without a measure frame, or without a
  value of that sensor, has the column empty (null), never 0.
* Borewell: ``bore_min_m`` / ``bore_max_m`` are the smallest and largest depth to
  water below ground of the day's frames (cm resolution); ``bore_0600_m`` is the
  frame nearest 06:00 local (within 30 minutes; the earlier of two equally near),
  the water table before the day's pumping.
* Tank: the day's smallest, largest and mean level (m) and mean litres; the mean
  is the mean of the frames (they are evenly spaced), half-up to the mm / litre.
* Quality: the day's medians of pH, TDS, EC (at 25 C) and water temperature.
  ``water_quality`` judges the medians against BIS 10500: ``acceptable`` (pH
  6.5-8.5 and TDS <= 500 mg/L), ``permissible`` (pH in range, 500 < TDS <= 2000:
  allowed only where there is no alternative source), ``not acceptable``
  (pH out of range or TDS > 2000), null with neither measured.
* ``motor_hours``: the motor's own running seconds (CT or contactor contact,
  not the relay), from the frames' ``motor_s`` counter: the board counts them
  per boot, so each frame's increment over the device's previous measure frame
  of the same boot (modulo 2**32, at most the seconds between them; the first
  frame of a boot: its own count, the seconds since that boot) is the motor's
  running time in that span. A span that crosses local midnight is split there
  in proportion (the earlier part floor(increment x its seconds / span's)); a
  span longer than MAX_COUNTER_S (frames lost for half a day) is put on no day.
  Frames without the counter (boards before it: 33-byte payloads) fall back
  to sampling: their ``motor_running`` stands for the span since the device's
  previous measure frame (up to MAX_SPAN_S; a longer silence counts nothing).
  A span is placed by the frame that closes it (the day rule above). Null on a
  day without a motor value.
* ``sensor_faults``: the sensors that read a fault in any of the day's frames
  (names joined by ``|``), ``""`` when none did, null without measure frames.

``day_columns`` computes one device's days (daily.py, frame by frame in numpy);
``bulk_columns`` the same for many devices at once (daily_bulk.py); the tests
hold them equal.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from jkproto import codec as c
from jkproto import objects as ob

# the measure frame's fields the report reads (the store's column names)
FRAME_COLUMNS = ("bore_depth_cm", "tank_mm", "tank_l", "ec_us", "tds_mgl",
                 "ph_x100", "water_cc", "motor_running", "motor_s",
                 "faults")  # fmt: skip
BORE, TANK_MM, TANK_L, EC, TDS, PH, WATER, MOTOR, MOTOR_S, FAULTS = range(
    len(FRAME_COLUMNS)
)
NULL = np.iinfo(np.int64).min  # no value, in the report's integer columns
_FMT = dict(
    zip(
        (name for name, _t in ob.FIELDS[c.MEASURE]),
        c.PAYLOAD_FMT[c.MEASURE][1:],
        strict=True,
    )
)
SENTINEL = {name: ob.NO_VALUE[_FMT[name]] for name in FRAME_COLUMNS[:-1]}
AT_S = 6 * 3600  # the morning depth: 06:00 local
NEAR_S = 1800  # ... from the frame within 30 minutes of it
MAX_SPAN_S = 3600  # longest span one frame's motor state stands for
MAX_COUNTER_S = 12 * 3600  # longest span a motor_s increment is placed over
PH_MIN, PH_MAX = 6.5, 8.5  # BIS 10500: 2012, Table 2 (acceptable = permissible)
TDS_ACCEPTABLE, TDS_PERMISSIBLE = 500, 2000  # mg/L, BIS 10500: 2012, Table 2
QUALITY = ("acceptable", "permissible", "not acceptable")

DAY_FIELDS = [
    ("bore_min_m", pa.float64()), ("bore_max_m", pa.float64()),
    ("bore_0600_m", pa.float64()), ("tank_min_m", pa.float64()),
    ("tank_max_m", pa.float64()), ("tank_mean_m", pa.float64()),
    ("tank_mean_l", pa.float64()), ("ph", pa.float64()), ("tds_mgl", pa.float64()),
    ("ec_us", pa.float64()), ("water_c", pa.float64()),
    ("water_quality", pa.string()), ("motor_hours", pa.float64()),
    ("sensor_faults", pa.string()),
]  # fmt: skip
DAY_NAMES = tuple(n for n, _t in DAY_FIELDS)


# --- frames -> the measure matrix (n x FRAME_COLUMNS, NULL = no value) ----------


def from_table(tb: pa.Table) -> np.ndarray:
    """The measure matrix of a frames table (bulk.decode's, the store's); a table
    without the measure columns gives NULL everywhere."""
    n = tb.num_rows
    out = np.full((n, len(FRAME_COLUMNS)), NULL, np.int64)
    out[:, FAULTS] = 0
    names = set(tb.column_names)
    for j, name in enumerate(FRAME_COLUMNS):
        if name not in names:
            continue
        col = tb.column(name)
        valid = np.asarray(pc.is_valid(col).to_numpy(zero_copy_only=False), bool)
        v = np.asarray(pc.fill_null(col, 0).to_numpy(), np.int64)
        if name != "faults":
            valid &= v != SENTINEL[name]
        out[valid, j] = v[valid]
    return out


def object_row(o: Mapping[str, Any]) -> list[int]:
    """One frame object's (`jalkal decode`'s JSON) row of the measure matrix."""
    row = [NULL] * (len(FRAME_COLUMNS) - 1)
    if o.get("kind") not in ("measure", c.MEASURE):
        return [*row, 0]
    for j, name in enumerate(FRAME_COLUMNS[:-1]):
        v = o.get(name)
        if v is not None and v != SENTINEL[name]:
            row[j] = int(v)
    bits = 0
    for x in o.get("faults") or ():
        bits |= 1 << (ob.SENSORS.index(x) if isinstance(x, str) else int(x))
    return [*row, bits]


def present(names: Sequence[str], have: Sequence[str]) -> list[str]:
    """names without the measure columns a table lacks (an older store's)."""
    return [x for x in names if x in have or x not in FRAME_COLUMNS]


# --- shared pieces ---------------------------------------------------------------


def _half_up(num: np.ndarray, den: np.ndarray) -> np.ndarray:
    """floor(num / den + 1/2) for integers, den > 0 (num may be negative)."""
    return np.asarray((2 * num + den) // (2 * den), np.int64)


def quality_class(ph: float | None, tds: float | None) -> str | None:
    """BIS 10500 of a day's medians (see the module's docstring)."""
    if ph is None and tds is None:
        return None
    if (ph is not None and not PH_MIN <= ph <= PH_MAX) or (
        tds is not None and tds > TDS_PERMISSIBLE
    ):
        return "not acceptable"
    if tds is not None and tds > TDS_ACCEPTABLE:
        return "permissible"
    return "acceptable"


def fault_names(bits: int) -> str:
    return "|".join(ob.SENSORS[i] for i in range(len(ob.SENSORS)) if bits >> i & 1)


def _spans(
    t: np.ndarray, m: np.ndarray, boot: np.ndarray, first: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """(seconds, span start) per frame: the motor's running seconds the frame
    closes and when its span began (the frame's own t for a sampled span, which
    is never split at midnight). t in time order per device; first: the
    device's first frame. The counter's increment where the frame has motor_s
    and the frame before it of the device does (or is of an earlier boot); else
    the sampled state's span."""
    span = np.zeros(t.size, np.int64)
    if t.size > 1:
        span[1:] = t[1:] - t[:-1]
    span[first] = 0
    start = t - span
    sampled = np.where((m[:, MOTOR] == 1) & (span <= MAX_SPAN_S), span, 0)
    cnt = m[:, MOTOR_S]
    has = cnt != NULL
    prev = np.full(t.size, NULL, np.int64)
    prev[1:] = cnt[:-1]
    newboot = np.ones(t.size, bool)
    newboot[1:] = boot[1:] != boot[:-1]
    prev[newboot] = 0  # the counter starts at 0 at boot, after the frame before
    counted = has & (prev != NULL) & ~first
    inc = np.where(counted, cnt, 0) - np.where(counted, prev, 0)
    inc = np.minimum(inc % (1 << 32), span)  # a count that wrapped; never > span
    inc = np.where(span <= MAX_COUNTER_S, inc, 0)
    return np.where(counted, inc, sampled), np.where(counted, start, t)


def _early(
    sec: np.ndarray, start: np.ndarray, t: np.ndarray, cut: np.ndarray
) -> np.ndarray:
    """The part of sec (running seconds over (start, t]) before cut, the midnight
    that begins t's day: in proportion, floored; 0 when the span does not cross."""
    cross = start < cut
    span = np.maximum(t - start, 1)
    return np.where(cross, sec * np.maximum(cut - start, 0) // span, 0)


# --- one device's days (daily.py) ----------------------------------------------


def day_columns(
    t: np.ndarray, m: np.ndarray, b: np.ndarray, boot: np.ndarray | None = None
) -> list[dict[str, Any]]:
    """The sensor columns of the days (b[i], b[i+1]] of one device: t, m, boot its
    timed measure frames (times, measure matrix rows, boots) in stream order."""
    nd = b.size - 1
    if boot is None:
        boot = np.zeros(t.size, np.int64)
    o = np.argsort(t, kind="stable")
    t, m, boot = t[o], m[o], boot[o]
    first = np.zeros(t.size, bool)
    first[:1] = True
    sec, start = _spans(t, m, boot, first)
    day = np.searchsorted(b, t, side="left") - 1
    inr = (day >= 0) & (day < nd)
    early = np.zeros(t.size, np.int64)
    early[inr] = _early(sec[inr], start[inr], t[inr], b[day[inr]])
    run_day = np.bincount(day[inr], weights=sec[inr] - early[inr], minlength=nd)
    back = inr & (early > 0) & (day >= 1)
    run_day += np.bincount(day[back] - 1, weights=early[back], minlength=nd)
    run_day = run_day.astype(np.int64)
    out: list[dict[str, Any]] = []
    for i in range(nd):
        sel = day == i
        if not sel.any():
            out.append(dict.fromkeys(DAY_NAMES))
            continue
        d = m[sel]
        r: dict[str, Any] = {}
        bore = d[:, BORE][d[:, BORE] != NULL]
        r["bore_min_m"] = int(bore.min()) / 100 if bore.size else None
        r["bore_max_m"] = int(bore.max()) / 100 if bore.size else None
        r["bore_0600_m"] = None
        ok = sel & (m[:, BORE] != NULL)
        if ok.any():
            gap = np.abs(t[ok] - (b[i] + AT_S))
            k = int(np.argmin(gap))  # the first of equally near ones
            if gap[k] <= NEAR_S:
                r["bore_0600_m"] = int(m[ok][k, BORE]) / 100
        mm = d[:, TANK_MM][d[:, TANK_MM] != NULL]
        r["tank_min_m"] = int(mm.min()) / 1000 if mm.size else None
        r["tank_max_m"] = int(mm.max()) / 1000 if mm.size else None
        r["tank_mean_m"] = (
            int(_half_up(np.int64(mm.sum()), np.int64(mm.size))) / 1000
            if mm.size
            else None
        )
        lt = d[:, TANK_L][d[:, TANK_L] != NULL]
        r["tank_mean_l"] = (
            float(_half_up(np.int64(lt.sum()), np.int64(lt.size))) if lt.size else None
        )
        for name, j, scale in (("ph", PH, 100), ("tds_mgl", TDS, 1), ("ec_us", EC, 1),
                               ("water_c", WATER, 100)):  # fmt: skip
            v = d[:, j][d[:, j] != NULL]
            r[name] = float(np.median(v.astype(np.float64))) / scale if v.size else None
        r["water_quality"] = quality_class(r["ph"], r["tds_mgl"])
        mot = d[:, MOTOR] != NULL
        r["motor_hours"] = (
            int(_half_up(np.int64(run_day[i]) * 100, np.int64(3600))) / 100
            if mot.any()
            else None
        )
        r["sensor_faults"] = fault_names(int(np.bitwise_or.reduce(d[:, FAULTS])))
        out.append(r)
    return out


def fault_spans(dev: str, t: np.ndarray, bits: np.ndarray) -> list[dict[str, Any]]:
    """Sensor fault episodes of one device from its timed measure frames: from the
    first frame with the sensor's fault bit to the first later frame without it
    (until None: still open at the last frame)."""
    o = np.argsort(t, kind="stable")
    t, bits = t[o], bits[o]
    out: list[dict[str, Any]] = []
    for s, name in enumerate(ob.SENSORS):
        on = (bits >> s & 1).astype(bool)
        if not on.any():
            continue
        edge = np.diff(np.concatenate(([0], on.astype(np.int8), [0])))
        starts = np.flatnonzero(edge == 1)
        ends = np.flatnonzero(edge == -1)
        for a, e in zip(starts.tolist(), ends.tolist(), strict=True):
            out.append(
                {
                    "device": dev,
                    "sensor": name,
                    "since": int(t[a]),
                    "until": int(t[e]) if e < t.size else None,
                    "frames": e - a,
                    "last": int(t[e - 1]),
                }
            )
    return out


# --- many devices at once (daily_bulk.py) --------------------------------------


def bulk_columns(
    tb: pa.Table,
    rows: np.ndarray,
    dev: np.ndarray,
    t: np.ndarray,
    day_of: Callable[[np.ndarray, np.ndarray], tuple[np.ndarray, np.ndarray]],
    b0: np.ndarray,
    total: int,
) -> dict[str, pa.Array]:
    """The DAY_FIELDS columns of `total` flat days: rows, dev, t are the measure
    frames (table rows, device index, time); day_of(dev, t) gives (flat day, in
    range); b0 the local midnight that begins each flat day."""
    sub = tb.take(pa.array(rows)) if rows.size else None
    m = (
        from_table(sub)
        if sub is not None
        else np.zeros((0, len(FRAME_COLUMNS)), np.int64)
    )
    boot = (
        np.asarray(sub.column("boot").to_numpy(), np.int64)
        if sub is not None and "boot" in sub.column_names
        else np.zeros(rows.size, np.int64)
    )
    o = np.lexsort((t, dev))  # per device in time order (stable)
    m, dev, t, boot = m[o], dev[o], t[o], boot[o]
    first = np.ones(t.size, bool)
    first[1:] = dev[1:] != dev[:-1]
    sec, start = _spans(t, m, boot, first)
    fd, inr = day_of(dev, t)
    d0, ok0 = day_of(dev, start + 1)  # the day the span begins in
    early = np.zeros(t.size, np.int64)
    early[inr] = _early(sec[inr], start[inr], t[inr], b0[fd[inr]])
    back = inr & (early > 0) & ok0 & (d0 == fd - 1)
    run_early = np.bincount(d0[back], weights=early[back], minlength=total)
    fd, m, t, sec, early = fd[inr], m[inr], t[inr], sec[inr], early[inr]
    has = np.bincount(fd, minlength=total) > 0
    cols: dict[str, pa.Array] = {}

    def agg(j: int, fn: Any, init: int) -> tuple[np.ndarray, np.ndarray]:
        ok = m[:, j] != NULL
        acc = np.full(total, init, np.int64)
        fn.at(acc, fd[ok], m[ok, j])
        return acc, np.bincount(fd[ok], minlength=total) > 0

    def f64(vals: np.ndarray, valid: np.ndarray) -> pa.Array:
        return pa.array(np.where(valid, vals, 0.0), pa.float64(), mask=~valid)

    lo, ok = agg(BORE, np.minimum, np.iinfo(np.int64).max)
    hi, _ = agg(BORE, np.maximum, np.iinfo(np.int64).min)
    cols["bore_min_m"] = f64(lo / 100, ok)
    cols["bore_max_m"] = f64(hi / 100, ok)
    # 06:00: the nearest frame within NEAR_S, the first of equally near ones
    okb = m[:, BORE] != NULL
    gap = np.abs(t - (b0[fd] + AT_S))
    sel = np.flatnonzero(okb & (gap <= NEAR_S))
    best = sel[np.lexsort((t[sel], gap[sel], fd[sel]))]
    firsts = np.ones(best.size, bool)
    firsts[1:] = fd[best][1:] != fd[best][:-1]
    at = np.zeros(total)
    at_ok = np.zeros(total, bool)
    at[fd[best[firsts]]] = m[best[firsts], BORE] / 100
    at_ok[fd[best[firsts]]] = True
    cols["bore_0600_m"] = f64(at, at_ok)
    lo, ok = agg(TANK_MM, np.minimum, np.iinfo(np.int64).max)
    hi, _ = agg(TANK_MM, np.maximum, np.iinfo(np.int64).min)
    cols["tank_min_m"] = f64(lo / 1000, ok)
    cols["tank_max_m"] = f64(hi / 1000, ok)
    for name, j, scale in (("tank_mean_m", TANK_MM, 1000), ("tank_mean_l", TANK_L, 1)):
        s, ok = agg(j, np.add, 0)
        n = np.bincount(fd[m[:, j] != NULL], minlength=total)
        cols[name] = f64(_half_up(s, np.maximum(n, 1)) / scale, ok)
    med: dict[str, tuple[np.ndarray, np.ndarray]] = {}
    for name, j, scale in (("ph", PH, 100), ("tds_mgl", TDS, 1), ("ec_us", EC, 1),
                           ("water_c", WATER, 100)):  # fmt: skip
        ok = m[:, j] != NULL
        g, v = fd[ok], m[ok, j]
        s = np.lexsort((v, g))
        g, v = g[s], v[s].astype(np.float64)
        n = np.bincount(g, minlength=total)
        start = np.concatenate(([0], np.cumsum(n)[:-1]))
        valid = n > 0
        a = np.minimum(start + (n - 1) // 2, max(v.size - 1, 0))
        z = np.minimum(start + n // 2, max(v.size - 1, 0))
        mid = (v[a] + v[z]) / 2 if v.size else np.zeros(total)
        med[name] = (mid / scale, valid)
        cols[name] = f64(mid / scale, valid)
    (ph, pv), (tds, tv) = med["ph"], med["tds_mgl"]
    bad = (pv & ((ph < PH_MIN) | (ph > PH_MAX))) | (tv & (tds > TDS_PERMISSIBLE))
    perm = tv & (tds > TDS_ACCEPTABLE)
    cls = np.where(bad, QUALITY[2], np.where(perm, QUALITY[1], QUALITY[0]))
    cols["water_quality"] = pa.array(cls, pa.string(), mask=~(pv | tv))
    mot = np.bincount(fd[m[:, MOTOR] != NULL], minlength=total) > 0
    sec = np.bincount(fd, weights=sec - early, minlength=total) + run_early
    sec = sec.astype(np.int64)
    cols["motor_hours"] = f64(_half_up(sec * 100, np.int64(3600)) / 100, mot)
    bits = np.zeros(total, np.int64)
    np.bitwise_or.at(bits, fd, m[:, FAULTS])
    names = [fault_names(int(x)) for x in bits.tolist()]
    cols["sensor_faults"] = pa.array(names, pa.string(), mask=~has)
    return cols


# --- periods (periods.py) ------------------------------------------------------

PERIOD_FIELDS = [
    ("bore_min_m", pa.float64()), ("bore_max_m", pa.float64()),
    ("bore_0600_change_m", pa.float64()), ("tank_min_m", pa.float64()),
    ("ph_min", pa.float64()), ("ph_max", pa.float64()),
    ("tds_max_mgl", pa.float64()), ("days_quality", pa.int64()),
    ("days_permissible", pa.int64()), ("days_not_acceptable", pa.int64()),
    ("sensor_quality", pa.string()), ("motor_hours", pa.float64()),
    ("days_sensor_fault", pa.int64()),
]  # fmt: skip


def period_sums(x: Mapping[str, Any]) -> dict[str, Any]:
    """The PERIOD_FIELDS of one village-period from period_sql's sums: the
    extremes of the days' values, the 06:00 depth's change from the first day
    that has one to the last (positive: the water table fell), the days judged
    against BIS 10500, and the sensors' Table 11 quality (sensor_quality): non
    potable when any day's medians are not acceptable, potable when every judged
    day is acceptable or permissible, null when no day was judged."""
    n0600, q, bad = x["bore_0600_n"], x["days_quality"], x["days_not_acceptable"]
    change = x["bore_0600_last"] - x["bore_0600_first"] if n0600 > 1 else None
    return {
        "bore_min_m": x["bore_min_m"],
        "bore_max_m": x["bore_max_m"],
        "bore_0600_change_m": round(change, 2) if change is not None else None,
        "tank_min_m": x["tank_min_m"],
        "ph_min": x["ph_min"],
        "ph_max": x["ph_max"],
        "tds_max_mgl": x["tds_max_mgl"],
        "days_quality": int(q),
        "days_permissible": int(x["days_permissible"]),
        "days_not_acceptable": int(bad),
        "sensor_quality": None if not q else "non potable" if bad else "potable",
        "motor_hours": round(x["motor_hours"], 2) if x["motor_n"] else None,
        "days_sensor_fault": int(x["days_sensor_fault"]),
    }


def quality_leg(tests: str, sensed: Mapping[str, Any]) -> str:
    """Table 11's quality of a period from the water tests (quality.py: potable,
    non potable, not measured) and the sensors (period_sums' sensor_quality):
    non potable when either says so (a laboratory test covers what no probe
    measures: bacteria, arsenic, fluoride, nitrate; the probes see every day
    between tests), potable when one of them measured and neither failed."""
    s = sensed.get("sensor_quality")
    if "non potable" in (tests, s):
        return "non potable"
    if "potable" in (tests, s):
        return "potable"
    return "not measured"
