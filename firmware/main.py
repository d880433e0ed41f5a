# Board entry point: /main.py on the board is `import jkfw.main`.
import json

from . import config
from .app import Controller
from .clock import Clock
from .hal import Hal
from .logger import FrameLog
from .store import Store

CONFIG = "/config.json"


def build_display(cfg, hal):
    if cfg["display"] == "none":
        return None
    i2c = hal.start_i2c()
    if i2c is None:
        return None
    from .display import Display

    if cfg["display"] == "hd44780":
        from .hd44780 import HD44780

        screen = HD44780(i2c, cfg["display_addr"])
    else:
        from .ssd1306 import SSD1306

        screen = SSD1306(i2c, cfg["display_addr"])
    return Display(screen, cfg["display"])


def run():
    cfg, bad = config.load(CONFIG)
    hal = Hal(cfg)
    hal.start_relay()  # before anything that could fail: the pump stays off
    hal.start_wdt()
    clock = Clock()
    sd = hal.mount_sd()
    log = FrameLog("/sd" if sd else None, "/flash")
    ctl = Controller(cfg, hal, clock, Store("/flash"), log, bad_keys=bad)
    try:
        ctl.display = build_display(cfg, hal)
    except OSError:
        ctl.display = None  # no display fitted: run without one
    ctl.boot()
    ctl.start()

    async def forever():
        while True:
            await clock.sleep_ms(3600000)

    clock.run(forever())


if __name__ == "__main__":
    print(json.dumps(config.DEFAULTS))
