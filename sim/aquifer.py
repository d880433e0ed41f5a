"""The physics behind the scheme's sensors, for the simulator: a borewell's water
table that draws down while pumping and recovers after (Cooper-Jacob, with the
pumping periods superposed), a seasonal decline over months, a tank filled and
drawn, water quality that drifts (TDS rising in summer, pH excursions on given
days), the motor's current, the sun's irradiance on clear and cloudy days, and
sensor fault models (open loop, short, drift, stuck, noise, probe out of water)
applied to a true value. Every model is a function of time (and of a seed), so its
ground truth is known exactly. Runs under CPython and MicroPython alike: its own
small random generator (xorshift32) gives the same numbers on both.

Units: seconds for time (since the model's start), metres, litres per minute,
m^2/day for transmissivity (the unit pumping tests report)."""

import math

DAY_S = 86400


class Rng:
    """xorshift32 (Marsaglia 2003): deterministic and identical on both interpreters."""

    def __init__(self, seed):
        self.x = (seed * 2654435761 + 1) & 0xFFFFFFFF or 1

    def next(self):
        x = self.x
        x ^= (x << 13) & 0xFFFFFFFF
        x ^= x >> 17
        x ^= (x << 5) & 0xFFFFFFFF
        self.x = x
        return x

    def random(self):
        return self.next() / 4294967296

    def uniform(self, a, b):
        return a + (b - a) * self.random()

    def gauss(self, mu=0.0, sigma=1.0):
        u = 1.0 - self.random()  # (0, 1]
        return mu + sigma * math.sqrt(-2 * math.log(u)) * math.cos(
            2 * math.pi * self.random()
        )


def day_rng(seed, day):
    """A generator for one day, the same whatever else was drawn before."""
    return Rng(seed * 1000003 + day)


# --- the aquifer


class Aquifer:
    """Depth to water in a pumped borewell, metres below ground.

    T: transmissivity (m^2/day); S: storativity (confined ~1e-4, specific yield of
    an unconfined aquifer ~0.01-0.2); r_w: well radius (m); static_m: mean depth to
    the water table at rest; trend_m_month: its decline per month (a falling water
    table); annual_m: the half-range of its seasonal swing, deepest on
    deepest_doy; start_doy: the day of the year at t = 0.

    Drawdown of one period pumping Q (m^3/day) since t_on, at radius r (Cooper and
    Jacob 1946, the Theis solution for u = r^2 S / 4 T t small):
        s = Q / (4 pi T) * ln(2.25 T t / (r^2 S))
    and recovery by superposition: a stop at t_off is a well injecting Q from t_off,
        s = Q / (4 pi T) * (ln-term(t - t_on) - ln-term(t - t_off))
    Each term is taken as 0 before u reaches 0.5625 (where the logarithm crosses
    zero): the approximation only holds for u < ~0.05, seconds after a change in a
    borewell of a few cm radius."""

    def __init__(
        self,
        T=50.0,
        S=0.01,
        r_w=0.075,
        static_m=20.0,
        trend_m_month=0.0,
        annual_m=0.0,
        deepest_doy=150,
        start_doy=1,
        well_loss=0.0,
    ):
        self.T = T
        self.S = S
        self.r_w = r_w
        self.static_m = static_m
        self.trend = trend_m_month
        self.annual = annual_m
        self.deepest = deepest_doy
        self.start_doy = start_doy
        self.well_loss = well_loss  # C in s_w = C Q^2 (m per (m^3/day)^2)
        self.periods = []  # [t_on_s, t_off_s or None, Q m^3/day]
        self.q_now = 0.0

    @staticmethod
    def m3_day(lpm):
        return lpm * 1.44

    def pump(self, t_s, lpm):
        """The pump starts (lpm > 0) or stops (lpm = 0) at t_s."""
        if self.periods and self.periods[-1][1] is None:
            self.periods[-1][1] = t_s
        if lpm > 0:
            self.periods.append([t_s, None, self.m3_day(lpm)])
        self.q_now = self.m3_day(lpm) if lpm > 0 else 0.0

    def u(self, t_s, r=None):
        r = self.r_w if r is None else r
        return r * r * self.S / (4 * self.T * (t_s / DAY_S))

    def _term(self, dt_s, r):
        if dt_s <= 0:
            return 0.0
        x = 2.25 * self.T * (dt_s / DAY_S) / (r * r * self.S)
        return math.log(x) if x > 1 else 0.0

    def drawdown(self, t_s, r=None):
        """Drawdown at radius r (the well's own by default) at t_s, metres."""
        r = self.r_w if r is None else r
        s = 0.0
        k = 1 / (4 * math.pi * self.T)
        for on, off, q in self.periods:
            if on >= t_s:
                continue
            a = self._term(t_s - on, r)
            if off is not None:
                a -= self._term(t_s - off, r)
            s += q * k * a
        if self.q_now and r == self.r_w:
            s += self.well_loss * self.q_now * self.q_now
        return s

    def prune(self, t_s, eps=1e-4):
        """Forget finished periods whose residual drawdown is below eps metres."""
        k = 1 / (4 * math.pi * self.T)
        keep = []
        for p in self.periods:
            on, off, q = p
            if off is not None and off < t_s:
                a = self._term(t_s - on, self.r_w) - self._term(t_s - off, self.r_w)
                if self._term(t_s - off, self.r_w) > 0 and q * k * a < eps:
                    continue
            keep.append(p)
        self.periods = keep

    def static(self, t_s):
        """Depth to the water table at rest: the trend plus the seasonal swing."""
        days = t_s / DAY_S
        doy = (self.start_doy + days) % 365.25  # 1-based, fractional
        swing = self.annual * math.cos(2 * math.pi * (doy - self.deepest) / 365.25)
        return self.static_m + self.trend * days / 30.4375 + swing

    def static_days(self, days, at_s=6 * 3600):
        """Ground truth: the water table at rest at at_s into each day index."""
        return [round(self.static(d * DAY_S + at_s), 4) for d in range(days)]

    def depth(self, t_s):
        """Depth to water in the well below ground (metres)."""
        return self.static(t_s) + self.drawdown(t_s)

    def head_above(self, t_s, sensor_m):
        """Metres of water above a transducer hung at sensor_m below ground."""
        return max(0.0, sensor_m - self.depth(t_s))


# --- the tank


class TankModel:
    """A tank's water in litres, from its inflow and outflow; it spills above its
    capacity and cannot give what it does not hold (truth: overflow, shortfall)."""

    def __init__(self, capacity_l, litres=0.0):
        self.capacity = capacity_l
        self.litres = litres
        self.overflow_l = 0.0
        self.short_l = 0.0

    def step(self, dt_s, in_lpm, out_lpm):
        v = self.litres + (in_lpm - out_lpm) * dt_s / 60
        if v > self.capacity:
            self.overflow_l += v - self.capacity
            v = self.capacity
        if v < 0:
            self.short_l -= v
            v = 0.0
        self.litres = v
        return v

    def fraction(self):
        return self.litres / self.capacity


# --- water quality


class Quality:
    """True TDS (mg/L), pH and water temperature (C) over the year: TDS rises by
    summer_mg to its peak on peak_doy (evaporation, less recharge); pH excursions
    are (first day, last day, delta) by day index since t = 0; the water is
    warmest (temp_c + temp_amp) in summer."""

    def __init__(
        self,
        tds_mg=350.0,
        summer_mg=150.0,
        peak_doy=140,
        ph=7.3,
        excursions=(),
        temp_c=26.0,
        temp_amp=3.0,
        start_doy=1,
        tds_factor=0.64,
    ):
        self.tds0 = tds_mg
        self.summer = summer_mg
        self.peak = peak_doy
        self.ph0 = ph
        self.excursions = excursions
        self.temp0 = temp_c
        self.temp_amp = temp_amp
        self.start_doy = start_doy
        self.k = tds_factor

    def _season(self, t_s):
        doy = (self.start_doy + t_s / DAY_S) % 365.25
        return (1 + math.cos(2 * math.pi * (doy - self.peak) / 365.25)) / 2  # 0..1

    def tds(self, t_s):
        return self.tds0 + self.summer * self._season(t_s)

    def ec25(self, t_s):
        """uS/cm at 25 C for that TDS (TDS = k * EC25)."""
        return self.tds(t_s) / self.k

    def ec(self, t_s, alpha=0.02):
        """uS/cm at the water's own temperature (what a probe sees)."""
        return self.ec25(t_s) * (1 + alpha * (self.temp(t_s) - 25))

    def temp(self, t_s):
        return self.temp0 + self.temp_amp * (2 * self._season(t_s) - 1)

    def truth(self, days):
        """Ground truth per day index: [pH, smallest and largest TDS (hourly)]."""
        out = []
        for d in range(days):
            tds = [self.tds((d * 24 + h) * 3600) for h in range(25)]
            out.append([self.ph(d * DAY_S), round(min(tds), 2), round(max(tds), 2)])
        return out

    def ph(self, t_s):
        day = int(t_s // DAY_S)
        p = self.ph0
        for first, last, delta in self.excursions:
            if first <= day <= last:
                p += delta
        return p


# --- the motor


class Motor:
    """A pump motor behind a contactor. It runs start_delay_s after the relay closes
    (contactor pull-in, star-delta) and stops at once when it opens; tripped
    (overload, burnt winding, lost phase) it never runs; bypassed (a starter
    wired around) it always runs. current(t) is the RMS line current in amps:
    inrush inrush_x times the rated current for inrush_s after the start."""

    def __init__(self, rated_a=8.0, start_delay_s=1.5, inrush_x=5.0, inrush_s=0.5):
        self.rated = rated_a
        self.delay = start_delay_s
        self.inrush_x = inrush_x
        self.inrush_s = inrush_s
        self.relay = False
        self.relay_t = 0.0
        self.tripped = False
        self.bypassed = False

    def set_relay(self, t_s, on):
        if on != self.relay:
            self.relay = on
            self.relay_t = t_s

    def running(self, t_s):
        if self.bypassed:
            return True
        if self.tripped or not self.relay:
            return False
        return t_s - self.relay_t >= self.delay

    def run_s(self, t0_s, t1_s):
        """The seconds it runs in [t0_s, t1_s] with its relay, trip and bypass as
        they are now (the ground truth of its running time, exact to the start
        delay: integrate between the changes)."""
        if t1_s <= t0_s or self.tripped and not self.bypassed:
            return 0.0
        if self.bypassed:
            return t1_s - t0_s
        if not self.relay:
            return 0.0
        return max(0.0, t1_s - max(t0_s, self.relay_t + self.delay))

    def current(self, t_s):
        if not self.running(t_s):
            return 0.0
        since = t_s - self.relay_t - self.delay
        if self.relay and 0 <= since < self.inrush_s:
            return self.rated * self.inrush_x
        return self.rated


def ct_samples(buf, n, amps_rms, per_cycle, counts_per_amp, bias=32768, rng=None,
               noise=0.0, phase=0.0):  # fmt: skip
    """What an ADC sees from a biased CT: n samples, per_cycle a mains cycle, of a
    sine of amps_rms (counts_per_amp: ADC counts per amp at the pin), clipped to
    0..65535; the stand-in for motor.paced_read."""
    peak = amps_rms * math.sqrt(2) * counts_per_amp
    for i in range(n):
        v = bias + peak * math.sin(2 * math.pi * i / per_cycle + phase)
        if rng is not None and noise:
            v += rng.gauss(0, noise)
        v = int(v + 0.5)
        buf[i] = 0 if v < 0 else 65535 if v > 65535 else v
    return buf


# --- the sun


class Sun:
    """Irradiance on the panel (W/m^2) by local solar time: a clear-sky day rises
    and sets at 06:00 and 18:00 with peak_w at noon; a cloudy day (listed in
    cloudy_days, or drawn with probability p_cloudy from the seed) lets through
    20-45 % with passing clouds."""

    def __init__(self, seed=1, peak_w=1000.0, cloudy_days=(), p_cloudy=0.0):
        self.seed = seed
        self.peak = peak_w
        self.cloudy_days = cloudy_days
        self.p_cloudy = p_cloudy

    def cloudy(self, day):
        if day in self.cloudy_days:
            return True
        return self.p_cloudy > 0 and day_rng(self.seed, day).random() < self.p_cloudy

    def clear_sky(self, t_s):
        h = (t_s % DAY_S) / 3600
        if h <= 6 or h >= 18:
            return 0.0
        return self.peak * math.sin(math.pi * (h - 6) / 12) ** 1.2

    def irradiance(self, t_s):
        g = self.clear_sky(t_s)
        day = int(t_s // DAY_S)
        if g and self.cloudy(day):
            r = day_rng(self.seed, day * 97 + int(t_s % DAY_S) // 600)
            g *= r.uniform(0.2, 0.45)
        return g

    @staticmethod
    def panel_volts(g, voc=22.0, k=0.06):
        """Open-circuit-ish panel voltage: logarithmic in the irradiance."""
        if g <= 1:
            return 0.0
        return max(0.0, voc * (1 + k * math.log(g / 1000)))


# --- sensor faults


class Fault:
    """One injected fault on a sensor from start_s to end_s (None: never ends).

    kinds: "open" (a 4-20 mA loop at 0 mA; other sensors read nothing), "short"
    (a loop at 25 mA), "drift" (+rate per day since the start), "stuck" (frozen
    at the value when it began), "noise" (gaussian, sigma = rate), "dry" (the
    probe out of water: a transducer at 0 m, a conductivity probe at 0,
    a pH electrode wandering)."""

    KINDS = ("open", "short", "drift", "stuck", "noise", "dry")

    def __init__(self, kind, start_s, end_s=None, rate=0.0):
        if kind not in self.KINDS:
            raise ValueError("unknown sensor fault " + kind)
        self.kind = kind
        self.start = start_s
        self.end = end_s
        self.rate = rate
        self.held = None

    def active(self, t_s):
        return t_s >= self.start and (self.end is None or t_s < self.end)


class Sensor:
    """A true value through a sensor with faults. observe(t, truth) -> what the
    sensor reports (None: nothing), and keeps (t, truth, observed, fault) rows
    in .truth when keep is set. dry_value: what the sensor reads out of water."""

    def __init__(self, faults=(), seed=1, dry_value=0.0, keep=False):
        self.faults = list(faults)
        self.rng = Rng(seed)
        self.dry_value = dry_value
        self.keep = keep
        self.truth = []

    def fault_at(self, t_s):
        for f in self.faults:
            if f.active(t_s):
                return f
        return None

    def observe(self, t_s, truth):
        f = self.fault_at(t_s)
        v = truth
        if f is None:
            pass
        elif f.kind in ("open", "short"):
            v = None
        elif f.kind == "drift":
            v = truth + f.rate * (t_s - f.start) / DAY_S
        elif f.kind == "stuck":
            if f.held is None:
                f.held = truth
            v = f.held
        elif f.kind == "noise":
            v = truth + self.rng.gauss(0, f.rate)
        elif f.kind == "dry":
            v = self.dry_value + (self.rng.gauss(0, f.rate) if f.rate else 0.0)
        if self.keep:
            self.truth.append((t_s, truth, v, f.kind if f else ""))
        return v


class LoopTransducer(Sensor):
    """A 4-20 mA pressure transducer of range_m metres: ma(t, head_true) is its
    loop current; open 0 mA, short 25 mA, dry 4 mA (no water above it), others
    act on the head."""

    def __init__(self, range_m, faults=(), seed=1, keep=False):
        super().__init__(faults, seed, 0.0, keep)
        self.range_m = range_m

    def ma(self, t_s, head_m):
        f = self.fault_at(t_s)
        if f is not None and f.kind == "open":
            ma = 0.0
        elif f is not None and f.kind == "short":
            ma = 25.0
        else:
            keep, self.keep = self.keep, False
            h = self.observe(t_s, head_m)
            self.keep = keep
            h = max(0.0, h)
            ma = 4.0 + 16.0 * h / self.range_m
            ma = min(ma, 20.5)  # NE 43: a transmitter saturates at 20.5 mA
        if self.keep:
            self.truth.append((t_s, head_m, ma, f.kind if f else ""))
        return ma
