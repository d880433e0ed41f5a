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
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "tests"))

from conftest import _load_mpyrun, compiled, firmware_files  # noqa: E402

SETUP = "import gc"
MEASURE = "gc.collect()\nprint(gc.mem_alloc())"
# the modules a board running the controller holds (config is loaded, used, dropped)
FIRMWARE = "import jkfw.main, jkfw.clock"
DISPLAY = {
    "none": "",
    "ssd1306": "import jkfw.display, jkfw.oled, jkfw.ssd1306",
    "hd44780": "import jkfw.display, jkfw.lcd, jkfw.hd44780",
}
# (jksim.minivillage, the small plant, is loaded at boot and so counted as firmware)
SIM = "import jksim.vclock, jksim.hw"
SIM_SENSORS = SIM + ", jksim.probes"


def _measured(step: str) -> list[str]:
    # two calls after the step: the first collect still sees what the previous
    # call left on the stack
    return [step, "gc.collect()", MEASURE]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--days", type=int, default=3)
    ap.add_argument("--chunk-min", type=int, default=10)
    ap.add_argument("--display", choices=sorted(DISPLAY), default="ssd1306")
    ap.add_argument(
        "--source", action="store_true",
        help="load .py source instead of mpy-cross bytecode (what a board runs)",
    )  # fmt: skip
    ap.add_argument(
        "--sensors", action="store_true",
        help="every sensor configured (the ESP32-S3 board file has their pins)",
    )  # fmt: skip
    ap.add_argument("--json", action="store_true")
    a = ap.parse_args()
    mpy = _load_mpyrun()
    why = mpy.available()
    if why:
        sys.exit(f"heap: {why}")
    files = firmware_files()
    for name in ("__init__.py", "vclock.py", "hw.py", "minivillage.py", "probes.py"):
        files[f"jksim/{name}"] = (REPO / "sim" / name).read_bytes()
    if not a.source:
        files = compiled(files)
    board = "esp32s3-devkitc-sim7600" if a.sensors else "esp32-devkitc-sim800l"
    files["board.json"] = (REPO / "boards" / f"{board}.json").read_bytes()
    step = a.chunk_min * 60000
    # The simulator's modules are loaded first, so that any growth of the shared
    # tables (qstr pools) they cause is counted against the firmware, not for it.
    steps = _measured("pass")  # the bare interpreter
    steps += _measured("import jkfw.clock")  # firmware code the simulator builds on
    steps += _measured(SIM_SENSORS if a.sensors else SIM)  # not on a board
    steps += _measured(FIRMWARE + "\n" + DISPLAY[a.display])  # the board's code
    steps += _measured("import jkfw.config")
    steps += _measured("jkfw.unload('config')")
    boot = "import jksim.minivillage\n"
    boot += "clock, hal, ctl = jksim.minivillage.build("
    boot += f"display={a.display!r}, sensors={a.sensors!r})"
    steps += _measured(boot)
    n = a.days * 86400000 // step
    for i in range(1, n + 1):
        # the simulator's relay trace grows by design; it is not the board's memory
        steps += _measured(f"clock.run_until({i * step})\nhal.relay_trace.clear()")
    steps.append("print('failures', len(clock.failures), 'frames', ctl.frames)")
    out = mpy.run(SETUP, files, timeout_s=1800, steps=steps).split()
    # speed: one simulated day in one call, against the same boot with no day run
    boot_only = "import jksim.minivillage\njksim.minivillage.build(display=%r)"
    t0 = time.perf_counter()
    mpy.run(boot_only % a.display, files)
    t1 = time.perf_counter()
    mpy.run(boot_only % a.display + "[0].run_until(86400000)", files)
    t2 = time.perf_counter()
    day_s = (t2 - t1) - (t1 - t0)
    v = [int(x) for x in out[:-4]]
    failures, frames = int(out[-3]), int(out[-1])
    base, clock_code, with_sim, code, with_config, dropped, booted = v[:7]
    run = v[7:]
    sim_code = with_sim - clock_code
    per_day = len(run) // a.days
    days = [max(run[d * per_day : (d + 1) * per_day]) for d in range(a.days)]
    peak = max([booted] + run)
    res = {
        "display": a.display,
        "sensors": a.sensors,
        "interpreter": base,
        "firmware_code": code - with_sim + clock_code - base,
        "config_while_booting": with_config - code,
        "config_left_after_unload": dropped - code,
        "simulator_code": sim_code,
        "after_boot": booted,
        "peak_at_rest": peak,
        "firmware_peak": peak - sim_code,
        "firmware_state_peak": peak - dropped,
        "peak_per_day": days,
        "growth_last_vs_first_day": days[-1] - days[0],
        "seconds_per_simulated_day": round(day_s, 2),
        "failures": failures,
        "frames": frames,
    }
    if a.json:
        print(json.dumps(res))
        return
    print(f"display: {a.display}; {a.days} days, measured every {a.chunk_min} min")
    print(f"firmware code loaded:         {res['firmware_code']:>7,} B")
    print(
        f"  + config while booting:     {res['config_while_booting']:>7,} B"
        f" (dropped after; {res['config_left_after_unload']:+,} B stays: its names)"
    )
    print(f"simulator code (not on board): {sim_code:>6,} B")
    print(f"peak live heap at rest:       {peak:>7,} B (with the simulator)")
    fw_peak = res["firmware_peak"]
    print(f"firmware peak live heap:      {fw_peak:>7,} B  (goal <= 40,960)")
    print(
        f"  of which data (state):      {res['firmware_state_peak']:>7,} B"
        " (incl. the simulated pins and clock queue)"
    )
    print("peak per day:                 " + ", ".join(f"{x:,}" for x in days))
    print(f"growth, last - first day:     {res['growth_last_vs_first_day']:+,} B")
    print(f"{frames} frames, {failures} task failures")
    print(f"one simulated day in MicroPython: {day_s:.2f} s")


if __name__ == "__main__":
    main()
