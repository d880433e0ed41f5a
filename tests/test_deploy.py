"""jalkal deploy: the build, the config checks, and deploys to the virtual board
with the real mpremote transport: twice (nothing copied the second time), and killed
midway (the previous version still boots; a re-run finishes)."""

from __future__ import annotations

import json
import os
import select
import signal
import subprocess
import sys
import time

import pytest
from fieldtools_util import VBoard, board_has_machine, jalkal, provision

from jalkal.errors import JalkalError
from jalkal.field import deploy
from jalkal.field.board import connect


def test_build_compiles_every_module():
    bld = deploy.build("xtensawin")
    names = {f.name for f in bld.files}
    assert "jkfw/__init__.py" in names and "jkproto/__init__.py" in names
    assert "jkfw/main.mpy" in names and "jkproto/codec.mpy" in names
    assert not any(n.endswith(".py") and "__init__" not in n for n in names)
    for f in bld.files:
        if f.name.endswith(".mpy"):
            assert f.data[:2] == b"M\x06", f.name
    assert deploy.build("xtensawin").build_id == bld.build_id  # reproducible
    man = deploy.parse_manifest(bld.manifest())
    assert man == (bld.build_id, {f.name: f.sha for f in bld.files})
    assert deploy.parse_manifest(b"") is None
    src = deploy.build(None)
    assert {f.name for f in src.files} == {
        n[:-4] + ".py" if n.endswith(".mpy") else n for n in names
    }
    assert src.build_id != bld.build_id


def test_main_py_compiles(tmp_path):
    p = tmp_path / "main.py"
    p.write_text(deploy.MAIN_PY)
    proc = subprocess.run(
        [*deploy.mpy_cross_cmd(), "-o", str(tmp_path / "main.mpy"), str(p)],
        capture_output=True,
    )
    assert proc.returncode == 0, proc.stderr


def test_config_checked_before_the_board(tmp_path):
    cfg = provision(tmp_path)
    bad = tmp_path / "bad.json"
    raw = json.loads(cfg.read_text())
    bad.write_text(json.dumps(dict(raw, max_run_s=5)))
    with pytest.raises(JalkalError, match="would refuse max_run_s"):
        deploy.load_config(str(bad))
    bad.write_text(json.dumps(dict(raw, device="00000000")))
    with pytest.raises(JalkalError, match="no device id"):
        deploy.load_config(str(bad))
    bad.write_text("{")
    with pytest.raises(JalkalError, match="not JSON"):
        deploy.load_config(str(bad))
    with pytest.raises(JalkalError, match="no board 'nope'"):
        deploy.board_chip({"board": "nope"})
    assert deploy.board_chip({"board": "esp32s3-devkitc-sim7600"}) == "esp32s3"
    # nothing answers: one line, exit 1, before any board was touched
    rc, out, err = jalkal("deploy", "--port", "socket://127.0.0.1:9", "--config", cfg)
    assert rc == 1 and err.strip().splitlines()[-1].startswith("jalkal: cannot open")


# --- on the virtual board --------------------------------------------------------


@pytest.fixture
def vb(tools, tmp_path):
    b = VBoard(tmp_path / "flash")
    yield b
    assert b.stop() == 0


@pytest.fixture(scope="module")
def tools(mpy):
    pytest.importorskip("mpremote")
    return mpy


def booted_ok(rc, out, err, slot, machine):
    """The boot check saw the build just deployed start from slot; without a
    simulated `machine` on the vboard the firmware then stops at `import machine`,
    and deploy says so (exit 1)."""
    if machine:
        assert rc == 0, err
        assert "running jkfw 0.1.0 build" in out and f"from /app/{slot}" in out
    else:
        assert rc == 1
        assert "jalkal: jkfw 0.1.0 started but stopped with an error: ImportError: " \
            "no module named 'machine'" in err  # fmt: skip
        assert f"writing slot /app/{slot}" in err or "firmware unchanged" in err


@pytest.mark.micropython
def test_deploy_twice_copies_nothing(vb, tmp_path):
    cfg = provision(tmp_path)
    machine = board_has_machine(vb.port)
    rc, out, err = jalkal("deploy", "--port", vb.port, "--config", cfg,
                          "--boot-wait", 3)  # fmt: skip
    n = len(deploy.build("xtensawin").files)
    assert f"copied {n} of {n} files" in err, err
    assert f"[{n}/{n}] jkproto/objects.mpy" in err
    booted_ok(rc, out, err, "a", machine)
    flash = tmp_path / "flash"
    assert (flash / "app" / "active").read_text() == "a"
    assert (flash / "config.json").read_bytes() == cfg.read_bytes()
    assert (flash / "main.py").read_text() == deploy.MAIN_PY
    assert (flash / "flash").is_dir()
    man = deploy.parse_manifest((flash / "app" / "a" / "MANIFEST").read_bytes())
    assert man is not None and len(man[1]) == n
    for name, sha in man[1].items():
        data = (flash / "app" / "a" / name).read_bytes()
        assert deploy.File(name, data).sha == sha

    rc, out, err = jalkal("deploy", "--port", vb.port, "--config", cfg,
                          "--boot-wait", 3)  # fmt: skip
    assert f"copied 0 of {n} files, 0.0 KB; {n} unchanged; config.json unchanged" in err
    assert "firmware unchanged in /app/a" in err
    booted_ok(rc, out, err, "a", machine)
    assert (flash / "app" / "active").read_text() == "a"
    assert not (flash / "app" / "b").exists()


def read_err_until(proc, marker, timeout=60):
    deadline = time.monotonic() + timeout
    text = b""
    while marker not in text:
        left = deadline - time.monotonic()
        r, _, _ = select.select([proc.stderr], [], [], max(left, 0))
        if not r:
            proc.kill()
            pytest.fail(f"no {marker!r} from jalkal deploy: {text!r}")
        b = os.read(proc.stderr.fileno(), 4096)
        if not b:
            pytest.fail(f"jalkal deploy ended before {marker!r}: {text!r}")
        text += b
    return text


def deploy_killed_at(port, cfg, marker, *args):
    """`jalkal deploy` killed (SIGKILL) as soon as it has printed `marker`."""
    proc = subprocess.Popen(
        [sys.executable, "-m", "jalkal", "deploy", "--port", port,
         "--config", str(cfg), *args],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE,
        env=dict(os.environ, PYTHONUNBUFFERED="1"),
    )  # fmt: skip
    read_err_until(proc, marker)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    proc.stdout.close()
    proc.stderr.close()


def boot_banner(port):
    with connect(port) as b:
        out = b.restart(3, until=b"\r\n>>> ")
    m = deploy.BANNER.search(out)
    assert m, out
    return m.group(3).decode()


@pytest.mark.micropython
def test_killed_deploy_leaves_previous_version_bootable(vb, tmp_path):
    cfg = provision(tmp_path)
    machine = board_has_machine(vb.port)
    flash = tmp_path / "flash"
    rc, out, err = jalkal("deploy", "--port", vb.port, "--config", cfg, "--source",
                          "--boot-wait", 3)  # fmt: skip
    booted_ok(rc, out, err, "a", machine)
    # the bytecode build differs in every module: killed while copying the 4th
    deploy_killed_at(vb.port, cfg, b"] jkfw/clock.mpy")
    assert (flash / "app" / "active").read_text() == "a"
    assert not (flash / "app" / "b" / "MANIFEST").exists()
    assert (flash / "app" / "b" / "jkfw").is_dir()  # half written
    assert boot_banner(vb.port) == "/app/a"  # the previous version boots
    rc, out, err = jalkal("deploy", "--port", vb.port, "--config", cfg,
                          "--boot-wait", 3)  # fmt: skip
    assert "writing slot /app/b (the board runs /app/a)" in err
    booted_ok(rc, out, err, "b", machine)
    assert (flash / "app" / "active").read_text() == "b"
    assert boot_banner(vb.port) == "/app/b"
    # back to the source build: its files are still in slot a, nothing crosses
    rc, out, err = jalkal("deploy", "--port", vb.port, "--config", cfg, "--source",
                          "--boot-wait", 3)  # fmt: skip
    n = len(deploy.build(None).files)
    assert f"copied 0 of {n} files, 0.0 KB; {n} unchanged" in err, err
    booted_ok(rc, out, err, "a", machine)
