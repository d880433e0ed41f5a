"""Live heap of the firmware in real MicroPython (the WebAssembly build), over
simulated days: the controller, the simulated hardware and a small plant run on
virtual time in chunks; between chunks, two separate interpreter calls of
gc.collect() then gc.mem_alloc() give the live heap (collecting inside the call that
made the garbage, or in the very next call, does not free it in this build).

    python benchmarks/heap.py [--days 3] [--chunk-min 10] [--display ssd1306]
                              [--sensors] [--modem] [--sim-first] [--json]

Prints the firmware's code, the peak live heap at rest between chunks, with a modem
also while its first upload session runs (measured every 2 s of it), and the peak
of each day (a leak shows as growth from day to day). measure() gives the same
figures to tests/test_heap_budget.py. The ESP32 without PSRAM starts MicroPython
with about 56 KB free of its heap... and up to ~100 KB on later builds."""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "tests"))

from conftest import _load_mpyrun, compiled, firmware_files, romfs_image  # noqa: E402

SETUP = "import gc"
# --modem: a simulated modem (sim/modem.py) whose POSTs a server answers as
# protocol/SPEC.md "Uplink" says, signed with the device's key (bytes(32)); defined
# before the first measurement, so it counts as the interpreter's, not the board's
MODEM_SETUP = r"""
import hashlib

SM = []


def post(url, body):
    from jkproto import codec

    n = nf = 0
    for _o, k in codec.scan(body):
        n += k
        nf += 1
    sha = hashlib.sha256(body).digest()
    msg = codec.ack_msg("0a1b2c3d", sha, len(body), nf, nf, 0, n, "")
    sig = codec.ack_sig(codec.Signer(bytes(32)), msg)
    return 200, (b'{"ok":true,"frames":%d,"stored":%d,"duplicate":0,'
                 b'"acked_bytes":%d,"sig":"' % (nf, nf, n)) + sig + b'"}', len(body)


def fit_modem(hal, clock, pins):
    from jksim.modem import fit

    SM.append(fit(hal, clock, FAMILY, pins, utc0=1772303400, post=post))
"""
# the first upload session begins 60 s after boot (jkfw.uplink.FIRST_S): the heap
# is measured every SESSION_STEP_S seconds of it too, not only at rest
SESSION_S = (50, 240)
SESSION_STEP_S = 2
BUDGET = 65536  # issue 19: OLED, modem and every sensor in 64 KB
MEASURE = "gc.collect()\nprint(gc.mem_alloc())"
# between chunks with a modem: also whether an upload session is running then
MEASURE_UP = "gc.collect()\nprint(gc.mem_alloc(), int(ctl.uplink.modem is not None))"
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
# the modules jkfw.measure loads at boot with every sensor configured
SENSOR_CODE = "import jkfw.measure, jkfw.loop420, jkfw.ads1115, jkfw.sonar, "
SENSOR_CODE += "jkfw.quality, jkfw.motor"


def _measured(step: str, measure: str = MEASURE) -> list[str]:
    # two calls after the step: the first collect still sees what the previous
    # call left on the stack
    return [step, "gc.collect()", measure]


def measure(
    days: int = 3, display: str = "ssd1306", sensors: bool = False,
    modem: bool = False, chunk_min: int = 10, source: bool = False,
    sim_first: bool = False, speed: bool = False, romfs: bool = False,
) -> dict:  # fmt: skip
    """The figures (bytes) of one run; see main() for what each means."""
    mpy = _load_mpyrun()
    why = mpy.available()
    if why:
        raise RuntimeError(f"heap: {why}")
    files = firmware_files()
    for name in ("__init__.py", "vclock.py", "hw.py", "minivillage.py", "probes.py",
                 "modem.py"):  # fmt: skip
        files[f"jksim/{name}"] = (REPO / "sim" / name).read_bytes()
    if not source:
        files = compiled(files)
    board = "esp32s3-devkitc-sim7600" if sensors else "esp32-devkitc-sim800l"
    family = "sim7600" if sensors else "sim800"
    setup = SETUP
    if modem:
        setup += "\nFAMILY = %r\n" % family + MODEM_SETUP
    image = None
    if romfs:  # the board's code in a ROMFS image (run in place); the simulator's
        fw = {k: v for k, v in files.items() if k.startswith(("jkfw/", "jkproto/"))}
        image = romfs_image(fw)  # modules stay on the flash file system
        files = {k: v for k, v in files.items() if k not in fw}
    files["board.json"] = (REPO / "boards" / f"{board}.json").read_bytes()
    step = chunk_min * 60000
    sim = SIM_SENSORS if sensors else SIM
    if modem:
        sim += ", jksim.modem"
    if not sim_first:  # the small plant, not on a board either (sim-first: the
        sim += ", jksim.minivillage"  # firmware's, as it imports the firmware)
    code = FIRMWARE + "\n" + DISPLAY[display]  # the board's code
    if sensors:  # what the controller loads at boot for them
        code += "\n" + SENSOR_CODE
    if modem:  # the uplink stays; the driver is loaded for each session
        code += "\nimport jkfw.uplink, jkfw.modem\njkfw.unload('modem')"
    config = "import jkfw.config" + (", jkfw.sensorcfg" if sensors else "")
    unload = "jkfw.unload('config')\njkfw.unload('sensorcfg')"
    # the simulated modem's own objects (not on a board), measured apart
    probe = "class _H:\n    modem = None\n_X = jksim.modem.fit(_H, "
    probe += "jksim.vclock.VirtualClock(0), FAMILY, ('modem_power',))"
    steps = _measured("pass")  # the bare interpreter
    steps += _measured("import jkfw.clock")  # firmware code the simulator builds on
    if sim_first:
        # The simulator's modules first: any growth of the shared tables (qstr
        # pools) they cause is counted against the firmware (an upper bound).
        steps += _measured(sim)
        steps += _measured(code)
        steps += _measured(config)
        steps += _measured(unload)
    else:
        # The board's code first: a table the simulator's names make grow is
        # the simulator's (on a board those names do not exist).
        steps += _measured(code)
        steps += _measured(config)
        steps += _measured(unload)
        steps += _measured(sim)
    if modem:
        steps += _measured(probe) + _measured("del _X, _H")
    boot = "import jksim.minivillage\n"
    boot += "clock, hal, ctl = jksim.minivillage.build("
    boot += f"display={display!r}, sensors={sensors!r}"
    if modem:
        extra = {"modem": family, "uplink_url": "http://127.0.0.1:9"}
        boot += f", extra={extra!r}, fit=fit_modem"
    steps += _measured(boot + ")")
    if modem:  # the first upload session, measured as it runs
        for t in range(SESSION_S[0], SESSION_S[1], SESSION_STEP_S):
            steps += _measured(f"clock.run_until({t * 1000})", MEASURE_UP)
    n = days * 86400000 // step
    for i in range(1, n + 1):
        # the simulator's relay trace grows by design; it is not the board's memory
        # (nor is the simulated modem's log of every POST)
        chunk = f"clock.run_until({i * step})\nhal.relay_trace.clear()"
        if modem:
            chunk += "\nSM[0].http_log.clear()"
        steps += _measured(chunk, MEASURE_UP if modem else MEASURE)
    tail = "print('failures', len(clock.failures), 'frames', ctl.frames, 'posts', "
    steps.append(tail + ("SM[0].posts)" if modem else "0)"))
    lines = mpy.run(setup, files, timeout_s=3600, steps=steps, romfs=image)
    lines = lines.splitlines()
    last = lines.pop().split()
    failures, frames, posts = int(last[1]), int(last[3]), int(last[5])
    v = [int(x.split()[0]) for x in lines]
    up = [x.split()[1:] == ["1"] for x in lines]  # a session was running
    if sim_first:
        base, clock_code, with_sim, code_b, with_config, dropped = v[:6]
        sim_code = with_sim - clock_code
        fw_code = code_b - with_sim + clock_code - base
        before_boot = dropped
    else:
        base, clock_code, code_b, with_config, dropped, with_sim = v[:6]
        sim_code = with_sim - dropped
        fw_code = code_b - base
        before_boot = with_sim
    if modem:  # the simulated modem's objects: counted as the simulator's
        sim_code += v[6] - v[5]
        del v[6:8], up[6:8]
    booted = v[6]
    k = len(range(SESSION_S[0], SESSION_S[1], SESSION_STEP_S)) if modem else 0
    session = [x for x, u in zip(v[7 : 7 + k], up[7 : 7 + k], strict=True) if u]
    run, run_up = v[7 + k :], up[7 + k :]
    per_day = len(run) // days
    day_peaks = [max(run[d * per_day : (d + 1) * per_day]) for d in range(days)]
    # at rest: between sessions (with a modem, a chunk may end inside one)
    rest = [[x for x, u in zip(run[d * per_day : (d + 1) * per_day],
                               run_up[d * per_day : (d + 1) * per_day], strict=True)
                    if not u]
            for d in range(days)]  # fmt: skip
    rest_peaks = [max(r) if r else 0 for r in rest]
    # the least live heap at rest each day: what a leak raises (a peak can also be
    # a dropped module the conservative collector still finds a stale pointer to)
    rest_floors = [min(r) if r else 0 for r in rest]
    peak = max([booted] + run)
    in_session = max(
        session + [x for x, u in zip(run, run_up, strict=True) if u] or [0]
    )
    res = {
        "display": display,
        "sensors": sensors,
        "modem": modem,
        "sim_first": sim_first,
        "romfs": romfs,
        "romfs_image": len(image) if image else None,
        "interpreter": base,
        "firmware_code": fw_code,
        "config_while_booting": with_config - code_b,
        "config_left_after_unload": dropped - code_b,
        "simulator_code": sim_code,
        "after_boot": booted,
        "peak_at_rest": peak,
        # the firmware's own: everything but the interpreter and the simulator
        "firmware_peak": max(peak, in_session) - sim_code,
        "firmware_rest_peak": max([booted] + [max(r) for r in rest if r]) - sim_code,
        "firmware_session_peak": in_session - sim_code if in_session else None,
        "firmware_state_peak": max(peak, in_session) - before_boot,
        "peak_per_day": day_peaks,
        "rest_peak_per_day": rest_peaks,
        "rest_floor_per_day": rest_floors,
        "growth_last_vs_first_day": rest_peaks[-1] - rest_peaks[0],
        "failures": failures,
        "frames": frames,
        "posts": posts,
    }
    if speed:
        # one simulated day in one call, against the same boot with no day run
        boot_only = "import jksim.minivillage\njksim.minivillage.build(display=%r)"
        t0 = time.perf_counter()
        mpy.run(boot_only % display, files, romfs=image)
        t1 = time.perf_counter()
        mpy.run(boot_only % display + "[0].run_until(86400000)", files, romfs=image)
        t2 = time.perf_counter()
        res["seconds_per_simulated_day"] = round((t2 - t1) - (t1 - t0), 2)
    return res


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
    ap.add_argument(
        "--modem", action="store_true",
        help="a modem and an uplink configured (sim800 on the DevKitC, sim7600 on"
        " the S3 board file), with a server that acknowledges every upload",
    )  # fmt: skip
    ap.add_argument(
        "--sim-first", action="store_true",
        help="load the simulator's modules before the firmware's (the growth of the"
        " name tables they cause is then charged to the firmware: an upper bound)",
    )  # fmt: skip
    ap.add_argument(
        "--romfs", action="store_true",
        help="the code in a ROMFS image mounted at /rom, as `jalkal deploy --romfs`"
        " puts it in a board's romfs partition (bytecode run in place, not copied"
        " into the heap)",
    )  # fmt: skip
    ap.add_argument("--json", action="store_true")
    a = ap.parse_args()
    try:
        res = measure(a.days, a.display, a.sensors, a.modem, a.chunk_min, a.source,
                      a.sim_first, speed=True, romfs=a.romfs)  # fmt: skip
    except RuntimeError as e:
        sys.exit(str(e))
    if a.json:
        print(json.dumps(res))
        return
    what = "every sensor" if a.sensors else "no sensors"
    what += ", modem" if a.modem else ", no modem"
    what += f", code in ROMFS ({res['romfs_image']:,} B image)" if a.romfs else ""
    print(f"display: {a.display}; {what}; {a.days} days, every {a.chunk_min} min")
    print(f"firmware code loaded:         {res['firmware_code']:>7,} B")
    print(
        f"  + config while booting:     {res['config_while_booting']:>7,} B"
        f" (dropped after; {res['config_left_after_unload']:+,} B stays: its names)"
    )
    print(f"simulator code (not on board): {res['simulator_code']:>6,} B")
    print(
        f"peak live heap at rest:       {res['peak_at_rest']:>7,} B"
        " (with the simulator)"
    )
    print(f"firmware peak live heap:      {res['firmware_peak']:>7,} B"
          f"  (budget <= {BUDGET:,})")  # fmt: skip
    if a.modem:
        print(f"  between upload sessions:    {res['firmware_rest_peak']:>7,} B")
        print(f"  while one runs:             {res['firmware_session_peak']:>7,} B"
              f" ({res['posts']} uploads acknowledged)")  # fmt: skip
    print(
        f"  of which data (state):      {res['firmware_state_peak']:>7,} B"
        " (incl. the simulated pins and clock queue)"
    )
    print(
        "peak per day:                 "
        + ", ".join(f"{x:,}" for x in res["peak_per_day"])
    )
    print(f"growth, last - first day:     {res['growth_last_vs_first_day']:+,} B")
    print(f"{res['frames']} frames, {res['failures']} task failures")
    print(f"one simulated day in MicroPython: {res['seconds_per_simulated_day']:.2f} s")


if __name__ == "__main__":
    main()
