"""jalkal pull on the virtual board: a simulated village's SD logs and a flash ring
slot copied off with the real mpremote transport, verified, resumed after the log
grew, and cleared only when asked and verified."""

from __future__ import annotations

import json
import shutil
import struct

import pytest
from fieldtools_util import VBoard, jalkal, mpremote

import jkboards
from jalkal.field import pull

pytestmark = pytest.mark.micropython


@pytest.fixture(scope="module")
def village(tmp_path_factory):
    """Two simulated days: the SD card as the firmware wrote it, keys, registry."""
    out = tmp_path_factory.mktemp("village")
    jalkal("sim", "--scenario", "normal", "--days", 2, "--out", out, check=0)
    return out


@pytest.fixture(scope="module")
def tools(mpy):
    pytest.importorskip("mpremote")
    return mpy


def board_with_logs(village, tmp_path):
    """A board flash holding the village's SD logs, a ring slot and its config."""
    flash = tmp_path / "flash"
    shutil.copytree(village / "sd", flash / "sd")
    keys = json.loads((village / "keys.json").read_text())
    dev = next(iter(keys["devices"])) if "devices" in keys else next(iter(keys))
    # the board's pins: pull mounts the card with them, as the firmware would
    pins = jkboards.load("esp32-devkitc-sim800l")["pins"]
    (flash / "config.json").write_text(json.dumps({"device": dev, "pins": pins}))
    last = sorted((flash / "sd" / "log").iterdir())[-1].read_bytes()
    ring = flash / "flash" / "ring"
    ring.mkdir(parents=True)
    (ring / "03.jkl").write_bytes(struct.pack("<4sI", b"JKR1", 7) + last)
    (ring / "04.jkl").write_bytes(b"JK")  # torn before its header: an empty slot
    return flash, dev


def test_pull_verify_resume_clear(tools, village, tmp_path):
    flash, dev = board_with_logs(village, tmp_path)
    vb = VBoard(flash)
    try:
        out = tmp_path / "pulled"
        rc, so, se = jalkal("pull", "--port", vb.port, "--out", out, check=0)
        names = sorted(p.name for p in (village / "sd" / "log").iterdir())
        got = out / dev
        for n in names:
            assert (got / "sd" / "log" / n).read_bytes() == (
                village / "sd" / "log" / n
            ).read_bytes()
        ring = (got / "ring" / "g00000007.jkl").read_bytes()
        assert ring == (flash / "flash" / "ring" / "03.jkl").read_bytes()
        n = len(names) + 1
        assert f"pulled {n} of {n} files" in so and "CRC ok" in so, so
        assert "all verified (sha256)" in so
        # the pulled SD logs report exactly as the simulator's own card
        args = ["--villages", village / "villages.csv", "--keys", village / "keys.json",
                "--format", "json"]  # fmt: skip
        want = jalkal("report", village / "sd", *args, check=0)[1]
        assert jalkal("report", got / "sd", *args, check=0)[1] == want

        # again: nothing to copy
        rc, so, se = jalkal("pull", "--port", vb.port, "--out", out, check=0)
        assert f"pulled 0 of {n} files, 0 new bytes; {n} up to date" in so

        # the day's log grows (a torn frame, then a whole one): only the tail moves
        day = flash / "sd" / "log" / names[-1]
        whole = day.read_bytes()
        extra = whole[-60:-20] + whole[-40:]
        day.write_bytes(whole + extra)
        mpremote(vb.port, "soft-reset")  # the vboard reads host files at a reset
        rc, so, se = jalkal("pull", "--port", vb.port, "--out", out, check=0)
        assert f"tail, {len(extra)} new bytes" in se, se
        assert f"pulled 1 of {n} files, {len(extra)} new bytes" in so
        assert "bytes of garbage" in se
        assert (got / "sd" / "log" / names[-1]).read_bytes() == whole + extra

        # a cut copy is continued from what arrived
        first = got / "sd" / "log" / names[0]
        part = got / ".partial" / "sd" / names[0]
        part.parent.mkdir(parents=True, exist_ok=True)
        part.write_bytes(first.read_bytes()[:1000])
        first.unlink()
        rc, so, se = jalkal("pull", "--port", vb.port, "--out", out, check=0)
        assert "resumed" in se and not part.exists()
        assert first.read_bytes() == (village / "sd" / "log" / names[0]).read_bytes()

        # --clear-after: verified closed days go; the newest stays; the ring stays
        rc, so, se = jalkal("pull", "--port", vb.port, "--out", out, "--clear-after",
                            check=0)  # fmt: skip
        n = len(names) - 1
        assert f"removed {n} file{'s' if n != 1 else ''} from the board" in so, so
        assert f"kept {names[-1]} (the newest" in so
        assert sorted(p.name for p in (flash / "sd" / "log").iterdir()) == names[-1:]
        assert (flash / "flash" / "ring" / "03.jkl").exists()
    finally:
        assert vb.stop() == 0


def test_clearable_rules():
    def c(name, day, verified=True):
        r = pull.Remote(f"/sd/log/{name}", 10, pull.Path(name), "sd", day)
        return pull.Copied(r, "copied", 10, verified)

    files = [c("20260301.jkl", 20260301), c("20260302.jkl", 20260302, False),
             c("20260303.jkl", 20260303), c("20260304.jkl", 20260304)]  # fmt: skip
    go, kept = pull.clearable(files, 20260303, {}, {})
    assert [x.remote.day for x in go] == [20260301]
    assert any("not verified" in k for k in kept)
    assert any("20260303.jkl (today's" in k for k in kept)
    # an uplink: nothing at or after the upload cursor's day goes
    go, kept = pull.clearable(files, None, {"uplink_url": "http://x:1"},
                              {"up": [20260301, 5, 0, 0, 0, 0, 0, 0]})  # fmt: skip
    assert go == [] and any("not yet uploaded" in k for k in kept)
