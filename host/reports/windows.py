"""Local-day windows (b[i], b[i+1]] of the day rules (daily.py): which day a time
falls in, which days a stretch of time touches, how much of each day it covers."""

from __future__ import annotations

import numpy as np


def day_index(b: np.ndarray, t: np.ndarray) -> np.ndarray:
    """Day i with b[i] < t <= b[i+1] (may be -1 or len(b) - 1: out of range)."""
    return np.searchsorted(b, t, side="left") - 1


def taint_days(b: np.ndarray, lo_t: np.ndarray, hi_t: np.ndarray) -> np.ndarray:
    """Days whose window (b[i], b[i+1]] meets some closed stretch [lo_t, hi_t]."""
    nd = b.size - 1
    lo = day_index(b, lo_t)
    hi = np.maximum(day_index(b, hi_t), lo)
    keep = (hi >= 0) & (lo < nd)
    diff = np.zeros(nd + 1, np.int64)
    np.add.at(diff, np.clip(lo[keep], 0, nd - 1), 1)
    np.add.at(diff, np.clip(hi[keep], 0, nd - 1) + 1, -1)
    return np.cumsum(diff[:-1]) > 0


def covered(b: np.ndarray, lo: np.ndarray, hi: np.ndarray) -> np.ndarray:
    """Seconds of each day window [b[i], b[i+1]) inside the union of [lo, hi)."""
    nd = b.size - 1
    keep = hi > lo
    if not keep.any():
        return np.zeros(nd, np.int64)
    o = np.argsort(lo[keep], kind="stable")
    lo, hi = lo[keep][o], hi[keep][o]
    # merge overlapping stretches: a new stretch starts where lo passes every hi so far
    top = np.maximum.accumulate(hi)
    new = np.concatenate(([True], lo[1:] > top[:-1]))
    grp = np.cumsum(new) - 1
    mlo = lo[new]
    mhi = np.zeros(mlo.size, np.int64)
    np.maximum.at(mhi, grp, hi)
    cum = np.concatenate(([0], np.cumsum(mhi - mlo)))

    def upto(x: np.ndarray) -> np.ndarray:  # covered seconds before x
        k = np.searchsorted(mlo, x, side="right") - 1
        kk = np.maximum(k, 0)
        part = np.clip(x - mlo[kk], 0, mhi[kk] - mlo[kk])
        return np.where(k >= 0, cum[kk] + part, 0)

    return np.asarray(upto(b[1:]) - upto(b[:-1]), np.int64)
