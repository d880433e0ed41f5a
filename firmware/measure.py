# The sensors at work: read at the measure interval (medians of bursts, after the
# probes' settle times) and logged as one `measure` frame (protocol/SPEC.md, kind 7);
# the borewell level also feeds the pump's predictive dry-run stop, the tank level
# its start/stop marks, the panel and battery voltages its solar mode, and the
# motor sensor is held against the relay. Loaded by app.boot only when a sensor is
# configured; each sensor's driver is imported only when that sensor is.
from jkproto import codec

from .sensors import ABSENT, AdcVolts, Divider, burst

# no value (not fitted, or a fault) for a field of each type: objects.NO_VALUE
NO_H = 0xFFFF
NO_I = 0xFFFFFFFF
NO_T = -0x80000000
# faults bits (protocol/objects.py SENSORS)
BORE, TANK, EC, PH, TEMP, MOTOR = 1, 2, 4, 8, 16, 32
VOLT_BITS = (("supply", 64, 10), ("panel", 128, 11), ("battery", 256, 12))


def _u(v, scale, top):
    """v x scale as a field of at most top (rounded); no value when v is None."""
    if v is None:
        return NO_H if top == NO_H else NO_I
    n = int(v * scale + 0.5)
    return 0 if n < 0 else top - 1 if n >= top else n


class Measure:
    def __init__(self, ctl):
        self.ctl = ctl
        cfg, hal = ctl.cfg, ctl.hal
        self.cfg, self.hal = cfg, hal
        self.ads = None
        self.buf = [0.0] * 5
        self.bbuf = [0.0] * 5  # the borewell's own: its task reads between others
        # the frame's fields (objects.FIELDS[MEASURE]); no value until read
        self.vals = [NO_H, NO_H, NO_H, NO_I, NO_H, NO_H, NO_H, NO_T, NO_I, 0xFF,
                     NO_H, NO_H, NO_H, 0, NO_I]  # fmt: skip
        self.faults = 0
        self.low = False  # the borewell at the intake + margin (hysteresis)
        self.bore = self.tank = self.geo = self.sonar = None
        self.temp = self.ec = self.ph = self.ec_src = self.ph_src = None
        self.motor = self.watch = None
        self.volts = []
        self.marks = self.solar = None  # tank start/stop marks; the solar mode
        b = cfg["bore"]
        if b:
            from .loop420 import Loop

            src = self._src(b["in"], "bore_adc")
            self.bore = Loop(src, b["shunt_ohm"], b["range_m"], b["install_m"],
                             b["zero_ma"])  # fmt: skip
        t = cfg["tank"]
        if t:
            from .sonar import RECT, VERTICAL, Sonar, Tank

            shape = VERTICAL if t["shape"] == "vertical" else RECT
            self.geo = Tank(shape, t["height_m"], t["diameter_m"], t["length_m"],
                            t["width_m"], t["mount_mm"])  # fmt: skip
            if t["in"] == "sonar":
                self.sonar = Sonar(hal.sonar_uart())
            else:
                from .loop420 import Loop

                src = self._src(t["in"], "tank_adc")
                self.tank = Loop(src, t["shunt_ohm"], t["range_m"], 0.0, t["zero_ma"])
            if t["high_m"]:  # its own task and buffer: it reads between the others
                self.marks = (t["low_m"], t["high_m"], [0.0] * 5)
        q = cfg["quality"]
        if q:
            from . import quality

            if q["temp"]:
                self.temp = quality.Thermometer(hal.ds18x20())
            if q["ec_in"]:
                self.ec_src = self._src(q["ec_in"], "ec_adc")
                self.ec = quality.Conductivity(
                    q["ec_slope"], q["ec_offset"], q["tds_factor"], date=q["ec_date"]
                )
            if q["ph_in"]:
                self.ph_src = self._src(q["ph_in"], "ph_adc")
                self.ph = quality.PH(q["ph_slope"], q["ph_offset"], q["ph_temp_c"],
                                     q["ph_date"])  # fmt: skip
        m = cfg["motor"]
        if m:
            from . import motor

            pin = cfg["pins"]
            if m["sense"] == "ct":
                # 3.9 V full scale at 11 dB over 65535 counts (read_u16)
                self.motor = motor.CurrentTransformer(
                    hal.ct(pin["ct_adc"]), m["amps_per_volt"], 3.9 / 65535,
                    m["on_a"], m["off_a"],
                )  # fmt: skip
            else:
                self.motor = motor.AuxContact(hal.pin_in(pin["motor_aux"]),
                                              m["aux_sense"])  # fmt: skip
            self.watch = motor.Watch(m["start_s"], m["stop_s"])
        for name, bit, i in VOLT_BITS:
            d = (cfg["volts"] or {}).get(name)
            if d:
                src = self._src(d["in"], name + "_adc")
                self.volts.append((Divider(src, d["r_top"], d["r_bottom"]), bit, i))
        if cfg["solar"]:
            # [panel, battery or None, sun since (uptime s), sun, battery ok, buffer]
            div = {bit: x for x, bit, _i in self.volts}
            self.solar = [div[128], div.get(256), None, False, True, [0.0] * 5]
            # no sun until the panel has held its start voltage for the settle time
            ctl.pump.solar(ctl.clock.uptime_s(), False, True)

    def levels(self):
        """What the display shows (app.status): tank_pct and tank_l where a tank
        level sensor is fitted, bore_m (the water's depth below ground) and
        bore_low (the pump held off for it) where a borewell one is; None for a
        value the sensor does not give (a fault, or not read yet)."""
        v, out = self.vals, {}
        if self.geo:
            mm = v[2]
            pct = None if mm == NO_H else mm / (10 * self.geo.height_m)
            out["tank_pct"] = None if pct is None else min(100, int(pct + 0.5))
            out["tank_l"] = None if v[3] == NO_I else v[3]
        if self.bore:
            out["bore_m"] = None if v[1] == NO_H else v[1] / 100
            out["bore_low"] = self.low
        return out

    def _src(self, where, role):
        """An analogue input: the role's ESP32 ADC pin, or an ADS1115 channel."""
        if where == "adc":
            return AdcVolts(self.hal.adc(self.cfg["pins"][role]))
        if self.ads is None:
            from .ads1115 import ADS1115

            i2c = self.hal.start_i2c()
            self.ads = ADS1115(i2c, self.cfg["ads_addr"], wait_ms=self.hal.wait_ms)
        return self.ads.channel(int(where[3]))

    def _fault(self, bit, bad):
        self.faults = self.faults | bit if bad else self.faults & ~bit

    async def _median(self, read, settle_ms=0):
        return await burst(read, self.ctl.clock, self.buf, 5, 100, settle_ms)

    # --- the borewell: often enough for the pump, and for every frame
    async def read_bore(self):
        lp = self.bore
        ma = await burst(lp.current, self.ctl.clock, self.bbuf, 5, 100)
        head = None if ma is None else lp.from_ma(ma)
        if ma is None and not lp.fault:
            lp.fault = ABSENT
        depth = None if head is None else lp.depth_m
        self._fault(BORE, head is None)
        self.vals[0] = _u(head, 100, NO_H)
        self.vals[1] = _u(depth, 100, NO_H)
        b = self.cfg["bore"]
        if not b["intake_m"]:
            return
        stop_at = b["intake_m"] - b["margin_m"]
        if depth is None:
            low = False  # no verdict: the dry-run probe guards alone
        elif depth >= stop_at:
            low = True
        elif depth <= stop_at - b["restart_m"]:
            low = False
        else:
            low = self.low
        self.low = low
        ctl = self.ctl
        if low != ctl.pump.bore_low:
            ctl.pump.level(ctl.clock.uptime_s(), low)
            ctl.pump_flag.set()

    async def bore_task(self):
        while True:
            await self.read_bore()
            await self.ctl.clock.sleep_ms(self.cfg["bore"]["every_s"] * 1000)

    # --- the tank's level: start below the low mark, stop at the high mark
    async def read_tank(self, buf):
        level = None
        s = self.sonar
        if s:
            if self.cfg["tank"]["sonar"] == "trigger":  # a JSN-SR04T, R27 = 120k
                for _ in range(len(s.hist)):  # one frame a 0x55, a window of them
                    s.request()
                    # one ranging (100 ms), the frame at 9600 baud (4 ms), a margin
                    await self.ctl.clock.sleep_ms(150)
                    mm = s.poll()
            else:  # what came since the last read, then 0.5 s of fresh frames
                s.poll()
                await self.ctl.clock.sleep_ms(500)
                mm = s.poll()
            if mm is not None:
                level = self.geo.level_m(mm)
        else:
            ma = await burst(self.tank.current, self.ctl.clock, buf, 5, 100)
            h = None if ma is None else self.tank.from_ma(ma)
            level = None if h is None else self.geo.clip(h)
        self._fault(TANK, level is None)
        self.vals[2] = _u(level, 1000, NO_H)
        self.vals[3] = _u(None if level is None else self.geo.litres(level), 1, NO_I)
        m = self.marks
        if m and level is not None:  # a fault gives no verdict: the floats alone
            fill = True if level <= m[0] else False if level >= m[1] else None
            if fill is not None:
                ctl = self.ctl
                ctl.pump.tank(ctl.clock.uptime_s(), fill)
                ctl.pump_flag.set()

    async def tank_task(self):
        while True:
            await self.read_tank(self.marks[2])
            await self.ctl.clock.sleep_ms(self.cfg["tank"]["every_s"] * 1000)

    # --- solar: the pump runs while the panel can drive it; the battery kept
    async def read_solar(self):
        s, sol, ctl = self.cfg["solar"], self.solar, self.ctl
        now = ctl.clock.uptime_s()
        v = await burst(sol[0].read, ctl.clock, sol[5], 5, 100)
        if v is None:  # the panel's divider in fault: no verdict, never a hold
            sol[2], sun = None, True
        else:
            if v < s["start_v"]:
                sol[2] = None
            elif sol[2] is None:
                sol[2] = now
            if v < s["stop_v"]:
                sun = False
            elif sol[2] is not None and now - sol[2] >= s["settle_s"]:
                sun = True
            else:
                sun = sol[3]
        ok = sol[4]
        if sol[1] is not None and s["battery_cut_v"]:
            b = await burst(sol[1].read, ctl.clock, sol[5], 5, 100)
            if b is None:
                ok = True  # no verdict
            elif b < s["battery_cut_v"]:
                ok = False
            elif b >= s["battery_on_v"]:
                ok = True
        if sun != sol[3] or ok != sol[4]:
            sol[3], sol[4] = sun, ok
            ctl.pump.solar(ctl.clock.uptime_s(), sun, ok)
            ctl.pump_flag.set()

    async def solar_task(self):
        while True:
            await self.read_solar()
            await self.ctl.clock.sleep_ms(self.cfg["solar"]["every_s"] * 1000)

    # --- the motor against the relay
    def check_motor(self):
        """Read the motor sensor, compare with the relay; True while a mismatch is
        waiting for its allowance to run out."""
        from .motor import NOT_RUNNING, RUNNING_OFF

        ctl, m = self.ctl, self.motor
        amps = m.read()
        running = m.running if not m.fault else None
        self._fault(MOTOR, m.fault)
        if amps is not None:
            self.vals[8] = _u(amps, 1000, NO_I)
        elif not hasattr(m, "amps"):
            self.vals[8] = NO_I  # an auxiliary contact has no current
        self.vals[9] = 0xFF if running is None else int(running)
        relay = ctl.hal.relay_is_on()
        old = self.watch.state
        new = self.watch.step(ctl.clock.uptime_s(), relay, running)
        for state, why in ((NOT_RUNNING, "motor_not_running"),
                           (RUNNING_OFF, "motor_without_relay")):  # fmt: skip
            if new == state and old != state and why not in ctl.faults:
                ctl.faults.append(why)
                ctl.event("fault_raised", why, 0)
            elif old == state and new != state and why in ctl.faults:
                ctl.faults.remove(why)
                ctl.event("fault_cleared", why, 0)
        return running is not None and relay != bool(running) and not new

    async def motor_task(self):
        m = self.cfg["motor"]
        while True:
            pending = self.check_motor()  # a CT takes ~100 ms: between pump steps
            wait = max(m["start_s"], m["stop_s"]) + 1 if pending else m["every_s"]
            await self.ctl.clock.sleep_ms(wait * 1000)

    # --- everything else, at the measure interval
    async def measure(self):
        v = self.vals
        if self.bore and not self.cfg["bore"]["intake_m"]:
            await self.read_bore()  # else its own task keeps the fields fresh
        if self.geo and not self.marks:  # else its own task keeps them fresh
            await self.read_tank(self.buf)
        temp = None
        if self.temp:
            temp = await self.temp.read(self.ctl.clock)
            self._fault(TEMP, temp is None)
            v[7] = (
                NO_T if temp is None else int(temp * 100 + (0.5 if temp > 0 else -0.5))
            )
        settle = self.cfg["quality"]["settle_s"] * 1000 if self.cfg["quality"] else 0
        if self.ec:
            volts = await self._median(self.ec_src.read, settle)
            settle = 0
            ec = self.ec.value(volts, temp)
            self._fault(EC, ec is None)
            v[4] = _u(ec, 1, NO_H)
            v[5] = _u(self.ec.tds, 1, NO_H)
        if self.ph:
            volts = await self._median(self.ph_src.read, settle)
            ph = self.ph.value(volts, temp)
            self._fault(PH, ph is None)
            v[6] = _u(ph, 100, NO_H)
        for div, bit, i in self.volts:
            volts = await self._median(div.read)
            self._fault(bit, volts is None)
            v[i] = _u(volts, 100, NO_H)
            if bit == 64:  # the reading frame's supply_dv (0.1 V, 0 = none)
                dv = 0 if volts is None else int(volts * 10 + 0.5)
                self.ctl.supply_dv = min(255, dv)
        v[13] = self.faults
        if self.watch:  # the motor's running seconds this boot (u32, wraps)
            v[14] = self.watch.seconds(self.ctl.clock.uptime_s()) & 0xFFFFFFFF
        self.ctl.emit(codec.MEASURE, *v)

    async def measure_task(self):
        clock = self.ctl.clock
        iv = self.cfg["measure_s"] or self.cfg["interval_s"]
        qc = self.cfg["quality"]
        # begun this much before the grid slot, so a slot's frame is done by then
        # (and the last one of a day falls in that day)
        lead = 15 + (qc["settle_s"] if qc else 0)
        while True:
            await self.measure()
            t, q = clock.now()
            wait = iv - (t + lead) % iv if q else iv
            await clock.sleep_ms((wait if wait > lead else wait + iv) * 1000)

    def tasks(self):
        out = [self.measure_task()]
        if self.bore and self.cfg["bore"]["intake_m"]:
            out.append(self.bore_task())
        if self.motor:
            out.append(self.motor_task())
        if self.marks:
            out.append(self.tank_task())
        if self.solar:
            out.append(self.solar_task())
        return out
