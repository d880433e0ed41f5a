# A small village that runs in real MicroPython as well as CPython: the controller on
# the virtual clock with simulated hardware, and a tank that a pump fills and a
# village drains on a simple daily profile. For heap and interpreter-parity checks;
# the full plant (sim/plant.py) needs CPython.
import json
import os

from jkfw import config
from jkfw.app import Controller
from jkfw.logger import FrameLog
from jkfw.store import Store

from .hw import SimHal
from .vclock import VirtualClock

START_UTC = 1772303400  # 2026-03-01 00:00 IST


def build(board_json="board.json", key_hex="00" * 32):
    """(clock, hal, controller) booted, with the tank ticking every 10 s."""
    for d in ("sd", "flash"):
        try:
            os.mkdir(d)
        except OSError:
            pass
    with open(board_json) as f:
        pins = json.load(f)["pins"]
    cfg, _bad = config.validate(
        {"device": "0a1b2c3d", "key": key_hex, "pins": pins, "display": "none",
         "population": 500}
    )  # fmt: skip
    clock = VirtualClock(START_UTC)
    hal = SimHal(cfg, clock)
    ctl = Controller(cfg, hal, clock, Store("flash"), FrameLog("sd", "flash"))
    ctl.boot()
    ctl.start()
    tank = [6000]
    frac = [0, 0]

    def tick():
        inflow = 50 if hal.relay_is_on() else 0  # litres per 10 s
        hour = (clock.ms // 3600000) % 24
        out = 12 if 6 <= hour < 9 or 17 <= hour < 20 else 3
        out = min(out, tank[0] + inflow)
        tank[0] = min(20000, tank[0] + inflow - out)
        frac[0] += inflow
        frac[1] += out
        hal.counters["source"].pulse(frac[0] // 10)
        hal.counters["supply"].pulse(frac[1] // 10)
        frac[0] %= 10
        frac[1] %= 10
        hal.switch_pins["dry"].set(0)
        hal.switch_pins["low"].set(1 if tank[0] < 5000 else 0)
        hal.switch_pins["high"].set(1 if tank[0] > 18000 else 0)
        clock.at(clock.ms + 10000, tick)

    clock.at(10000, tick)
    return clock, hal, ctl


def log_bytes():
    """Every SD log file, in name order, as one byte string."""
    names = sorted(os.listdir("sd/log"))
    data = b""
    for n in names:
        with open("sd/log/" + n, "rb") as f:
            data += f.read()
    return names, data
