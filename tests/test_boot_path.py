"""One boot path: the simulator powers its board up, and up again after every power
return and watchdog reset, through the board's own boot sequence (jkfw.main.start),
so a fault in that sequence shows in the simulator. (A board with no SD card once
failed at boot, and no simulated scenario saw it: the simulator built the logger
and the controller itself.)"""

import json
import os
import shutil

import pytest
from conftest import REPO

from jkfw import main as board
from jkfw.logger import FrameLog
from jkproto import codec
from jkproto import objects as ob
from jksim import minivillage, scenario
from jksim.village import simulate

# a power return while the card is out of its slot, a watchdog reset, a brown-out
REBOOTS = """days = 1
[[fault]]
kind = "sd_removed"
start = "2026-03-01T09:00"
hours = 5
[[fault]]
kind = "power_cut"
start = "2026-03-01T10:00"
hours = 1
[[fault]]
kind = "watchdog"
start = "2026-03-01T16:00"
[[fault]]
kind = "brownout"
start = "2026-03-01T19:00"
hours = 1
"""


def load(tmp_path, text=REBOOTS):
    f = tmp_path / "s.toml"
    f.write_text(text)
    return scenario.load(str(f))


def card_objects(out):
    keys = json.loads((out / "keys.json").read_text())["devices"]
    signers = {d: codec.Signer(bytes.fromhex(k["key"])) for d, k in keys.items()}
    data = b"".join(p.read_bytes() for p in sorted((out / "sd" / "log").glob("*")))
    objs, _stats = ob.decode_stream(data, signers)
    return objs


def test_every_boot_of_the_simulated_board_is_jkfw_main_start(tmp_path, monkeypatch):
    real = board.start
    seen = []

    def start(make_hal, clock, *args, **kw):
        ctl = real(make_hal, clock, *args, **kw)
        seen.append(ctl.hal.reset_cause())
        return ctl

    monkeypatch.setattr(board, "start", start)
    v = simulate(load(tmp_path), tmp_path / "out")
    boots = [o for o in card_objects(tmp_path / "out") if o["kind"] == "boot"]
    # power on, power return (no card), watchdog, return after the brown-out
    assert seen == [1, 1, 3, 1]
    # each boot's frame is on the card (the second's from the flash ring)
    assert v.boots == len(seen) == len(boots)
    assert [b["reset"] for b in boots] == ["power_on", "power_on", "watchdog",
                                           "power_on"]  # fmt: skip
    # start() read the config the scenario gave the board, with nothing rejected
    assert v.ctl is not None and v.ctl.cfg == v.cfg and not v.ctl.bad_keys


def test_a_fault_planted_in_start_fails_the_simulation(tmp_path, monkeypatch):
    def broken(cfg, hal):
        raise RuntimeError("planted in jkfw.main.start")

    monkeypatch.setattr(board, "build_display", broken)
    with pytest.raises(RuntimeError, match="planted"):
        simulate(scenario.load("normal", days=1), tmp_path / "out")


def test_a_fault_only_at_reboot_fails_the_simulation(tmp_path, monkeypatch):
    """The first boot is fine; the board's start() breaks at the power return."""
    real = board.start

    def start(make_hal, clock, *args, **kw):
        if clock.ms:
            raise RuntimeError("planted: reboot")
        return real(make_hal, clock, *args, **kw)

    monkeypatch.setattr(board, "start", start)
    with pytest.raises(RuntimeError, match="boot 2 .*planted: reboot"):
        simulate(load(tmp_path), tmp_path / "out")


def test_the_old_no_card_boot_bug_shows_in_the_simulator(tmp_path, monkeypatch):
    """start() once gave the logger no card path when no card was mounted, and the
    logger failed at boot. Planted again, the power return with the card out of
    its slot fails the run; as start() is, that boot logs to the flash ring and the
    card gets every frame back when it returns (the first test)."""

    def old_framelog(sd, flash):
        mounted = os.path.isdir(sd)  # the mount point exists only with a card in
        return FrameLog(sd if mounted else None, flash)

    monkeypatch.setattr(board, "FrameLog", old_framelog)
    with pytest.raises(RuntimeError, match="boot 2 .* crashed") as e:
        simulate(load(tmp_path), tmp_path / "out")
    assert isinstance(e.value.__cause__, AttributeError)  # None has no .endswith


def test_the_micropython_village_boots_through_start_too(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    shutil.copy(REPO / "boards" / "esp32-devkitc-sim800l.json", "board.json")

    def broken(cfg, hal):
        raise RuntimeError("planted in jkfw.main.start")

    with monkeypatch.context() as m:
        m.setattr(board, "build_display", broken)
        with pytest.raises(RuntimeError, match="planted"):
            minivillage.build("board.json")
    clock, hal, ctl = minivillage.build("board.json")
    clock.run_until(3600 * 1000)
    assert clock.failures == [] and ctl.frames > 4
