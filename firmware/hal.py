# The one module that touches hardware. Everything else gets pins, counters, buses and
# flags from here, so under CPython the simulator can stand in for `machine`.
import machine

# machine.reset_cause() -> code in the boot frame's reset table
_RESETS = (
    (getattr(machine, "PWRON_RESET", -1), 1),
    (getattr(machine, "HARD_RESET", -2), 2),
    (getattr(machine, "WDT_RESET", -3), 3),
    (getattr(machine, "DEEPSLEEP_RESET", -4), 4),
    (getattr(machine, "SOFT_RESET", -5), 5),
    (getattr(machine, "BROWNOUT_RESET", -6), 6),
)
RTC_MAGIC = b"JK1"


class Hal:
    def __init__(self, cfg):
        self.cfg = cfg
        self.pins = cfg["pins"]
        self.relay_pin = None
        self.counters = {}
        self.switch_pins = {}
        self.button_pin = None
        self.mains_pin = None
        self.i2c = None
        self.wdt = None
        self.sd_mounted = False

    def _pull(self, n):
        return None if n in self.cfg["external_pullups"] else machine.Pin.PULL_UP

    def start_relay(self):
        """First thing at boot: the relay output, inactive before it is an output."""
        n = self.pins.get("relay")
        off = 1 - self.cfg["relay_active"]
        self.relay_pin = machine.Pin(n, machine.Pin.OUT, value=off)

    def relay(self, on):
        self.relay_pin.value(
            self.cfg["relay_active"] if on else 1 - self.cfg["relay_active"]
        )

    def relay_is_on(self):
        return self.relay_pin.value() == self.cfg["relay_active"]

    def start_inputs(self, on_switch, on_button, on_mains):
        """Pins for switches, button and mains sense, with IRQs that only wake tasks."""
        trig = machine.Pin.IRQ_RISING | machine.Pin.IRQ_FALLING
        for name in ("dry", "low", "high"):
            n = self.pins.get("sw_" + name)
            if n is None:
                continue
            p = machine.Pin(n, machine.Pin.IN, self._pull(n))
            p.irq(on_switch, trig)
            self.switch_pins[name] = p
        n = self.pins.get("button")
        if n is not None:
            self.button_pin = machine.Pin(n, machine.Pin.IN, self._pull(n))
            self.button_pin.irq(on_button, trig)
        n = self.pins.get("mains_sense")
        if n is not None:
            self.mains_pin = machine.Pin(n, machine.Pin.IN)
            self.mains_pin.irq(on_mains, trig)

    def start_meters(self):
        """Hardware pulse counters (PCNT) with the glitch filter; never Pin.irq."""
        unit = 0
        for name in ("source", "supply"):
            n = self.pins.get("meter_" + name)
            if n is None or self.cfg[name + "_litres_per_pulse"] <= 0:
                continue
            src = machine.Pin(n, machine.Pin.IN, self._pull(n))
            self.counters[name] = machine.Counter(
                unit,
                src=src,
                edge=machine.Counter.RISING,
                filter_ns=self.cfg["meter_filter_ns"],
            )
            unit += 1
        return self.counters

    def start_i2c(self):
        """The I2C bus (the display and an ADS1115 share it), made once."""
        if self.i2c is not None:
            return self.i2c
        sda, scl = self.pins.get("i2c_sda"), self.pins.get("i2c_scl")
        if sda is None or scl is None:
            return None
        self.i2c = machine.I2C(
            0, sda=machine.Pin(sda), scl=machine.Pin(scl), freq=400000
        )
        return self.i2c

    # --- sensors (jkfw.measure asks for these only for what is configured)
    def adc(self, n):
        """An ADC1 pin at 11 dB (about 150-2450 mV linear)."""
        return machine.ADC(machine.Pin(n), atten=machine.ADC.ATTN_11DB)

    def ct(self, n):
        """sample(buf, count, period_us) reading a CT's ADC pin at a steady pace."""
        from .motor import paced_read

        adc = self.adc(n)
        return lambda buf, count, period_us: paced_read(adc, buf, count, period_us)

    def pin_in(self, n):
        """A digital input (a contactor's auxiliary contact): call it for its level."""
        return machine.Pin(n, machine.Pin.IN, self._pull(n))

    def sonar_uart(self):
        """The ultrasonic sensor's UART (9600 8N1; UART 1 is the modem's)."""
        p = self.pins
        return machine.UART(
            2, 9600, tx=p["sonar_tx"], rx=p["sonar_rx"], timeout=0, rxbuf=256
        )

    def ds18x20(self):
        """The DS18B20 bus (onewire and ds18x20 are imported only when one is fitted:
        they are not in every MicroPython build)."""
        import ds18x20
        import onewire

        return ds18x20.DS18X20(onewire.OneWire(machine.Pin(self.pins["onewire"])))

    def wait_ms(self, ms):
        """A short blocking wait (an ADS1115 conversion, a few ms)."""
        import time

        time.sleep_ms(ms)

    def mount_sd(self, path="/sd"):
        """Mount the SD card (SPI); False if there is none or it fails."""
        import os

        p = self.pins
        if p.get("sd_cs") is None:
            return False
        try:
            if self.sd_mounted:
                os.umount(path)
        except OSError:
            pass
        try:
            sd = machine.SDCard(
                slot=2,
                sck=machine.Pin(p["sd_sck"]),
                miso=machine.Pin(p["sd_miso"]),
                mosi=machine.Pin(p["sd_mosi"]),
                cs=machine.Pin(p["sd_cs"]),
            )
            os.mount(sd, path)
            self.sd_mounted = True
        except (OSError, ValueError):
            self.sd_mounted = False
        return self.sd_mounted

    def start_modem(self):
        """(UART, {role: Pin}) of the modem, its pins at rest (off, not in reset,
        key released, not in flight mode); None when the board has none."""
        p = self.pins
        if p.get("modem_tx") is None or p.get("modem_rx") is None:
            return None
        pins = {}
        for role in ("power", "pwrkey", "rst", "flight"):
            n = p.get("modem_" + role)
            if n is not None:
                rest = 1 if role in ("rst", "flight") else 0
                if role == "pwrkey":
                    rest = 1 - self.cfg["modem_pwrkey_active"]
                pins[role] = machine.Pin(n, machine.Pin.OUT, value=rest)
        # timeout=0: reads never block, the firmware polls between sleeps
        uart = machine.UART(
            1, 115200, tx=p["modem_tx"], rx=p["modem_rx"], timeout=0, rxbuf=1024
        )
        return uart, pins

    def start_wdt(self):
        self.wdt = machine.WDT(timeout=self.cfg["wdt_ms"])

    def feed(self):
        if self.wdt is not None:
            self.wdt.feed()

    def reset_cause(self):
        c = machine.reset_cause()
        for mc, code in _RESETS:
            if c == mc:
                return code
        return 0

    def rtc_load(self):
        """Bytes kept in RTC memory across watchdog and soft resets (not power loss)."""
        try:
            m = machine.RTC().memory()
        except (AttributeError, OSError):
            return None
        return m[3:] if m[:3] == RTC_MAGIC else None

    def rtc_save(self, data):
        try:
            machine.RTC().memory(RTC_MAGIC + data)
        except (AttributeError, OSError):
            pass
