"""jalkal monitor: frame lines decoded (MAC checked), other lines passed through, and
a run against the virtual board that stops cleanly on Ctrl-C (SIGINT)."""

from __future__ import annotations

import io
import json
import os
import select
import signal
import subprocess
import sys
import time

import pytest
from fieldtools_util import VBoard

from jalkal.field import monitor
from jkproto import codec


def sample_frames():
    """A signed boot, clock and reading frame, and the signer."""
    key = bytes(range(32))
    enc = codec.Encoder(0x0A1B2C3D, key, boot=7)
    out = [  # bytes() at once: the encoder reuses its buffer
        bytes(enc.frame(codec.BOOT, 5, 0, 1, 0, 1, 0, 900, 100, 100)),
        bytes(enc.frame(codec.CLOCK, 1772323200, 1, 1, 40, 0)),
        bytes(enc.frame(codec.READING, 1772324100, 1, 10, 5, 300, 24, 0, 99)),
    ]
    return out, {"0a1b2c3d": codec.Signer(key)}


def test_printer_decodes_frame_lines():
    fs, sg = sample_frames()
    buf = io.StringIO()
    p = monitor.Printer(buf, sg)
    data = b"MPY: soft reboot\r\n" + b"".join(b"jkf " + f.hex().encode() + b"\r\n"
                                              for f in fs)  # fmt: skip
    bad = bytearray(fs[2])
    bad[-9] ^= 1  # the MAC, CRC fixed again
    bad[-4:] = codec.crc(bad[:-4]).to_bytes(4, "little")
    data += b"jkf " + bytes(bad).hex().encode() + b"\r\njkf 00ff\r\npartial"
    for i in range(0, len(data), 7):  # any split of the stream
        p.feed(data[i : i + 7])
    p.flush()
    out = [ln.split(" ", 1)[1] for ln in buf.getvalue().splitlines()]
    assert out[0] == "| MPY: soft reboot"
    assert out[1].startswith("uptime 5 s  0a1b2c3d 7#0  boot")
    assert out[1].endswith("[MAC ok]")
    assert out[2].startswith("2026-03-01T00:00:00Z  0a1b2c3d 7#1  clock")
    assert "reading   source_pulses 10 supply_pulses 5 pump_s 300" in out[3]
    assert "inputs pump,mains" in out[3] and out[3].endswith("[MAC ok]")
    assert out[4].endswith("[MAC BAD]")
    assert out[5] == "frame? 00ff (CRC or length wrong)"
    assert out[6] == "| partial"
    assert (p.frames, p.lines) == (5, 2)


@pytest.fixture(scope="module")
def tools(mpy):
    pytest.importorskip("mpremote")
    return mpy


@pytest.mark.micropython
def test_monitor_a_running_board(tools, tmp_path):
    fs, _sg = sample_frames()
    keys = tmp_path / "keys.json"
    dev = {"0a1b2c3d": {"key": bytes(range(32)).hex()}}
    keys.write_text(json.dumps({"devices": dev}))
    flash = tmp_path / "flash"
    flash.mkdir()
    hexes = [f.hex() for f in fs]
    (flash / "main.py").write_text(
        "import time\nprint('board up')\n"
        f"for h in {hexes!r}:\n    print('jkf', h)\n    time.sleep_ms(100)\n"
        "while True:\n    time.sleep_ms(50)\n"
    )
    vb = VBoard(flash)
    try:
        proc = subprocess.Popen(
            [sys.executable, "-m", "jalkal", "monitor", "--port", vb.port,
             "--restart", "--keys", str(keys)],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE,
            env=dict(os.environ, PYTHONUNBUFFERED="1"),
        )  # fmt: skip
        text = b""
        deadline = time.monotonic() + 30
        while text.count(b"[MAC ok]") < 3 and time.monotonic() < deadline:
            r, _, _ = select.select([proc.stdout], [], [], 1)
            if r:
                text += os.read(proc.stdout.fileno(), 4096)
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=10)
        text += out
        assert proc.returncode == 0, err
        assert b"| board up" in text
        assert text.count(b"[MAC ok]") == 3, text
        assert b"monitor: 3 frames" in err
    finally:
        assert vb.stop() == 0
