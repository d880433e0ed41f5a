# Flow meter totalizer over a hardware pulse counter (ESP32 PCNT via machine.Counter).
# Pulses are never counted by Pin.irq: soft IRQs on the ESP32 drop pulses above ~100 Hz.
# The counter is read on a schedule short enough that its 16-bit value cannot wrap
# twice between two reads at the meter's fastest rate, and only differences modulo
# 2**16 are used, so a raw 16-bit PCNT and the software-extended machine.Counter
# behave the same.

WRAP = 0x10000
SAFE_COUNTS = 16384  # a quarter of the 16-bit range between two reads: margin x4


def poll_ms(max_hz):
    """Longest safe interval between counter reads at max_hz pulses per second."""
    if max_hz <= 0:
        return 60000
    return max(50, min(60000, SAFE_COUNTS * 1000 // max_hz))


class Meter:
    def __init__(self, name, counter, litres_per_pulse, total=0):
        self.name = name
        self.counter = counter  # callable-free: anything with value() -> int
        self.litres_per_pulse = litres_per_pulse
        self.total = total  # pulses since the meter was installed (persisted)
        self.last_delta = 0
        self._last = counter.value() & 0xFFFF

    def poll(self):
        """Pulses since the last poll, added to the total."""
        v = self.counter.value() & 0xFFFF
        d = (v - self._last) % WRAP
        self._last = v
        self.total += d
        self.last_delta = d
        return d

    def litres(self, pulses=None):
        return (self.total if pulses is None else pulses) * self.litres_per_pulse

    def pulses_per_m3(self):
        # the boot frame carries the scale so a log explains itself
        if self.litres_per_pulse <= 0:
            return 0
        return int(1000 / self.litres_per_pulse + 0.5)
