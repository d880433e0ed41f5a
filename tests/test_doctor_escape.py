"""`jalkal doctor` shows what the board holds (config strings, versions, errors)
with its control characters as text, as `jalkal monitor` does: a board (or its
config) carrying terminal escape sequences cannot drive the technician's terminal.
Run in-process on the recording fake board (tests/fake_board.py)."""

from __future__ import annotations

import contextlib
import json

from click.testing import CliRunner
from test_field_inprocess import (  # noqa: F401  (the module's fixtures)
    DEVICE,
    KEY,
    PINS,
    cfg_path,
    healthy_board,
    source_prep,
)

from jalkal.cli import cli
from jalkal.console import visible
from jalkal.field import command as field_command
from jalkal.field import doctor, layout, monitor

ESC = "\x1b"
# clear the screen, set the window title, a CSI by its C1 byte, a carriage return
EVIL = "\x1b[2J\x1b]0;owned\x07\x9b31m\rok"


def _evil_board(tmp_path, prep):
    fb = healthy_board(tmp_path, prep)
    cfg = {"device": DEVICE + EVIL, "key": KEY.hex(), "board": "esp32" + EVIL,
           "pins": PINS, "population": 500, "name" + EVIL: 1}  # fmt: skip
    fb.put(layout.CONFIG, json.dumps(cfg))
    fb.reconnect()
    return fb


def test_doctor_output_carries_no_raw_escape(tmp_path, source_prep, monkeypatch):  # noqa: F811
    fb = _evil_board(tmp_path, source_prep)

    @contextlib.contextmanager
    def connect(port):
        yield fb

    monkeypatch.setattr(field_command, "connect", connect)
    res = CliRunner().invoke(cli, ["doctor", "--port", fb.port, "--no-restart"])
    out = res.output
    assert "config" in out and "\\x1b[2J" in out  # the value is shown, as text
    for c in (ESC, "\x07", "\x9b", "\r"):
        assert c not in out, repr(c)
    # the report itself, as doctor.render gives it to the command
    checks, head = doctor.run(_evil_board(tmp_path / "b", source_prep), restart=False)
    assert any(ESC in c.detail for c in checks) or ESC in head  # it was there
    text = doctor.render(checks, head)
    assert ESC not in text and "\\x1b]0;owned\\x07" in text


def test_one_visible_for_monitor_and_doctor():
    assert monitor.visible is visible  # the same function, not a copy
    assert visible("pump on\t12 L/min, 25 °C") == "pump on\t12 L/min, 25 °C"
    assert visible(EVIL) == "\\x1b[2J\\x1b]0;owned\\x07\\x9b31m\\x0dok"
