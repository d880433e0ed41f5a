# `machine` for the virtual board: what jkfw/hal.py uses on an ESP32 (MicroPython
# 1.27's ports/esp32 API and its constants), over the simulated hardware in jkvb.py.
# Only `jalkal vboard` loads it, from a built-in folder the board's flash does not
# show; on a board `machine` is built in. Anything not here does not exist on the
# vboard (AttributeError), so a firmware change that needs more fails loudly.
#
#   Pin       GPIO with IRQs (soft, scheduled), pulls, read-back of outputs; the
#             plant drives the switch and mains wires and reads the relay
#   Counter   the PCNT pulse counter (machine.Counter of MicroPython >= 1.26, ESP32)
#   I2C       a bus with the display at config.json's display_addr (writes taken)
#             and an ADS1115 (jkvbdev) when config.json has an "adsN" input
#   ADC       the ESP32's 12-bit ADC; the plant's volts on sensors' pins (jkvbsense)
#   SDCard    the card is the folder `sd` of the board's flash (missing: no card)
#   UART      a modem that never answers; an ultrasonic sensor on the sonar's RX
# and the modules onewire and ds18x20 (a DS18B20 on the config's onewire pin)
#   WDT       resets the board when not fed for `timeout` ms of host (real) time
#   RTC       memory() kept across soft and watchdog resets, datetime()
#   reset_cause(), reset(), soft_reset(), unique_id(), freq(), idle()
import os

import jkvb
import vfs

VB = jkvb.VB

PWRON_RESET = 1
HARD_RESET = 2
WDT_RESET = 3
DEEPSLEEP_RESET = 4
SOFT_RESET = 5

_S3 = str(VB.chip).upper() == "ESP32S3"


def _valid_gpio(n):
    if _S3:
        return 0 <= n <= 21 or 26 <= n <= 48
    return 0 <= n <= 19 or n in (21, 22, 23, 25, 26, 27) or 32 <= n <= 39


def _output_ok(n):
    return _S3 or n < 34


def _gpio(p):
    """A pin argument as a GPIO number (Pin or int), as mp_hal_get_pin_obj does."""
    if isinstance(p, Pin):
        return p._id
    if isinstance(p, int) and not isinstance(p, bool) and _valid_gpio(p):
        return p
    raise ValueError("invalid pin")


class _PinIRQ:
    def __init__(self, pin):
        self._pin = pin

    def trigger(self):
        return self._pin._trigger

    def flags(self):
        return self._pin._flags


class Pin:
    IN = 1
    OUT = 3
    OPEN_DRAIN = 7
    PULL_DOWN = 1
    PULL_UP = 2
    IRQ_RISING = 1
    IRQ_FALLING = 2
    WAKE_LOW = 4
    WAKE_HIGH = 5
    DRIVE_0 = 0
    DRIVE_1 = 1
    DRIVE_2 = 2
    DRIVE_3 = 3

    def __new__(cls, id, *args, **kwargs):
        n = _gpio(id)
        p = jkvb.pins.get(n)
        if p is None:  # one object per GPIO, as on the ESP32
            p = object.__new__(cls)
            p._id = n
            p._mode = None
            p._pull = None
            p._out = 0
            p._handler = None
            p._trigger = 0
            p._flags = 0
            p._last = None
            p._irq = _PinIRQ(p)
            jkvb.pins[n] = p
        return p

    def __init__(self, id, mode=-1, pull=-1, *, value=None, drive=-1, hold=-1):
        if mode != -1 or pull != -1 or value is not None or drive != -1:
            self.init(mode, pull, value=value, drive=drive, hold=hold)

    def __repr__(self):
        return "Pin(%d)" % self._id

    def init(self, mode=-1, pull=-1, *, value=None, drive=-1, hold=-1):
        if value is not None:
            self._out = 1 if value else 0
        if pull != -1:
            if pull not in (None, Pin.PULL_UP, Pin.PULL_DOWN):
                raise ValueError("invalid pull")
            self._pull = pull
        if mode != -1 and mode is not None:
            if mode not in (Pin.IN, Pin.OUT, Pin.OPEN_DRAIN):
                raise ValueError("invalid pin mode")
            if mode != Pin.IN and not _output_ok(self._id):
                raise ValueError("pin can only be input")
            self._mode = mode
        self._drive()
        self._last = self._level()

    def _role(self):
        return jkvb.wiring().role.get(self._id)

    def _drive(self):
        # the relay wire: the plant's pump follows it (a floating input: off)
        if self._role() == "relay":
            w = jkvb.wiring()
            out = self._mode in (Pin.OUT, Pin.OPEN_DRAIN)
            jkvb.plant().relay(self._out if out else 1 - w.relay_active)

    def _level(self):
        if self._mode == Pin.OUT:
            return self._out
        role = self._role()
        if role is not None:
            lv = jkvb.plant().level(role)
            if lv is not None:
                return lv
        if self._mode == Pin.OPEN_DRAIN and self._out == 0:
            return 0
        return 1 if self._pull == Pin.PULL_UP or role == "button" else 0

    def sense(self):
        """Called by jkvb.step(): an edge on an input fires its IRQ (the virtual
        board's own; MicroPython's Pin has no such method)."""
        if self._mode == Pin.OUT:
            return
        lv = self._level()
        last = self._last
        self._last = lv
        if last is None or lv == last or self._handler is None:
            return
        edge = Pin.IRQ_RISING if lv else Pin.IRQ_FALLING
        if self._trigger & edge:
            self._flags = edge
            jkvb.fire(self._handler, self)

    def value(self, x=None):
        if x is None:
            if self._mode != Pin.OUT:
                jkvb.step()
            return self._level()
        self._out = 1 if x else 0
        self._drive()
        return None

    def __call__(self, x=None):
        return self.value(x)

    def on(self):
        self.value(1)

    def off(self):
        self.value(0)

    def toggle(self):
        self.value(1 - self._out)

    def mode(self, mode=None):
        if mode is None:
            return self._mode
        self.init(mode)

    def pull(self, pull=-1):
        if pull == -1:
            return self._pull
        self.init(pull=pull)

    def drive(self, drive=None):
        return Pin.DRIVE_2 if drive is None else None

    def irq(self, handler=None, trigger=3, *, wake=None, hard=False):
        self._handler = handler
        self._trigger = trigger if handler is not None else 0
        self._last = self._level()
        jkvb.plant()  # the plant starts with the first input that listens
        return self._irq


class Counter:
    """The ESP32's machine.Counter (a PCNT unit, counts extended in software)."""

    RISING = 1
    FALLING = 2
    UP = 1
    DOWN = 2
    _INSTANCES = {}

    def __new__(cls, unit_id, *_args, **_kwargs):
        if not 0 <= unit_id < (4 if _S3 else 8):
            raise ValueError("invalid PCNT unit")
        self = cls._INSTANCES.get(unit_id)
        if self is None:
            self = object.__new__(cls)
            cls._INSTANCES[unit_id] = self
        return self

    def __init__(self, unit_id, *args, filter_ns=0, **kwargs):
        self._unit_id = unit_id
        if hasattr(self, "_src") and not (args or kwargs):
            return  # the existing unit, as it is
        self._configure(*args, **kwargs)  # filter_ns: no glitches to filter here
        self._base = self._raw()
        self._offset = 0

    def _configure(self, src, edge=RISING, direction=UP):
        self._src = _gpio(src)
        self._edges = (1 if edge & Counter.RISING else 0) + (
            1 if edge & Counter.FALLING else 0
        )
        self._sign = -1 if direction == Counter.DOWN else 1
        jkvb.plant()

    def _raw(self):
        jkvb.plant().advance()
        role = jkvb.wiring().role.get(self._src)
        return jkvb.plant().pulses(role) * self._edges * self._sign if role else 0

    def init(self, *args, **kwargs):
        self.__init__(self._unit_id, *args, **kwargs)

    def deinit(self):
        if hasattr(self, "_src"):
            del self._src

    def value(self, value=None):
        if not hasattr(self, "_src"):
            raise RuntimeError("not initialised")
        current = self._raw() - self._base
        result = current + self._offset
        if value is not None:
            self._offset = value - current
        return result


class I2C:
    """The bus: the display at config.json's display_addr takes every write; an
    ADS1115 at ads_addr when an input of config.json is "adsN" (jkvbdev.Ads1115,
    register by register as TI's datasheet has it); nothing else acknowledges."""

    def __init__(self, id, *, scl, sda, freq=400000, timeout=50000):
        if id not in (0, 1):
            raise ValueError("I2C(%d) doesn't exist" % id)
        self._id = id
        self.init(scl=scl, sda=sda, freq=freq, timeout=timeout)

    def init(self, *, scl, sda, freq=400000, timeout=50000):
        self._pins = (_gpio(scl), _gpio(sda))
        self._freq = freq

    def deinit(self):
        pass

    def _ads(self, addr):
        """The ADS1115 at addr, or None (the display or nothing)."""
        if not jkvb.has_sensors() or not jkvb.sensors().ads_present(addr):
            return None
        global _ads_dev
        if _ads_dev is None:
            s = jkvb.sensors()
            _ads_dev = jkvb.builtin("jkvbdev").Ads1115(s.ads_volts)
        return _ads_dev

    def _dev(self, addr):
        ads = self._ads(addr)
        if ads is None and addr not in jkvb.wiring().i2c_devices:
            raise OSError(19)  # ENODEV: nothing acknowledged the address
        return ads

    def scan(self):
        found = list(jkvb.wiring().i2c_devices)
        if jkvb.has_sensors():
            a = jkvb.sensors().ads_addr
            if jkvb.sensors().ads_present(a) and a not in found:
                found.append(a)
        return sorted(found)

    def writeto(self, addr, buf, stop=True):
        ads = self._dev(addr)
        if ads is not None:
            ads.write(bytes(buf))
            return len(buf)
        jkvb.stats["i2c_writes"] += 1
        jkvb.stats["i2c_bytes"] += len(buf)
        return len(buf)

    def writevto(self, addr, vector, stop=True):
        data = b""
        for b in vector:
            data += bytes(b)
        return self.writeto(addr, data, stop)

    def readfrom_into(self, addr, buf, stop=True):
        ads = self._dev(addr)
        if ads is not None:
            ads.read(buf)
            return
        for i in range(len(buf)):
            buf[i] = 0

    def readfrom(self, addr, nbytes, stop=True):
        buf = bytearray(nbytes)
        self.readfrom_into(addr, buf, stop)
        return bytes(buf)

    def writeto_mem(self, addr, memaddr, buf, *, addrsize=8):
        self.writeto(addr, bytes((memaddr,)) + bytes(buf))

    def readfrom_mem(self, addr, memaddr, nbytes, *, addrsize=8):
        self.writeto(addr, bytes((memaddr,)), False)
        return self.readfrom(addr, nbytes)

    def readfrom_mem_into(self, addr, memaddr, buf, *, addrsize=8):
        self.writeto(addr, bytes((memaddr,)), False)
        self.readfrom_into(addr, buf)


_ads_dev = None  # the ADS1115 (its registers live as long as the interpreter)


# ADC-capable GPIOs (ADC1, ADC2) of each chip
_ADC_PINS = (
    tuple(range(1, 21))
    if _S3
    else (32, 33, 34, 35, 36, 37, 38, 39, 0, 2, 4, 12, 13, 14, 15, 25, 26, 27)
)
_ADC_FS = (1.1, 1.5, 2.2, 3.9)  # volts at full scale per attenuation (nominal)
_ADC_TOP = (0.95, 1.25, 1.75, 3.1)  # where the pin's reading stops rising


class ADC:
    """The ESP32's machine.ADC (12 bits) on a pin the plant drives: the volts of
    the sensor wired to it (jkvbsense, through sim/probes.SimAdc), 0 V on a pin
    with nothing on it. read_uv() is the calibrated reading (12-bit steps),
    read_u16() the raw one scaled to 16 bits, read() the raw 12 bits."""

    ATTN_0DB = 0
    ATTN_2_5DB = 1
    ATTN_6DB = 2
    ATTN_11DB = 3
    WIDTH_9BIT = 9
    WIDTH_10BIT = 10
    WIDTH_11BIT = 11
    WIDTH_12BIT = 12

    def __init__(self, pin, *, atten=ATTN_0DB):
        n = _gpio(pin)
        if n not in _ADC_PINS:
            raise ValueError("invalid pin for ADC")
        self._id = n
        self._atten = atten
        fn = jkvb.sensors().pin_fn(n) if jkvb.has_sensors() else None
        self._src = jkvb.builtin("probes").SimAdc(fn)

    def init(self, *, atten=None):
        if atten is not None:
            self.atten(atten)

    def atten(self, atten):
        if atten not in (0, 1, 2, 3):
            raise ValueError("invalid attenuation")
        self._atten = atten

    def width(self, bits):
        pass

    def _raw(self):
        jkvb.step()
        v = min(self._src.volts(), _ADC_TOP[self._atten])
        return min(4095, int(v / _ADC_FS[self._atten] * 4095 + 0.5))

    def read(self):
        return self._raw()

    def read_u16(self):
        return self._raw() * 65535 // 4095

    def read_uv(self):
        return self._raw() * int(_ADC_FS[self._atten] * 1000000) // 4095


CARD = "/.sdcard"  # the card's files (vboard.mjs: the host folder DIR/sd)
CARD_BLOCKS = 243712  # an 8 GB card in FAT32 clusters of 32 KB
CARD_BLOCK = 32768


class SDCard:
    """The card in its slot; os.mount(SDCard(...), "/sd") mounts its files."""

    def __init__(self, slot=1, width=1, cd=None, wp=None, sck=None, miso=None,
                 mosi=None, cs=None, cmd=None, data=None, freq=20000000):  # fmt: skip
        if slot not in (0, 1, 2, 3):
            raise ValueError("slot number must be between 0 and 3 inclusive")
        for p in (cd, wp, sck, miso, mosi, cs, cmd):
            if p is not None:
                _gpio(p)
        self._v = vfs.VfsPosix(CARD)

    def _present(self):
        try:
            return os.stat(CARD)[0] & 0x4000
        except OSError:
            return False

    def info(self):
        if not self._present():
            raise OSError(19)
        return (CARD_BLOCKS * CARD_BLOCK, 512)

    def deinit(self):
        pass

    # --- the file system on it (what os.mount calls)
    def mount(self, readonly, mkfs):
        if not self._present():
            raise OSError(19)  # ENODEV: no card in the slot

    def umount(self):
        pass

    def open(self, path, mode):
        return self._v.open(path, mode)

    def ilistdir(self, path):
        return self._v.ilistdir(path)

    def stat(self, path):
        return self._v.stat(path)

    def mkdir(self, path):
        return self._v.mkdir(path)

    def rmdir(self, path):
        return self._v.rmdir(path)

    def remove(self, path):
        return self._v.remove(path)

    def rename(self, a, b):
        return self._v.rename(a, b)

    def chdir(self, path):
        return self._v.chdir(path)

    def getcwd(self):
        return self._v.getcwd()

    def statvfs(self, path):
        used = _used(CARD)
        free = max(0, CARD_BLOCKS - used)
        return (CARD_BLOCK, CARD_BLOCK, CARD_BLOCKS, free, free, 0, 0, 0, 0, 255)


def _used(path):
    n = 0
    for ent in os.ilistdir(path):
        p = path + "/" + ent[0]
        if ent[1] == 0x4000:
            n += 1 + _used(p)
        else:
            n += (os.stat(p)[6] + CARD_BLOCK - 1) // CARD_BLOCK
    return n


class _BoardMs:
    """The board's milliseconds (the plant's clock), for probes.SimSonarUart."""

    @property
    def ms(self):
        return int(VB.now() * 1000)


class UART:
    """A UART whose far end is the modem, which never answers; or, on the sonar's
    RX pin when config.json has a tank with "in": "sonar", an A02YYUW sending its
    frame (FF, H, L, SUM) every 100 ms, or a JSN-SR04T answering each 0x55 written
    with one frame (sim/probes.SimSonarUart, on board time)."""

    INV_TX = 32
    INV_RX = 4
    INV_RTS = 64
    INV_CTS = 8
    RTS = 1
    CTS = 2
    IRQ_RX = 1
    IRQ_BREAK = 2
    IRQ_RXIDLE = 4096

    def __init__(self, id, baudrate=115200, bits=8, parity=None, stop=1, **kwargs):
        if id not in (0, 1, 2):
            raise ValueError("UART(%d) does not exist" % id)
        self._id = id
        self.init(baudrate, bits, parity, stop, **kwargs)

    def init(self, baudrate=115200, bits=8, parity=None, stop=1, *, tx=-1, rx=-1,
             rts=-1, cts=-1, txbuf=256, rxbuf=256, timeout=0, timeout_char=0,
             invert=0, flow=0):  # fmt: skip
        for p in (tx, rx, rts, cts):
            if p != -1:
                _gpio(p)
        self._baud = baudrate
        self._far = None
        if rx != -1 and jkvb.has_sensors():
            s = jkvb.sensors()
            if s.sonar_on(_gpio(rx)) and baudrate == 9600:
                probes = jkvb.builtin("probes")
                self._far = probes.SimSonarUart(_BoardMs(), s.p, rxbuf)

    def deinit(self):
        pass

    def any(self):
        return self._far.any() if self._far else 0

    def read(self, nbytes=None):
        if not self.any():
            return None
        buf = bytearray(nbytes if nbytes is not None else self._far.any())
        n = self._far.readinto(buf)
        return bytes(buf[:n]) if n else None

    def readinto(self, buf, nbytes=None):
        if not self._far:
            return None
        if nbytes is not None and nbytes < len(buf):
            tmp = bytearray(nbytes)
            n = self._far.readinto(tmp)
            if n:
                buf[:n] = tmp[:n]
            return n
        return self._far.readinto(buf)

    def readline(self):
        return None

    def write(self, buf):
        if self._far:
            return self._far.write(buf)
        jkvb.stats["uart_tx"] += len(buf)
        return len(buf)

    def sendbreak(self):
        pass

    def flush(self):
        pass

    def txdone(self):
        return True

    def irq(self, handler=None, trigger=0, hard=False):
        return None


class WDT:
    def __init__(self, id=0, timeout=5000):
        if id != 0:
            raise ValueError()
        if timeout <= 0:
            raise ValueError("WDT timeout too short")
        VB.wdtArm(timeout)  # (re)configures and restarts it, as esp_task_wdt does

    def feed(self):
        VB.wdtFeed()


RTC_MEM_MAX = 2048


class RTC:
    def __init__(self, id=0):
        pass

    def init(self, datetime):
        self.datetime(datetime)

    def memory(self, data=None):
        if data is None:
            return bytes.fromhex(str(VB.rtcMem))
        if len(data) > RTC_MEM_MAX:
            raise ValueError("buffer too long")
        VB.rtcMem = bytes(data).hex()
        return None

    def datetime(self, datetimetuple=None):
        import time

        if datetimetuple is None:
            t = VB.utc()
            s = int(t // 1)
            y, mo, d, h, mi, sec, wd, _ = time.gmtime(s)
            return (y, mo, d, wd, h, mi, sec, int((t - s) * 1000000))
        y, mo, d, _wd, h, mi, sec = datetimetuple[:7]
        us = datetimetuple[7] if len(datetimetuple) > 7 else 0
        VB.setUtc(time.mktime((y, mo, d, h, mi, sec, 0, 0)) + us / 1000000)
        return None


def reset_cause():
    return VB.resetCause


def reset():
    """A hard reset: the board starts again from power-on code, main.py runs."""
    VB.requestReset("hard")
    raise SystemExit


def soft_reset():
    raise SystemExit


def unique_id():
    return b"\x24\x6f\x28\x6a\x6b\x76"  # the ESP32's base MAC


_freq = [160000000]


def freq(hz=None):
    if hz is None:
        return _freq[0]
    if hz not in (20000000, 40000000, 80000000, 160000000, 240000000):
        raise ValueError("frequency must be 20MHz, 40MHz, 80Mhz, 160MHz or 240MHz")
    _freq[0] = hz
    return None


def idle():
    jkvb.step()


def disable_irq():
    return 0


def enable_irq(state=0):
    pass


# onewire and ds18x20 are frozen into the ESP32's firmware; the vboard's stand-ins
# (over _onewire and a DS18B20 of jkvbdev) are imported here, while vboard.mjs has
# the built-in folder on sys.path, so `import ds18x20` finds them as on a board
import ds18x20  # noqa: E402,F401
import onewire  # noqa: E402,F401
