# The controller: boot sequence and the event-driven tasks. Hardware comes from hal,
# time and the loop from clock; on the simulator both are swapped, nothing else.
from jkproto import codec, local_day

from . import VERSION
from .meter import Meter, poll_ms
from .pump import Pump
from .switch import Switch, plausible

# objects.EVENTS / REASONS / STATES codes (kept here: the board does not load names;
# tests/test_codes_pinned.py holds the two in step)
EVENT_CODES = {
    "pump_start": 1, "pump_stop": 2, "fault_raised": 3, "fault_cleared": 4,
    "config_change": 5, "mode_change": 6, "lockout": 7, "lockout_end": 8,
    "sms_command": 9,
}  # fmt: skip
REASON_CODES = {
    "none": 0, "tank_low": 1, "tank_full": 2, "overflow": 3, "dry_run": 4,
    "max_run": 5, "no_flow": 6, "button": 7, "command": 8, "sms": 9,
    "power_return": 10, "power_loss": 11, "wire_break": 12, "retry": 13, "boot": 14,
    "sd_fail": 15, "modem": 16, "relay_stuck": 17, "min_off": 18, "auto": 19,
    "manual": 20, "config": 21, "clock": 22, "crash": 23, "counter": 24,
    "bad_pin": 25, "bad_ack": 26, "bore_low": 27, "motor_not_running": 28,
    "motor_without_relay": 29, "no_sun": 30, "battery_low": 31,
}  # fmt: skip
STATE_CODES = {"boot": 0, "idle": 1, "run": 2, "lockout": 3, "fault": 4, "off": 5}
LONG_PRESS_MS = 3000
SD_RETRY_S = 600
MODES = ("auto", "on", "off")


class Controller:
    def __init__(self, cfg, hal, clock, store, log, display=None, bad_keys=()):
        self.cfg = cfg
        self.hal = hal
        self.clock = clock
        self.store = store
        self.log = log
        self.display = display
        self.bad_keys = bad_keys
        self.meters = {}
        self.switches = {}
        self.mains = True
        self.pump = None
        self.enc = None
        self.state = None
        self.faults = []
        self.pump_on_since = None
        self.flow_off_since = None
        self.pump_s_acc = 0
        self.alive = 0
        self.frames = 0
        self.uplink = None
        self.measure = None  # jkfw.measure, when a sensor is configured
        self.supply_dv = 0  # the supply voltage divider's last value (0.1 V)
        # a reading up to a quarter interval late still stands for its grid slot
        self.late_s = cfg["interval_s"] // 4

    # --- frames
    def emit(self, kind, *values):
        t, q = self.clock.now()
        return self.emit_at(t, q, kind, *values)

    def emit_at(self, t, q, kind, *values):
        """A frame stamped t (quality q), logged in t's local day."""
        if self.enc.exhausted():  # 65536 frames in this boot: a new epoch
            self.state["epoch"] = (self.state["epoch"] + 1) & 0xFFFF
            self.enc.new_epoch(self.state["epoch"])
            self.store.save(self.state)
            self.emit(codec.BOOT, 7, *self._boot_tail())
        f = self.enc.frame(kind, t, q, *values)
        day = local_day(t, self.cfg["tz_offset_min"]) if q else 0
        self.log.append(f, day)
        self.frames += 1
        return f

    def _boot_tail(self):
        src, sup = self.meters.get("source"), self.meters.get("supply")
        return (
            VERSION[0], VERSION[1], VERSION[2], self.cfg["interval_s"],
            src.pulses_per_m3() if src else 0, sup.pulses_per_m3() if sup else 0,
        )  # fmt: skip

    def event(self, name, reason, value=0):
        why = REASON_CODES.get(reason, 0)
        self.emit(codec.EVENT, EVENT_CODES[name], why, value & 0xFFFFFFFF)
        if self.uplink and name in ("lockout", "fault_raised") and reason != "modem":
            self.uplink.alert(name + " " + reason)  # an SMS, if SMS is set up

    # --- boot
    def boot(self):
        """Relay off first, then restore the totals and write the first frames."""
        hal, cfg, clock = self.hal, self.cfg, self.clock
        hal.start_relay()
        hal.relay(False)
        self.state = self.store.load()
        self.state["boots"] += 1
        self.state["epoch"] = (self.state["epoch"] + 1) & 0xFFFF
        self.store.save(self.state)
        key = bytes.fromhex(cfg["key"]) if cfg["key"] else bytes(32)
        self.enc = codec.Encoder(int(cfg["device"], 16), key, boot=self.state["epoch"])
        rtc = clock.rtc_utc()
        if rtc is not None and clock.quality == 0:
            clock.set_utc(rtc, 1)
        counters = hal.start_meters()
        warm = hal.rtc_load()  # totals kept in RTC memory survive a watchdog reset
        p = self.state["pulses"]
        totals = {"source": p[0], "supply": p[1]}
        if warm:
            totals = _unpack_totals(warm) or totals
        for name, ctr in counters.items():
            lpp = cfg[name + "_litres_per_pulse"]
            self.meters[name] = Meter(name, ctr, lpp, totals.get(name, 0))
        t, q = clock.now()
        sup = self.meters.get("supply")
        today = local_day(t, cfg["tz_offset_min"]) if q else 0
        if today != self.state.get("day"):  # first boot today: count from here
            self.state["day"] = today
            self.state["day_start"] = sup.total if sup else 0
        self.emit(codec.BOOT, hal.reset_cause(), *self._boot_tail())
        if clock.quality:
            self.emit(codec.CLOCK, clock.quality, clock.uptime_s(), 0)
        if not warm and self.state.get("clean") is False:
            # the board died without a checkpoint: pulses since the last one are unknown
            since = self.state["ckpt_utc"]
            t, q = clock.now()
            for i, name in enumerate(("source", "supply")):
                if name in self.meters:
                    secs = t - since if q and since else 0
                    self.emit(
                        codec.GAP, i, REASON_CODES["crash"], 0xFFFFFFFF, since,
                        max(0, secs),
                    )  # fmt: skip
        self.state["clean"] = False
        self.checkpoint()
        if self.bad_keys:  # bad values fell back to defaults: say so, stay safe
            self.faults.append("config")
            self.event("fault_raised", "config", len(self.bad_keys))
        keys = ("min_off_s", "max_run_s", "no_flow_s", "restart_delay_s")
        settings = {k: cfg[k] for k in keys}
        settings["lockout_s"] = tuple(cfg["lockout_s"])
        settings["lockout_reset_run_s"] = cfg["lockout_reset_run_s"]
        try:  # mode, lockout and back-off survive a power cut
            self.pump = Pump(clock.uptime_s(), settings, self.state.get("pump"))
        except (ValueError, TypeError):
            self.pump = Pump(clock.uptime_s(), settings)
        sense = cfg["switch_sense"]
        deb = cfg["debounce_s"] * 1000
        self.sw_flag = clock.flag()
        self.pump_flag = clock.flag()
        self.btn_flag = clock.flag()
        hal.start_inputs(self._irq_switch, self._irq_button, self._irq_switch)
        for name, pin in hal.switch_pins.items():
            self.switches[name] = Switch(name, pin, sense.get(name, 1), deb)
        if cfg["modem"]:  # the modem's code is loaded only when one is fitted
            from .uplink import start

            self.uplink = start(self)
        if "measure_s" in cfg:  # jkfw.sensorcfg: a sensor is configured
            from .measure import Measure  # the sensors' code: only when fitted

            self.measure = Measure(self)
        # a reading at once anchors the totals: after a power return the report can
        # tell exactly what was counted from here on
        self.reading()

    def _irq_switch(self, _pin):
        self.sw_flag.set()

    def _irq_button(self, _pin):
        self.btn_flag.set()

    def checkpoint(self):
        src, sup = self.meters.get("source"), self.meters.get("supply")
        self.state["pulses"] = [src.total if src else 0, sup.total if sup else 0]
        self.state["ckpt_utc"] = self.clock.now()[0] if self.clock.quality else 0
        self.state["ckpt_uptime_s"] = self.clock.uptime_s()
        self.state["seq"] = self.enc.seq
        self.store.save(self.state)

    # --- tasks
    async def switches_task(self):
        clock = self.clock
        while True:
            self.alive += 1
            now = clock.ticks_ms()
            changed = False
            wait = 0
            for sw in self.switches.values():
                changed = sw.sample(now, clock.ticks_diff) or changed
                wait = max(wait, sw.wait_ms(now, clock.ticks_diff))
            if self.hal.mains_pin is not None:
                mains = self.hal.mains_pin.value() == 1
                if mains != self.mains:
                    self.mains = mains
                    changed = True
            if changed or self.pump.state == "boot":
                self._feed_inputs()
            if wait:
                await clock.sleep_ms(wait)  # only while a switch is bouncing
            else:
                # an IRQ wakes us; the slow timeout re-reads in case one was lost
                await clock.wait(self.sw_flag, 60000)

    def _feed_inputs(self):
        s = self.switches
        dry = s["dry"].state if "dry" in s else False
        low = s["low"].state if "low" in s else False
        high = s["high"].state if "high" in s else False
        if None in (dry, low, high):
            return  # inputs not known yet: the relay stays off
        broken = not plausible(dry, low, high)
        self.pump.inputs(self.clock.uptime_s(), dry, low, high, broken, self.mains)
        self.pump_flag.set()

    async def pump_task(self):
        clock = self.clock
        while True:
            self.alive += 1
            now = clock.uptime_s()
            events = self.pump.step(now)
            if events:
                self.state["pump"] = list(self.pump.saved(now))
            for name, reason, value in events:
                self.event(name, reason, value)
                if name in ("pump_stop", "lockout", "mode_change"):
                    self.checkpoint()
                if name == "fault_raised" and reason not in self.faults:
                    self.faults.append(reason)
                if name == "fault_cleared" and reason in self.faults:
                    self.faults.remove(reason)
            on = self.pump.relay
            if on != self.hal.relay_is_on():
                self._account_pump(on)
                self.hal.relay(on)
            nxt = self.pump.next_s(clock.uptime_s())
            await clock.wait(
                self.pump_flag, 60000 if nxt is None else max(nxt, 0) * 1000
            )

    def _account_pump(self, on):
        now = self.clock.uptime_s()
        if on:
            self.pump_on_since = now
        elif self.pump_on_since is not None:
            self.pump_s_acc += now - self.pump_on_since
            self.pump_on_since = None

    async def meters_task(self):
        max_hz = self.cfg["meter_max_hz"]
        period = min(poll_ms(max_hz), 10000)
        while True:
            self.alive += 1
            await self.clock.sleep_ms(period)
            src = 0
            for m in self.meters.values():
                d = m.poll()
                if m.name == "source":
                    src = d
            if "source" not in self.meters and "supply" in self.meters:
                src = self.meters["supply"].last_delta
            self.pump.flow(self.clock.uptime_s(), src)
            self.hal.rtc_save(_pack_totals(self.meters))
            if "source" in self.meters:
                self._check_relay(src)

    def _check_relay(self, src):
        """Water from the borewell while the relay is open: a welded contact. The
        firmware cannot stop that pump, but it must say so."""
        now = self.clock.uptime_s()
        if self.hal.relay_is_on() or src == 0:
            self.flow_off_since = None
            if src == 0 and "relay_stuck" in self.faults and not self.hal.relay_is_on():
                self.faults.remove("relay_stuck")
                self.event("fault_cleared", "relay_stuck", 0)
            return
        if self.flow_off_since is None:
            self.flow_off_since = now
        stuck = now - self.flow_off_since >= self.cfg["no_flow_s"]
        if stuck and "relay_stuck" not in self.faults:
            self.faults.append("relay_stuck")
            self.event("fault_raised", "relay_stuck", now - self.flow_off_since)

    def _inputs_bits(self):
        s = self.switches
        bits = 0
        for i, name in enumerate(("dry", "low", "high")):
            if name in s and s[name].state:
                bits |= 1 << i
        if self.hal.relay_is_on():
            bits |= 8
        if self.mains:
            bits |= 16
        if self.faults:
            bits |= 32
        if getattr(self.log, "mode", "sd") != "sd":
            bits |= 64
        if self.pump.mode != "auto":
            bits |= 128
        return bits

    def reading(self, slot=None):
        """A reading frame; slot: the grid time the readings task woke up for. A
        reading taken up to a quarter interval late (the loop was busy: a modem
        session, a slow card) is stamped with its slot, so the day keeps every grid
        reading; a later one carries the time it was taken."""
        now = self.clock.uptime_s()
        acc = self.pump_s_acc
        if self.pump_on_since is not None:
            acc += now - self.pump_on_since
            self.pump_on_since = now
        self.pump_s_acc = 0
        src, sup = self.meters.get("source"), self.meters.get("supply")
        for m in self.meters.values():
            m.poll()
        t, q = self.clock.now()
        if q and slot is not None and 0 <= t - slot <= self.late_s:
            t = slot
        day = local_day(t, self.cfg["tz_offset_min"]) if q else 0
        if day != self.state.get("day"):  # today's litres on the display restart
            self.state["day"] = day
            self.state["day_start"] = sup.total if sup else 0
        self.emit_at(
            t, q, codec.READING,
            (src.total if src else 0) & 0xFFFFFFFF,
            (sup.total if sup else 0) & 0xFFFFFFFF,
            min(acc, 65535), self._inputs_bits(), self.supply_dv,
            99 if self.uplink is None else self.uplink.csq,
        )  # fmt: skip
        # the totals as just logged: after a power cut the gap starts here, not earlier
        self.checkpoint()

    def stopped(self):
        """run() was stopped (a tool's Ctrl-C, or a crash) and the relay is off: the
        pump's running time ends here."""
        if self.pump_on_since is not None:
            self.pump_s_acc += self.clock.uptime_s() - self.pump_on_since
            self.pump_on_since = None

    def settle(self):
        """Stopped, and about to be soft-reset by a tool: the meters' counters kept
        counting at the REPL and a soft reset clears them, so what they counted goes
        into a reading now (off the grid) and the totals in RTC memory."""
        self.reading()
        self.hal.rtc_save(_pack_totals(self.meters))

    async def readings_task(self):
        iv = self.cfg["interval_s"]
        while True:
            self.alive += 1
            t, q = self.clock.now()
            # on the wall-clock grid when the time is known, so days split cleanly
            wait = iv - t % iv if q else iv
            await self.clock.sleep_ms(wait * 1000)
            self.reading(t + wait if q else None)

    async def heartbeat_task(self):
        up = self.uplink
        while True:
            await self.clock.sleep_ms(self.cfg["heartbeat_s"] * 1000)
            self.emit(
                codec.HEARTBEAT, self.clock.uptime_s(), _heap_free(),
                0 if up is None else up.backlog // 40, 99 if up is None else up.csq,
                STATE_CODES.get(self.pump.state, 0),
            )  # fmt: skip

    async def storage_task(self):
        while True:
            await self.clock.sleep_ms(SD_RETRY_S * 1000)
            if self.log.mode != "sd":
                if self.log.retry_sd():
                    self.event("fault_cleared", "sd_fail", 0)

    async def button_task(self):
        clock = self.clock
        pin = self.hal.button_pin
        while True:
            await clock.wait(self.btn_flag, 3600000)
            if pin is None or pin.value() != 0:
                continue  # released or a glitch: only a press (pulled low) counts
            t0 = clock.ticks_ms()
            while (
                pin.value() == 0
                and clock.ticks_diff(clock.ticks_ms(), t0) < LONG_PRESS_MS
            ):
                await clock.sleep_ms(50)  # only while the button is held
            if clock.ticks_diff(clock.ticks_ms(), t0) >= LONG_PRESS_MS:
                mode = MODES[(MODES.index(self.pump.mode) + 1) % len(MODES)]
                self.pump.command(clock.uptime_s(), mode, "button")
                self.pump_flag.set()
            elif self.display is not None:
                self.display.next_page()
            self.show()

    def status(self):
        p, up = self.pump, self.uplink
        sup = self.meters.get("supply")
        s = self.switches
        last = None  # seconds since the last good upload
        if up is not None and up.last_ok is not None:
            last = self.clock.uptime_s() - up.last_ok
        return {
            "pump": "on" if p.relay else "off",
            "state": p.state,
            "why": p.why,
            "lockout_left_s": p.lockout_left_s(self.clock.uptime_s()),
            "mode": p.mode,
            "litres_today": int(sup.litres(sup.total - self.state.get("day_start", 0)))
            if sup
            else 0,
            "population": self.cfg["population"],
            "time": self._local_hhmm(),
            "inputs": {
                "broken": p.broken,
                "dry": bool(s["dry"].state) if "dry" in s else False,
                "low": bool(s["low"].state) if "low" in s else False,
                "high": bool(s["high"].state) if "high" in s else False,
                "mains": self.mains,
            },
            "sd": "ok" if self.log.mode == "sd" else "flash",
            "uplink": "off" if not (up and up.url) else "down" if up.fails else "ok",
            "last_upload_s": last,
            "faults": list(self.faults),
            # tank and borewell levels where their sensors are fitted (the display)
            "levels": self.measure.levels() if self.measure else None,
        }

    def _local_hhmm(self):
        t, q = self.clock.now()
        if not q:
            return None
        m = (t // 60 + self.cfg["tz_offset_min"]) % 1440
        return "%02d:%02d" % (m // 60, m % 60)

    def show(self):
        if self.display is not None:
            try:
                self.display.render(self.status())
            except OSError:
                pass  # a loose display cable must not stop the pump logic

    async def display_task(self):
        while True:
            self.show()
            await self.clock.sleep_ms(5000)

    async def watchdog_task(self):
        # fed only while the control tasks make progress: a hung loop resets the board
        last = -1
        while True:
            if self.alive != last:
                last = self.alive
                self.hal.feed()
            await self.clock.sleep_ms(self.cfg["wdt_ms"] // 4)

    def start(self):
        spawn = self.clock.spawn
        for coro in (
            self.switches_task(), self.pump_task(), self.meters_task(),
            self.readings_task(), self.heartbeat_task(),
            self.storage_task(), self.button_task(), self.watchdog_task(),
        ):  # fmt: skip
            spawn(coro)
        if self.display is not None:  # no display fitted: no wakeups for it
            spawn(self.display_task())
        if self.uplink is not None:
            spawn(self.uplink.run())
        for coro in self.measure.tasks() if self.measure else ():
            spawn(coro)


def _pack_totals(meters):
    src, sup = meters.get("source"), meters.get("supply")
    a = src.total if src else 0
    b = sup.total if sup else 0
    return a.to_bytes(8, "little") + b.to_bytes(8, "little")


def _unpack_totals(b):
    if b is None or len(b) != 16:
        return None
    return {
        "source": int.from_bytes(b[:8], "little"),
        "supply": int.from_bytes(b[8:], "little"),
    }


def _heap_free():
    try:
        import gc

        return gc.mem_free()
    except (ImportError, AttributeError):
        return 0
