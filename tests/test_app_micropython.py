"""The controller, on the virtual clock with simulated hardware, in real MicroPython:
the SD log it writes there is byte for byte the log CPython writes."""

import json
import os
import subprocess
import sys

import pytest
from conftest import REPO, firmware_files

SCRIPT = r"""
import json
from jksim.minivillage import build, log_bytes

clock, hal, ctl = build("board.json")
clock.run_until(%(days)d * 86400000)
names, data = log_bytes()
print(json.dumps({"files": names, "hex": data.hex(), "failures": len(clock.failures),
                  "frames": ctl.frames}))
"""


SIM_FILES = ("__init__.py", "vclock.py", "hw.py", "minivillage.py")


def run_cpython(tmp_path, days):
    """The same script under CPython, in a scratch folder laid out like the board."""
    for rel, data in firmware_files().items():
        p = tmp_path / rel
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_bytes(data)
    sim = tmp_path / "jksim"
    sim.mkdir()
    for name in SIM_FILES:
        (sim / name).write_bytes((REPO / "sim" / name).read_bytes())
    (tmp_path / "board.json").write_bytes(
        (REPO / "boards" / "esp32-devkitc-sim800l.json").read_bytes()
    )
    (tmp_path / "run.py").write_text(SCRIPT % {"days": days})
    env = dict(os.environ, PYTHONPATH=str(tmp_path))
    res = subprocess.run(
        [sys.executable, "run.py"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        env=env,
    )
    assert res.returncode == 0, res.stderr
    return json.loads(res.stdout)


@pytest.mark.micropython
def test_a_simulated_day_in_micropython_matches_cpython(mpy, tmp_path):
    files = firmware_files()
    for name in SIM_FILES:
        files[f"jksim/{name}"] = (REPO / "sim" / name).read_bytes()
    files["board.json"] = (REPO / "boards" / "esp32-devkitc-sim800l.json").read_bytes()
    mp = json.loads(mpy.run(SCRIPT % {"days": 1}, files, timeout_s=300))
    cp = run_cpython(tmp_path, 1)
    assert mp["failures"] == 0 and cp["failures"] == 0
    assert mp["files"] == cp["files"] == ["20260301.jkl", "20260302.jkl"]
    assert mp["frames"] > 96
    from jkproto import codec
    from jkproto import objects as ob

    sg = {"0a1b2c3d": codec.Signer(bytes(32))}
    objs, stats = ob.decode_stream(bytes.fromhex(mp["hex"]), sg)
    cobjs, _ = ob.decode_stream(bytes.fromhex(cp["hex"]), sg)

    # the same firmware on two interpreters logs the same frames; only the free heap
    # in heartbeats differs (CPython has no gc.mem_free)
    def strip(o):
        return {k: v for k, v in o.items() if k not in ("heap_free", "mac", "prev")}

    assert [strip(o) for o in objs] == [strip(o) for o in cobjs]
    # and the host decodes them: every frame intact, chained and signed
    assert stats["frames"] == mp["frames"] and stats["skipped_bytes"] == 0
    assert all(o["verified"] and o["chain"] == "ok" for o in objs)
    # The heap is measured by benchmarks/heap.py (gc.collect() only frees garbage of
    # earlier interpreter calls in this build); see docs/firmware.md.
