"""`jalkal vboard`: a virtual board on a pseudo-terminal.

Real MicroPython (the WebAssembly port under Node, sim/wasm/vboard.mjs) sits behind
a pseudo-terminal and answers like a board on a USB serial port: friendly REPL, raw
REPL and raw paste, Ctrl-C, soft reset, and a flash file system kept in a host
folder. The real `mpremote connect /dev/pts/N` works against it. Its `machine`
(sim/vboard/) drives a small simulated water plant, so a deployed firmware runs.

This side owns the pseudo-terminal and relays bytes between it and the Node process.
Like a USB-serial adapter, it drops the board's output while no program has the port
open (nothing stale waits for the next one), and it never lets the board block on a
slow reader for long.
"""

from __future__ import annotations

import contextlib
import errno
import importlib.util
import json
import os
import select
import shutil
import signal
import subprocess
import sys
import tempfile
import termios
import time
import tty
from datetime import datetime
from pathlib import Path
from types import ModuleType
from typing import IO

from ..errors import JalkalError

READY_TIMEOUT_S = 60.0
PENDING_MAX = 1 << 20  # bytes held for a connected but slow reader before pausing
TICK_S = 0.05  # how often the port is checked for a program opening it
DEFAULT_BOARD = "esp32-devkitc-sim800l"  # wiring of the plant without --board
MAX_SPEED = 100000.0


def _wasm_dir() -> Path:
    import jksim

    return Path(jksim.__file__).resolve().parent / "wasm"


def _mpyrun() -> ModuleType:
    path = _wasm_dir() / "mpyrun.py"
    spec = importlib.util.spec_from_file_location("jalkal_mpyrun", path)
    if spec is None or spec.loader is None:
        raise JalkalError(f"{path} is missing (reinstall jalkal)")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def check() -> tuple[str, Path]:
    """(node, vboard.mjs), or JalkalError saying what is missing and how to get it."""
    mpyrun = _mpyrun()
    reason = mpyrun.available()
    if reason is not None:
        raise JalkalError(f"the virtual board needs real MicroPython: {reason}")
    script = _wasm_dir() / "vboard.mjs"
    if not script.is_file():
        raise JalkalError(f"{script} is missing (reinstall jalkal)")
    node = os.environ.get("JALKAL_NODE") or shutil.which("node")
    assert node is not None  # available() checked it
    return node, script


def _board(name: str) -> dict:
    import jkboards

    try:
        return dict(jkboards.load(name))
    except FileNotFoundError as e:
        raise JalkalError(str(e).strip("'\""))
    except ValueError as e:  # jkboards.BoardError: the file and its problems
        raise JalkalError(str(e))


def board_chip(name: str | None) -> str:
    """The chip name a board's banner shows (ESP32, ESP32S3)."""
    if not name:
        return "ESP32"
    return str(_board(name).get("chip", "esp32")).upper()


def board_pins(name: str | None) -> dict[str, int]:
    """The board's pin map: how the simulated plant is wired when the flash has no
    /config.json (with one, its pins win)."""
    return dict(_board(name or DEFAULT_BOARD).get("pins", {}))


def builtins_dir() -> Path:
    """sim/vboard: the vboard's machine, time, asyncio and plant (MicroPython)."""
    import jksim

    d = Path(jksim.__file__).resolve().parent / "vboard"
    if not (d / "machine.py").is_file():
        raise JalkalError(f"{d} is missing (reinstall jalkal)")
    return d


# the simulator's sensor physics and wires, which the vboard's sensors reuse
# (sim/vboard/jkvbsense.py): MicroPython code, copied beside the built-ins
SHARED = ("aquifer.py", "probes.py")


def builtins(dest: Path) -> Path:
    """The vboard's built-in folder in dest: sim/vboard and the simulator's
    modules its sensors use (SHARED); vboard.mjs copies it to /.vboard."""
    src = builtins_dir()
    shutil.copytree(src, dest, dirs_exist_ok=True,
                    ignore=shutil.ignore_patterns("__pycache__", "NOTICE"))  # fmt: skip
    for name in SHARED:
        shutil.copy2(src.parent / name, dest / name)
    return dest


class _Stop(Exception):
    pass


def _stop(signum: int, frame: object) -> None:
    raise _Stop()


class Relay:
    """Bytes between the pseudo-terminal's master side and the board process."""

    def __init__(self, proc: subprocess.Popen[bytes], master: int, slave_name: str):
        assert proc.stdin and proc.stdout and proc.stderr
        self.proc = proc
        self.master = master
        self.slave_name = slave_name
        self.to_board = proc.stdin.fileno()
        self.from_board = proc.stdout.fileno()
        self.board_log = proc.stderr.fileno()
        self.pending = bytearray()  # board output not yet taken by the port
        self.connected = False
        self.log_buf = b""
        for fd in (self.master, self.from_board, self.board_log):
            os.set_blocking(fd, False)

    def _hup(self) -> bool:
        p = select.poll()
        p.register(self.master, select.POLLIN)
        ev = p.poll(0)
        return bool(ev and ev[0][1] & select.POLLHUP and not ev[0][1] & select.POLLIN)

    def _forget_stale(self) -> None:
        """Nobody has the port open: what the board said is gone, as on a UART."""
        self.pending.clear()
        with contextlib.suppress(OSError):
            fd = os.open(self.slave_name, os.O_RDWR | os.O_NOCTTY | os.O_NONBLOCK)
            try:
                termios.tcflush(fd, termios.TCIFLUSH)
            finally:
                os.close(fd)

    def _read_port(self) -> None:
        while True:
            try:
                data = os.read(self.master, 65536)
            except BlockingIOError:
                return
            except OSError as e:
                if e.errno == errno.EIO:  # the last program closed the port
                    return
                raise
            if not data:
                return
            self._send_board(data)

    def _send_board(self, data: bytes) -> None:
        view = memoryview(data)
        while view:
            try:
                n = os.write(self.to_board, view)
            except BrokenPipeError:
                return
            view = view[n:]

    def _write_port(self) -> None:
        while self.pending:
            try:
                n = os.write(self.master, self.pending)
            except BlockingIOError:
                return
            except OSError as e:
                if e.errno == errno.EIO:
                    self.pending.clear()
                    return
                raise
            del self.pending[:n]

    def _read_board(self) -> bool:
        """False when the board process has closed its output."""
        try:
            data = os.read(self.from_board, 65536)
        except BlockingIOError:
            return True
        if not data:
            return False
        if self.connected:
            self.pending += data
            self._write_port()
        return True

    def _read_log(self, echo: IO[str]) -> bool:
        try:
            data = os.read(self.board_log, 65536)
        except BlockingIOError:
            return True
        if not data:
            return False
        self.log_buf += data
        *lines, self.log_buf = self.log_buf.split(b"\n")
        for line in lines:
            echo.write(line.decode("utf-8", "replace") + "\n")
        echo.flush()
        return True

    def wait_ready(self, timeout_s: float) -> None:
        deadline = time.monotonic() + timeout_s
        text = b""
        while b"vboard: ready\n" not in text:
            left = deadline - time.monotonic()
            if left <= 0:
                raise JalkalError(f"the virtual board did not start in {timeout_s:g} s")
            r, _, _ = select.select([self.board_log], [], [], min(left, 0.5))
            if r:
                try:
                    data = os.read(self.board_log, 65536)
                except BlockingIOError:
                    continue
                if not data:
                    self.proc.wait()
                    msg = text.decode("utf-8", "replace").strip().replace("\n", "; ")
                    raise JalkalError(
                        f"the virtual board failed to start "
                        f"(exit {self.proc.returncode}): {msg or 'no message'}"
                    )
                text += data
        rest = text.split(b"vboard: ready\n", 1)[1]
        self.log_buf = rest

    def serve(self, echo: IO[str]) -> None:
        """Relay until the board process ends (or a signal stops us)."""
        poller = select.poll()
        poller.register(self.from_board, select.POLLIN)
        poller.register(self.board_log, select.POLLIN)
        self.connected = not self._hup()
        if self.connected:
            poller.register(self.master, select.POLLIN)
        board_open = log_open = True
        while board_open or log_open:
            if self.connected and self.pending:
                poller.modify(self.master, select.POLLIN | select.POLLOUT)
            elif self.connected:
                poller.modify(self.master, select.POLLIN)
            if len(self.pending) > PENDING_MAX and board_open:
                poller.modify(self.from_board, 0)  # let the board wait for the reader
            elif board_open:
                poller.modify(self.from_board, select.POLLIN)
            events = poller.poll(TICK_S * 1000)
            for fd, ev in events:
                if fd == self.master:
                    if ev & select.POLLIN:
                        self._read_port()
                    if ev & select.POLLOUT:
                        self._write_port()
                    if ev & select.POLLHUP and not ev & select.POLLIN:
                        self.connected = False
                        poller.unregister(self.master)
                        self._forget_stale()
                elif fd == self.from_board and ev & (select.POLLIN | select.POLLHUP):
                    if not self._read_board():
                        board_open = False
                        poller.unregister(self.from_board)
                elif fd == self.board_log and ev & (select.POLLIN | select.POLLHUP):
                    if not self._read_log(echo):
                        log_open = False
                        poller.unregister(self.board_log)
            if not self.connected and not self._hup():
                self.connected = True
                poller.register(self.master, select.POLLIN)


def _terminate(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is not None:
        return
    with contextlib.suppress(OSError):
        proc.terminate()
    try:
        proc.wait(timeout=3)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(OSError):
            proc.kill()
        proc.wait()


def run(
    fs_dir: str | None,
    board: str | None,
    out: IO[str] = sys.stdout,
    speed: float = 1.0,
    clock: bool = True,
    sd: bool = True,
    start: datetime | None = None,
    romfs: str | None = None,
) -> int:
    node, script = check()
    chip = board_chip(board)
    pins = board_pins(board)
    if not 0 < speed <= MAX_SPEED:
        raise JalkalError(f"--speed must be above 0 and at most {MAX_SPEED:g}")
    rtc = "host" if clock else "none"
    if start is not None:
        if not clock:
            raise JalkalError("--clock-start and --no-clock cannot go together")
        if start.tzinfo is None:
            raise JalkalError("--clock-start needs a zone: Z or +05:30 at the end")
        ms = round(start.timestamp() * 1000)
        if not 0 <= ms < 2**53:
            raise JalkalError("--clock-start must be after 1970-01-01")
        rtc = str(ms)
    tmp: str | None = None
    if fs_dir:
        root = Path(fs_dir)
        if root.exists() and not root.is_dir():
            raise JalkalError(f"{root}: not a folder")
        try:
            root.mkdir(parents=True, exist_ok=True)
        except OSError as e:
            raise JalkalError(f"cannot create {root}: {e.strerror or e}")
    else:
        tmp = tempfile.mkdtemp(prefix="jalkal-vboard-")
        root = Path(tmp)

    frozen = Path(tempfile.mkdtemp(prefix="jalkal-vboard-builtins-"))
    master, slave = os.openpty()
    old_handlers = {}
    proc: subprocess.Popen[bytes] | None = None
    try:
        tty.setraw(slave)
        slave_name = os.ttyname(slave)
        os.close(slave)
        slave = -1
        for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
            old_handlers[sig] = signal.signal(sig, _stop)
        cmd = [node, str(script), "--fs", str(root), "--chip", chip]
        if board:
            cmd += ["--board", board]
        cmd += ["--frozen", str(builtins(frozen)), "--pins", json.dumps(pins)]
        cmd += ["--speed", repr(float(speed)), "--clock", rtc]
        cmd += ["--card", "yes" if sd else "no"]
        if romfs:
            cmd += ["--romfs", str(Path(romfs).resolve())]
        proc = subprocess.Popen(
            cmd,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            start_new_session=True,  # a terminal's Ctrl-C reaches us, not the board
        )
        relay = Relay(proc, master, slave_name)
        relay.wait_ready(READY_TIMEOUT_S)
        out.write(f"port: {slave_name}\n")
        out.flush()
        relay.serve(sys.stderr)
        proc.wait()
        raise JalkalError(f"the virtual board stopped (exit {proc.returncode})")
    except _Stop:
        return 0
    finally:
        for sig, handler in old_handlers.items():
            signal.signal(sig, handler)
        if proc is not None:
            _terminate(proc)
            for f in (proc.stdin, proc.stdout, proc.stderr):
                if f is not None:
                    with contextlib.suppress(OSError):
                        f.close()
        if slave >= 0:
            os.close(slave)
        os.close(master)
        shutil.rmtree(frozen, ignore_errors=True)
        if tmp:
            shutil.rmtree(tmp, ignore_errors=True)
