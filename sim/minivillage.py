# A small village that runs in real MicroPython as well as CPython: the controller on
# the virtual clock with simulated hardware, and a tank that a pump fills and a
# village drains on a simple daily profile. For heap and interpreter-parity checks;
# the full plant (sim/plant.py) needs CPython.
import json
import os

from jkfw.main import start

from .hw import NullI2C, SimHal
from .vclock import VirtualClock

START_UTC = 1772303400  # 2026-03-01 00:00 IST


def build(board_json="board.json", key_hex="00" * 32, display="none"):
    """(clock, hal, controller) booted through the board's own boot sequence
    (jkfw.main.start), with the tank ticking every 10 s. display: "none",
    "ssd1306" or "hd44780" on a simulated I2C bus."""
    for d in ("sd", "flash"):
        try:
            os.mkdir(d)
        except OSError:
            pass
    with open(board_json) as f:
        pins = json.load(f)["pins"]
    with open("config.json", "w") as f:
        json.dump(
            {"device": "0a1b2c3d", "key": key_hex, "pins": pins, "display": display,
             "population": 500}, f
        )  # fmt: skip
    clock = VirtualClock(START_UTC)
    made = []

    def make_hal(cfg):
        hal = SimHal(cfg, clock)
        hal.i2c = NullI2C()
        made.append(hal)
        return hal

    ctl = start(make_hal, clock, "config.json", "flash", "sd")
    hal = made[0]
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
