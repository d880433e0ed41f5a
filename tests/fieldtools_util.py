"""Shared by the field-tool tests: a virtual board in a subprocess, `jalkal` and
`mpremote` runs against it, a provisioned config.json."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from test_vboard import VBoard, mpremote  # noqa: F401  (re-exported)

CLI_TIMEOUT_S = 120


def jalkal(*args, timeout=CLI_TIMEOUT_S, check=None, cwd=None):
    """`python -m jalkal ARGS`; check=0/1 asserts the exit status."""
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    try:
        proc = subprocess.run(
            [sys.executable, "-m", "jalkal", *map(str, args)],
            capture_output=True, timeout=timeout, env=env, cwd=cwd,
        )  # fmt: skip
    except subprocess.TimeoutExpired as e:
        pytest.fail(f"jalkal {' '.join(map(str, args))} timed out: {e.stderr!r}")
    out, err = proc.stdout.decode(), proc.stderr.decode()
    if check is not None and proc.returncode != check:
        pytest.fail(
            f"jalkal {' '.join(map(str, args))} exited {proc.returncode}, not {check}:"
            f"\n{out}\n{err}"
        )
    return proc.returncode, out, err


def provision(tmp: Path, *args, board="esp32-devkitc-sim800l", population=500) -> Path:
    """A config.json made by `jalkal provision ARGS` (keys and registry beside it)."""
    out = tmp / "prov"
    jalkal("provision", "--board", board, "--village", "Testpur", "--population",
           population, "--out", out, *args, check=0)  # fmt: skip
    cfg = out / "config.json"
    assert json.loads(cfg.read_text())["device"] != "00000000"
    return cfg


def board_has_machine(port: str) -> bool:
    """Whether the virtual board can run the firmware (a simulated `machine`)."""
    proc = mpremote(port, "exec", "import machine", check=False)
    return proc.returncode == 0
