"""The whole controller on the virtual clock, with simulated hardware and a small
tank plant: what the relay did (as the hardware saw it) and what the SD log says.
The board boots, and reboots, through its own boot sequence (jkfw.main.start)."""

import json

from conftest import REPO

from jkfw import config
from jkfw.main import start
from jkproto import codec
from jkproto import objects as ob
from jksim.hw import SimHal
from jksim.minivillage import Tank
from jksim.vclock import VirtualClock

KEY = bytes(range(32))
T0 = 1772303400  # 2026-03-01T00:00+05:30 (local midnight)


def make_cfg(**over):
    pins = json.loads((REPO / "boards" / "esp32-devkitc-sim800l.json").read_text())[
        "pins"
    ]
    raw = {"device": "0a1b2c3d", "key": KEY.hex(), "pins": pins, "population": 500,
           "display": "none", "debounce_s": 3}  # fmt: skip
    raw.update(over)
    cfg, bad = config.validate(raw)
    assert bad == []
    return cfg


class Plant(Tank):
    """The simulator's small plant (jksim.minivillage.Tank: a 300 L/min pump filling
    a 20,000 L tank, floats at 5,000 and 18,000 L, 10 L a pulse), the tank `level`
    full, the village drawing draw_lpm all day."""

    def __init__(self, clock, hal, level=0.5, draw_lpm=40):
        draw = draw_lpm * self.STEP_MS / 60000
        super().__init__(clock, hal, level * self.TANK_L, draw)


def boot(tmp_path, clock, hal, cfg):
    """Power up: the board's own start() reads cfg from its config.json (the keys
    that differ from the defaults, as provisioning writes them) and runs on hal."""
    raw = {k: v for k, v in cfg.items() if v != config.DEFAULTS[k]}
    path = tmp_path / "config.json"
    path.write_text(json.dumps(raw))
    flash, sd = str(tmp_path / "flash"), str(tmp_path / "sd")
    ctl = start(lambda _cfg: hal, clock, str(path), flash, sd)
    assert ctl.cfg == cfg and not ctl.bad_keys
    return ctl


def setup(tmp_path, level=0.2, draw_lpm=40):
    """A board booted on the virtual clock beside a running plant."""
    cfg = make_cfg()
    clock = VirtualClock(T0)
    hal = SimHal(cfg, clock)
    plant = Plant(clock, hal, level=level, draw_lpm=draw_lpm)
    ctl = boot(tmp_path, clock, hal, cfg)
    plant.start()
    return cfg, clock, hal, plant, ctl


def read_log(tmp_path):
    data = b"".join(p.read_bytes() for p in sorted((tmp_path / "sd" / "log").glob("*")))
    objs, stats = ob.decode_stream(data, {"0a1b2c3d": codec.Signer(KEY)})
    return objs, stats


def relay_intervals(trace, end_ms):
    out, on_at = [], None
    for ms, on in trace:
        if on and on_at is None:
            on_at = ms
        elif not on and on_at is not None:
            out.append((on_at, ms))
            on_at = None
    if on_at is not None:
        out.append((on_at, end_ms))
    return out


def test_three_days_of_auto_filling(tmp_path):
    cfg, clock, hal, plant, ctl = setup(tmp_path, level=0.2)
    end = 3 * 86400 * 1000
    clock.run_until(end)
    assert clock.failures == []
    runs = relay_intervals(hal.relay_trace, end)
    assert len(runs) >= 3  # the tank was filled again and again
    # relay off at boot until the inputs were known (debounce_s)
    assert hal.relay_trace[0] == (0, False)
    assert runs[0][0] >= cfg["restart_delay_s"] * 1000
    for (a0, a1), (b0, _b1) in zip(runs, runs[1:], strict=False):
        assert b0 - a1 >= cfg["min_off_s"] * 1000
        assert a1 - a0 <= cfg["max_run_s"] * 1000
    objs, stats = read_log(tmp_path)
    assert len(objs) > 3 * 96 and ctl.log.mode == "sd"
    assert stats["frames"] == len(objs) and stats["skipped_bytes"] == 0
    assert all(o["verified"] and o["chain"] == "ok" for o in objs)
    readings = [o for o in objs if o["kind"] == "reading"]
    assert len(readings) == 3 * 96 + 1  # the grid, and one at boot (here midnight)
    assert all(
        r["ts"][14:] in ("00:00Z", "15:00Z", "30:00Z", "45:00Z") for r in readings
    )
    # nothing counted is lost: the last reading holds every pulse the plant made
    ctl.reading()
    objs, _ = read_log(tmp_path)
    last = [o for o in objs if o["kind"] == "reading"][-1]
    assert last["supply_pulses"] == plant.supply_pulses
    assert last["source_pulses"] == plant.source_pulses
    starts = [o for o in objs if o["kind"] == "event" and o["event"] == "pump_start"]
    stops = [o for o in objs if o["kind"] == "event" and o["event"] == "pump_stop"]
    assert len(starts) == len(runs) and len(stops) == len(runs) - (hal.relay_is_on())
    assert {s["reason"] for s in stops} == {"tank_full"}
    # daily files by local date
    assert sorted(p.name for p in (tmp_path / "sd" / "log").glob("*")) == [
        "20260301.jkl", "20260302.jkl", "20260303.jkl", "20260304.jkl",
    ]  # fmt: skip


def test_dry_borewell_locks_out_and_the_relay_obeys(tmp_path):
    cfg, clock, hal, plant, ctl = setup(tmp_path, level=0.2, draw_lpm=60)
    dry_from, dry_to = 3600 * 1000, 5 * 3600 * 1000
    clock.at(dry_from, lambda: setattr(plant, "well_dry", True))
    clock.at(dry_to, lambda: setattr(plant, "well_dry", False))
    end = 12 * 3600 * 1000
    clock.run_until(end)
    assert clock.failures == []
    # physical check: the relay is never on while the well is dry, beyond the time
    # the firmware needs to see it (plant tick 10 s + debounce 3 s + a step)
    for a, b in relay_intervals(hal.relay_trace, end):
        overlap = min(b, dry_to) - max(a, dry_from)
        assert overlap <= 14000, (a, b)
    objs, _ = read_log(tmp_path)
    events = [(o["event"], o["reason"]) for o in objs if o["kind"] == "event"]
    assert ("lockout", "dry_run") in events
    assert ("pump_stop", "dry_run") in events or ("pump_stop", "no_flow") in events
    # after the well recovered, the pump went back to work
    last_start = max(a for a, _b in relay_intervals(hal.relay_trace, end))
    assert last_start > dry_to


def test_power_cut_reboot_restores_totals_and_reports_a_gap(tmp_path):
    cfg, clock, hal, plant, ctl = setup(tmp_path, level=0.5)
    clock.run_until(6 * 3600 * 1000)
    # power cut: tasks die, RAM and RTC memory are gone; the SD and flash stay
    clock.stop()
    hal.relay(False)
    hal.rtc_memory = None
    # the plant goes on (its ticks stay scheduled): the tank drains, uncounted
    clock.run_until(7 * 3600 * 1000)
    clock.reboot()  # power returns: uptime from 0, time from the RTC
    hal.reset_code = 1
    clock2 = clock
    ctl = boot(tmp_path, clock2, hal, cfg)
    clock.run_until(8 * 3600 * 1000)
    assert clock.failures == []
    objs, stats = read_log(tmp_path)
    boots = [o for o in objs if o["kind"] == "boot"]
    assert [b["boot"] for b in boots] == [1, 2]
    gaps = [o for o in objs if o["kind"] == "gap"]
    assert {g["meter"] for g in gaps} == {"source", "supply"}
    assert all(g["pulses"] is None and g["reason"] == "crash" for g in gaps)
    # totals restored from the checkpoint: they never go backwards
    readings = [o for o in objs if o["kind"] == "reading"]
    sup = [r["supply_pulses"] for r in readings]
    assert sup == sorted(sup)
    assert ctl.state["boots"] == 2


def test_watchdog_reset_keeps_every_pulse(tmp_path):
    cfg, clock, hal, plant, ctl = setup(tmp_path, level=0.5)
    clock.run_until(5 * 3600 * 1000 + 7000)
    clock.reboot()  # watchdog reset: RTC memory survives, the counter restarts at 0
    for c in hal.counters.values():
        c.count = 0
    hal.reset_code = 3
    ctl = boot(tmp_path, clock, hal, cfg)
    clock.run_until(9 * 3600 * 1000)
    ctl.reading()
    objs, _ = read_log(tmp_path)
    assert not [o for o in objs if o["kind"] == "gap"]
    last = [o for o in objs if o["kind"] == "reading"][-1]
    # pulses after the last counter read before the reset are the only ones at risk:
    # the plant ticks every 10 s and the meters are read every 10 s
    assert plant.supply_pulses - last["supply_pulses"] <= 40
    assert [o["reset"] for o in objs if o["kind"] == "boot"] == ["power_on", "watchdog"]


def test_manual_off_and_lockout_survive_a_power_cut(tmp_path):
    cfg, clock, hal, plant, ctl = setup(tmp_path, level=0.2)
    clock.run_until(3600 * 1000)
    ctl.pump.command(clock.uptime_s(), "off", "sms")
    ctl.pump_flag.set()
    clock.run_until(3700 * 1000)
    assert not hal.relay_is_on()
    clock.reboot()
    hal.rtc_memory = None
    ctl = boot(tmp_path, clock, hal, cfg)
    clock.run_until(6 * 3600 * 1000)
    assert ctl.pump.mode == "off"  # the operator's "off" was kept
    assert not any(on for ms, on in hal.relay_trace if ms > 3700 * 1000)


def test_display_follows_the_controller(tmp_path):
    import sys

    from jksim import fbuf

    sys.modules.setdefault("framebuf", fbuf)
    from jkfw.display import Display
    from jkfw.ssd1306 import SSD1306

    class Bus:
        def __init__(self):
            self.writes = []

        def writeto(self, addr, buf):
            self.writes.append((addr, bytes(buf)))

    cfg = make_cfg()
    clock = VirtualClock(T0)
    hal = SimHal(cfg, clock)
    plant = Plant(clock, hal, level=0.2)
    ctl = boot(tmp_path, clock, hal, cfg)
    bus = Bus()
    ctl.display = Display(SSD1306(bus, 0x3C), "ssd1306")
    clock.spawn(ctl.display_task())  # start() spawns it when a display is fitted
    plant.start()
    clock.run_until(2 * 3600 * 1000)
    frames = [b for a, b in bus.writes if a == 0x3C and len(b) == 1025]
    assert len(frames) > 100 and frames[-1][0] == 0x40
    status = ctl.status()
    assert status["pump"] in ("on", "off") and status["time"] == "02:00"
    # today's litres: everything since local midnight, up to one counter read behind
    assert 0 <= plant.supply_pulses * 10 - status["litres_today"] <= 100


class LateClock(VirtualClock):
    """Every sleep of the firmware ends lag_ms late, as in a loop kept busy (a modem
    session, a slow card)."""

    def __init__(self, start_utc, lag_ms):
        super().__init__(start_utc)
        self.lag_ms = lag_ms

    def sleep_ms(self, ms):
        return super().sleep_ms(ms + self.lag_ms)


def late_readings(tmp_path, lag_ms):
    tmp_path.mkdir()
    cfg = make_cfg()
    clock = LateClock(T0, lag_ms)
    hal = SimHal(cfg, clock)
    Plant(clock, hal).start()
    boot(tmp_path, clock, hal, cfg)
    clock.run_until(6 * 3600 * 1000 + 300000)
    assert clock.failures == []
    objs, _ = read_log(tmp_path)
    return [o for o in objs if o["kind"] == "reading"][1:]  # the boot's one aside


def test_a_late_reading_keeps_its_grid_slot(tmp_path):
    readings = late_readings(tmp_path / "a", 7000)
    assert len(readings) == 6 * 4
    assert all(r["ts"][14:] in ("00:00Z", "15:00Z", "30:00Z", "45:00Z")
               for r in readings)  # fmt: skip
    # four minutes late is past a quarter interval: the reading says when it was
    readings = late_readings(tmp_path / "b", 240000)
    assert len(readings) == 6 * 4
    assert all(int(r["ts"][14:16]) % 15 == 4 and r["ts"][17:] == "00Z"
               for r in readings), [r["ts"] for r in readings]  # fmt: skip


def test_a_tool_stop_then_soft_reset_keeps_every_pulse(tmp_path):
    """A field tool stops the firmware (Ctrl-C), works, then soft-resets the board:
    the counters went on counting at the REPL and the soft reset clears them, so the
    tool asks the stopped firmware to settle its meters first (jkfw.main.settle)."""
    cfg, clock, hal, plant, ctl = setup(tmp_path, level=0.2)
    end = 3600 * 1000
    while not hal.relay_is_on():  # the tool stops it while the pump runs
        end += 10000
        clock.run_until(end)
    clock.run_until(end + 65000)
    assert hal.relay_is_on()
    hal.relay(False)  # run()'s finally: relay off, the pump's time ends
    ctl.stopped()
    clock.ms += 40000  # the tool works for 40 s; the village draws, nobody polls
    hal.counters["supply"].pulse(7)
    plant.supply_pulses += 7
    want = plant.supply_pulses
    ctl.settle()
    clock.reboot()  # the soft reset: RTC memory stays, the counters restart at 0
    for c in hal.counters.values():
        c.count = 0
    hal.reset_code = 5
    ctl = boot(tmp_path, clock, hal, cfg)
    clock.run_until(clock.ms + 1000)
    objs, _ = read_log(tmp_path)
    readings = [o for o in objs if o["kind"] == "reading"]
    settled, first = readings[-2], readings[-1]
    assert settled["boot"] == first["boot"] - 1
    assert settled["supply_pulses"] == want  # the 7 are there
    assert first["supply_pulses"] == want  # and carried over
    assert settled["ts"][17:] != "00Z" or settled["ts"][14:16] not in ("00", "15")
    # pump time ran to the stop, not through the 40 s the relay was off
    assert settled["pump_s"] <= 900 and "pump" not in settled["inputs"]
    assert not [o for o in objs if o["kind"] == "gap"]
