"""Pump safety checked from outside: on the physical trace the simulator recorded,
never on the firmware's own account of itself."""

from __future__ import annotations

import datetime as dt

SLACK_S = 11  # the plant moves every 10 s: a switch is seen up to one tick late


def _t(iso: str) -> float:
    return dt.datetime.fromisoformat(iso.replace("Z", "+00:00")).timestamp()


def intervals(trace: list, on: str, off: str, end: float) -> list[tuple[float, float]]:
    out, since = [], None
    for iso, what in trace:
        t = _t(iso)
        if what == on and since is None:
            since = t
        elif what == off and since is not None:
            out.append((since, t))
            since = None
    if since is not None:
        out.append((since, end))
    return out


def _overlap(a: list, b: list) -> list[tuple[float, float, float]]:
    res = []
    for a0, a1 in a:
        for b0, b1 in b:
            o = min(a1, b1) - max(a0, b0)
            if o > 0:
                res.append((max(a0, b0), min(a1, b1), o))
    return res


def pump_violations(village: dict, end_utc: float, exempt: list | None = None) -> list:
    """Sentences, one per broken invariant, from a truth.json village entry.

    exempt: (start, end) UTC windows where a switch itself was made to lie (a stuck
    float): the firmware cannot see those, only max_run_s bounds them."""
    p = village["pump"]
    tr = village["trace"]
    runs = intervals(tr, "relay_on", "relay_off", end_utc)
    dry = intervals(tr, "dry", "wet", end_utc)
    full = intervals(tr, "overflow", "no_overflow", end_utc)
    dead = intervals(tr, "power_off", "power_on", end_utc)
    out = []
    grace = p["debounce_s"] + SLACK_S + 1
    for a, b in zip(runs, runs[1:], strict=False):
        if b[0] - a[1] < p["min_off_s"] - 1:
            out.append(f"restarted {b[0] - a[1]:.0f} s after a stop (min_off_s)")
    for a0, a1 in runs:
        if a1 - a0 > p["max_run_s"] + 1:
            out.append(f"ran {a1 - a0:.0f} s in one go (max_run_s)")
    for s0, _s1, o in _overlap(runs, dry):
        if o > grace:
            out.append(f"ran {o:.0f} s with the borewell dry from {s0:.0f}")
    for s0, s1, o in _overlap(runs, full):
        if any(e0 <= s0 and s1 <= e1 for e0, e1 in exempt or []):
            continue
        if o > grace:
            out.append(f"ran {o:.0f} s with the tank overflowing from {s0:.0f}")
    for s0, _s1, o in _overlap(runs, dead):
        if o > 1:
            out.append(f"relay on {o:.0f} s with the board unpowered from {s0:.0f}")
    return out
