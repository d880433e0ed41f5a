"""Property tests of the pump controller over random timed input sequences.

A driver plays the firmware loop: switch changes, meter reads, power cuts,
reboots (a new Pump, given what the old one persisted), button and remote
commands, with time advanced to random points but never past next_s() (the
firmware sleeps exactly that long). After every step it checks the safety
invariants on the relay timeline it records itself, against a small model of
the rules written from the spec, not against the Pump's own claims:

1 relay off until the first inputs();  2 never on with dry/high/broken/no mains;
3 min_off_s between a stop and the next start (a boot counts as a stop);
4 no run reaches max_run_s;  5 no start before the dry-run/no-flow lockout
(with back-off) is over;  6 each relay change is one pump_start/pump_stop with
the right reason;  7 no run goes no_flow_s without pulses, and such a stop
raises the fault;  8 commands are part of every sequence;  9 never on while
the borewell level sensor says the water is at the intake + margin, and a level
sensor in fault (no verdict) never lets it start where a float forbids it;
10 the tank level sensor's verdicts (below the low mark: fill; at the high mark:
full; in fault: none) act as the floats' latch and never override the high float
(a "fill" with it up is not believed until the sensor says "full"), so a tank
sensor fault never lets it start where a float forbids it; 11 a solar
scheme's "no sun" and "battery low" hold it off and stop it with their own
reasons, and never start a lockout or count in the dry-run/no-flow back-off.
Also: next_s() is never late (a probe step before it does nothing) and never
wakes for nothing, and the pump does run whenever the model says nothing holds it.
"""

from __future__ import annotations

import random

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from jkfw.pump import SETTINGS, Pump
from jkproto import objects as ob

DEFAULTS = {k: getattr(Pump, k) for k in SETTINGS}
FAST = settings(
    max_examples=200, deadline=None, suppress_health_check=list(HealthCheck)
)
SLOW = settings(
    max_examples=10_000, deadline=None, suppress_health_check=list(HealthCheck)
)
SWITCHES = ("dry", "low", "high", "broken", "mains")
ACTIONS = ("sw",) * 8 + ("sws", "plant", "flow", "flow", "cmd", "cmd", "reboot", "wait")
ACTIONS += ("level", "level", "tank", "tank", "solar", "solar")
# the borewell level sensor's verdicts (jkfw.measure): low, enough water, and a
# sensor fault (no verdict: the measure task passes False and the floats guard)
LEVELS = (True, False, None)
# the tank level sensor's verdicts: below the low mark, at the high mark, a fault
FILLS = (True, False, None)


class HypChooser:
    def __init__(self, data):
        self.data = data

    def int(self, lo, hi):
        return self.data.draw(st.integers(lo, hi))

    def pick(self, seq):
        return self.data.draw(st.sampled_from(seq))


class RandChooser:
    def __init__(self, seed):
        self.rng = random.Random(seed)

    def int(self, lo, hi):
        return self.rng.randint(lo, hi)

    def pick(self, seq):
        return self.rng.choice(seq)


def draw_settings(ch):
    if ch.pick((True, False)):
        return dict(DEFAULTS)

    def edge_or(lo, hi):  # the edges (0, 1) often: that is where the bugs hide
        v = ch.pick((lo, lo + 1, None, None, None))
        return ch.int(lo, hi) if v is None else v

    return {
        "min_off_s": edge_or(0, 400),
        "max_run_s": edge_or(1, 3000),
        "no_flow_s": edge_or(1, 300),
        "restart_delay_s": edge_or(0, 400),
        "lockout_s": tuple(edge_or(1, 3000) for _ in range(ch.int(1, 5))),
        "lockout_reset_run_s": edge_or(0, 1500),
    }


class Driver:
    """Plays the firmware loop around a Pump and checks every step."""

    def __init__(self, cfg, flow_every_s):
        self.cfg = cfg
        self.flow_every_s = flow_every_s
        self.t = 0
        self.sw = dict(dry=False, low=False, high=False, broken=False, mains=True)
        self.plant_flow = True  # the well gives water when the pump runs
        self.bore_low = False  # the level sensor's verdict, as last given
        self.tank_fault = False  # the tank level sensor's last verdict was none
        self.doubt = False  # it said "fill" with the high float up
        self.no_sun = self.batt_low = False  # solar: the panel, the battery
        self.relay = False  # the relay timeline, as recorded here
        self.on_t = self.last_flow_t = None
        self.flowed = False
        # the model: operator mode, tank latch, back-off, lockout, no-flow fault
        self.mode, self.off_src, self.demand = "auto", None, None
        self.k, self.lock_until, self.fault = 0, None, False
        self.faults = []  # fault events the model expects from the next step
        self.snap = ("auto", 0, 0, False)  # the model as last persisted
        self.persisted = None
        self.seen = set()  # (event, reason) pairs, for coverage checks
        self._boot(None)

    def _boot(self, saved):
        self.p = Pump(self.t, self.cfg, saved)
        assert not self.p.relay  # (1)
        assert self.p.step(self.t) == [] and self.p.next_s(self.t) is None
        self.known = False
        self.wire = False  # the wire_break fault, as the model last reported it
        self.fed_mains = True
        # a boot counts as a stop and a power return: the board cannot know better
        self.last_off_t = self.mains_t = self.t

    # --- actions
    def inputs(self, **sw):
        self.sw.update(sw)
        self.p.inputs(self.t, **self.sw)
        if self.sw["mains"] and not self.fed_mains:
            self.mains_t = self.t
        self.fed_mains = self.sw["mains"]
        if self.sw["high"]:
            self.demand = False
        elif self.sw["low"]:
            self.demand = True
        self.known = True
        self.step()

    def level(self, low):
        """The borewell level sensor: low (True), enough water (False), or in
        fault (None): a fault gives no verdict, so it can only lift what the
        sensor itself held, never what a float holds."""
        self.bore_low = bool(low)
        self.p.level(self.t, low)
        self.step()

    def tank(self, fill):
        """The tank level sensor: fill (below its low mark), full (at its high
        mark), or in fault (None: no verdict, the floats alone)."""
        self.tank_fault = fill is None
        self.p.tank(self.t, fill)
        if fill is False:
            self.demand = False
            self.doubt = False
        elif fill and self.known:
            if self.sw["high"]:  # contradicts the high float: not believed
                self.doubt = True  # until it says full again
            elif not self.doubt:
                self.demand = True
        self.step()

    def solar(self, sun, battery):
        self.no_sun, self.batt_low = not sun, not battery
        self.p.solar(self.t, sun, battery)
        self.step()

    def flow(self, pulses):
        self.p.flow(self.t, pulses)
        if pulses > 0 and self.relay:
            self.last_flow_t = self.t
            self.flowed = True
            if self.fault:
                self.fault = False
                self.faults.append(("fault_cleared", "no_flow", 0))

    def command(self, cmd, src):
        self.p.command(self.t, cmd, src)
        if cmd == "on":
            self.demand = True
        if cmd != self.mode:
            self.mode = cmd
            if cmd == "off":
                self.off_src = src
        self.step()

    def reboot(self):
        self.relay = False  # the board lost power: the relay dropped, no event
        self.faults = []  # a queued event is lost with the RAM, as on the board
        mode, self.k, left, self.fault = self.snap
        self.mode = mode
        self.demand = True if mode == "on" else None
        self.lock_until = self.t + left if left > 0 else None
        self.bore_low = False  # a new Pump: no verdict until the sensor is read
        self.no_sun = self.batt_low = self.doubt = False
        self._boot(self.persisted)

    # --- time
    def advance(self, target, probe):
        """Run the loop up to target: meter reads and next_s() wake-ups."""
        while True:
            n = self.p.next_s(self.t)
            due = None if n is None else self.t + n
            fe = self.flow_every_s
            tick = (self.t // fe + 1) * fe if self.relay else None
            times = [x for x in (due, tick) if x is not None and x <= target]
            if not times:
                break
            self.t = min(times)
            if self.t == tick:
                self.flow(1 if self.plant_flow else 0)
            ev = self.step()
            if self.t == due and self.t != tick:
                assert ev, "next_s() woke the caller for nothing"
        self.t = target
        if probe:
            assert self.step() == [], "next_s() was late"

    # --- the checks
    def cause(self):
        """Why the recorded relay had to stop now, by the spec's priorities."""
        sw, t, c = self.sw, self.t, self.cfg
        if sw["broken"]:
            return "wire_break"
        if not sw["mains"]:
            return "power_loss"
        if sw["dry"]:
            return "dry_run"
        if self.bore_low:
            return "bore_low"
        if sw["high"]:
            return "tank_full"
        if self.batt_low:
            return "battery_low"
        if self.no_sun:
            return "no_sun"
        if self.mode == "off":
            return self.off_src
        if self.demand is not True:
            return "tank_full"
        if t - self.on_t >= c["max_run_s"]:
            return "max_run"
        if t - self.last_flow_t >= c["no_flow_s"]:
            return "no_flow"
        raise AssertionError("the pump stopped for no reason at %d" % t)

    def step(self):
        t, sw, c = self.t, self.sw, self.cfg
        if self.known:
            if self.mode == "on" and (sw["high"] or self.demand is False):
                self.mode = "auto"  # manual on ends when the tank is full
            lock_ended = self.lock_until is not None and t >= self.lock_until
            if lock_ended:
                self.lock_until = None
        ev = self.p.step(t)
        for name, why, value in ev:
            assert name in ob.EVENTS and name and why in ob.REASONS
            assert type(value) is int and value >= 0
            self.seen.add((name, why))
        if self.known and lock_ended:
            assert ("lockout_end", "retry", 0) in ev
        on = self.p.relay
        starts = [e for e in ev if e[0] == "pump_start"]
        stops = [e for e in ev if e[0] == "pump_stop"]
        if not self.known:
            assert not on, "(1) relay on before the inputs are known"
        if on:
            assert sw["mains"], "(2) relay on without mains"
            assert not (sw["dry"] or sw["high"] or sw["broken"]), "(2) unsafe input"
            assert not self.bore_low, "(9) relay on with the borewell at the intake"
            assert not (self.no_sun or self.batt_low), "(11) on with no sun/battery"
        stopped = False
        if on and not self.relay:
            assert len(starts) == 1 and not stops, "(6) %r" % (ev,)
            assert t - self.last_off_t >= c["min_off_s"], "(3) min off"
            assert t - self.mains_t >= c["restart_delay_s"], "restart delay"
            assert self.lock_until is None, "(5) start in a lockout"
            assert self.mode != "off" and self.demand is True, "start not wanted"
            if self.tank_fault:  # (10) the floats alone decide
                assert not (sw["high"] or sw["dry"]), "(10) start a float forbids"
            self.on_t = self.last_flow_t = t
            self.flowed = False
        elif self.relay and not on:
            assert len(stops) == 1 and not starts, "(6) %r" % (ev,)
            why = self.cause()
            run_s = t - self.on_t
            assert stops[0] == ("pump_stop", why, run_s), "(6) reason"
            if run_s >= c["lockout_reset_run_s"] and self.flowed:
                self.k = 0
            if why in ("dry_run", "no_flow"):
                lock = c["lockout_s"]
                wait = lock[min(self.k, len(lock) - 1)]
                self.k += 1
                self.lock_until = t + wait
                assert ("lockout", why, wait) in ev, "(5) back-off"
                if why == "no_flow" and not self.fault:
                    self.fault = True
                    self.faults.append(("fault_raised", "no_flow", 0))
            else:  # (11) no sun, battery low, tank full...: never a lockout
                assert not [e for e in ev if e[0] == "lockout"], "(11) lockout"
            self.last_off_t = t
            stopped = True
        else:
            assert not starts and not stops, "(6) event without a relay change"
        if self.known and sw["broken"] != self.wire:
            self.wire = sw["broken"]
            raised = "fault_raised" if self.wire else "fault_cleared"
            self.faults.append((raised, "wire_break", 0))
        faults = [e for e in ev if e[0] in ("fault_raised", "fault_cleared")]
        assert sorted(faults) == sorted(self.faults), "(7) fault events"
        self.faults = []
        self.relay = on
        if on:
            assert t - self.on_t < c["max_run_s"], "(4) max run"
            assert t - self.last_flow_t < c["no_flow_s"], "(7) no flow"
        held = (
            not self.known
            or stopped
            or not sw["mains"]
            or sw["dry"]
            or sw["high"]
            or sw["broken"]
            or self.bore_low
            or self.no_sun
            or self.batt_low
            or self.mode == "off"
            or self.demand is not True
            or self.lock_until is not None
            or t < self.last_off_t + c["min_off_s"]
            or t < self.mains_t + c["restart_delay_s"]
        )
        assert on or held, "nothing holds the pump, yet it is off"
        if self.known:
            assert self.p.mode == self.mode
        if ev:  # the firmware persists saved() whenever step() returned events
            self.persisted = self.p.saved(t)
            left = 0 if self.lock_until is None else self.lock_until - t
            self.snap = (self.mode, self.k, left, self.fault)
        return ev


def play(ch, n_actions):
    cfg = draw_settings(ch)
    # meter reads: mostly often enough for a run to last, at most 300 per run
    lo = max(1, cfg["no_flow_s"] // 4, cfg["max_run_s"] // 300)
    every = ch.int(lo, max(lo, 2 * cfg["no_flow_s"]))
    d = Driver(cfg, every)
    horizon = max(cfg["max_run_s"], max(cfg["lockout_s"]), cfg["min_off_s"]) + 200
    for _ in range(n_actions):
        how = ch.pick(("zero", "small", "big", "next", "next", "next"))
        dt = {"zero": 0, "small": ch.int(1, 60), "big": ch.int(1, 2 * horizon)}.get(how)
        if dt is None:
            n = d.p.next_s(d.t)
            dt = ch.int(0, 60) if n is None else max(0, n + ch.int(-1, 1))
        d.advance(d.t + dt, ch.pick((True, False)))
        kind = ch.pick(ACTIONS)
        if kind == "sw":
            name = ch.pick(SWITCHES)
            d.inputs(**{name: not d.sw[name]})
        elif kind == "sws":
            d.inputs(**{name: ch.pick((True, False)) for name in SWITCHES})
        elif kind == "level":
            d.level(ch.pick(LEVELS))
        elif kind == "tank":
            d.tank(ch.pick(FILLS))
        elif kind == "solar":  # mostly sun and a good battery, as in the field
            d.solar(ch.pick((True, True, False)), ch.pick((True, True, True, False)))
        elif kind == "plant":
            d.plant_flow = not d.plant_flow
        elif kind == "flow":
            d.flow(ch.int(0, 3))
            d.step()
        elif kind == "cmd":
            d.command(
                ch.pick(("auto", "on", "off")), ch.pick(("button", "command", "sms"))
            )
        elif kind == "reboot":
            d.reboot()
        else:
            d.step()
    return d


@FAST
@given(data=st.data())
def test_invariants_hold_for_every_sequence(data):
    play(HypChooser(data), data.draw(st.integers(1, 80)))


@pytest.mark.slow
@SLOW
@given(data=st.data())
def test_invariants_hold_for_every_sequence_long(data):
    play(HypChooser(data), data.draw(st.integers(1, 200)))


def test_the_driver_reaches_every_behaviour():
    """The random driver is not vacuous: every stop and fault reason happens."""
    seen = set()
    for seed in range(300):
        seen |= play(RandChooser(seed), 80).seen
    want = {
        ("pump_start", "tank_low"), ("pump_start", "retry"),
        ("pump_start", "power_return"), ("pump_start", "button"),
        ("pump_stop", "tank_full"), ("pump_stop", "dry_run"),
        ("pump_stop", "max_run"), ("pump_stop", "no_flow"),
        ("pump_stop", "power_loss"), ("pump_stop", "wire_break"),
        ("pump_stop", "sms"), ("lockout", "dry_run"), ("lockout", "no_flow"),
        ("lockout_end", "retry"), ("fault_raised", "no_flow"),
        ("fault_cleared", "no_flow"), ("fault_raised", "wire_break"),
        ("fault_cleared", "wire_break"), ("mode_change", "tank_full"),
        ("pump_stop", "bore_low"), ("pump_stop", "no_sun"),
        ("pump_stop", "battery_low"),
    }  # fmt: skip
    assert want <= seen, want - seen
