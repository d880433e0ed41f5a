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
* ``motor_hours``: the motor's own running state (CT or contactor contact) at
  each frame stands for the span since the device's previous measure frame (up
  to MAX_SPAN_S; a longer silence counts nothing); null on a day without a
  motor value.
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
                 "ph_x100", "water_cc", "motor_running", "faults")  # fmt: skip
BORE, TANK_MM, TANK_L, EC, TDS, PH, WATER, MOTOR, FAULTS = range(len(FRAME_COLUMNS))
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


def _spans(t: np.ndarray, running: np.ndarray, first: np.ndarray) -> np.ndarray:
    """Seconds each frame's motor state stands for (t in time order per device;
    first: the device's first frame)."""
    span = np.zeros(t.size, np.int64)
    if t.size > 1:
        span[1:] = t[1:] - t[:-1]
    span[first] = 0
    span[span > MAX_SPAN_S] = 0
    return np.where(running == 1, span, 0)


# --- one device's days (daily.py) ----------------------------------------------


def day_columns(t: np.ndarray, m: np.ndarray, b: np.ndarray) -> list[dict[str, Any]]:
    """The sensor columns of the days (b[i], b[i+1]] of one device: t, m its timed
    measure frames (times, measure matrix rows) in stream order."""
    nd = b.size - 1
    o = np.argsort(t, kind="stable")
    t, m = t[o], m[o]
    first = np.zeros(t.size, bool)
    first[:1] = True
    run_s = _spans(t, m[:, MOTOR], first)
    day = np.searchsorted(b, t, side="left") - 1
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
            int(_half_up(np.int64(run_s[sel].sum()) * 100, np.int64(3600))) / 100
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
    m = from_table(tb.take(pa.array(rows))) if rows.size else np.zeros((0, 9), np.int64)
    o = np.lexsort((t, dev))  # per device in time order (stable)
    m, dev, t = m[o], dev[o], t[o]
    first = np.ones(t.size, bool)
    first[1:] = dev[1:] != dev[:-1]
    run_s = _spans(t, m[:, MOTOR], first)
    fd, inr = day_of(dev, t)
    fd, m, t, run_s = fd[inr], m[inr], t[inr], run_s[inr]
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
    sec = np.bincount(fd, weights=run_s, minlength=total).astype(np.int64)
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


def period_values(rows: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    """The PERIOD_FIELDS of one village-period from its device-day rows: the
    extremes of the days' values, the 06:00 depth's change from the first day
    that has one to the last (positive: the water table fell), the days judged
    against BIS 10500, and the sensors' Table 11 quality (sensor_quality): non
    potable when any day's medians are not acceptable, potable when every judged
    day is acceptable or permissible, null when no day was judged."""
    rows = sorted(rows, key=lambda r: str(r["date"]))

    def vals(k: str) -> list[Any]:
        return [r[k] for r in rows if r.get(k) is not None]

    def ext(fn: Callable[..., Any], k: str) -> Any:
        v = vals(k)
        return fn(v) if v else None

    at = vals("bore_0600_m")
    q = vals("water_quality")
    hours = vals("motor_hours")
    bad = sum(x == QUALITY[2] for x in q)
    return {
        "bore_min_m": ext(min, "bore_min_m"),
        "bore_max_m": ext(max, "bore_max_m"),
        "bore_0600_change_m": round(at[-1] - at[0], 2) if len(at) > 1 else None,
        "tank_min_m": ext(min, "tank_min_m"),
        "ph_min": ext(min, "ph"),
        "ph_max": ext(max, "ph"),
        "tds_max_mgl": ext(max, "tds_mgl"),
        "days_quality": len(q),
        "days_permissible": sum(x == QUALITY[1] for x in q),
        "days_not_acceptable": bad,
        "sensor_quality": None if not q else "non potable" if bad else "potable",
        "motor_hours": round(sum(hours), 2) if hours else None,
        "days_sensor_fault": sum(1 for r in rows if r.get("sensor_faults")),
    }


def quality_leg(tests: str, sensed: Mapping[str, Any]) -> str:
    """Table 11's quality of a period from the water tests (quality.py: potable,
    non potable, not measured) and the sensors (period_values' sensor_quality):
    non potable when either says so (a laboratory test covers what no probe
    measures: bacteria, arsenic, fluoride, nitrate; the probes see every day
    between tests), potable when one of them measured and neither failed."""
    s = sensed.get("sensor_quality")
    if "non potable" in (tests, s):
        return "non potable"
    if "potable" in (tests, s):
        return "potable"
    return "not measured"
