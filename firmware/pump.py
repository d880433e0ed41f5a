# The pump controller: a small explicit state machine, pure logic. No machine, no
# asyncio, no time: the caller passes monotonic integer seconds `now_s`.
#
#   p = Pump(now_s, settings=None, saved=None)  # settings: {"min_off_s": 600, ...}
#   p.inputs(now_s, dry, low, high, broken, mains)  # debounced; unsafe if unsure
#   p.flow(now_s, pulses)          # source-meter pulses since the last call
#   p.level(now_s, low)            # borewell level at the intake + margin (sensor)
#   p.tank(now_s, fill)            # tank level sensor: below its low / at its high mark
#   p.solar(now_s, sun, battery)   # solar: the panel can drive the pump; battery ok
#   p.command(now_s, cmd, source)  # cmd: MODES; source: SOURCES
#   for event, reason, value in p.step(now_s): ...  # then drive the relay from p.relay
#   p.next_s(now_s)  # step again in this many s at the latest (None: nothing timed)
#   p.relay  p.mode  p.state  p.why  p.lockout_left_s(now_s)  p.saved(now_s)
#
# Call step() after every inputs()/flow()/command() and when next_s() runs out.
# Persist saved(now_s) whenever step() returned events and pass it back after a
# reboot, so the manual mode, a lockout and its back-off survive a power cut.
# Event values: pump_stop = seconds run, lockout = seconds to the retry,
# mode_change = index in MODES, others 0. Names are jkproto.objects EVENTS/REASONS.
#
# States (jkproto.objects.STATES) and transitions:
#   boot    -> idle     first inputs() (a boot counts as a stop and a power return)
#   idle    -> run      wanted (auto: tank low seen; mode on) and safe and timers out
#   run     -> idle     tank_full | max_run | power_loss | bore_low | no_sun |
#                       battery_low | off command (the last three: no lockout)
#   run     -> lockout  dry_run | no_flow: wait lockout_s[k], k += 1 (last repeats)
#   lockout -> run|idle lockout_end retry: starts only if the inputs allow
#   any     -> fault    broken wire (relay off); back when the wire reads sane
#   any     -> off      mode off (operator); a lockout still counts down
START, STOP, MODE = "pump_start", "pump_stop", "mode_change"
RAISED, CLEARED = "fault_raised", "fault_cleared"
LOCKOUT, LOCKOUT_END = "lockout", "lockout_end"
MODES = ("auto", "on", "off")
SOURCES = ("button", "command", "sms")
SETTINGS = (
    "min_off_s", "max_run_s", "no_flow_s", "restart_delay_s", "lockout_s",
    "lockout_reset_run_s",
)  # fmt: skip


class Pump:
    """Pump relay logic: auto fill with hysteresis, manual modes, safety."""

    min_off_s = 300  # motor rest between a stop and the next start
    max_run_s = 4 * 3600
    no_flow_s = 120  # running with no meter pulses this long is a fault
    restart_delay_s = 120  # after mains returns (and after a boot)
    lockout_s = (900, 1800, 3600, 7200)  # dry-run/no-flow back-off, last repeats
    lockout_reset_run_s = 600  # a clean run this long resets the back-off

    def __init__(self, now_s, settings=None, saved=None):
        for k in settings or ():
            if k not in SETTINGS:
                raise ValueError("unknown pump setting %r" % (k,))
            setattr(self, k, settings[k])
        self.lockout_s = tuple(self.lockout_s)
        if (
            self.max_run_s < 1
            or self.no_flow_s < 1
            or not self.lockout_s
            or min(self.lockout_s) < 1
            or min(self.min_off_s, self.restart_delay_s, self.lockout_reset_run_s) < 0
        ):
            raise ValueError("bad pump settings")
        self.relay = False
        self.mode = "auto"
        self.dry = self.low = self.high = self.broken = False
        self.mains = True
        # the borewell's water down to the pump intake + margin (a level sensor,
        # jkfw.measure): stops a run and holds starts, before the dry-run probe
        # trips; a sensor in fault says False and the probe guards alone
        self.bore_low = False
        # solar (jkfw.measure): the panel cannot drive the pump, the battery is below
        # its cut-off; each holds the pump off like a stop, never a fault or lockout
        self.no_sun = self.batt_low = False
        self._known = False
        self._demand = None  # tank latch: True after low, False after high
        self._doubt = False  # the tank level sensor said fill with the float up
        self._src = "boot"  # who set the mode (the start/stop reason in on/off)
        self._on_s = self._flow_s = now_s  # run start; last pulses in this run
        self._flowed = False
        self._run_why = "none"
        # we cannot know when the pump last stopped: a boot is a stop and a
        # power return, so min_off_s and restart_delay_s both count from now
        self._off_s = self._mains_s = now_s
        self._delay_why = "boot"
        self._start_why = None  # overrides the next start reason
        self._lock_until = None
        self._lock_why = "none"
        self._trips = 0  # consecutive dry-run/no-flow trips: the back-off index
        self._no_flow = False  # fault raised, cleared by flow in a later run
        self._wire = False  # wire_break fault raised
        self._ev = []
        if saved:
            mode, self._trips, left_s, self._lock_why, self._no_flow = saved
            if mode not in MODES:
                raise ValueError("bad saved pump mode %r" % (mode,))
            self.mode = mode
            if mode == "on":
                self._demand = True  # the operator asked to fill: carry on
                self._src = "power_return"
            if left_s > 0:  # the time off is unknown: wait it all again
                self._lock_until = now_s + min(left_s, max(self.lockout_s))
        self._status(now_s)

    # --- inputs
    def inputs(self, now_s, dry, low, high, broken, mains):
        """Latest debounced switch states; the first call makes them known."""
        if mains and not self.mains:
            self._mains_s = now_s
            self._delay_why = "power_return"
        self.dry, self.low, self.high = bool(dry), bool(low), bool(high)
        self.broken, self.mains = bool(broken), bool(mains)
        if self.high:
            self._demand = False
            self._start_why = None  # a later start is for a new low tank
        elif self.low:
            self._demand = True
        self._known = True
        self._status(now_s)

    def level(self, now_s, low):
        """The borewell level sensor's verdict: True = water at the intake plus the
        margin (stop, do not start), False = enough water or no verdict (a sensor
        fault: the dry-run probe still guards). It only ever forbids."""
        self.bore_low = bool(low)
        self._status(now_s)

    def tank(self, now_s, fill):
        """The tank level sensor's verdict, as the floats' latch: True = below its
        low mark (fill), False = at its high mark (full), None = no verdict (a
        fault: the floats alone). It never overrides the high float (nor one not
        read yet); after a "fill" with the high float up, its "fill" counts again
        only once it has said "full"."""
        if fill is False:
            self._demand = False
            self._start_why = None
            self._doubt = False
        elif fill and self._known:  # the floats read
            if self.high:  # "fill" with the high float up: the sensor is wrong,
                self._doubt = True  # the floats alone until it says full again
            elif not self._doubt:
                self._demand = True
        self._status(now_s)

    def solar(self, now_s, sun, battery=True):
        """Solar scheme: sun = the panel can drive the pump (False holds it off:
        reason no_sun); battery = above its cut-off (False: battery_low)."""
        self.no_sun, self.batt_low = not sun, not battery
        self._status(now_s)

    def flow(self, now_s, pulses):
        """Source-meter pulses counted since the last call."""
        if pulses > 0 and self.relay:
            self._flow_s = now_s
            self._flowed = True
            if self._no_flow:
                self._no_flow = False
                self._ev.append((CLEARED, "no_flow", 0))

    def command(self, now_s, cmd, source):
        """Operator mode: never bypasses safety, min off time or a lockout."""
        if cmd not in MODES:
            raise ValueError("pump command must be auto, on or off: %r" % (cmd,))
        if source not in SOURCES:
            raise ValueError("bad command source %r" % (source,))
        if cmd == "on":
            self._demand = True  # fill now; auto then carries on to full
        if cmd != self.mode:
            self._set_mode(cmd, source, self._ev)
        self._status(now_s)

    # --- evaluation
    def step(self, now_s):
        """Evaluate at now_s; set self.relay; return [(event, reason, value)]."""
        ev = self._ev
        self._ev = []
        if self._known:
            if self._lock_until is not None and now_s >= self._lock_until:
                self._lock_until = None
                self._start_why = "retry"
                ev.append((LOCKOUT_END, "retry", 0))
            if self.mode == "on" and (self.high or self._demand is False):
                self._set_mode("auto", "tank_full", ev)  # filled: no cycling at high
            why = self._stop_why(now_s) if self.relay else None
            if why:
                self._stop(now_s, why, ev)
            elif not self.relay and self._can_start(now_s):
                # never in the step that stopped: each relay change gets a step
                self._start(now_s, ev)
            if self.broken != self._wire:
                self._wire = self.broken
                ev.append((RAISED if self.broken else CLEARED, "wire_break", 0))
        self._status(now_s)
        return ev

    def next_s(self, now_s):
        """Seconds until step() has something to do (0: now), None if untimed."""
        if not self._known:
            return None
        if self._ev or self.broken != self._wire:
            return 0
        if self.mode == "on" and (self.high or self._demand is False):
            return 0
        if self.relay:
            if self._stop_why(now_s):
                return 0
            t = min(self._on_s + self.max_run_s, self._flow_s + self.no_flow_s)
        elif self._lock_until is not None:
            t = self._lock_until
        elif self._safe_and_wanted():
            t = self._ready_s()
        else:
            return None
        return max(0, t - now_s)

    def lockout_left_s(self, now_s):
        if self._lock_until is None:
            return 0
        return max(0, self._lock_until - now_s)

    def saved(self, now_s):
        """What to persist: pass it back as Pump(..., saved=) after a reboot."""
        return (
            self.mode,
            self._trips,
            self.lockout_left_s(now_s),
            self._lock_why,
            self._no_flow,
        )

    # --- internals
    def _set_mode(self, mode, why, ev):
        self.mode = mode
        self._src = why
        if mode == "off":
            self._start_why = None
        ev.append((MODE, why, MODES.index(mode)))

    def _safe_and_wanted(self):
        # everything but time allows a start
        return (
            self.mains
            and not (self.broken or self.dry or self.high or self.bore_low)
            and not (self.no_sun or self.batt_low)
            and self.mode != "off"
            and self._demand is True
        )

    def _ready_s(self):
        return max(self._off_s + self.min_off_s, self._mains_s + self.restart_delay_s)

    def _can_start(self, now_s):
        return (
            self._lock_until is None
            and self._safe_and_wanted()
            and now_s >= self._ready_s()
        )

    def _stop_why(self, now_s):
        # order matters: one reason per stop, safety first; a power cut can
        # make the dry switch read dry and must not cause a lockout
        if self.broken:
            return "wire_break"
        if not self.mains:
            return "power_loss"
        if self.dry:
            return "dry_run"
        if self.bore_low:
            return "bore_low"
        if self.high:
            return "tank_full"
        if self.batt_low:
            return "battery_low"
        if self.no_sun:
            return "no_sun"
        if self.mode == "off":
            return self._src
        if self._demand is not True:
            return "tank_full"  # high came and went between two steps
        if now_s >= self._on_s + self.max_run_s:
            return "max_run"
        if now_s >= self._flow_s + self.no_flow_s:
            return "no_flow"
        return None

    def _start(self, now_s, ev):
        why = self._start_why or (self._src if self.mode == "on" else "tank_low")
        self._start_why = None
        self.relay = True
        self._on_s = self._flow_s = now_s
        self._flowed = False
        self._run_why = why
        ev.append((START, why, 0))

    def _stop(self, now_s, why, ev):
        run_s = now_s - self._on_s
        self.relay = False
        self._off_s = now_s
        self._delay_why = "min_off"
        ev.append((STOP, why, run_s))
        if run_s >= self.lockout_reset_run_s and self._flowed:
            self._trips = 0  # the well recovered: back-off starts over
        if why == "power_loss":
            self._start_why = "power_return"
        elif why == "dry_run" or why == "no_flow":
            if why == "no_flow" and not self._no_flow:
                self._no_flow = True
                ev.append((RAISED, "no_flow", 0))
            wait_s = self.lockout_s[min(self._trips, len(self.lockout_s) - 1)]
            self._trips += 1
            self._lock_until = now_s + wait_s
            self._lock_why = why
            ev.append((LOCKOUT, why, wait_s))

    def _status(self, now_s):
        # state and why for the display and heartbeat
        if not self._known:
            self.state, self.why = "boot", "boot"
        elif self.relay:
            self.state, self.why = "run", self._run_why
        elif self.broken:
            self.state, self.why = "fault", "wire_break"
        elif self._lock_until is not None:
            self.state, self.why = "lockout", self._lock_why
        elif self.mode == "off":
            self.state, self.why = "off", self._src
        else:
            self.state, self.why = "idle", self._idle_why(now_s)

    def _idle_why(self, now_s):
        if not self.mains:
            return "power_loss"
        if self.dry:
            return "dry_run"
        if self.bore_low:
            return "bore_low"
        if self.high or self._demand is False:
            return "tank_full"
        if self.batt_low:
            return "battery_low"
        if self.no_sun:
            return "no_sun"
        if self._demand is None:
            return "none"  # no low tank seen since boot
        if now_s < self._ready_s():
            if self._delay_why == "boot":
                return "boot"
            if self._off_s + self.min_off_s >= self._mains_s + self.restart_delay_s:
                return "min_off"
            return "power_return"
        return "none"
