# Simulated hardware with the interface of jkfw.hal.Hal: the simulator swaps the HAL
# and the clock, never the firmware's logic. Pins have levels and IRQ handlers, the
# pulse counters are 16-bit and signed like the ESP32's PCNT, the relay's every change
# is recorded with its virtual time.


class SimPin:
    def __init__(self, clock, level=1):
        self.clock = clock
        self.level = level
        self.handler = None
        self.on_write = None  # callback(pin, level) when the firmware drives it

    def __call__(self):
        return self.level

    def value(self, v=None):
        if v is None:
            return self.level
        old, self.level = self.level, v
        if v != old and self.on_write is not None:
            self.on_write(self, v)

    def irq(self, handler=None, trigger=None):
        self.handler = handler

    def set(self, level):
        """Drive the pin from outside (the plant); fires the IRQ on a change."""
        if level != self.level:
            self.level = level
            if self.handler is not None:
                self.handler(self)


class SimCounter:
    """PCNT unit: counts rising edges, 16-bit signed, wraps."""

    def __init__(self):
        self.count = 0

    def pulse(self, n=1):
        self.count = (self.count + n + 32768) % 65536 - 32768

    def value(self):
        return self.count


class SimUart:
    """The board's UART to the modem. Bytes the modem sends go down the wire one by
    one at the line rate in virtual time (a poll may see half a line); the board's
    writes reach the modem (peer.receive) at once. readinto/any/write as
    machine.UART with timeout=0 (never blocks)."""

    def __init__(self, clock, baud=115200):
        self.clock = clock
        self.byte_us = 10000000 // baud  # 10 bits a byte
        self.chunks = []  # [start_us, data, bytes taken] on their way to the board
        self.free_us = 0  # when the wire is free again
        self.peer = None
        self.rx_bytes = 0  # to the board
        self.tx_bytes = 0  # from the board

    def send(self, data, delay_ms=0):
        """The modem sends data, starting delay_ms from now (after what is queued)."""
        start = max(self.clock.ms * 1000 + delay_ms * 1000, self.free_us)
        self.free_us = start + len(data) * self.byte_us
        self.chunks.append([start, bytes(data), 0])

    def clear(self):
        self.chunks = []
        self.free_us = 0

    def any(self):
        now = self.clock.ms * 1000
        n = 0
        for start, data, taken in self.chunks:
            k = min(len(data), (now - start) // self.byte_us)
            if k <= 0:
                break
            n += k - taken
            if k < len(data):
                break
        return n

    def readinto(self, buf, nbytes=None):
        want = min(len(buf), self.any() if nbytes is None else min(nbytes, self.any()))
        if not want:
            return None  # as machine.UART: None when nothing came
        got = 0
        while got < want:
            c = self.chunks[0]
            k = min(want - got, len(c[1]) - c[2])
            buf[got : got + k] = c[1][c[2] : c[2] + k]
            c[2] += k
            got += k
            if c[2] == len(c[1]):
                self.chunks.pop(0)
        self.rx_bytes += got
        return got

    def read(self, nbytes=None):
        b = bytearray(self.any() if nbytes is None else nbytes)
        n = self.readinto(b)
        return bytes(b[:n]) if n else None

    def write(self, data):
        self.tx_bytes += len(data)
        if self.peer is not None:
            self.peer.receive(bytes(data))
        return len(data)


class NullI2C:
    """An I2C bus whose devices take every write (a display that is always there)."""

    def __init__(self):
        self.writes = 0

    def writeto(self, addr, buf, stop=True):
        self.writes += 1
        return len(buf)


class SimHal:
    def __init__(self, cfg, clock, reset_cause=1, rtc_memory=None):
        self.cfg = cfg
        self.clock = clock
        self.i2c = None  # start_i2c() returns it: None = no display fitted
        self.relay_pin = None
        self.relay_trace = []  # (ms, on)
        self.counters = {}
        self.switch_pins = {}
        self.button_pin = None
        self.mains_pin = None
        self.wdt_feeds = 0
        self.wdt_ms = None  # set by start_wdt
        self.last_feed_ms = 0
        self.sd_present = True  # a card in the slot: mount_sd() mounts it
        self.reset_code = reset_cause  # what the next boot's reset_cause() says
        self.rtc_memory = rtc_memory  # survives a watchdog reset, not a power loss
        self.on_relay = None  # callback(on) for the plant's physical trace
        self.modem = None  # (SimUart, {role: SimPin}) when a modem is fitted

    def start_modem(self):
        """The modem's UART and control pins (sim/modem.py fits them), or None."""
        return self.modem

    def start_relay(self):
        if self.relay_pin is None:
            self.relay_pin = SimPin(self.clock, 1 - self.cfg["relay_active"])

    def relay(self, on):
        level = self.cfg["relay_active"] if on else 1 - self.cfg["relay_active"]
        if level != self.relay_pin.level or not self.relay_trace:
            self.relay_trace.append((self.clock.ms, bool(on)))
            if self.on_relay is not None:
                self.on_relay(bool(on))
        self.relay_pin.level = level

    def relay_is_on(self):
        return self.relay_pin.level == self.cfg["relay_active"]

    def start_inputs(self, on_switch, on_button, on_mains):
        pins = self.cfg["pins"]
        for name in ("dry", "low", "high"):
            if pins.get("sw_" + name) is not None:
                p = self.switch_pins.setdefault(name, SimPin(self.clock, 1))
                p.irq(on_switch)
        if pins.get("button") is not None:
            self.button_pin = self.button_pin or SimPin(self.clock, 1)
            self.button_pin.irq(on_button)
        if pins.get("mains_sense") is not None:
            self.mains_pin = self.mains_pin or SimPin(self.clock, 1)
            self.mains_pin.irq(on_mains)

    def start_meters(self):
        for name in ("source", "supply"):
            if self.cfg[name + "_litres_per_pulse"] > 0:
                self.counters.setdefault(name, SimCounter())
        return self.counters

    def start_i2c(self):
        return self.i2c

    def mount_sd(self, path="/sd"):
        """A card in the slot is mounted at path (the folder appears); without one
        nothing is there, as on the board."""
        if self.sd_present:
            import os  # here: the heap benchmark counts os with the firmware

            try:
                os.mkdir(path)
            except OSError:
                pass  # mounted before this boot
        return self.sd_present

    def start_wdt(self):
        self.wdt_ms = self.cfg["wdt_ms"]
        self.last_feed_ms = self.clock.ms

    def feed(self):
        self.wdt_feeds += 1
        self.last_feed_ms = self.clock.ms

    def wdt_expired(self):
        """The watchdog would reset the chip now (not fed for wdt_ms)."""
        return (
            self.wdt_ms is not None and self.clock.ms - self.last_feed_ms > self.wdt_ms
        )

    def reset_cause(self):
        return self.reset_code

    def rtc_load(self):
        return self.rtc_memory

    def rtc_save(self, data):
        self.rtc_memory = bytes(data)
