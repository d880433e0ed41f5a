# The pump motor's own state (the guidelines' "motor on-off sensor"): a contactor's
# auxiliary contact on a pin, or a current transformer on an ADC pin (its burden
# biased to mid-rail). CT current is the RMS over whole mains cycles of the samples
# with their mean (the DC bias) removed; running/stopped have separate thresholds
# (hysteresis). The relay and the motor are compared with a time allowance: a motor
# starts a second or two after its relay closes and runs down after it opens.
from array import array

from .sensors import OK, OPEN, OVER

MAINS_HZ = 50

# disagreements
AGREE = 0
NOT_RUNNING = 1  # relay on, motor not running: tripped overload, burnt winding, phase
RUNNING_OFF = 2  # motor running, relay off: a bypassed or welded starter


def ac_rms(buf, n):
    """RMS of buf[0:n] about its mean (two passes: no cancellation in floats)."""
    s = 0
    for i in range(n):
        s += buf[i]
    mean = s / n
    q = 0.0
    for i in range(n):
        d = buf[i] - mean
        q += d * d
    return (q / n) ** 0.5, mean


def paced_read(adc, buf, n, period_us):
    """n samples of adc.read_u16() period_us apart (a tight loop: n * period_us,
    100 ms for 5 cycles). MicroPython only (time.ticks_us)."""
    import time

    t = time.ticks_us()
    for i in range(n):
        while time.ticks_diff(time.ticks_us(), t) < 0:
            pass
        buf[i] = adc.read_u16()
        t = time.ticks_add(t, period_us)


class CurrentTransformer:
    """sample(buf, n, period_us) fills buf with n raw 16-bit ADC readings; the HAL
    passes paced_read bound to its ADC, the simulator its waveform.

    amps_per_volt: the CT and burden (e.g. 30 A per 1 V for an SCT-013-030);
    volts_per_count: the ADC's scale (3.9 V / 65535 at 11 dB, uncalibrated);
    on_a/off_a: running above on_a, stopped below off_a, unchanged between."""

    def __init__(
        self,
        sample,
        amps_per_volt,
        volts_per_count=3.9 / 65535,
        on_a=1.0,
        off_a=0.5,
        cycles=5,
        per_cycle=40,
        mains_hz=MAINS_HZ,
    ):
        self.sample = sample
        self.scale = amps_per_volt * volts_per_count
        self.on_a = on_a
        self.off_a = off_a
        self.n = cycles * per_cycle
        self.period_us = 1000000 // (mains_hz * per_cycle)
        self.buf = array("H", bytes(2 * self.n))
        self.fault = OK
        self.amps = None
        self.running = None

    def read(self):
        """RMS amps over whole cycles, or None with fault: OVER when a sample hit
        the ADC's rail (clipped: the RMS would be low), OPEN when the mean sits
        near a rail (the bias divider or the CT lead is open)."""
        self.sample(self.buf, self.n, self.period_us)
        lo = hi = self.buf[0]
        for i in range(self.n):
            v = self.buf[i]
            lo = v if v < lo else lo
            hi = v if v > hi else hi
        rms, mean = ac_rms(self.buf, self.n)
        self.amps = None
        if mean < 6554 or mean > 58981:  # outside 10-90 % of the range
            self.fault = OPEN
        elif lo <= 0 or hi >= 65535:
            self.fault = OVER
        else:
            self.fault = OK
            self.amps = rms * self.scale
            self.update(self.amps)
        return self.amps

    def update(self, amps):
        if amps >= self.on_a:
            self.running = True
        elif amps <= self.off_a:
            self.running = False
        elif self.running is None:
            self.running = False
        return self.running


class AuxContact:
    """A contactor's auxiliary (NO) contact: pin() == sense while the motor runs."""

    def __init__(self, pin, sense=1):
        self.pin = pin
        self.sense = sense
        self.fault = OK
        self.running = None

    def read(self):
        self.running = self.pin() == self.sense
        return self.running


def disagreement(relay_on, running, since_s, start_s=5, stop_s=5):
    """AGREE, NOT_RUNNING or RUNNING_OFF given the relay, the motor and since_s, the
    seconds since either last changed: a motor may lag its relay by start_s after
    a start and by stop_s after a stop, and a mismatch counts once it has lasted."""
    if relay_on and not running and since_s >= start_s:
        return NOT_RUNNING
    if running and not relay_on and since_s >= stop_s:
        return RUNNING_OFF
    return AGREE


class Watch:
    """The relay against the motor over time (time passed in, seconds): the
    disagreement now, and the motor's own running seconds (pump hours): run_s
    only grows; a span between two checks counts when the motor ran at the first
    (so each start and stop is placed within one check interval)."""

    def __init__(self, start_s=5, stop_s=5):
        self.start_s = start_s
        self.stop_s = stop_s
        self.relay = None
        self.changed = 0  # when the relay or the motor last changed
        self.last = None
        self.run_s = 0
        self.running = False
        self.state = AGREE

    def step(self, now_s, relay_on, running):
        """running: True/False, or None when the motor sensor is in fault (then
        nothing is concluded and no run time is counted)."""
        if self.last is not None and self.running:
            self.run_s += now_s - self.last
        self.last = now_s
        run = bool(running)
        if relay_on != self.relay or run != self.running:
            self.changed = now_s
        self.relay = relay_on
        self.running = run
        if running is None:
            self.state = AGREE
            return AGREE
        self.state = disagreement(
            relay_on, running, now_s - self.changed, self.start_s, self.stop_s
        )
        return self.state

    def seconds(self, now_s):
        """The running seconds up to now_s: run_s and the span since the last
        check when the motor ran at it (what a measure frame logs as motor_s)."""
        if self.last is not None and self.running and now_s > self.last:
            return self.run_s + now_s - self.last
        return self.run_s
