"""`jalkal vboard`: real MicroPython on a pseudo-terminal, driven by the real mpremote.

Each test starts `jalkal vboard --fs DIR` as a subprocess, reads `port: /dev/pts/N`,
and runs `python -m mpremote connect PORT ...` against it (with timeouts), or talks to
the port directly with pyserial where mpremote has no command for it (Ctrl-C at the
friendly REPL). Skipped when Node or the npm package is missing, unless
JALKAL_REQUIRE_MICROPYTHON is set.
"""

import hashlib
import os
import select
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

pytestmark = pytest.mark.micropython

START_TIMEOUT_S = 60
MPREMOTE_TIMEOUT_S = 60


def _children(pid):
    try:
        text = Path(f"/proc/{pid}/task/{pid}/children").read_text()
    except OSError:
        return []
    return [int(x) for x in text.split()]


def _gone(pid):
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return True
    return stat.rsplit(")", 1)[1].split()[0] == "Z"


class VBoard:
    def __init__(self, fs_dir, *args):
        env = dict(os.environ, PYTHONUNBUFFERED="1")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "jalkal", "vboard", "--fs", str(fs_dir), *args],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            env=env,
        )
        self.port = self._read_port()
        self.children = _children(self.proc.pid)

    def _read_port(self):
        deadline = time.monotonic() + START_TIMEOUT_S
        line = b""
        while not line.endswith(b"\n"):
            left = deadline - time.monotonic()
            r, _, _ = select.select([self.proc.stdout], [], [], max(left, 0))
            if not r:
                self.proc.kill()
                pytest.fail("jalkal vboard printed no port line in time")
            b = os.read(self.proc.stdout.fileno(), 1)
            if not b:
                err = self.proc.stderr.read().decode()
                self.proc.wait()
                pytest.fail(f"jalkal vboard exited {self.proc.returncode}: {err}")
            line += b
        text = line.decode().strip()
        assert text.startswith("port: /dev/pts/"), text
        return text.split(": ", 1)[1]

    def stop(self, sig=signal.SIGTERM):
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
        try:
            rc = self.proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
            pytest.fail("jalkal vboard did not stop on a signal")
        finally:
            for f in (self.proc.stdout, self.proc.stderr):
                f.close()
        deadline = time.monotonic() + 5
        while not all(_gone(c) for c in self.children):
            if time.monotonic() > deadline:
                pytest.fail(f"processes left behind: {self.children}")
            time.sleep(0.05)
        return rc


@pytest.fixture(scope="module")
def tools(mpy):
    """mpyrun's availability check (skip/fail), plus mpremote itself."""
    pytest.importorskip("mpremote")
    pytest.importorskip("serial")
    return mpy


@pytest.fixture
def board(tools, tmp_path):
    vb = VBoard(tmp_path / "flash")
    yield vb
    assert vb.stop() == 0


def mpremote(port, *args, timeout=MPREMOTE_TIMEOUT_S, check=True):
    try:
        proc = subprocess.run(
            [sys.executable, "-m", "mpremote", "connect", port, *args],
            capture_output=True,
            timeout=timeout,
        )
    except subprocess.TimeoutExpired as e:
        pytest.fail(f"mpremote {' '.join(args)} timed out: {e.stdout!r} {e.stderr!r}")
    if check and proc.returncode != 0:
        pytest.fail(
            f"mpremote {' '.join(args)} exited {proc.returncode}:\n"
            f"{proc.stdout.decode(errors='replace')}\n"
            f"{proc.stderr.decode(errors='replace')}"
        )
    return proc


def files(tmp_path):
    """A text file, a binary file with every byte value, and a 60 KB file."""
    src = tmp_path / "src"
    src.mkdir()
    text = "".join(f"line {i}: pump on, tank full\n" for i in range(40))
    (src / "notes.txt").write_text(text)
    (src / "bytes.bin").write_bytes(bytes(range(256)) * 4 + b"\x00\r\n\x04\x03\x01")
    blob = b"".join(hashlib.sha256(str(i).encode()).digest() for i in range(1920))
    (src / "big.bin").write_bytes(blob)  # 61,440 bytes
    return src


def test_cp_soft_reset_and_back(board, tmp_path):
    src = files(tmp_path)
    names = ["notes.txt", "bytes.bin", "big.bin"]
    args = []
    for n in names:
        args += ["fs", "cp", str(src / n), f":{n}", "+"]
    mpremote(board.port, *args, "fs", "ls")
    mpremote(board.port, "soft-reset")
    back = tmp_path / "back"
    back.mkdir()
    args = []
    for n in names:
        args += ["fs", "cp", f":{n}", str(back / n), "+"]
    mpremote(board.port, *args[:-1])
    flash = tmp_path / "flash"
    for n in names:
        assert (back / n).read_bytes() == (src / n).read_bytes(), n
        assert (flash / n).read_bytes() == (src / n).read_bytes(), n  # written through
    out = mpremote(board.port, "fs", "sha256sum", ":big.bin").stdout.decode()
    assert hashlib.sha256((src / "big.bin").read_bytes()).hexdigest() in out


def test_exec_20kb_script(board):
    lines = [f"s = (s * 31 + {i * 7919 % 100003}) % 1000000007" for i in range(700)]
    script = "s = 0\n" + "\n".join(lines) + "\nprint('sum', s)\n"
    assert len(script.encode()) >= 20 * 1024
    expect = 0
    for i in range(700):
        expect = (expect * 31 + i * 7919 % 100003) % 1000000007
    out = mpremote(board.port, "exec", script).stdout.decode()
    assert out.split() == ["sum", str(expect)]


def test_eval_mkdir_rm_ls_run(board, tmp_path):
    out = mpremote(board.port, "eval", "6 * 7").stdout.decode()
    assert out.strip() == "42"
    script = tmp_path / "hello.py"
    script.write_text("import os\nprint('cwd', os.getcwd())\n")
    mpremote(board.port, "fs", "mkdir", ":lib", "+", "fs", "cp", str(script),
             ":lib/hello.py")  # fmt: skip
    out = mpremote(board.port, "fs", "ls", ":lib").stdout.decode()
    assert "hello.py" in out
    # /lib is on sys.path, the working folder is /, as on a board
    out = mpremote(board.port, "exec", "import hello").stdout.decode()
    assert out.strip() == "cwd /"
    out = mpremote(board.port, "run", str(script)).stdout.decode()
    assert out.strip() == "cwd /"
    mpremote(board.port, "fs", "rm", ":lib/hello.py", "+", "fs", "rmdir", ":lib")
    out = mpremote(board.port, "fs", "ls").stdout.decode()
    assert "lib" not in out
    assert not (tmp_path / "flash" / "lib").exists()
    # an error on the board is an error for mpremote, with the board's errno
    proc = mpremote(board.port, "fs", "cat", ":nope.txt", check=False)
    assert proc.returncode != 0
    out = mpremote(board.port, "exec", "import os\ntry:\n os.stat('nope')\n"
                   "except OSError as e:\n print(e.errno)").stdout.decode()  # fmt: skip
    assert out.strip() == "2"  # ENOENT as on a board


def test_files_survive_restart(tools, tmp_path):
    flash = tmp_path / "flash"
    vb = VBoard(flash, "--board", "esp32-devkitc-sim800l")
    try:
        out = mpremote(vb.port, "exec", "f = open('keep.txt', 'w')\n"
                       "f.write('kept')\nf.close()").stdout  # fmt: skip
        assert out == b""
    finally:
        assert vb.stop() == 0
    assert (flash / "keep.txt").read_text() == "kept"
    vb = VBoard(flash)
    try:
        out = mpremote(vb.port, "exec", "print(open('keep.txt').read())")
        assert out.stdout.decode().strip() == "kept"
    finally:
        assert vb.stop(signal.SIGINT) == 0


def test_ctrl_c_interrupts_a_loop(board):
    # mpremote sends Ctrl-C before it enters the raw REPL: `resume` must get through
    mpremote(board.port, "exec", "--no-follow", "while True: pass")
    time.sleep(0.3)
    out = mpremote(board.port, "resume", "exec", "print('alive')").stdout.decode()
    assert out.strip() == "alive"


def read_until(ser, marker, timeout=10):
    deadline = time.monotonic() + timeout
    data = b""
    while marker not in data:
        if time.monotonic() > deadline:
            pytest.fail(f"no {marker!r} from the board; got {data!r}")
        data += ser.read(ser.in_waiting or 1)
    return data


def test_friendly_repl_ctrl_c_and_soft_reset(board):
    import serial

    with serial.Serial(board.port, 115200, timeout=0.1) as ser:
        ser.write(b"\r\x02")  # friendly REPL: the banner
        # the \r alone may answer with a prompt before Ctrl-B's banner comes
        banner = read_until(ser, b"MicroPython v1.29.0")
        if b">>> " not in banner[banner.index(b"MicroPython v1.29.0") :]:
            banner += read_until(ser, b">>> ")
        assert b"MicroPython v1.29.0" in banner
        assert b"with ESP32" in banner
        ser.write(b"n = 0\r")
        read_until(ser, b">>> ")
        ser.write(b"while True: n += 1\r")
        read_until(ser, b"... ")
        ser.write(b"\r")  # an empty line ends the compound statement: it runs
        time.sleep(0.3)
        ser.write(b"\x03")
        out = read_until(ser, b">>> ")
        assert b"KeyboardInterrupt: \r\n" in out
        ser.write(b"print(n > 0, 6 * 7)\r")
        assert b"True 42\r\n" in read_until(ser, b">>> ")
        ser.write(b"\x04")  # soft reset: a fresh interpreter, the same flash
        out = read_until(ser, b">>> ")
        assert b"MPY: soft reboot\r\n" in out
        assert b"MicroPython v1.29.0" in out
        ser.write(b"print('n' in globals())\r")
        assert b"False\r\n" in read_until(ser, b">>> ")


def test_reconnects(board):
    # mpremote opens and closes the port every time; the board keeps answering
    for i in range(8):
        out = mpremote(board.port, "resume", "eval", f"{i} + 1").stdout.decode()
        assert out.strip() == str(i + 1)


def test_unknown_board_and_missing_node(tools, tmp_path):
    proc = subprocess.run(
        [sys.executable, "-m", "jalkal", "vboard", "--board", "nope"],
        capture_output=True,
        timeout=30,
    )
    assert proc.returncode == 1
    assert proc.stderr.decode().startswith("jalkal: no board 'nope'")
    env = dict(os.environ, JALKAL_NODE=str(tmp_path / "no-node"))
    proc = subprocess.run(
        [sys.executable, "-m", "jalkal", "vboard"],
        capture_output=True,
        timeout=30,
        env=env,
    )
    assert proc.returncode == 1
    err = proc.stderr.decode()
    assert err.startswith("jalkal: the virtual board needs real MicroPython")
    assert proc.stdout == b""


def test_clock_start(tools, tmp_path):
    def refused(*args):
        proc = subprocess.run(
            [sys.executable, "-m", "jalkal", "vboard", *args],
            capture_output=True, timeout=30,
        )  # fmt: skip
        assert proc.returncode != 0 and proc.stdout == b""
        return proc.stderr.decode()

    assert "needs a zone" in refused("--clock-start", "2026-03-01T23:40")
    assert "not a time like" in refused("--clock-start", "1 March")
    assert "cannot go together" in refused(
        "--clock-start", "2026-03-01T23:40Z", "--no-clock"
    )
    vb = VBoard(tmp_path / "flash", "--clock-start", "2026-03-01T23:59:00+05:30")
    try:
        out = mpremote(vb.port, "exec", "import time; print(time.gmtime()[:6])")
    finally:
        assert vb.stop() == 0
    got = tuple(int(x) for x in out.stdout.decode().strip("()\r\n").split(","))
    # 18:29 UTC, and the seconds since the board started (its clock runs)
    assert got[:5] == (2026, 3, 1, 18, 29), got


def test_boot_py_and_main_py_run_like_on_a_board(tools, tmp_path):
    flash = tmp_path / "flash"
    flash.mkdir()
    (flash / "boot.py").write_text("B = 'boot ran'\n")
    (flash / "main.py").write_text(
        "import time\nn = 0\nwhile True:\n    n += 1\n    time.sleep_ms(2)\n"
    )
    vb = VBoard(flash)  # power-on: boot.py, then main.py (for ever)
    try:
        time.sleep(0.3)
        # mpremote's Ctrl-C stops main.py; `resume` keeps its state to look at
        out = mpremote(vb.port, "resume", "exec", "print(B, n > 10)").stdout.decode()
        assert out.strip() == "boot ran True"
        # a soft reset from the raw REPL runs boot.py but not main.py, as on a board
        out = mpremote(vb.port, "exec", "print(B, 'n' in globals())").stdout.decode()
        assert out.strip() == "boot ran False"
    finally:
        assert vb.stop() == 0
