"""What a board (or its config.json) says never steers the laptop or the board:
`pull` writes only inside its folder, `monitor` shows the board's control characters
as text, and `doctor` sends only GPIO numbers, never config text, as board code."""

from __future__ import annotations

import io
import json
from pathlib import Path

import pytest
from fake_board import FakeBoard
from test_field_inprocess import (
    DEVICE,
    PINS,
    board_with_logs,
    healthy_board,
    write_config,
)

from jalkal.errors import JalkalError
from jalkal.field import deploy, doctor, monitor, pull
from jalkal.field.board import Board
from jalkal.field.doctor_board import relay_pulse

EVIL = "__import__('os').remove('/config.json')"


@pytest.fixture(scope="module")
def prep(tmp_path_factory) -> deploy.Prepared:
    cfg = write_config(tmp_path_factory.mktemp("cfg") / "config.json")
    return deploy.prepare(str(cfg), source=True)


def files_under(root: Path) -> set[Path]:
    return {p for p in root.rglob("*") if p.is_file()}


def with_config(fb: FakeBoard, **over) -> None:
    cfg = json.loads(fb.files["/config.json"])
    cfg.update(over)
    fb.put("/config.json", json.dumps(cfg))


# --- pull ---------------------------------------------------------------------------


@pytest.mark.parametrize("device", ["../../x", "ABS", "0A1B2C3D", 12345678])
def test_pull_files_a_bad_device_id_under_unknown(tmp_path, device):
    fb = board_with_logs(tmp_path / "b")
    if device == "ABS":
        device = str(tmp_path / "abs")
    with_config(fb, device=device)
    out = tmp_path / "w" / "v" / "out"
    before = files_under(tmp_path)
    with pytest.raises(JalkalError) as e:
        pull.run(fb, str(out), clear_after=True, restart=False)
    assert repr(device) in str(e.value) and "8 lowercase hex digits" in str(e.value)
    new = files_under(tmp_path) - before
    assert new and all(p.is_relative_to(out / "unknown") for p in new), new
    assert not fb.called("remove")  # a board of unknown identity keeps its logs


def test_pull_a_missing_device_id_is_named(tmp_path):
    fb = board_with_logs(tmp_path / "b")
    cfg = json.loads(fb.files["/config.json"])
    del cfg["device"]
    fb.put("/config.json", json.dumps(cfg))
    with pytest.raises(JalkalError, match="has no device id in /config.json"):
        pull.run(fb, str(tmp_path / "out"), restart=False)


def test_pull_skips_listed_names_that_are_not_plain(tmp_path, capsys):
    fb = board_with_logs(tmp_path / "b")
    bad = [
        "../../evil.jkl",
        "/abs.jkl",
        "a/b.jkl",
        "x\x00.jkl",
        "c:\\d.jkl",
        "\x1b.jkl",
    ]
    listdir = fb.listdir

    def listing(folder: str) -> list[tuple[str, bool, int]]:
        got = listdir(folder)
        return got + [(n, False, 300) for n in bad] if got else got

    fb.listdir = listing  # type: ignore[method-assign]
    out = tmp_path / "w" / "out"
    before = files_under(tmp_path)
    res = pull.run(fb, str(out), restart=False)
    assert len(res.copied) == 4  # the board's own logs, nothing else
    new = files_under(tmp_path) - before
    assert all(p.is_relative_to(out / DEVICE) for p in new), new
    err = capsys.readouterr().err
    for n in bad:
        assert f"skipped {n!r} in /sd/log: not a plain file name" in err
        assert f"skipped {n!r} in /flash/ring" in err
    assert "\x1b" not in err and "\x00" not in err
    assert not any(c.path and ".." in str(c.path) for c in fb.calls)


def test_plain_names_and_paths_inside(tmp_path):
    assert pull.plain_name("20260301.jkl") and pull.plain_name("00.jkl")
    for n in ("", ".", "..", "a/b", "a\\b", "c:x", "/x", "x\x00", "x\x7f", "x\x9b"):
        assert not pull.plain_name(n), n
    assert not pull.plain_name(None) and not pull.plain_name(b"x.jkl")
    assert pull.inside(tmp_path, "a", "b.jkl") == tmp_path / "a" / "b.jkl"
    for parts in (("..", "x"), ("a", "../../x"), (str(tmp_path.parent),)):
        with pytest.raises(JalkalError, match="outside"):
            pull.inside(tmp_path, *parts)


# --- monitor ------------------------------------------------------------------------


def test_monitor_shows_control_characters_as_text():
    out = io.StringIO()
    p = monitor.Printer(out, None)
    p.feed(b"\x1b[2J\x1b]0;owned\x07red \x1b[31mtext\x1b[0m\tok\x08\rx\x9b\r\n")
    p.feed("été ".encode() + b"\xc2\x9b1m\n")  # U+009B: a CSI in one character
    p.flush()
    text = out.getvalue()
    lines = text.splitlines()
    assert len(lines) == 2 and p.lines == 2
    assert lines[0].endswith(
        "| \\x1b[2J\\x1b]0;owned\\x07red \\x1b[31mtext\\x1b[0m\tok\\x08\\x0dx\ufffd"
    ), lines[0]
    assert lines[1].endswith("| été \\x9b1m"), lines[1]
    assert not any(c < " " and c not in "\t\n" or "\x7f" <= c <= "\x9f" for c in text)


def test_visible_keeps_ordinary_text():
    assert monitor.visible("pump on\t12 L/min, 25 °C") == "pump on\t12 L/min, 25 °C"


# --- doctor -------------------------------------------------------------------------


def test_doctor_sends_no_config_text_as_board_code(tmp_path, prep):
    fb = healthy_board(tmp_path, prep)
    pins = {**PINS, "modem_tx": EVIL, "sw_dry": EVIL + " or 1", "relay": [EVIL],
            "sd_cs": EVIL}  # fmt: skip
    with_config(fb, pins=pins)
    checks, _head = doctor.run(fb, test_relay=True)
    got = {c.name: c for c in checks}
    assert got["config"].status == doctor.BAD
    for role in ("modem_tx", "sw_dry", "relay", "sd_cs"):
        assert repr(role) in got["config"].detail.split("pins not a GPIO number: ")[1]
    assert got["modem"].status == doctor.NA
    assert got["modem"].detail == "the board has no modem pins in config.json"
    assert got["relay test"].detail == "no relay pin in config.json"
    assert "/config.json" in fb.files and fb.pin_writes == []
    sent = [str(a) for c in fb.calls for a in c.args]
    assert not any("__import__('os')" in s for s in sent)


def test_doctor_pins_out_of_range_or_not_ints_are_refused(tmp_path, prep):
    fb = healthy_board(tmp_path, prep)
    with_config(fb, pins={**PINS, "modem_rx": 99, "modem_tx": True, "relay": 5.0})
    checks, _head = doctor.run(fb, test_relay=True)
    got = {c.name: c for c in checks}
    for role in ("modem_tx", "modem_rx", "relay"):
        assert repr(role) in got["config"].detail, got["config"].detail
    assert got["modem"].status == doctor.NA and not fb.called("eval", "_jk_at(*")
    assert got["relay test"].status == doctor.BAD and fb.pin_writes == []


def test_sd_mount_code_holds_numbers_only():
    sent: list[str] = []
    b = Board("/dev/null")
    b.helpers = lambda: None  # type: ignore[method-assign]
    b.eval = lambda expr: sent.append(expr) or "card"  # type: ignore[method-assign]
    assert pull.gpios({"sd_cs": EVIL, "sd_sck": 18, "x": 1}, pull.SD_PINS) == {
        "sd_sck": 18
    }
    b.sd({"sd_cs": EVIL, "sd_sck": 18, "sd_miso": 19.0, "sd_mosi": 23})
    assert sent == ["_jk_sd({'sd_sck': 18, 'sd_mosi': 23})"]


def test_relay_code_takes_numbers_only():
    assert relay_pulse(4, 1, 2).startswith("import machine, time\nr = machine.Pin(4,")
    with pytest.raises(TypeError):
        relay_pulse(EVIL, 1, 2)  # type: ignore[arg-type]
