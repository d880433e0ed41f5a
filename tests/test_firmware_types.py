"""The firmware type-checked against the MicroPython ESP32 stubs (mypy): a call or an
attribute that does not exist on the board fails here, before any hardware sees it."""

import os
import shutil
import subprocess
import sys

import pytest
from conftest import REPO

STUBS = REPO / "build" / "mpy-stubs"

INI = """[mypy]
python_version = 3.10
custom_typeshed_dir = {stubs}
mypy_path = {stubs}
follow_imports = silent
check_untyped_defs = True
# the firmware has no annotations: keep the checks about what exists on the board
disable_error_code = annotation-unchecked, union-attr, index, assignment, arg-type,
    operator, return-value, var-annotated, misc, has-type
[mypy-_mpy_shed.*,machine,_io]
ignore_errors = True
"""


@pytest.fixture(scope="module")
def stubs():
    if not (STUBS / "machine.pyi").exists():
        msg = "MicroPython stubs missing: run bash .ci/install.sh"
        if os.environ.get("JALKAL_REQUIRE_MICROPYTHON"):
            pytest.fail(msg, pytrace=False)
        pytest.skip(msg)
    return STUBS


def board_tree(tmp_path):
    """firmware/ and protocol/ laid out as on the board: jkfw/, jkproto/."""
    shutil.copytree(REPO / "firmware", tmp_path / "jkfw")
    (tmp_path / "jkproto").mkdir()
    for name in ("__init__.py", "codec.py", "objects.py"):
        shutil.copy(REPO / "protocol" / name, tmp_path / "jkproto" / name)
    return tmp_path


def mypy(tree, stubs):
    ini = tree / "mypy-board.ini"
    ini.write_text(INI.format(stubs=stubs))
    return subprocess.run(
        [sys.executable, "-m", "mypy", "--config-file", str(ini), "jkfw", "jkproto"],
        cwd=tree,
        capture_output=True,
        text=True,
    )


def test_firmware_type_checks_against_the_esp32_stubs(tmp_path, stubs):
    res = mypy(board_tree(tmp_path), stubs)
    assert res.returncode == 0, res.stdout + res.stderr


def test_a_call_the_board_does_not_have_fails(tmp_path, stubs):
    tree = board_tree(tmp_path)
    hal = tree / "jkfw" / "hal.py"
    hal.write_text(hal.read_text().replace("machine.Pin.PULL_UP", "machine.Pin.PULLUP"))
    res = mypy(tree, stubs)
    assert res.returncode != 0 and "PULLUP" in res.stdout
