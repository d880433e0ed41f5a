"""jalkal doctor: the screen, and its checks on the virtual board after a deploy
(firmware files, config, logs), with a changed firmware file and a bad config."""

from __future__ import annotations

import json
import shutil

import pytest
from fieldtools_util import VBoard, jalkal, mpremote, provision

from jalkal.field import doctor
from jalkal.field.deploy import package_sources

N_FILES = len(package_sources())  # the firmware files deploy copies


def test_render_and_parsers():
    checks = [
        doctor.Check("clock", doctor.OK, "2026-03-01 00:00:00 UTC"),
        doctor.Check("SD card", doctor.BAD, "not found", "insert a card"),
        doctor.Check("modem", doctor.NA, "cannot test"),
    ]
    text = doctor.render(checks, "jalkal doctor on P")
    assert text.splitlines() == [
        "jalkal doctor on P",
        "✓ clock        2026-03-01 00:00:00 UTC",
        "✗ SD card      not found",
        "               fix: insert a card",
        "– modem        cannot test",
        "3 checks: 1 ✓, 1 ✗, 1 – (not checked)",
    ]
    assert doctor._csq("AT+CSQ\r\n+CSQ: 17,0\r\n\r\nOK\r\n") == 17
    assert doctor._csq("ERROR") is None
    assert doctor._line("\r\n+CREG: 0,2\r\nOK", "+CREG") == "+CREG: 0,2"


@pytest.fixture(scope="module")
def tools(mpy):
    pytest.importorskip("mpremote")
    return mpy


def lines(out):
    return {ln[2:].split()[0] if not ln.startswith("  ") else "": ln
            for ln in out.splitlines() if ln[:1] in "✓✗–"}  # fmt: skip


@pytest.mark.micropython
def test_doctor_on_the_vboard(tools, tmp_path):
    cfg = provision(tmp_path)
    flash = tmp_path / "flash"
    vb = VBoard(flash)
    try:
        jalkal("deploy", "--port", vb.port, "--config", cfg, "--boot-wait", 2)
        # logs as the firmware writes them, from a simulated day
        sim = tmp_path / "sim"
        jalkal("sim", "--scenario", "normal", "--days", 1, "--out", sim, check=0)
        shutil.copytree(sim / "sd", flash / "sd", dirs_exist_ok=True)
        mpremote(vb.port, "soft-reset")
        rc, out, err = jalkal("doctor", "--port", vb.port)
        got = lines(out)
        assert got["MicroPython"].startswith("✓ MicroPython  1.29.0")
        assert got["firmware"].startswith("✓ firmware     jkfw 0.1.0 build")
        assert f"all {N_FILES} files match" in got["firmware"]
        dev = json.loads(cfg.read_text())["device"]
        assert got["config"].startswith(f"✓ config       device {dev}")
        assert got["flash"].startswith("✓ flash")
        assert got["clock"].startswith("✓ clock")
        assert got["switches"].startswith("✓ switches     dry off")
        assert got["meters"].startswith("✓ meters       over the last")
        # the vboard's card is mounted like a board's
        assert got["SD"].startswith("✓ SD card      mounted")
        # its modem UART has no modem behind it: ✗ and the fix, never a fake ✓
        assert got["modem"].startswith("✗ modem        no answer to AT")
        assert "fix: check the modem's power" in out
        # no uplink in this config: –, not checked
        assert got["last"].startswith("– last upload  no uplink configured")
        assert rc == 1 and "jalkal: 1 check failed" in err
        assert "relay" not in out  # never switched without --test-relay

        # a changed firmware file and a config the firmware would refuse
        app = flash / "app" / "a" / "jkfw" / "pump.mpy"
        app.write_bytes(app.read_bytes() + b"\0")
        raw = json.loads((flash / "config.json").read_text())
        (flash / "config.json").write_text(json.dumps(dict(raw, max_run_s=5)))
        mpremote(vb.port, "soft-reset")
        rc, out, err = jalkal("doctor", "--port", vb.port)
        got = lines(out)
        assert f"1 of {N_FILES} files differ (jkfw/pump.mpy" in got["firmware"]
        assert "refused: max_run_s" in got["config"]
        assert "fix: jalkal deploy --port" in out
        assert rc == 1 and "jalkal: 3 checks failed" in err
    finally:
        assert vb.stop() == 0
