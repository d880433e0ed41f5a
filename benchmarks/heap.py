"""Live heap of the firmware in real MicroPython (the WebAssembly build), over
simulated days: the controller, the simulated hardware and a small plant run on
virtual time in chunks; between chunks, two separate interpreter calls of
gc.collect() then gc.mem_alloc() give the live heap (collecting inside the call that
made the garbage, or in the very next call, does not free it in this build).

    python benchmarks/heap.py [--days 3] [--chunk-min 10]

Prints the heap after boot, the peak live heap at rest between chunks, and the peak
of each day (a leak shows as growth from day to day). The ESP32 without PSRAM starts
MicroPython with about 56 KB free of its heap... and up to ~100 KB on later builds."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "tests"))

from conftest import _load_mpyrun, firmware_files  # noqa: E402

SETUP = r"""
import gc
from jksim.minivillage import build

clock, hal, ctl = build("board.json")
"""
MEASURE = "gc.collect()\nprint(gc.mem_alloc())"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--days", type=int, default=3)
    ap.add_argument("--chunk-min", type=int, default=10)
    ap.add_argument("--json", action="store_true")
    a = ap.parse_args()
    mpy = _load_mpyrun()
    why = mpy.available()
    if why:
        sys.exit(f"heap: {why}")
    files = firmware_files()
    for name in ("__init__.py", "vclock.py", "hw.py", "minivillage.py"):
        files[f"jksim/{name}"] = (REPO / "sim" / name).read_bytes()
    files["board.json"] = (REPO / "boards" / "esp32-devkitc-sim800l.json").read_bytes()
    step = a.chunk_min * 60000
    # two calls: the first collect still sees what the previous call left on the stack
    steps = ["gc.collect()", MEASURE]  # after boot
    n = a.days * 86400000 // step
    for i in range(1, n + 1):
        steps += [f"clock.run_until({i * step})", "gc.collect()", MEASURE]
    steps.append("print('failures', len(clock.failures), 'frames', ctl.frames)")
    out = mpy.run(SETUP, files, timeout_s=1800, steps=steps).split()
    values = [int(x) for x in out[:-4]]
    failures, frames = int(out[-3]), int(out[-1])
    per_day = len(values[1:]) // a.days
    days = [max(values[1 + d * per_day : 1 + (d + 1) * per_day]) for d in range(a.days)]
    res = {
        "after_boot": values[0],
        "peak_at_rest": max(values),
        "peak_per_day": days,
        "growth_last_vs_first_day": days[-1] - days[0],
        "failures": failures,
        "frames": frames,
    }
    if a.json:
        print(json.dumps(res))
        return
    print(f"live heap after boot:   {values[0]:>8,} B")
    print(f"peak live heap at rest: {max(values):>8,} B  (goal <= 40 KB)")
    print("peak per day:           " + ", ".join(f"{x:,}" for x in days))
    print(f"growth, last - first day: {res['growth_last_vs_first_day']:+,} B")
    print(f"{frames} frames, {failures} task failures")


if __name__ == "__main__":
    main()
