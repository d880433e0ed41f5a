"""Implausible readings: reading intervals whose supply-meter pulses imply a flow
the meter cannot pass.

A reading carries the meter's cumulative total; the report counts the difference
between consecutive readings (daily.py). A forged frame signed with a stolen key,
or a faulty meter or counter, can claim millions of pulses in 15 minutes, and
would be summed into the day's litres. So an interval is **implausible** when

    pulses × 3600 > K × max_flow_m3h × seconds

(K: the meter's pulses per m³ from the boot frame, ``supply_pulses_per_m3``;
seconds: the time between the two readings; a K-factor of 0, litres unknown, is
never checked). The default maximum is 60 m³/h (DEFAULT_MAX_FLOW_M3H): the
supply main of a village scheme is a 50-100 mm pipe, and even a 100 mm main at
2 m/s passes about 57 m³/h; a village of 1,200 at 55 lpcd draws 66 m³ a day.
`jalkal report --max-flow-m3h` sets another limit for every device (a larger
main).

An implausible interval counts 0 litres; its pulses are reported as the day's
``implausible_litres`` and the day is incomplete (no lpcd, no band). When the
reading after it comes back down (a total that then goes backwards: one absurd
reading, a *spike*) and the interval from the reading before the spike to the
one after it is plausible, that interval is counted instead (the spike reading
is stepped over), so the water really delivered is not lost; its day is
incomplete too.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

DEFAULT_MAX_FLOW_M3H = 60.0
M32 = 1 << 32
BACKWARDS = 1 << 31  # a difference mod 2**32 this large is a total going down


def too_fast(
    pulses: np.ndarray, kfactor: np.ndarray, seconds: np.ndarray, max_flow_m3h: float
) -> np.ndarray:
    """Per interval: do `pulses` in `seconds` exceed `max_flow_m3h` through a
    meter of `kfactor` pulses per m³ (known K-factors only)? The same expression
    in float64 on every path, so the per-frame and the vectorised reports agree."""
    k = np.asarray(kfactor, np.float64)
    p = np.asarray(pulses, np.float64) * 3600.0
    return (k > 0) & (p > k * float(max_flow_m3h) * np.asarray(seconds, np.float64))


@dataclass
class Intervals:
    """The intervals between consecutive readings (in time order) of one device."""

    inc: np.ndarray  # pulses counted (0: first reading, backwards, implausible)
    back: np.ndarray  # the total went backwards
    bad: np.ndarray  # implausible: not counted
    bad_pulses: np.ndarray  # the pulses an implausible interval claimed
    bridged: np.ndarray  # the interval after a spike, counted from before it


def intervals(
    t: np.ndarray, total: np.ndarray, kfactor: np.ndarray, max_flow_m3h: float
) -> Intervals:
    """Differences mod 2**32 of the cumulative totals of readings at times t
    (sorted), with the K-factor of each reading; the rules of the docstring."""
    n = t.size
    inc = np.zeros(n, np.int64)
    back = np.zeros(n, bool)
    span = np.zeros(n, np.int64)
    if n > 1:
        d = (total[1:] - total[:-1]) % M32
        back[1:] = d >= BACKWARDS
        inc[1:] = np.where(back[1:], 0, d)
        span[1:] = t[1:] - t[:-1]
    bad = too_fast(inc, kfactor, span, max_flow_m3h)
    bad_pulses = np.where(bad, inc, 0)
    bridged = np.zeros(n, bool)
    i = np.flatnonzero(bad[1:-1]) + 1  # a spike at i: i - 1 and i + 1 exist
    j = i + 1
    if i.size:
        skip = (total[j] - total[i - 1]) % M32
        ok = back[j] & (skip < BACKWARDS)
        ok &= ~too_fast(skip, kfactor[j], t[j] - t[i - 1], max_flow_m3h)
        j = j[ok]
        inc[j] = skip[ok]
        back[j] = False
        bridged[j] = True
    inc[bad] = 0
    return Intervals(inc, back, bad, bad_pulses, bridged)


def implausible(
    ivs: Intervals, t: np.ndarray, kfactor: np.ndarray, day: np.ndarray,
    boot: np.ndarray, seq: np.ndarray, dates: list[Any], dev: str, max_m3h: float,
) -> tuple[list[dict[str, Any]], list[str]]:  # fmt: skip
    """The implausible intervals of one device's readings (times t, K-factors,
    day index into dates, boot and seq) on the report's days, as dicts (for
    alerts: device, date, boot, seq, t, from_t, pulses, litres, m3h, max_m3h,
    spike), and the note for stderr."""
    bad = np.flatnonzero(ivs.bad & (day >= 0) & (day < len(dates) - 1))
    out: list[dict[str, Any]] = []
    for i in bad.tolist():
        k, p = int(kfactor[i]), int(ivs.bad_pulses[i])
        t0, t1 = int(t[i - 1]), int(t[i])
        out.append(
            {"device": dev, "date": dates[int(day[i])].isoformat(),
             "boot": int(boot[i]), "seq": int(seq[i]), "t": t1, "from_t": t0,
             "pulses": p, "litres": p * 1000 / k,
             "m3h": p / k * 3600 / max(t1 - t0, 1), "max_m3h": max_m3h,
             "spike": bool(i + 1 < t.size and ivs.bridged[i + 1])}
        )  # fmt: skip
    if not out:
        return out, []
    litres = sum(x["litres"] for x in out)
    return out, [
        f"device {dev}: {len(out)} reading interval(s) implied a supply flow above "
        f"{max_m3h:g} m3/h, the meter's maximum (a forged frame or a faulty "
        f"meter?): their {litres:,.0f} litres are not counted and their days are "
        "incomplete (see --alerts; --max-flow-m3h sets the maximum)"
    ]
