"""Throughput of the bulk stream decoder against its baselines, side by side.

    python benchmarks/decode.py [--frames N] [--repeat R] [--json] [--profile]

Every figure below is measured in the same process on the same bytes, so the
ratios are what count (the machine is noisy; absolute rates are not comparable
between runs or machines):

  bulk decode        jalkal.decode.bulk.decode(buf) -> Arrow table, no keys, CRC
                     tables warm
  bulk decode cold   the same, first call: includes building the cached CRC tables
  find_frames only   framing + CRC-32 of every frame, no field gathering, no table
  iter_unpack        struct.iter_unpack with one fixed format covering a whole frame
                     (naive fixed layout; readings-only stream: equal-length frames)
  json.loads         one json.loads per line of the equivalent JSON lines
  frombuffer copy    numpy.frombuffer(data, np.uint8).copy(): the practical limit

Streams: "mix" is a realistic SD log (85 % readings, heartbeats and events);
"readings" is readings only (40-byte frames).
"""

from __future__ import annotations

import argparse
import collections
import cProfile
import io
import json
import os
import platform
import pstats
import struct
import sys
import time

import numpy as np
import pyarrow as pa

from jalkal.decode import bulk, locate
from jkproto import codec as c
from jkproto import objects as ob

GOAL_FPS = 20e6  # bulk decoder goal: frames/s per core
GOAL_VS_COPY = 0.40  # bulk decoder goal: fraction of a plain copy of the bytes
BLOCK = 400  # distinct frames encoded; the stream is this block tiled
KEY = bytes(range(32))
DEVICE = 0x1A2B3C4D
T0 = 1_772_352_900  # 2026-03-01T08:15:00Z

# the whole 40-byte reading frame as one fixed struct: head, payload, mac, crc
READING_FMT = "<" + c.HEAD_FMT[1:] + c.PAYLOAD_FMT[c.READING][1:] + "4sI"


def make_block(mix: bool, seed: int = 1) -> list[bytes]:
    """BLOCK distinct, valid, chained frames of one device (a plausible SD log)."""
    rng = np.random.default_rng(seed)
    enc = c.Encoder(DEVICE, KEY, boot=7)
    frames = []
    t = T0
    src = sup = 0
    for _ in range(BLOCK):
        t += int(rng.integers(60, 600))
        r = rng.random() if mix else 0.0
        if r < 0.85:
            src += int(rng.integers(0, 400))
            sup += int(rng.integers(0, 300))
            vals = (
                src, sup, int(rng.integers(0, 900)), int(rng.integers(0, 256)),
                int(rng.integers(110, 140)), int(rng.integers(5, 31)),
            )  # fmt: skip
            f = enc.frame(c.READING, t, 1, *vals)
        elif r < 0.95:
            vals = (
                t - T0, int(rng.integers(40_000, 90_000)), int(rng.integers(0, 50)),
                int(rng.integers(5, 31)), int(rng.integers(1, 3)),
            )  # fmt: skip
            f = enc.frame(c.HEARTBEAT, t, 1, *vals)
        else:
            ev = int(rng.integers(1, 5))
            f = enc.frame(c.EVENT, t, 1, ev, int(rng.integers(0, 12)), src)
        frames.append(bytes(f))
    return frames


def make_stream(block: list[bytes], n: int) -> bytes:
    """n frames: the block tiled with numpy and cut after a whole frame.

    Tiling repeats seq numbers and breaks the chain at every repetition, so seq and
    chain are not meaningful in this stream (the decoder still computes them, and
    every frame is CRC-valid); that is fine for a throughput figure."""
    blob = np.frombuffer(b"".join(block), np.uint8)
    ends = np.cumsum([len(f) for f in block])
    full, rem = divmod(n, len(block))
    size = full * blob.size + (int(ends[rem - 1]) if rem else 0)
    return np.tile(blob, full + 1)[:size].tobytes()


def json_lines(block: list[bytes], n: int) -> list[str]:
    """The to_obj objects of the stream's frames, json.dumps'ed, one per line.

    The list repeats references to BLOCK distinct strings (json.loads parses every
    line anew; the strings stay cache-warm, which only flatters this baseline)."""
    lines = [json.dumps(ob.to_obj(f, 0, len(f))) for f in block]
    return (lines * (n // len(lines) + 1))[:n]


def best(fn, repeat: int) -> float:
    """Best wall time of repeat calls of fn() (perf_counter)."""
    dt = float("inf")
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        dt = min(dt, time.perf_counter() - t0)
    return dt


def run_case(name: str, mix: bool, n: int, repeat: int) -> dict:
    block = make_block(mix)
    data = make_stream(block, n)
    lines = json_lines(block, n)

    # correctness guard: the bulk decoder must find every frame and skip nothing
    d = bulk.decode(data)
    assert d.table.num_rows == n and d.stats["frames"] == n, d.stats
    assert d.stats["skipped_bytes"] == 0, d.stats

    def cold():
        locate._crc_tables.cache_clear()
        bulk.decode(data)

    t_cold = best(cold, max(1, min(repeat, 2)))
    bulk.decode(data)  # warm the CRC tables again
    t_bulk = best(lambda: bulk.decode(data), repeat)
    a = np.frombuffer(data, np.uint8)
    t_find = best(lambda: locate.find_frames(a), repeat)
    t_copy = best(lambda: np.frombuffer(data, np.uint8).copy(), repeat)
    loads = json.loads
    t_json = best(lambda: collections.deque(map(loads, lines), maxlen=0), repeat)
    t_iter = None
    if not mix:
        st = struct.Struct(READING_FMT)
        assert st.size == 40 and len(data) == 40 * n
        first = next(st.iter_unpack(data))
        assert first[0] == c.SYNC and first[3] == c.READING
        t_iter = best(lambda: collections.deque(st.iter_unpack(data), maxlen=0), repeat)

    fps = {
        "bulk": n / t_bulk,
        "bulk_cold": n / t_cold,
        "find_frames": n / t_find,
        "iter_unpack": n / t_iter if t_iter else None,
        "json_loads": n / t_json,
        "frombuffer_copy": n / t_copy,
    }
    r = {
        "bulk_vs_copy": fps["bulk"] / fps["frombuffer_copy"],
        "bulk_vs_goal_20M": fps["bulk"] / GOAL_FPS,
        "bulk_vs_iter_unpack": fps["bulk"] / fps["iter_unpack"] if t_iter else None,
        "bulk_vs_json": fps["bulk"] / fps["json_loads"],
    }
    return {
        "case": name,
        "frames": n,
        "bytes": len(data),
        "mean_frame_bytes": len(data) / n,
        "json_bytes": sum(len(s) + 1 for s in lines),
        "frames_per_s": fps,
        "mb_per_s": {k: v * len(data) / n / 1e6 if v else None for k, v in fps.items()},
        "ratios": r,
    }


def sizes() -> dict:
    f = make_block(False)[0]
    o = ob.to_obj(f, 0, len(f))
    return {
        "reading_frame": len(f),
        "reading_json_compact": len(json.dumps(o, separators=(",", ":"))),
        "reading_json_default": len(json.dumps(o)),
        "example": json.dumps(o, separators=(",", ":")),
    }


def _where(frame) -> str:
    return f"{os.path.basename(frame.f_code.co_filename)}:{frame.f_code.co_name}"


def line_times(fn) -> dict[tuple[str, int], float]:
    """Exclusive wall time per source line of the decoder (jalkal/decode/bulk.py
    and locate.py) while fn() runs, keyed by (file:function, line).

    Time spent in numpy/pyarrow (C or Python) is charged to the decoder's line that
    called it, which is what cProfile cannot show for the inline numpy work."""
    files = {bulk.__file__, locate.__file__}
    acc: dict[tuple[str, int], float] = collections.defaultdict(float)
    last: list = [None, 0.0]

    def tracer(frame, event, arg):
        if frame.f_code.co_filename not in files:
            return None
        now = time.perf_counter()
        if last[0] is not None:
            acc[last[0]] += now - last[1]
        if event == "return":
            b = frame.f_back
            last[0] = (
                (_where(b), b.f_lineno)
                if b is not None and b.f_code.co_filename in files
                else None
            )
        else:
            last[0] = (_where(frame), frame.f_lineno)
        last[1] = time.perf_counter()
        return tracer

    sys.settrace(tracer)
    try:
        fn()
    finally:
        sys.settrace(None)
    return acc


def profile(n: int) -> str:
    """cProfile (top 15 by cumulative time) and the 15 most expensive lines of one
    warm bulk.decode of the mix stream."""
    data = make_stream(make_block(True), n)
    bulk.decode(data)  # warm the CRC tables
    pr = cProfile.Profile()
    pr.enable()
    bulk.decode(data)
    pr.disable()
    out = io.StringIO()
    out.write(f"== profile of bulk.decode, mix stream, {n} frames ==\n")
    pstats.Stats(pr, stream=out).strip_dirs().sort_stats("cumulative").print_stats(15)
    acc = line_times(lambda: bulk.decode(data))
    total = sum(acc.values())
    out.write(f"per-line exclusive time, bulk.py and locate.py: {total:.3f} s\n")
    out.write(f"{'ms':>8} {'%':>5}  {'where':<30} source\n")
    src = {}
    for mod in (bulk, locate):
        with open(mod.__file__) as f:
            src[os.path.basename(mod.__file__)] = f.read().splitlines()
    for (func, line), dt in sorted(acc.items(), key=lambda kv: -kv[1])[:15]:
        lines = src[func.split(":")[0]]
        text = lines[line - 1].strip() if 0 < line <= len(lines) else ""
        where = f"{func}:{line}"
        out.write(f"{dt * 1e3:8.1f} {100 * dt / total:5.1f}  {where:<30} {text[:60]}\n")
    return out.getvalue()


def fmt_rate(v: float | None) -> str:
    return "n/a" if v is None else f"{v / 1e6:9.2f} M"


def fmt_ratio(v: float | None) -> str:
    return "n/a" if v is None else f"{v:9.3f}"


def print_table(res: dict) -> None:
    env = res["env"]
    print(
        f"python {env['python']}  numpy {env['numpy']}  pyarrow {env['pyarrow']}  "
        f"os.cpu_count() {env['cpu_count']}  (single process, not pinned)"
    )
    print(f"best of {res['repeat']} runs, time.perf_counter; rates in frames/s")
    sz = res["sizes"]
    print(
        f"reading frame: {sz['reading_frame']} B binary vs "
        f"{sz['reading_json_compact']} B compact JSON "
        f"({sz['reading_json_compact'] / sz['reading_frame']:.1f}x; "
        f"{sz['reading_json_default']} B with json.dumps defaults)"
    )
    print()
    cases = res["cases"]
    head = f"{'':28}" + "".join(f"{c_['case']:>14}" for c_ in cases)
    print(head)
    print(f"{'frames':28}" + "".join(f"{c_['frames']:>14}" for c_ in cases))
    print(
        f"{'MB (binary / JSON lines)':28}"
        + "".join(
            f"{c_['bytes'] / 1e6:>7.1f} /{c_['json_bytes'] / 1e6:5.0f}" for c_ in cases
        )
    )
    print(
        f"{'mean frame (bytes)':28}"
        + "".join(f"{c_['mean_frame_bytes']:>14.2f}" for c_ in cases)
    )
    rows = [
        ("bulk decode (warm)", "bulk"),
        ("bulk decode (cold CRC tab)", "bulk_cold"),
        ("find_frames only", "find_frames"),
        ("struct.iter_unpack", "iter_unpack"),
        ("json.loads per line", "json_loads"),
        ("frombuffer().copy()", "frombuffer_copy"),
    ]
    for label, k in rows:
        print(
            f"{label:28}"
            + "".join(f"{fmt_rate(c_['frames_per_s'][k]):>14}" for c_ in cases)
        )
    print()
    rrows = [
        ("bulk / frombuffer (>=0.40)", "bulk_vs_copy"),
        ("bulk / 20 M goal (>=1)", "bulk_vs_goal_20M"),
        ("bulk / iter_unpack", "bulk_vs_iter_unpack"),
        ("bulk / json.loads", "bulk_vs_json"),
    ]
    for label, k in rrows:
        print(
            f"{label:28}" + "".join(f"{fmt_ratio(c_['ratios'][k]):>14}" for c_ in cases)
        )
    print()
    for c_ in cases:
        r = c_["ratios"]
        ok_copy = "meets" if r["bulk_vs_copy"] >= GOAL_VS_COPY else "MISSES"
        ok_fps = "meets" if r["bulk_vs_goal_20M"] >= 1 else "MISSES"
        print(
            f"{c_['case']}: bulk {ok_copy} the 0.40 x copy goal, "
            f"{ok_fps} the 20 M frames/s goal"
        )


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--frames", type=int, default=2_000_000, help="frames per stream")
    p.add_argument("--repeat", type=int, default=5, help="best of this many runs")
    p.add_argument("--json", action="store_true", help="print one JSON object")
    p.add_argument(
        "--profile", action="store_true", help="cProfile one bulk.decode (mix)"
    )
    args = p.parse_args(argv)
    if args.frames < 1 or args.repeat < 1:
        p.error("--frames and --repeat must be >= 1")

    res = {
        "env": {
            "python": platform.python_version(),
            "numpy": np.__version__,
            "pyarrow": pa.__version__,
            "cpu_count": os.cpu_count(),
        },
        "repeat": args.repeat,
        "goals": {"frames_per_s": GOAL_FPS, "bulk_vs_copy": GOAL_VS_COPY},
        "sizes": sizes(),
        "cases": [
            run_case("mix", True, args.frames, args.repeat),
            run_case("readings", False, args.frames, args.repeat),
        ],
    }
    if args.json:
        print(json.dumps(res))
    else:
        print_table(res)
    if args.profile:
        print(profile(args.frames), file=sys.stderr if args.json else sys.stdout)
    return 0


if __name__ == "__main__":
    sys.exit(main())
