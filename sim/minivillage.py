# A small village that runs in real MicroPython as well as CPython: the controller
# booted through the board's own boot sequence (jkfw.main.start) on the virtual clock
# with simulated hardware, beside Tank, the simulator's small plant. For heap and
# interpreter-parity checks (tests/test_app_micropython.py, benchmarks/heap.py); the
# controller's tests (tests/test_app.py) use the same Tank.
import json
import os

from jkfw.main import start

from .hw import NullI2C, SimHal
from .vclock import VirtualClock

START_UTC = 1772303400  # 2026-03-01 00:00 IST


class Tank:
    """The small plant: a borewell pump behind the relay fills a 20,000 L tank at
    50 L per 10 s step, and a village draws from it: `draw` litres a step, or (None)
    12 L a step from 06:00 to 09:00 and 17:00 to 20:00 and 3 L otherwise, in hours
    since START_UTC (a local midnight). The source meter counts what the pump lifts,
    the supply meter what the village draws, 10 L a pulse; the low float is asserted
    below 5,000 L, the high float above 18,000 L, the dry-run probe while well_dry;
    the pump needs mains. In whole litres (as build() runs it) the arithmetic is
    integer, the same on both interpreters.

    Why not sim/plant.py: that is the scenario plant (an aquifer, fault injection,
    seeded day-to-day demand from random.Random().gauss, per-day ground truth):
    CPython only (MicroPython's random has neither), and too big for a village
    whose heap benchmarks/heap.py counts as the board's. The virtual board's plant
    (sim/vboard/jkvb.py) has this tank's numbers in continuous time (why: there)."""

    STEP_MS = 10000
    TANK_L = 20000
    PUMP_L = 50  # a step: 300 L/min
    LOW_L = 5000
    HIGH_L = 18000
    LPP = 10  # litres a meter pulse

    def __init__(self, clock, hal, litres=6000, draw=None):
        self.clock = clock
        self.hal = hal
        self.level = litres
        self.draw = draw
        self.well_dry = False
        self.mains = True
        self.source_pulses = 0
        self.supply_pulses = 0
        self.frac = [0, 0]  # litres not yet worth a pulse

    def start(self):
        self.clock.at(self.clock.ms + self.STEP_MS, self.tick)

    def demand(self):
        if self.draw is not None:
            return self.draw
        hour = (self.clock.ms // 3600000) % 24
        return 12 if 6 <= hour < 9 or 17 <= hour < 20 else 3

    def tick(self):
        hal = self.hal
        on = hal.relay_is_on() and self.mains and not self.well_dry
        inflow = self.PUMP_L if on else 0
        outflow = min(self.demand(), self.level + inflow)
        self.level = min(self.TANK_L, self.level + inflow - outflow)
        self.source_pulses += self.meter(0, "source", inflow)
        self.supply_pulses += self.meter(1, "supply", outflow)
        level = self.level
        for name, asserted in (
            ("dry", self.well_dry), ("low", level < self.LOW_L),
            ("high", level > self.HIGH_L),
        ):  # fmt: skip
            pin = hal.switch_pins.get(name)
            if pin is not None:
                pin.set(1 if asserted else 0)
        if hal.mains_pin is not None:
            hal.mains_pin.set(1 if self.mains else 0)
        self.clock.at(self.clock.ms + self.STEP_MS, self.tick)

    def meter(self, i, name, litres):
        """Pulses for litres through meter i (0 source, 1 supply), counted."""
        self.frac[i] += litres
        n = int(self.frac[i] // self.LPP)
        self.frac[i] -= n * self.LPP
        ctr = self.hal.counters.get(name)
        if ctr is None or not n:
            return 0
        ctr.pulse(n)
        return n


def build(board_json="board.json", key_hex="00" * 32, display="none", sensors=False,
          extra=None, fit=None):  # fmt: skip
    """(clock, hal, controller) booted through the board's own boot sequence
    (jkfw.main.start), with the tank ticking every 10 s. display: "none",
    "ssd1306" or "hd44780" on a simulated I2C bus; sensors: every sensor of
    SENSORS fitted (the board file needs their pins: the S3 DevKitC's); extra:
    more config keys; fit(hal, clock, pins): fits more hardware (a modem)."""
    for d in ("sd", "flash"):
        try:
            os.mkdir(d)
        except OSError:
            pass
    with open(board_json) as f:
        pins = json.load(f)["pins"]
    cfg = {"device": "0a1b2c3d", "key": key_hex, "pins": pins, "display": display,
           "population": 500}  # fmt: skip
    if sensors:  # (jksim.probes: loaded only then, not counted without sensors)
        from .probes import SENSORS

        cfg.update(SENSORS)
    cfg.update(extra or {})
    with open("config.json", "w") as f:
        json.dump(cfg, f)
    clock = VirtualClock(START_UTC)
    made = []

    def make_hal(cfg):
        hal = SimHal(cfg, clock)
        if sensors:
            from .probes import fit_probes

            fit_probes(hal)  # the display shares the ADS1115's bus (start_i2c)
        else:
            hal.i2c = NullI2C()
        if fit is not None:
            fit(hal, clock, pins)
        made.append(hal)
        return hal

    ctl = start(make_hal, clock, "config.json", "flash", "sd")
    Tank(clock, made[0]).start()
    return clock, made[0], ctl


def log_bytes():
    """Every SD log file, in name order, as one byte string."""
    names = sorted(os.listdir("sd/log"))
    data = b""
    for n in names:
        with open("sd/log/" + n, "rb") as f:
            data += f.read()
    return names, data
