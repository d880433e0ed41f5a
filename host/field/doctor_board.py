"""The doctor's code on the board: sent once per session with `Board.exec`, then
called by name (`_jk_has_machine()`, `_jk_has_uart()`, `_jk_at(...)`); and the
code of the two checks that change something on the board (its clock, the relay)."""

from __future__ import annotations

import time

DOCTOR_HELPERS = r"""
def _jk_has_machine():
    try:
        import machine
        return True
    except ImportError:
        return False
def _jk_has_uart():
    try:
        import machine
        return hasattr(machine, 'UART')
    except ImportError:
        return False
def _jk_at(tx, rx, baud, cmds):
    import machine, time
    u = machine.UART(1, baudrate=baud, tx=tx, rx=rx, timeout=100)
    out = []
    for c in cmds:
        u.read()
        u.write(c + b'\r')
        t = time.ticks_ms()
        a = b''
        while time.ticks_diff(time.ticks_ms(), t) < 2000:
            a += u.read() or b''
            if b'OK' in a or b'ERROR' in a:
                break
        out.append(a)
    return out
"""


def set_rtc(t: time.struct_time) -> str:
    """Code that sets the board's clock (machine.RTC) to UTC time t."""
    fields = (
        t.tm_year,
        t.tm_mon,
        t.tm_mday,
        t.tm_wday,
        t.tm_hour,
        t.tm_min,
        t.tm_sec,
        0,
    )
    return "import machine\nmachine.RTC().datetime(%r)" % (fields,)


def relay_pulse(pin: int, active: int, seconds: int) -> str:
    """Code that closes the relay on pin for `seconds`, then opens it."""
    code = "import machine, time\nr = machine.Pin(%d, machine.Pin.OUT)\n"
    code += "r.value(%d)\ntime.sleep(%d)\nr.value(%d)"
    return code % (pin, active, seconds, 1 - active)  # %d: numbers only
