"""Scenario tests of the pump controller (firmware/pump.py), one behaviour each.

The Rig drives a Pump the way the firmware loop does: step() after every input,
sleep exactly next_s() otherwise, and read the source meter every 30 s.
"""

from __future__ import annotations

import ast
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from conftest import firmware_files

from jkfw import pump as pm
from jkfw.pump import Pump
from jkproto import objects as ob

MIN = 60
DEFAULT_BOOT_S = max(Pump.min_off_s, Pump.restart_delay_s)


class Rig:
    """A Pump, its switches, a meter read every flow_every_s and a virtual clock."""

    def __init__(self, t=0, settings=None, saved=None, flow_every_s=30):
        self.t = t
        self.p = Pump(t, settings, saved)
        self.sw = dict(dry=False, low=False, high=False, broken=False, mains=True)
        self.flowing = True  # the well gives water whenever the pump runs
        self.flow_every_s = flow_every_s
        self.log = []  # (t, event, reason, value)

    def _step(self):
        ev = self.p.step(self.t)
        self.log += [(self.t, *e) for e in ev]
        return ev

    def set(self, **sw):
        self.sw.update(sw)
        self.p.inputs(self.t, **self.sw)
        return self._step()

    def cmd(self, cmd, source="button"):
        self.p.command(self.t, cmd, source)
        return self._step()

    def wait(self, s, until=None):
        """Advance s seconds (or to the first `until` event); return the events on
        the way as (t, name, why, value)."""
        end = self.t + s
        start = len(self.log)
        while not (until and any(e[1] == until for e in self.log[start:])):
            n = self.p.next_s(self.t)
            tick = (self.t // self.flow_every_s + 1) * self.flow_every_s
            due = end if n is None else min(end, self.t + n)
            if tick <= due:
                self.t = tick
                pulses = 10 if self.p.relay and self.flowing else 0
                self.p.flow(self.t, pulses)
                self._step()
            elif n is not None and self.t + n <= end:
                self.t += n
                self._step()
            else:
                self.t = end
                break
        return self.log[start:]

    def running_at(self, s):
        """Wait until the pump starts (at most s seconds); return the start time."""
        ev = self.wait(s, until="pump_start")
        return ev[-1][0] if ev and ev[-1][1] == "pump_start" else None


def started(rig):
    """A rig whose pump is running in auto mode after the boot delay."""
    rig.set(low=True)
    ev = rig.wait(DEFAULT_BOOT_S)
    assert ev == [(rig.t, "pump_start", "tank_low", 0)]
    return rig


# --- boot ------------------------------------------------------------------------


def test_relay_off_until_inputs_known():
    p = Pump(0)
    assert (p.relay, p.state, p.why, p.mode) == (False, "boot", "boot", "auto")
    p.command(5, "on", "command")
    assert p.step(10) == [("mode_change", "command", 1)]
    for t in (100, 10_000, 10**6):
        assert p.step(t) == []
        assert p.relay is False
        assert p.next_s(t) is None
        assert p.state == "boot"


def test_boot_waits_min_off_and_restart_delay_from_creation():
    r = Rig(t=5000)
    assert r.set(low=True) == []
    assert (r.p.state, r.p.why) == ("idle", "boot")
    assert r.p.next_s(r.t) == DEFAULT_BOOT_S
    assert r.wait(DEFAULT_BOOT_S - 1) == []
    assert r.wait(1) == [(5000 + DEFAULT_BOOT_S, "pump_start", "tank_low", 0)]
    r = Rig(settings={"min_off_s": 60, "restart_delay_s": 600})
    r.set(low=True)
    assert r.running_at(10_000) == 600


def test_late_inputs_start_at_once_when_the_boot_delay_is_over():
    r = Rig()
    r.t = 1000
    assert r.set(low=True) == [("pump_start", "tank_low", 0)]


# --- auto ------------------------------------------------------------------------


def test_auto_cycle_with_hysteresis():
    r = started(Rig())
    assert (r.p.relay, r.p.state, r.p.why) == (True, "run", "tank_low")
    r.wait(10 * MIN)
    assert r.set(low=False) == []  # between the marks: keep filling
    assert r.p.relay
    r.wait(20 * MIN)
    assert r.set(high=True) == [("pump_stop", "tank_full", 30 * MIN)]
    assert (r.p.relay, r.p.state, r.p.why) == (False, "idle", "tank_full")
    assert r.set(high=False) == []  # water drawn below the top mark: no restart
    assert r.wait(5 * 3600) == []
    assert r.p.next_s(r.t) is None
    assert r.set(low=True) == [("pump_start", "tank_low", 0)]


def test_min_off_between_stop_and_start():
    r = started(Rig())
    r.wait(MIN)
    stop = r.t
    r.set(high=True)
    r.wait(10)
    r.set(high=False, low=True)  # someone opened every tap
    assert r.p.why == "min_off"
    assert r.p.next_s(r.t) == Pump.min_off_s - 10
    assert r.running_at(3600) == stop + Pump.min_off_s


def test_high_pulse_between_steps_still_stops():
    r = started(Rig())
    r.set(low=False)
    r.sw.update(high=True)
    r.p.inputs(r.t, **r.sw)  # the caller missed a step while high was asserted
    r.sw.update(high=False)
    r.p.inputs(r.t, **r.sw)
    assert r.p.step(r.t) == [("pump_stop", "tank_full", 0)]


def test_high_and_low_together_is_full():
    r = Rig()
    r.set(low=True, high=True)  # a confused tank: never fill into an overflow
    assert r.wait(3600) == []
    assert r.p.why == "tank_full"


# --- manual ----------------------------------------------------------------------


def test_manual_on_fills_regardless_of_level_then_returns_to_auto():
    r = Rig()
    r.set()
    r.wait(3600)
    assert r.cmd("on", "sms") == [("mode_change", "sms", 1), ("pump_start", "sms", 0)]
    assert r.p.mode == "on"
    r.wait(15 * MIN)
    assert r.set(high=True) == [
        ("mode_change", "tank_full", 0),
        ("pump_stop", "tank_full", 15 * MIN),
    ]
    assert r.p.mode == "auto"
    r.set(high=False)
    assert r.wait(3600) == []  # no cycling on the top switch


def test_manual_on_then_auto_keeps_filling_to_full():
    r = Rig()
    r.set()
    r.wait(3600)
    r.cmd("on")
    r.wait(MIN)
    assert r.cmd("auto") == [("mode_change", "button", 0)]
    assert r.p.relay
    assert r.set(high=True) == [("pump_stop", "tank_full", MIN)]


def test_manual_on_never_against_safety():
    r = Rig()
    r.set(dry=True)
    r.wait(3600)
    assert r.cmd("on") == [("mode_change", "button", 1)]
    assert (r.p.relay, r.p.why) == (False, "dry_run")
    assert r.set(dry=False) == [("pump_start", "button", 0)]
    r.wait(MIN)
    stop = r.t
    assert r.cmd("off", "command") == [
        ("mode_change", "command", 2),
        ("pump_stop", "command", MIN),
    ]
    assert (r.p.state, r.p.why) == ("off", "command")
    assert r.cmd("on") == [("mode_change", "button", 1)]  # min off still holds
    assert r.running_at(3600) == stop + Pump.min_off_s
    r.wait(MIN)
    r.set(mains=False)
    r.t += 1
    assert r.cmd("on", "sms") == []  # same mode: nothing to report
    assert not r.p.relay
    r.wait(3600)
    r.set(high=True)  # an on command with a full tank goes back to auto
    assert r.cmd("on") == [
        ("mode_change", "button", 1),
        ("mode_change", "tank_full", 0),
    ]


def test_manual_off_holds_until_auto():
    r = started(Rig())
    r.wait(MIN)
    assert r.cmd("off") == [("mode_change", "button", 2), ("pump_stop", "button", MIN)]
    assert r.wait(5 * 3600) == []  # tank low, but the operator said off
    assert r.p.next_s(r.t) is None
    assert r.cmd("auto") == [
        ("mode_change", "button", 0),
        ("pump_start", "tank_low", 0),
    ]


def test_commands_are_checked():
    p = Pump(0)
    with pytest.raises(ValueError):
        p.command(0, "start", "button")
    with pytest.raises(ValueError):
        p.command(0, "on", "web")


# --- dry run lockout -------------------------------------------------------------


def test_dry_run_lockout_backs_off_and_resets_after_a_good_run():
    r = started(Rig())
    waits = []
    for _ in range(5):
        r.wait(MIN)
        ev = r.set(dry=True)
        assert ev[0] == ("pump_stop", "dry_run", MIN)
        assert ev[1][:2] == ("lockout", "dry_run")
        waits.append(ev[1][2])
        trip = r.t
        assert (r.p.state, r.p.why) == ("lockout", "dry_run")
        assert r.p.lockout_left_s(r.t) == waits[-1]
        r.wait(10)
        r.set(dry=False)  # the well recovers at once: only the timer holds
        assert r.p.state == "lockout"
        assert r.p.next_s(r.t) == waits[-1] - 10
        assert r.wait(waits[-1] - 11) == []
        assert r.wait(1) == [
            (trip + waits[-1], "lockout_end", "retry", 0),
            (trip + waits[-1], "pump_start", "retry", 0),
        ]
    assert waits == [15 * MIN, 30 * MIN, 60 * MIN, 120 * MIN, 120 * MIN]
    r.wait(Pump.lockout_reset_run_s)  # a clean run with flow
    ev = r.set(dry=True)
    assert ev[1] == ("lockout", "dry_run", 15 * MIN)


def test_short_runs_do_not_reset_the_back_off():
    r = started(Rig())
    r.wait(Pump.lockout_reset_run_s - 1)
    assert r.set(dry=True)[1] == ("lockout", "dry_run", 15 * MIN)
    r.set(dry=False)
    r.wait(15 * MIN)
    r.wait(Pump.lockout_reset_run_s - 1)
    assert r.set(dry=True)[1] == ("lockout", "dry_run", 30 * MIN)


def test_lockout_retries_only_when_the_inputs_allow():
    r = started(Rig())
    r.set(dry=True)
    assert r.wait(15 * MIN) == [(r.t, "lockout_end", "retry", 0)]
    assert (r.p.relay, r.p.state, r.p.why) == (False, "idle", "dry_run")
    assert r.p.next_s(r.t) is None
    r.wait(MIN)
    assert r.set(dry=False) == [("pump_start", "retry", 0)]


def test_dry_while_idle_blocks_without_lockout():
    r = Rig()
    r.set(low=True, dry=True)
    assert r.wait(3600) == []
    assert (r.p.state, r.p.why) == ("idle", "dry_run")
    assert r.set(dry=False) == [("pump_start", "tank_low", 0)]


def test_commands_do_not_bypass_a_lockout():
    r = started(Rig())
    r.set(dry=True)
    r.set(dry=False)
    r.cmd("off")
    assert r.cmd("on") == [("mode_change", "button", 1)]
    assert r.p.state == "lockout"
    assert r.running_at(3600) == DEFAULT_BOOT_S + 15 * MIN


# --- no flow ---------------------------------------------------------------------


def test_no_flow_is_a_fault_with_lockout():
    r = Rig()
    r.flowing = False  # pump runs dry-headed: broken pipe, stuck valve, empty well
    r.set(low=True)
    start = r.running_at(3600)
    r.wait(Pump.no_flow_s)
    assert r.log[-3:] == [
        (start + 120, "pump_stop", "no_flow", 120),
        (start + 120, "fault_raised", "no_flow", 0),
        (start + 120, "lockout", "no_flow", 15 * MIN),
    ]
    assert (r.p.state, r.p.why) == ("lockout", "no_flow")
    r.flowing = True
    retry = start + 120 + 15 * MIN
    assert r.running_at(3600) == retry
    r.wait(MIN)
    assert (retry + 30, "fault_cleared", "no_flow", 0) in r.log


def test_no_flow_counts_from_the_last_pulse():
    r = started(Rig())
    r.wait(10 * MIN)
    r.flowing = False
    last = r.t // 30 * 30
    r.wait(10 * MIN)
    assert r.log[-3][:3] == (last + Pump.no_flow_s, "pump_stop", "no_flow")


def test_repeated_no_flow_raises_the_fault_once():
    r = Rig(flow_every_s=10)
    r.flowing = False
    r.set(low=True)
    r.wait(5 * 3600)
    names = [(e[1], e[2]) for e in r.log]
    assert names.count(("fault_raised", "no_flow")) == 1
    assert names.count(("pump_stop", "no_flow")) == 5


# --- max run ---------------------------------------------------------------------


def test_max_run_stops_exactly_and_restarts_after_min_off():
    r = started(Rig())
    start = r.t
    assert r.p.next_s(r.t) == Pump.no_flow_s
    ev = r.wait(5 * 3600)
    assert (start + Pump.max_run_s, "pump_stop", "max_run", Pump.max_run_s) in ev
    restart = start + Pump.max_run_s + Pump.min_off_s
    assert (restart, "pump_start", "tank_low", 0) in ev


# --- power -----------------------------------------------------------------------


def test_power_loss_and_quick_return_respect_min_off():
    r = started(Rig())
    r.wait(700)
    stop = r.t
    assert r.set(mains=False) == [("pump_stop", "power_loss", 700)]
    assert (r.p.state, r.p.why) == ("idle", "power_loss")
    assert r.p.next_s(r.t) is None
    r.wait(10)
    assert r.set(mains=True) == []
    assert r.p.why == "min_off"
    assert r.wait(3600)[0] == (stop + 300, "pump_start", "power_return", 0)


def test_power_return_waits_restart_delay():
    r = started(Rig())
    r.set(mains=False)
    r.wait(1000)
    back = r.t
    r.set(mains=True)
    assert r.p.why == "power_return"
    assert r.p.next_s(r.t) == Pump.restart_delay_s
    assert r.running_at(3600) == back + Pump.restart_delay_s


def test_power_return_while_idle_starts_for_the_tank():
    r = Rig()
    r.set(mains=False)
    r.wait(3600)
    r.set(mains=True, low=True)
    assert r.wait(3600) == [(3600 + 120, "pump_start", "tank_low", 0)]


def test_reboot_restores_mode_lockout_and_back_off():
    r = started(Rig())
    r.set(dry=True)
    saved = r.p.saved(r.t)
    assert saved == ("auto", 1, 15 * MIN, "dry_run", False)
    r2 = Rig(t=r.t + 50, saved=saved)  # power cut 50 s later
    r2.set(low=True)
    assert (r2.p.state, r2.p.lockout_left_s(r2.t)) == ("lockout", 15 * MIN)
    assert r2.running_at(3600) == r.t + 50 + 15 * MIN
    assert r2.set(dry=True)[1] == ("lockout", "dry_run", 30 * MIN)
    r3 = Rig(saved=("off", 0, 0, "none", False))
    r3.set(low=True)
    assert r3.wait(3600) == []
    assert r3.p.state == "off"
    r4 = Rig(saved=("on", 0, 0, "none", False))
    r4.set()
    assert r4.wait(3600) == [(300, "pump_start", "power_return", 0)]
    with pytest.raises(ValueError):
        Pump(0, saved=("manual", 0, 0, "none", False))
    junk = Pump(0, saved=["auto", 9, 10**9, "dry_run", True])  # a JSON list too
    assert junk.lockout_left_s(0) == max(Pump.lockout_s)  # never locked for ever


# --- broken wire -----------------------------------------------------------------


def test_broken_wire_stops_and_is_a_fault():
    r = started(Rig())
    r.wait(MIN)
    assert r.set(broken=True) == [
        ("pump_stop", "wire_break", MIN),
        ("fault_raised", "wire_break", 0),
    ]
    assert (r.p.state, r.p.why) == ("fault", "wire_break")
    assert r.cmd("on") == [("mode_change", "button", 1)]
    assert r.wait(3600) == []
    assert r.set(broken=False) == [
        ("pump_start", "button", 0),
        ("fault_cleared", "wire_break", 0),
    ]


def test_broken_at_boot_never_starts():
    r = Rig()
    assert r.set(broken=True, low=True) == [("fault_raised", "wire_break", 0)]
    assert r.wait(10 * 3600) == []


# --- next_s ----------------------------------------------------------------------


def test_next_s_is_exact():
    p = Pump(0)
    assert p.next_s(0) is None
    p.inputs(0, False, False, False, False, True)
    p.step(0)
    assert p.next_s(0) is None  # nothing wanted, nothing timed
    p.inputs(10, False, True, False, False, True)
    assert p.next_s(10) == DEFAULT_BOOT_S - 10  # the boot delay, not the input
    assert p.step(10) == []
    assert p.next_s(10) == DEFAULT_BOOT_S - 10
    assert p.step(DEFAULT_BOOT_S - 1) == []
    assert p.step(DEFAULT_BOOT_S) == [("pump_start", "tank_low", 0)]
    t = DEFAULT_BOOT_S
    assert p.next_s(t) == Pump.no_flow_s
    p.flow(t + 100, 5)
    assert p.next_s(t + 100) == Pump.no_flow_s
    p.command(t + 101, "off", "button")
    assert p.next_s(t + 101) == 0
    p.step(t + 101)
    assert p.next_s(t + 101) is None
    p.command(t + 102, "auto", "button")
    p.step(t + 102)
    assert p.next_s(t + 102) == Pump.min_off_s - 1
    assert p.next_s(t + 10**6) == 0  # a late caller steps at once


def test_next_s_max_run_bound_with_steady_flow():
    p = Pump(0, {"max_run_s": 200, "no_flow_s": 120, "min_off_s": 0})
    p.inputs(0, False, True, False, False, True)
    p.step(0)
    p.step(120)
    assert p.relay
    p.flow(250, 3)
    assert p.next_s(250) == 70  # max run (320) before no flow (370)


# --- settings, names -------------------------------------------------------------


def test_settings_override_per_instance():
    p = Pump(0, {"min_off_s": 10, "lockout_s": [60, 120]})
    assert (p.min_off_s, p.lockout_s) == (10, (60, 120))
    assert Pump.min_off_s == 300
    for bad in ({"min_of_s": 1}, {"max_run_s": 0}, {"lockout_s": ()}):
        with pytest.raises(ValueError):
            Pump(0, bad)


def test_names_are_protocol_names():
    """Every name the module can emit is in jkproto.objects' tables."""
    tree = ast.parse(Path(pm.__file__).read_text())
    names = {
        n.value
        for n in ast.walk(tree)
        if isinstance(n, ast.Constant)
        and isinstance(n.value, str)
        and n.value.isidentifier()
        and n.value.islower()
    }
    known = set(ob.EVENTS) | set(ob.REASONS) | set(ob.STATES)
    assert names <= known | set(pm.SETTINGS) | set(pm.MODES)
    assert {"pump_start", "tank_low", "dry_run", "power_return"} <= names
    events = {pm.START, pm.STOP, pm.RAISED, pm.CLEARED, pm.MODE, pm.LOCKOUT}
    assert events | {pm.LOCKOUT_END} <= set(ob.EVENTS)
    assert set(pm.SOURCES) <= set(ob.REASONS)


# --- real MicroPython ------------------------------------------------------------

SCENARIO = textwrap.dedent(
    """
    from jkfw.pump import Pump
    p = Pump(0)
    sw = [False, False, False, False, True]  # dry low high broken mains
    seed = 12345
    def rnd(n):
        global seed
        seed = (seed * 1103515245 + 12345) & 0x7FFFFFFF
        return seed % n
    t = 0
    for i in range(3000):
        k = rnd(12)
        if k < 5:
            sw[k] = rnd(4) != 0 if k == 4 else rnd(3) == 0
            p.inputs(t, *sw)
        elif k < 7:
            p.flow(t, rnd(3))
        elif k == 7:
            p.command(t, ("auto", "on", "off")[rnd(3)], ("button", "sms")[rnd(2)])
        elif k == 8 and i % 50 == 0:
            p = Pump(t, {"max_run_s": 3000}, p.saved(t))
        for e in p.step(t):
            print(t, e[0], e[1], e[2])
        n = p.next_s(t)
        t += rnd(400) if n is None else min(n, rnd(400))
    print(t, p.state, p.why, p.mode, p.relay, p.lockout_left_s(t), p.saved(t))
    """
)


@pytest.mark.micropython
def test_same_events_in_micropython(mpy):
    want = subprocess.run(
        [sys.executable, "-c", SCENARIO], capture_output=True, text=True, check=True
    ).stdout
    got = mpy.run(SCENARIO, firmware_files())
    assert want.count("pump_start") > 20 and "lockout_end" in want
    assert got == want
