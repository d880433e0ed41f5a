# `_onewire` for the virtual board: the C module under MicroPython's onewire.py
# (extmod/modonewire.c: reset, readbit, readbyte, writebit, writebyte, crc8, each
# taking the bus's Pin), over the DS18B20 of jkvbdev on the config's onewire pin
# when config.json fits one (quality.temp); any other pin is a bus with nothing on
# it (no presence pulse, reads 1s).
import jkvb

_buses = {}  # GPIO -> jkvbdev.DS18B20 or None


def _dev(pin):
    n = pin._id
    if n not in _buses:
        d = None
        if jkvb.has_sensors() and jkvb.sensors().onewire_on(n):
            s = jkvb.sensors()
            d = jkvb.builtin("jkvbdev").DS18B20(s.p.temp_c, s.onewire_short)
        _buses[n] = d
    return _buses[n]


def reset(pin):
    d = _dev(pin)
    return bool(d and d.reset())


def readbit(pin):
    d = _dev(pin)
    return d.read_bit() if d else 1


def readbyte(pin):
    v = 0
    for i in range(8):
        v |= readbit(pin) << i
    return v


def writebit(pin, value):
    d = _dev(pin)
    if d:
        d.write_bit(value)


def writebyte(pin, value):
    for i in range(8):
        writebit(pin, (value >> i) & 1)


def crc8(data):
    return jkvb.builtin("jkvbdev").crc8(data)
