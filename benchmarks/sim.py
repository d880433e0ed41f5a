"""How fast the simulator runs a village: virtual time over wall time.

    python benchmarks/sim.py [--days 30] [--scenario normal] [--repeat 3]

Prints the best of --repeat runs and the speed-up over real time (goal: 30 days of
the normal village in <= 10 s, i.e. >= 250,000x real time)."""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

from jksim import scenario
from jksim.village import simulate


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--days", type=int, default=30)
    ap.add_argument("--scenario", default="normal")
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--json", action="store_true")
    a = ap.parse_args()
    best = float("inf")
    frames = 0
    for _ in range(a.repeat):
        with tempfile.TemporaryDirectory() as d:
            sc = scenario.load(a.scenario, days=a.days, seed=a.seed)
            t0 = time.perf_counter()
            v = simulate(sc, Path(d))
            best = min(best, time.perf_counter() - t0)
            frames = (
                sum(p.stat().st_size for p in (Path(d) / "sd" / "log").glob("*")) // 40
            )
            boots = v.boots
    virt = a.days * 86400
    res = {
        "scenario": a.scenario,
        "days": a.days,
        "seconds": round(best, 2),
        "x_real_time": round(virt / best),
        "goal_seconds_30d": 10,
        "meets_goal": best * 30 / a.days <= 10,
        "boots": boots,
        "approx_frames": frames,
    }
    if a.json:
        print(json.dumps(res))
        return
    print(f"{a.scenario}, {a.days} days: best of {a.repeat}: {best:.2f} s")
    print(
        f"speed: {virt / best:,.0f}x real time (goal >= 250,000x: 30 days in <= 10 s)"
    )
    print(f"goal {'met' if res['meets_goal'] else 'MISSED'}")


if __name__ == "__main__":
    main()
