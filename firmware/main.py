# Board entry point: /main.py on the board is `import jkfw.main`.
#
# start() is the board's boot sequence, and the simulator's: its villages (the
# scenario one, at every power-up and reset, and the MicroPython one, whose heap is
# measured) call it with their own HAL and clock, and a config.json on their flash.
import os

from . import unload
from .app import Controller
from .logger import FrameLog
from .store import Store

CONFIG = "/config.json"
FLASH = "/flash"  # state and the frame ring
SD = "/sd"  # where the card is mounted
# the running controller (run() sets it): tools read ctl.status() over the REPL
ctl = None


def load_config(path):
    """(config, bad keys); the validator is dropped again afterwards (boot-only code
    should not hold heap for the rest of the day)."""
    from . import config

    try:
        return config.load(path)
    finally:
        unload("config")
        unload("sensorcfg")


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
    # a tank or borewell level sensor: one page more shows the levels
    return Display(screen, cfg["display"], bool(cfg.get("tank") or cfg.get("bore")))


def start(make_hal, clock, config_path=CONFIG, flash=FLASH, sd=SD, echo=None):
    """Boot the controller: relay off first, watchdog, storage, display, tasks.
    echo(frame), if given, sees every logged frame from the boot frame on."""
    cfg, bad = load_config(config_path)
    try:
        os.mkdir(flash)  # a fresh board's file system has no such folder
    except OSError:
        pass
    hal = make_hal(cfg)
    hal.start_relay()  # before anything that could fail: the pump stays off
    hal.start_wdt()
    # no card: nothing is mounted at `sd`, its writes fail and frames go to the
    # flash ring until a card is back (the logger keeps trying)
    hal.mount_sd(sd)
    log = FrameLog(sd, flash)
    log.echo = echo
    ctl = Controller(cfg, hal, clock, Store(flash), log, bad_keys=bad)
    try:
        ctl.display = build_display(cfg, hal)
    except OSError:
        ctl.display = None  # no display fitted: run without one
    ctl.boot()
    ctl.start()
    return ctl


def echo_frame(frame):
    """Every logged frame on the console as `jkf <hex>` (what jalkal monitor reads)."""
    from binascii import hexlify

    print("jkf", hexlify(frame).decode())


def run():
    global ctl
    from .clock import Clock
    from .hal import Hal

    clock = Clock()
    ctl = start(Hal, clock, echo=echo_frame)

    async def forever():
        while True:
            await clock.sleep_ms(3600000)

    try:
        clock.run(forever())
    finally:
        # stopped (Ctrl-C from a tool, or a crash): the pump never runs unattended
        ctl.hal.relay(False)
        ctl.stopped()


def settle():
    """Called by the field tools just before they soft-reset a board whose firmware
    they stopped: what the meters counted meanwhile is kept (Controller.settle)."""
    if ctl is not None:
        ctl.settle()


if __name__ == "__main__":
    run()
