"""The virtual board's sensors: what the plant puts on the wires of the sensors
config.json fits (docs/sensors.md), for machine.ADC, machine.I2C's ADS1115,
machine.UART's ultrasonic sensor, the DS18B20 on 1-Wire (_onewire) and the motor's
auxiliary contact. Loaded by jkvb.sensors() on the first use of one of them, so a
board without sensors never loads it.

The physics is the simulator's own (sim/aquifer.py and sim/probes.py, copied into
the vboard's built-in folder by `jalkal vboard`, not rewritten here): the borewell
is an aquifer.Aquifer pumped while the motor runs (Cooper-Jacob drawdown and
recovery), the 4-20 mA transducers are aquifer.LoopTransducer (NAMUR currents,
open 0 mA, short 25 mA, out of water 4 mA), the tank is jkvb's tank seen through
the config's geometry, the water's EC, pH and temperature are aquifer.Quality, the
motor is aquifer.Motor (start delay, inrush, tripped, bypassed), the panel is
aquifer.Sun; the wires carry them as probes.Probes functions (volts per GPIO and
per ADS1115 input, the sonar's mm, the water's C, the motor's amps, the contact).

The hardware on the far side of the wires is fixed, as an installer fitted it: the
EC board gives 1 V per 1000 uS/cm (at the water's temperature), the pH board 2.5 V
at pH 7 and -5.7 pH per volt (at 25 C; the electrode's Nernst slope follows the
temperature), the CT is an SCT-013-030 (30 A per volt) on a 1.65 V mid-rail bias.
What config.json calibrates (pH and EC lines, zero_ma, amps_per_volt) is the
board's business: a wrong calibration reads wrong, as on site. The shunts, the
dividers' resistors and the sonar's mounting height are the wiring, so they come
from config.json (the board wired as its config says).

The sonar answers in the serial mode config.json's tank.sonar names, as an
installer fits the sensor to its config; Sensors.sonar_mode("trigger" | "auto")
fits one with the other R27 (a misconfigured board).

Faults (jkvb.fault(sensor, kind)): bore, tank, ec, ph, temp take the simulator's
kinds (open, short, drift, stuck, noise, dry: aquifer.Fault); motor takes trip and
bypass. State that must outlive a soft reset (faults, pumping periods, the motor's
relay) is kept in the plant's saved state (jkvb.Plant.extra)."""

import json
import math

import aquifer
import probes

EC_UV_PER_V = 1000.0  # the EC board: uS/cm (at the water's temperature) per volt
PH_SLOPE = -5.7  # the pH board: pH per volt at 25 C ...
PH_OFFSET = 21.25  # ... and pH at 0 V (pH 7 at 2.5 V)
CT_A_PER_V = 30.0  # SCT-013-030
CT_BIAS_V = 1.65  # two 10 k from 3.3 V
MAINS_HZ = 50
MOTOR_A = 8.0  # the motor's rated current
LIFT_LPM = 300.0  # the pump's 5 L/s, drawn from the aquifer
SUPPLY_V = 12.2
BATTERY_V = 12.8
WATER_M = 21.0  # rest level, metres below ground (the sensors scenario's)
AQUIFER = {"T": 25.0, "S": 0.01}  # m^2/day, storativity (sim/scenarios' sensors)
SHUNT = 100  # ohm: config's default
SENSORS = ("bore", "tank", "ec", "ph", "temp", "motor")
MOTOR_FAULTS = ("trip", "bypass")
SONAR_MODES = ("auto", "trigger")  # probes.SimSonarUart's serial modes
ADS_ADDR = 72
SAMPLES = 4000  # borewell truth rows kept (this interpreter's)


def _analog(where, role, pins):
    """("pin", GPIO) or ("ads", channel) of an input (sensorcfg's "adc"/"adsN")."""
    if where == "adc":
        n = pins.get(role)
        return ("pin", n) if isinstance(n, int) else None
    if isinstance(where, str) and len(where) == 4 and where[:3] == "ads":
        return ("ads", int(where[3]))
    return None


class Sensors:
    def __init__(self, plant, cfg, tz_s, now, utc):
        self.plant = plant
        self.cfg = cfg
        self.tz_s = tz_s
        self.now = now  # board seconds (the plant's time)
        self.utc = utc
        pins = cfg.get("pins") if isinstance(cfg.get("pins"), dict) else {}
        self.pins = pins
        st = plant.extra
        self.st = st
        st.setdefault("faults", {})
        st.setdefault("water_m", WATER_M)
        self.aquifer = aquifer.Aquifer(static_m=st["water_m"], **AQUIFER)
        self.aquifer.periods = st.setdefault("periods", [])
        q = self.aquifer.periods
        if q and q[-1][1] is None:
            self.aquifer.q_now = q[-1][2]
        self.quality = aquifer.Quality()
        self.sun = aquifer.Sun()
        self.motor = aquifer.Motor(rated_a=MOTOR_A)
        relay = st.get("relay")
        if relay:
            self.motor.relay, self.motor.relay_t = relay[0], relay[1]
        if self.motor.relay != plant.pump:  # the relay moved before we looked
            self.motor.set_relay(now(), plant.pump)
        self._fault_models()
        self.samples = []  # (UTC s, true depth m, loop mA) of the borewell's reads
        self.p = probes.Probes()
        self.ads_addr = cfg.get("ads_addr", ADS_ADDR)
        self.p.ads_addr = self.ads_addr
        self.wire()

    # --- state
    def save(self):
        self.st["periods"] = self.aquifer.periods
        self.st["relay"] = [self.motor.relay, self.motor.relay_t]
        self.plant.save()

    def _fault_models(self):
        f = self.st["faults"]
        self.models = {}
        for k in ("bore", "tank", "ec", "ph", "temp"):
            spec = f.get(k)
            faults = [aquifer.Fault(spec[0], spec[1], None, spec[2])] if spec else []
            dry = 10.5 if k == "ph" else 0.0  # a dry pH electrode wanders off
            self.models[k] = aquifer.Sensor(faults, len(k), dry)
        self.loops = {}
        for k in ("bore", "tank"):
            c = self.cfg.get(k) if isinstance(self.cfg.get(k), dict) else {}
            rng = c.get("range_m", 5.0 if k == "tank" else 50.0)
            self.loops[k] = aquifer.LoopTransducer(rng, self.models[k].faults, len(k))
        m = f.get("motor")
        self.motor.tripped = bool(m) and m[0] == "trip"
        self.motor.bypassed = bool(m) and m[0] == "bypass"

    def fault(self, sensor, kind=None, rate=0.0):
        if sensor not in SENSORS:
            raise ValueError("unknown sensor %r (one of %s)" % (sensor, SENSORS))
        kinds = MOTOR_FAULTS if sensor == "motor" else aquifer.Fault.KINDS
        if kind is not None and kind not in kinds:
            raise ValueError("unknown %s fault %r (one of %s)" % (sensor, kind, kinds))
        self.sync()
        if kind is None:
            self.st["faults"].pop(sensor, None)
        else:
            self.st["faults"][sensor] = [kind, self.now(), float(rate)]
        self._fault_models()
        self.sync()
        self.save()

    def sonar_mode(self, mode=None):
        """The tank sonar's serial mode as fitted (a JSN-SR04T's R27): "auto"
        (47k: a frame every 100 ms) or "trigger" (120k: one frame per 0x55); None:
        the one config.json's tank.sonar names. Kept across soft resets."""
        if mode is not None and mode not in SONAR_MODES:
            raise ValueError("sonar mode %r: one of %s" % (mode, SONAR_MODES))
        if mode is None:
            self.st.pop("sonar_mode", None)
        else:
            self.st["sonar_mode"] = mode
        tank = self.cfg.get("tank") or {}
        self.p.sonar_mode = mode or tank.get("sonar", "auto")
        self.save()

    def set_water(self, metres):
        self.sync()
        self.st["water_m"] = float(metres)
        self.aquifer.static_m = float(metres)
        self.save()

    # --- the motor and the aquifer follow the relay
    def relay(self, t, on):
        self.sync(t)
        self.motor.set_relay(t, on)
        self.sync(t)
        self.save()

    def sync(self, t=None):
        """The aquifer pumped while the motor runs: a start delay_s after the relay
        closes, a stop when it opens (or never, tripped; always, bypassed)."""
        if t is None:
            t = self.now()
        m = self.motor
        run = m.running(t)
        was = bool(self.aquifer.q_now)
        if run != was:
            at = t
            if run and m.relay and not m.bypassed:
                at = min(t, m.relay_t + m.delay)
            elif not run and not m.relay:
                at = min(t, m.relay_t)
            self.aquifer.pump(at, LIFT_LPM if run else 0)
            self.aquifer.prune(t)
            self.save()

    def lifts(self, t=None):
        """The pump lifts water at t (board s, default now): its motor runs (not
        tripped, started after its contactor) and the borewell's water is above
        the intake (config's bore.intake_m, where one is given)."""
        t = self.now() if t is None else t
        if not self.motor.running(t):
            return False
        b = self.cfg.get("bore") or {}
        return not b.get("intake_m") or self.aquifer.depth(t) < b["intake_m"]

    def next_change(self, t, end):
        """The motor's start between t and end (the plant integrates up to it)."""
        m = self.motor
        at = m.relay_t + m.delay
        if m.relay and not (m.tripped or m.bypassed) and t < at < end:
            return at
        return end

    # --- the true values
    def depth(self, t=None):
        t = self.now() if t is None else t
        self.sync(t)
        return self.aquifer.depth(t)

    def tank_level_m(self):
        c = self.cfg.get("tank") or {}
        self.plant.advance()
        litres = self.plant.tank
        if c.get("shape", "vertical") == "rect":
            area = c.get("length_m", 0) * c.get("width_m", 0)
        else:
            area = math.pi * c.get("diameter_m", 0) ** 2 / 4
        if area <= 0:
            return 0.0
        return min(litres / 1000 / area, c.get("height_m", 1e9))

    def _qt(self):
        return self.utc() + self.tz_s  # local seconds: the models' day of the year

    # --- what the wires carry
    def _loop_v(self, key):
        c = self.cfg.get(key) or {}
        t = self.now()
        if key == "bore":
            self.sync(t)
            head = self.aquifer.head_above(t, c.get("install_m", 0.0))
        else:
            head = self.tank_level_m()
        ma = self.loops[key].ma(t, head)
        if key == "bore":  # ground truth: every sample the transducer gave
            self.samples.append((self.utc(), self.aquifer.depth(t), ma))
            if len(self.samples) > SAMPLES:
                del self.samples[: SAMPLES // 2]
        return ma / 1000 * c.get("shunt_ohm", SHUNT)

    def _sonar_mm(self):
        c = self.cfg.get("tank") or {}
        seen = self.models["tank"].observe(self.now(), self.tank_level_m())
        if seen is None:
            return None
        return c.get("mount_mm", 0) - seen * 1000

    def water_c(self):
        return self.quality.temp(self._qt())

    def _temp_c(self):
        return self.models["temp"].observe(self.now(), self.water_c())

    def _ec_v(self):
        ec = self.models["ec"].observe(self.now(), self.quality.ec(self._qt()))
        return None if ec is None else max(0.0, ec) / EC_UV_PER_V

    def _ph_v(self):
        ph = self.models["ph"].observe(self.now(), self.quality.ph(self._qt()))
        if ph is None:
            return None
        temp = self.water_c()
        raw = 7 + (ph - 7) * (temp + 273.15) / (25.0 + 273.15)
        return (raw - PH_OFFSET) / PH_SLOPE

    def amps(self):
        t = self.now()
        self.sync(t)
        return self.motor.current(t)

    def running(self):
        t = self.now()
        self.sync(t)
        return self.motor.running(t)

    def _ct_v(self):
        a = self.amps()
        w = 2 * math.pi * MAINS_HZ * self.now()
        return CT_BIAS_V + a * math.sqrt(2) / CT_A_PER_V * math.sin(w)

    def panel_v(self):
        return aquifer.Sun.panel_volts(self.sun.irradiance(self._qt()))

    def wire(self):
        """The probes.Probes functions for each configured sensor's input."""
        c, p, pins = self.cfg, self.p, self.pins

        def put(where, role, fn):
            a = _analog(where, role, pins)
            if a is None:
                return
            if a[0] == "pin":
                p.pin_volts[a[1]] = fn
            else:
                p.ads_volts[a[1]] = fn

        bore, tank, q = c.get("bore"), c.get("tank"), c.get("quality")
        if isinstance(bore, dict):
            put(bore.get("in"), "bore_adc", lambda: self._loop_v("bore"))
        if isinstance(tank, dict):
            if tank.get("in") == "sonar":
                p.sonar_mm = self._sonar_mm
                p.sonar_mode = self.st.get("sonar_mode") or tank.get("sonar", "auto")
            else:
                put(tank.get("in"), "tank_adc", lambda: self._loop_v("tank"))
        if isinstance(q, dict):
            if q.get("ec_in"):
                put(q["ec_in"], "ec_adc", self._ec_v)
            if q.get("ph_in"):
                put(q["ph_in"], "ph_adc", self._ph_v)
            if q.get("temp"):
                p.temp_c = self._temp_c
        m = c.get("motor")
        if isinstance(m, dict):
            if m.get("sense") == "ct" and isinstance(pins.get("ct_adc"), int):
                p.pin_volts[pins["ct_adc"]] = self._ct_v
            p.amps = self.amps
            p.contact = self.running
        volts = c.get("volts")
        if isinstance(volts, dict):
            for name, level in (("supply", lambda: SUPPLY_V), ("panel", self.panel_v),
                                ("battery", lambda: BATTERY_V)):  # fmt: skip
                d = volts.get(name)
                if not isinstance(d, dict):
                    continue
                top, bottom = d.get("r_top", 0), d.get("r_bottom", 1) or 1
                k = bottom / (top + bottom)
                put(d.get("in", "adc"), name + "_adc", lambda f=level, k=k: f() * k)

    # --- for the stand-ins
    def ads_present(self, addr):
        return addr == self.ads_addr and bool(self.p.ads_volts)

    def ads_volts(self, channel):
        fn = self.p.ads_volts.get(channel)
        v = fn() if fn else None
        return 0.0 if v is None else v  # an open input reads about 0 V

    def pin_fn(self, gpio):
        return self.p.pin_volts.get(gpio)

    def sonar_on(self, rx):
        return self.p.sonar_mm is not None and rx == self.pins.get("sonar_rx")

    def onewire_on(self, gpio):
        return self.p.temp_c is not None and gpio == self.pins.get("onewire")

    def onewire_short(self):
        f = self.models["temp"].fault_at(self.now())
        return f is not None and f.kind == "short"  # the data line held low

    def contact_level(self):
        """The motor_aux wire: the contact to ground on a pulled-up pin (closed 0),
        or the other way round when config.json says aux_sense 1."""
        m = self.cfg.get("motor") or {}
        closed = self.running()
        sense = m.get("aux_sense", 0)
        return (0 if closed else 1) if sense == 0 else (1 if closed else 0)

    def truth(self):
        """The true values behind each configured sensor (for tests and people)."""
        t = self.now()
        c = self.cfg
        out = {"t": t}
        if c.get("bore"):
            b = c["bore"]
            d = self.depth(t)
            out["bore_depth_m"] = d
            out["bore_head_m"] = max(0.0, b.get("install_m", 0.0) - d)
        if c.get("tank"):
            self.plant.advance()
            out["tank_l"] = self.plant.tank
            out["tank_level_m"] = self.tank_level_m()
        if c.get("quality"):
            qt = self._qt()
            out["water_c"] = self.water_c()
            out["ec25_us"] = self.quality.ec25(qt)
            out["tds_mgl"] = self.quality.tds(qt)
            out["ph"] = self.quality.ph(qt)
        if c.get("motor"):
            out["motor_a"] = self.amps()
            out["motor_running"] = self.running()
        if c.get("volts"):
            out["supply_v"] = SUPPLY_V
            out["battery_v"] = BATTERY_V
            out["panel_v"] = self.panel_v()
        self.plant.advance()
        out["source_l"] = self.plant.litres["source"]  # what the pump lifted
        out["faults"] = json.loads(json.dumps(self.st["faults"]))
        return out
