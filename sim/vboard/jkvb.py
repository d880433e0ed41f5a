"""The virtual board's hardware, on the MicroPython side: the GPIO levels, the pulse
counters, and a small water plant wired to them. Only `jalkal vboard` loads this
(from its built-in folder, with machine.py, time.py and asyncio/); it is not part of
the firmware.

The plant: a borewell pump behind the relay fills a 20,000 L tank at 5 L/s; the
village draws 1.2 L/s from 06:00 to 09:00 and 17:00 to 20:00 local time, 0.3 L/s
otherwise; the source meter counts what the pump lifts, the supply meter what the
village draws; the low switch is asserted below 5,000 L, the high switch above
18,000 L, the dry-run probe never (unless set()). Levels and flows are exact
(piecewise linear in board time), so a reading at any speed sees the same litres.

These are the numbers of the simulator's small plant (jksim.minivillage.Tank), in a
model of its own, because the virtual board is a different machine: no virtual
clock steps a plant here (the firmware runs on asyncio in board time, at any
speed), so the tank is integrated exactly from one pin or counter read to the
next; its state lives on the JavaScript side, to outlive an interpreter; and this
folder is all a vboard can import (jksim is not on it).
sim/plant.py, the scenario plant, needs CPython.

Wiring: the pins and electrical sense come from /config.json (pins, relay_active,
switch_sense, litres per pulse, tz_offset_min), as the installer wired the board to
the config; without one, from the --board file and the firmware's defaults.

State that outlives an interpreter (the tank, the meters' litres, RTC memory, the
reset cause, the clock) lives in the JavaScript object `jkvb` of vboard.mjs; what a
soft reset clears on a board (pins, counters, IRQs) lives here."""

import json

import js
import micropython

VB = js.jkvb

TANK_L = 20000.0
LOW_L = 5000.0
HIGH_L = 18000.0
START_L = 5200.0  # a little above the low mark: the pump is needed soon after boot
PUMP_LPS = 5.0
PEAK_LPS = 1.2
BASE_LPS = 0.3
PEAKS = ((6, 9), (17, 20))  # local hours of the morning and evening draw
MAX_WAIT_MS = 60000  # the loop looks at the plant at least this often
SAVE_S = 1.0  # board seconds between saves of the plant to the JavaScript side

# GPIO level -> IRQ edge
IRQ_RISING = 1
IRQ_FALLING = 2


def _read_json(path):
    try:
        with open(path) as f:
            return json.load(f)
    except (OSError, ValueError):
        return None


class Wiring:
    """Which GPIO does what, and at which level (read once per interpreter)."""

    def __init__(self):
        cfg = _read_json("/config.json")
        if not isinstance(cfg, dict):
            cfg = {}
        pins = cfg.get("pins")
        if not isinstance(pins, dict) or not pins:
            pins = json.loads(VB.pins or "{}")
        self.role = {}  # gpio -> role
        for role, n in pins.items():
            if isinstance(n, int):
                self.role[n] = role
        self.gpio = dict((r, n) for n, r in self.role.items())
        ra = cfg.get("relay_active", 1)
        self.relay_active = ra if ra in (0, 1) else 1
        sense = {"dry": 1, "low": 1, "high": 1}
        s = cfg.get("switch_sense")
        if isinstance(s, dict):
            for k in sense:
                if s.get(k) in (0, 1):
                    sense[k] = s[k]
        self.sense = sense
        self.lpp = {}
        for name in ("source", "supply"):
            v = cfg.get(name + "_litres_per_pulse", 10.0)
            self.lpp[name] = float(v) if isinstance(v, (int, float)) else 10.0
        tz = cfg.get("tz_offset_min", 330)
        self.tz_s = (tz if isinstance(tz, int) else 330) * 60
        addr = cfg.get("display_addr", 60)
        self.i2c_devices = (addr,) if isinstance(addr, int) else (60,)
        self.cfg = cfg  # the sensors' settings, for jkvbsense


class Plant:
    """The tank, pump and village between the relay, the switches and the meters."""

    def __init__(self, wiring):
        self.w = wiring
        st = VB.plant
        st = json.loads(st) if st else {}
        self.tank = st.get("tank", START_L)
        self.litres = {
            "source": st.get("source", 0.0),
            "supply": st.get("supply", 0.0),
        }
        self.dry = st.get("dry", False)
        self.mains = st.get("mains", True)
        self.t = st.get("t", None)  # board seconds (since power-on) of the state
        self.pump = False  # the relay: every reset leaves the pins floating
        self.starts = st.get("starts", 0)
        self.extra = st.get("sensors", {})  # jkvbsense's state (faults, aquifer)
        self.saved_t = -1e9
        if self.t is None:
            self.t = VB.now()

    # --- the physics
    def _demand(self, local_s):
        h = int(local_s // 3600) % 24
        for a, b in PEAKS:
            if a <= h < b:
                return PEAK_LPS
        return BASE_LPS

    def _inflow(self, at=None):
        if not (self.pump and self.mains and not self.dry):
            return 0.0
        if _sense is not None and not _sense.lifts(at):  # motor or borewell sensed
            return 0.0
        return PUMP_LPS

    def advance(self, now=None):
        """Integrate from the last state to now (board seconds)."""
        if now is None:
            now = VB.now()
        t = self.t
        if now <= t:
            return
        off = VB.utc() - VB.now() + self.w.tz_s  # board seconds -> local seconds
        inflow = self._inflow()
        while t < now:
            local = t + off
            end = min(now, t + 3600 - local % 3600)  # the demand is hourly
            if _sense is not None:  # the motor starts after its contactor
                end = _sense.next_change(t, end)
                # judged inside the span, never on its edge: at the start instant
                # itself (relay_t + delay) - relay_t can round below delay
                inflow = self._inflow((t + end) / 2)
            dt = end - t
            out = self._demand(local)
            net = inflow - out
            supplied = out * dt
            if net < 0 and self.tank + net * dt < 0:  # runs dry: only the pump's water
                te = self.tank / -net
                supplied = out * te + inflow * (dt - te)
                self.tank = 0.0
            else:
                self.tank = min(TANK_L, self.tank + net * dt)  # the rest overflows
            self.litres["source"] += inflow * dt
            self.litres["supply"] += supplied
            t = end
        self.t = now
        if now - self.saved_t >= SAVE_S:
            self.save()

    def save(self):
        self.saved_t = self.t
        VB.plant = json.dumps(
            {"tank": self.tank, "source": self.litres["source"],
             "supply": self.litres["supply"], "dry": self.dry, "mains": self.mains,
             "t": self.t, "starts": self.starts, "sensors": self.extra}
        )  # fmt: skip

    def next_s(self):
        """Board seconds until a switch may change (a threshold at the current rate,
        or the next hour's demand)."""
        off = VB.utc() - VB.now() + self.w.tz_s
        local = self.t + off
        best = 3600 - local % 3600
        net = self._inflow() - self._demand(local)
        for mark in (LOW_L, HIGH_L):
            gap = mark - self.tank
            if net and gap * net > 0:
                best = min(best, gap / net)
        return best

    # --- what the pins see
    def level(self, role):
        """The level the plant drives on a role's wire, None if it drives none."""
        w = self.w
        if role == "sw_dry":
            on = self.dry
        elif role == "sw_low":
            on = self.tank < LOW_L
        elif role == "sw_high":
            on = self.tank > HIGH_L
        elif role == "mains_sense":
            return 1 if self.mains else 0
        elif role == "motor_aux" and w.cfg.get("motor"):
            return sensors().contact_level()
        else:
            return None
        s = w.sense[role[3:]]
        return s if on else 1 - s

    def pulses(self, role):
        name = role[6:] if role in ("meter_source", "meter_supply") else None
        if name is None:
            return 0
        lpp = self.w.lpp[name]
        return int(self.litres[name] // lpp) if lpp > 0 else 0

    def relay(self, level):
        on = level == self.w.relay_active
        if on != self.pump:
            self.advance()
            self.pump = on
            if on:
                self.starts += 1
            if _sense is not None:  # the motor follows its contactor
                _sense.relay(self.t, on)
            self.save()


# --- the board: one plant per interpreter, built at the first hardware access
_wiring = None
_plant = None
_sense = None  # jkvbsense.Sensors, made on the first sensor access
pins = {}  # gpio -> machine.Pin (singletons, as on the ESP32)
counters = {}  # PCNT unit -> machine.Counter
stats = {"i2c_writes": 0, "i2c_bytes": 0, "uart_tx": 0, "ads_conversions": 0}
BUILTIN_DIR = "/.vboard"  # where vboard.mjs puts this folder (not on sys.path)


def wiring():
    global _wiring
    if _wiring is None:
        _wiring = Wiring()
    return _wiring


def plant():
    global _plant
    if _plant is None:
        _plant = Plant(wiring())
    return _plant


def builtin(name):
    """A module of the vboard's built-in folder, imported on demand."""
    import sys

    m = sys.modules.get(name)
    if m is None:
        path = sys.path
        sys.path = [BUILTIN_DIR]
        try:
            m = __import__(name)
        finally:
            sys.path = path
    return m


def has_sensors():
    """config.json fits a sensor (a key of jkfw.sensorcfg that is set)."""
    c = wiring().cfg
    return any(c.get(k) for k in ("bore", "tank", "quality", "motor", "volts"))


def sensors():
    """The sensors' plant (jkvbsense), loaded on first use: a board without
    sensors never loads it (nor the simulator's aquifer and probes)."""
    global _sense
    if _sense is None:
        w = wiring()
        _sense = builtin("jkvbsense").Sensors(plant(), w.cfg, w.tz_s, VB.now,
                                   lambda: VB.utc())  # fmt: skip
    return _sense


def fault(sensor, kind=None, rate=0.0):
    """A sensor fault from now on (kind None: cleared), as the simulator's:
    bore, tank, ec, ph, temp: open, short, drift, stuck, noise, dry; motor: trip,
    bypass. Kept across soft resets."""
    sensors().fault(sensor, kind, rate)
    step()


def truth():
    """The true values behind the configured sensors (jkvbsense.Sensors.truth)."""
    return sensors().truth()


def bore_samples(since=0.0):
    """Every borewell transducer sample since UTC `since` of this interpreter:
    [(UTC s, true depth m, loop mA)] (ground truth for the frames)."""
    return [r for r in sensors().samples if r[0] >= since]


def step():
    """Bring the plant to now and the input pins with it (IRQs scheduled)."""
    if _plant is None:
        return
    _plant.advance()
    for p in pins.values():
        p.sense()


def idle(dt):
    """asyncio's wait hook: step the hardware; dt (board ms, -1: none) bounded by
    the plant's next change, so a switch IRQ wakes the loop on time."""
    if _plant is None:
        return dt
    step()
    ms = int(_plant.next_s() * 1000) + 1
    ms = min(ms, MAX_WAIT_MS)
    return ms if dt < 0 or ms < dt else dt


def fire(handler, pin):
    """A pin IRQ: soft (scheduled), as every pin IRQ on the ESP32."""
    try:
        micropython.schedule(handler, pin)
    except RuntimeError:  # queue full: run it now rather than lose it
        handler(pin)


def set(**kw):
    """Change the plant from a test or the REPL: tank (litres), dry, mains, and
    water_m (the borewell's rest level, metres below ground)."""
    p = plant()
    p.advance()
    if "water_m" in kw:
        sensors().set_water(kw.pop("water_m"))
    for k, v in kw.items():
        if k not in ("tank", "dry", "mains"):
            raise ValueError("unknown plant setting %r" % (k,))
        setattr(p, k, float(v) if k == "tank" else bool(v))
    p.save()
    step()


def status():
    """What the plant and the fake hardware did (for tests and curious people)."""
    p = plant()
    step()
    relay = wiring().gpio.get("relay")
    return {
        "tank_l": round(p.tank, 1),
        "pump": p.pump,
        "pump_starts": p.starts,
        "source_l": round(p.litres["source"], 1),
        "supply_l": round(p.litres["supply"], 1),
        "dry": p.dry,
        "mains": p.mains,
        "low": p.tank < LOW_L,
        "high": p.tank > HIGH_L,
        "relay_pin": relay,
        "i2c_writes": stats["i2c_writes"],
        "i2c_bytes": stats["i2c_bytes"],
        "uart_tx": stats["uart_tx"],
        "ads_conversions": stats["ads_conversions"],
        "wdt_ms": VB.wdtTimeout(),
        "speed": VB.speed,
    }
