"""The physical side of a village scheme, stepped every few seconds of virtual time:
a borewell that draws down and recovers, a pump that needs mains power, a tank with
low/high float switches, a village drawing water on a diurnal profile, and meters
turning volume into pulses. It keeps the ground truth: the exact litres through the
supply meter in each local day, and a trace of everything physical that happened.

The scenario plant, and the only one `jalkal sim` runs. Why the simulator has a
small plant beside it (jksim.minivillage.Tank): this one needs CPython (its demand
varies from day to day by random.Random(seed).gauss; MicroPython's random has no
Random and no gauss), and its scenario, fault and truth machinery would be counted
as the board's heap where the firmware runs in MicroPython."""

import random

from jkproto.codec import civil

from .hw import SimPin

TICK_MS = 10000
# share of a day's demand in each hour: morning and evening peaks, little at night
PROFILE = (
    0.5, 0.3, 0.3, 0.3, 0.6, 2.0, 4.2, 4.0, 3.0, 2.0, 1.5, 1.3,
    1.3, 1.2, 1.1, 1.2, 1.8, 3.2, 3.6, 2.6, 1.6, 1.0, 0.7, 0.6,
)  # fmt: skip
_PSUM = sum(PROFILE)


class Plant:
    def __init__(self, sc, clock, hal, rng=None):
        self.sc = sc
        self.clock = clock
        self.hal = hal
        self.rng = rng or random.Random(sc["seed"])
        s = sc["scheme"]
        self.pump_lpm = s["pump_lpm"]
        self.tank_l = s["tank_litres"]
        self.level = s["tank_start"] * self.tank_l
        self.low_l = s["low_frac"] * self.tank_l
        self.high_l = s["high_frac"] * self.tank_l
        b = sc["borewell"]
        self.well_l = b["storage_litres"]  # water above the dry-run probe
        self.well_max = b["storage_litres"]
        self.recharge_lpm = b["recharge_lpm"]
        self.lpp = (s["source_litres_per_pulse"], s["litres_per_pulse"])
        self.frac = [0.0, 0.0]  # volume not yet worth a pulse
        self.mains = True
        self.board_alive = True
        self.recharge_factor = 1.0  # dry_borewell fault sets this to ~0
        self.float_stuck = False  # the high float jammed down: never reads full
        self.relay_welded = False  # the contact is stuck closed: the pump runs
        self.chatter = False
        self.wires_cut = set()  # switch names whose wire is cut (read as asserted)
        self.pop = sc["village"]["population"]
        self.lpcd = sc["demand"]["lpcd"]
        self.day_factor = 1.0
        self.tz_s = sc["tz_offset_min"] * 60
        self.truth = {}  # local date -> {"litres": L, "pump_s": s, "overflow_l": L}
        self.trace = []  # (utc s, what)
        self.start_utc = sc["start_utc"]
        self._state = {}
        self._day = None
        self.fitted = None  # jksim.fitted.Fitted: the borewell by its aquifer

    # --- helpers
    def utc(self, ms=None):
        return self.start_utc + (self.clock.ms if ms is None else ms) // 1000

    def _note(self, key, value, on, off):
        if self._state.get(key) != value:
            self._state[key] = value
            self.trace.append((self.utc(), on if value else off))

    def _day_rec(self, t):
        d = (t + self.tz_s) // 86400
        rec = self.truth.get(d)
        if rec is None:
            rec = self.truth[d] = {"litres": 0.0, "pump_s": 0.0, "overflow_l": 0.0}
            # each day draws a little more or less, as villages do
            self.day_factor = max(0.5, self.rng.gauss(1.0, 0.08))
        return rec

    def relay_changed(self, on):
        """The relay coil moved (hooked to the simulated HAL: exact times)."""
        self._note("relay", on or self.relay_welded, "relay_on", "relay_off")
        if self.fitted is not None:  # the contactor follows its coil at once
            self.fitted.running((on or self.relay_welded) and self.mains)

    def weld(self, on):
        """relay_stuck: the contact welds closed, whatever the coil does."""
        self.relay_welded = on
        coil = self.board_alive and self.hal.relay_is_on()
        self._note("relay", on or coil, "relay_on", "relay_off")

    def wire(self):
        """The switches and the mains sense are wired before the board powers up:
        its first reading of them is the plant's state, not an open circuit."""
        pins = self.hal.cfg["pins"]
        for name in ("dry", "low", "high"):
            if pins.get("sw_" + name) is not None:
                self.hal.switch_pins.setdefault(name, SimPin(self.clock, 1))
        if pins.get("mains_sense") is not None and self.hal.mains_pin is None:
            self.hal.mains_pin = SimPin(self.clock, 1)
        dry = self.well_l < self.pump_lpm * TICK_MS / 60000 * 0.5
        self._switches(self.fitted.dry() if self.fitted else dry)

    def start(self):
        self.hal.on_relay = self.relay_changed
        self.clock.at(TICK_MS - 1, self.tick)
        self._note("power", True, "power_on", "power_off")

    # --- one step of physics over the last TICK_MS
    def tick(self):
        dt_min = TICK_MS / 60000
        t = self.utc()
        rec = self._day_rec(t)
        relay = (self.board_alive and self.hal.relay_is_on()) or self.relay_welded
        running = relay and self.mains
        fit = self.fitted
        if fit is not None:  # the motor may be tripped or bypassed
            running = fit.running(relay and self.mains) and self.mains
        # borewell: recharge always, the pump draws what is above the probe
        self.well_l = min(
            self.well_max,
            self.well_l + self.recharge_lpm * self.recharge_factor * dt_min,
        )
        inflow = 0.0
        if running:
            inflow = min(self.pump_lpm * dt_min, self.well_l)
            self.well_l -= inflow
            rec["pump_s"] += TICK_MS / 1000
        dry = self.well_l < self.pump_lpm * dt_min * 0.5
        if fit is not None:  # the water table, not a store, says what is there
            inflow = self.pump_lpm * dt_min if running and fit.lifts() else 0.0
            dry = fit.dry()
        self._note("dry", dry, "dry", "wet")
        # the village draws on its daily profile, limited by what the tank holds
        hour = ((t + self.tz_s) // 3600) % 24
        want = (
            self.pop * self.lpcd * self.day_factor * PROFILE[hour] / _PSUM / 60 * dt_min
        )
        want *= 0.85 + 0.3 * self.rng.random()
        outflow = min(want, self.level + inflow)
        self.level += inflow - outflow
        if self.level > self.tank_l:
            rec["overflow_l"] += self.level - self.tank_l
            self.level = self.tank_l
        self._note("overflow", self.level >= self.tank_l, "overflow", "no_overflow")
        rec["litres"] += outflow
        self._meter(0, inflow)
        self._meter(1, outflow)
        self._switches(dry)
        self.clock.at(self.clock.ms + TICK_MS, self.tick)

    def _meter(self, i, litres):
        lpp = self.lpp[i]
        if lpp <= 0:
            return
        self.frac[i] += litres / lpp
        n = int(self.frac[i])
        if n:
            self.frac[i] -= n
            ctr = self.hal.counters.get(("source", "supply")[i])
            if ctr is not None:
                ctr.pulse(n)

    def _switches(self, dry):
        pins = self.hal.switch_pins
        levels = {
            "dry": dry,
            "low": self.level < self.low_l,
            "high": self.level > self.high_l and not self.float_stuck,
        }
        if self.chatter and self.low_l < self.level < self.high_l * 1.02:
            # waves on the high float near the top: it flickers
            levels["high"] = self.rng.random() < 0.5
        for name, asserted in levels.items():
            if name in self.wires_cut:
                asserted = True  # pull-up with nothing on the wire: reads asserted
            p = pins.get(name)
            if p is not None:
                p.set(1 if asserted else 0)
        if self.hal.mains_pin is not None:
            self.hal.mains_pin.set(1 if self.mains else 0)

    def set_mains(self, on):
        self.mains = on
        self._note("power", on, "power_on", "power_off")

    def days(self):
        """Truth per local day: [(YYYY-MM-DD, litres, pump_hours)]."""
        out = []
        for d in sorted(self.truth):
            rec = self.truth[d]
            y, m, dd = civil(d)
            out.append(
                ("%04d-%02d-%02d" % (y, m, dd), rec["litres"], rec["pump_s"] / 3600)
            )
        return out
