# `time` for the virtual board: the port's own module, with what differs from the
# ESP32's made the same. The clock itself (ticks, sleeps, waits, the RTC) is the
# vboard's, scaled by --speed in vboard.mjs, so nothing here needs to know the speed.
#
# - time() is an int, as on the ESP32 (the WebAssembly port gives a float), and so is
#   time_ns().
# - localtime() is UTC, as on the ESP32 (no time zone; the port uses the host's).
import sys

_path = sys.path
sys.path = ()  # an empty path imports the built-in module, not this one
try:
    import time as _t
finally:
    sys.path = _path
    del _path
    del sys

ticks_ms = _t.ticks_ms
ticks_us = _t.ticks_us
ticks_cpu = _t.ticks_cpu
ticks_add = _t.ticks_add
ticks_diff = _t.ticks_diff
sleep = _t.sleep
sleep_ms = _t.sleep_ms
sleep_us = _t.sleep_us
mktime = _t.mktime


def time():
    return int(_t.time())


def time_ns():
    return int(_t.time_ns())


def gmtime(secs=None):
    return _t.gmtime(time() if secs is None else int(secs))


localtime = gmtime
