# Level switches (dry-run probe, tank low, tank high/overflow), debounced.
# Wiring is fail-safe: the input has a pull-up and "asserted" is the level an open
# circuit gives (sense 1), so a cut wire reads as dry / tank full: the pump stops.
# A pin IRQ only wakes the debounce; nothing polls fast.


class Switch:
    def __init__(self, name, pin, sense=1, debounce_ms=3000):
        self.name = name
        self.pin = pin  # callable: pin() -> 0/1 (machine.Pin or a fake)
        self.sense = sense
        self.debounce_ms = debounce_ms
        self.state = None  # debounced "asserted"; None until known
        self.changes = 0  # debounced changes, for chatter detection
        self._raw = None
        self._since = 0

    def asserted_now(self):
        return self.pin() == self.sense

    def sample(self, now_ms, ticks_diff):
        """Take a reading; True when the debounced state changed.

        The debounced state follows the raw level once it has held for debounce_ms."""
        raw = self.asserted_now()
        if raw != self._raw:
            self._raw = raw
            self._since = now_ms
        if self.state is None and self.debounce_ms == 0:
            self.state = raw
            return True
        if raw != self.state and ticks_diff(now_ms, self._since) >= self.debounce_ms:
            first = self.state is None
            self.state = raw
            if not first:
                self.changes += 1
            return True
        return False

    def settled(self):
        return self._raw == self.state

    def wait_ms(self, now_ms, ticks_diff):
        """Time until the raw level has held for debounce_ms (0: settled)."""
        if self.settled():
            return 0
        left = self.debounce_ms - ticks_diff(now_ms, self._since)
        return left if left > 0 else 0


def plausible(dry, low, high):
    """A tank cannot be below its low mark and above its high mark at once: that reading
    means a wire is cut or shorted. Unknown (None) inputs are implausible too."""
    if dry is None or low is None or high is None:
        return False
    return not (low and high)
