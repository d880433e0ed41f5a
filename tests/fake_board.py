"""An in-process stand-in for a board, for the field tools' injected-board tests.

`FakeBoard` has the public methods of `jalkal.field.board.Board` that the field tools
call (deploy, doctor, pull), with the same arguments, return values and errors, over a
file system held in memory. It records what a tool did to the board: `calls` holds
every public method a tool called, with its arguments (what a method does through
other methods, e.g. `write_atomic` through `write` and `rename`, is not listed twice),
and `effects` every change to the file system, in order.

It answers what a real ESP32 running MicroPython 1.27 answers; where this depends
on MicroPython or on the board's helpers, the answer is the one the helper code in
`board.HELPERS` / `doctor.DOCTOR_HELPERS` / `deploy.MAIN_PY` computes on an ESP32:

- Files: the flash is littlefs (a directory lists sorted by name; `os.rename` replaces
  an existing file), the SD card FAT (listed in creation order; `os.rename` onto an
  existing file fails with EEXIST). Writing into a missing folder fails with ENOENT;
  reading, hashing or removing a missing file fails with `OSError(ENOENT)` as
  `Board.exec` raises it; `size` of a folder is 0, of nothing -1; `hashes` of a
  missing folder is {}; `makedirs` never fails (`_jk_mkdirs` ignores OSError).
- `sd(pins)`: "card" when a card is mounted at /sd (`sd="card"`). When nothing is
  mounted there (`sd="none"`: no card, or the firmware could not mount it),
  `os.statvfs('/sd')` equals `os.statvfs('/')` (littlefs's statvfs ignores its path:
  micropython extmod/vfs_lfsx.c, `(void)path_in`), so `_jk_sd` tries to mount the
  card with the config's pins. With no card that fails (`machine.SDCard` raises
  OSError 16 on an ESP32: micropython issues #10634, #8217), and the answer is
  "folder" when a /sd folder sits on the flash, else "none: OSError(16,)" (without
  `machine`: "none: ImportError(...)"). (The virtual board's statvfs raises ENOENT
  for a missing path, which a board never does.)
- Board-side expressions (`exec` / `eval`): exactly the ones the tools send, each
  answered as the real helper would (the literal goes through `repr` and back, as
  over the wire). Names follow the session: `_jk_*` exist only after `helpers()`,
  the doctor's after `exec(DOCTOR_HELPERS)`, `time` after `exec("import time")`; a
  missing name fails as the board's NameError does. Code the fake does not know
  raises `UnknownCode` (a test error, never a made-up answer).
- `time.gmtime()`: the board's clock (`clock`, UTC seconds; an ESP32 whose RTC was
  never set reads 2000-01-01), an 8-tuple (weekday 0 = Monday, day of the year).
  `machine.RTC().datetime(t)` sets it.
- `_jk_at`: the modem's answers (`modem`: command -> bytes, as the module sends
  them) when the UART pins given are the modem's (`modem_pins`); silence (b"") after
  a 2 s timeout per command otherwise, or when no modem answers.
- `machine.Pin(n, Pin.IN).value()`: `pin_levels[n]`, default 1 (an open input with
  the firmware's pull-up). A pin driven as an output is recorded in `pin_writes`.
- No `machine` module (`machine=False`, the virtual board): `_jk_has_machine()` is
  False, and code importing machine fails with ImportError.
- `_jk_sensors(slot)` (the doctor's sensor code, `doctor_sensors.BOARD_CODE`): the
  helper's own code runs here, with the firmware's own drivers (jkfw.measure builds
  them from the board's /config.json), on a HAL whose sensor calls are the
  simulator's part-level stand-ins (jksim.probes: the ADS1115's registers and
  codes, the ESP32 ADC's read_uv, the sonar's frames in either serial mode, the
  DS18B20's 1/16 C, the CT's sampled sine) valued by `sensors`, a jksim.probes.Probes
  of what is on the wires (None: nothing wired). The helper's `time.sleep_ms`
  advances the board's clock (the sonar's frames come with it); the slot must hold
  jkfw (else the board's ImportError), and machine must exist. What the helper
  calls besides (jkfw.hal.Hal, time.sleep_ms, sys.path, open) is what the fake
  provides: a helper that reaches for more fails its fingerprint first.
- `restart()`: a soft reset. With jalkal's /main.py it boots as that script does
  (the slot named in /app/active if its MANIFEST is there, else the other one; the
  banner gives the version and build id from that MANIFEST), then the firmware runs
  (`after_boot` is what it prints next). Without /main.py the REPL banner and prompt
  come back; with another /main.py nothing the fake could know is printed. After a
  restart the board runs its firmware: the tool must `stop()` it before any other
  call (a real Board's raw REPL is gone; the fake fails the call as "lost").

Faults: `when(method, match, nth, do=..., fail=...)` runs `do(board)` or raises
`fail` at the nth call of `method` whose first argument matches `match` (fnmatch);
`cut(...)` raises the BoardError a pulled cable gives, and the board stays lost;
a path in `garbled` reads back with a byte changed (a noisy cable).
A `write` cut mid-transfer leaves the file holding the chunks already sent, as
`Board.write` does (it truncates first, then sends 3 KB per exec).

`FakeSerial` is the serial port of a running board for `monitor.run`: what the
firmware prints, Ctrl-C/Ctrl-B/Ctrl-D handled as MicroPython's REPL does.

Kept honest by tests/test_field_inprocess.py: `EMULATED` holds a fingerprint of each
board-side function these answers were written from (a changed helper fails a test
until the fake is re-checked), and Board's own file methods, run in real MicroPython
(the WebAssembly build), must give the fake's answers on the same files. What that
build cannot show (machine, the SD card, errno values, littlefs's sizes in ilistdir)
rests on the sources cited above.
"""

from __future__ import annotations

import ast
import calendar
import errno
import fnmatch
import functools
import hashlib
import inspect
import os
import re
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from jalkal.field import deploy, doctor, doctor_sensors
from jalkal.field.board import (
    HELPERS,
    READ_CHUNK,
    SETTLE,
    WRITE_CHUNK,
    BoardError,
    Info,
)

# an ESP32 on MicroPython 1.27: sys.implementation._mpy is the .mpy version (6), its
# sub-version (3) and the native architecture (xtensawin: 10)
MPY_ESP32 = 6 | 3 << 8 | 10 << 10
RELEASE = "1.27.0"
MACHINE = "Generic ESP32 module with ESP32"
UNSET_CLOCK = 946684800  # 2000-01-01 00:00:00 UTC: an ESP32 RTC that was never set
REPL_BANNER = (
    b"MicroPython v1.27.0 on 2025-12-09; Generic ESP32 module with ESP32\r\n"
    b'Type "help()" for more information.\r\n>>> '
)
BLOCK = 4096  # littlefs block on the ESP32's flash partition

# the helper functions the answers below are written for: sha256 (first 16 hex) of
# each function's source. A test compares them with the current sources, so a
# changed helper is re-read before the fake is trusted again.
EMULATED = {
    "_jk_hash": "2bcb62f7fb92f1f2",
    "_jk_walk": "552d5fe5664c533d",
    "_jk_hashes": "57bcbd696bf17c7b",
    "_jk_mkdirs": "b005c5d7b9b2bf32",
    "_jk_rmtree": "f1d05c6d5040ff1c",
    "_jk_copy": "2637cacbd05b7019",
    "_jk_open": "541f984b7d7d68fc",
    "_jk_w": "9138b06328cb6eae",
    "_jk_close": "785490c09d23b05a",
    "_jk_cat": "a9bc2a34cfbd3165",
    "_jk_size": "b07e7941f5072aa9",
    "_jk_wdt": "6b01c3de80a651c2",
    "_jk_sd": "dc8de320e203e93a",
    "_jk_has_machine": "b8729be27264d195",
    "_jk_has_uart": "b733cf2aed86994f",
    "_jk_at": "fe4bcc1ad00d5956",
    "_jk_sensors": "f056e58973a15f17",
    "MAIN_PY": "975b8bcdc4376733",
}


def helper_sources() -> dict[str, str]:
    """name -> source of each board-side function (and MAIN_PY) the fake emulates."""
    out: dict[str, str] = {}
    for text in (HELPERS, doctor.DOCTOR_HELPERS, doctor_sensors.BOARD_CODE):
        for m in re.finditer(r"^def (\w+)\(.*?(?=^\S|\Z)", text, re.M | re.S):
            out[m.group(1)] = m.group(0)
    out["MAIN_PY"] = deploy.MAIN_PY
    return out


def fingerprint(source: str) -> str:
    return hashlib.sha256(source.encode()).hexdigest()[:16]


def _defined(code: str) -> set[str]:
    """Names a helper block defines on the board (imports and functions)."""
    names = set(re.findall(r"^def (\w+)", code, re.M))
    for line in re.findall(r"^import (.+)$", code, re.M):
        names |= {n.strip() for n in line.split(",")}
    return names


class UnknownCode(AssertionError):
    """A tool sent code this fake cannot answer honestly: teach it (from the real
    helper's behaviour), never guess."""


@dataclass(frozen=True)
class Call:
    method: str
    args: tuple[Any, ...]

    @property
    def path(self) -> Any:
        return self.args[0] if self.args else None


@dataclass
class _Hook:
    method: str
    match: str | None
    nth: int
    do: Callable[[FakeBoard], None] | None
    fail: BaseException | None
    lost: bool
    seen: int = 0
    fired: bool = False


def _oserror(n: int) -> OSError:
    # as Board.exec raises a board's OSError
    return OSError(n, os.strerror(n))


def _parent(path: str) -> str:
    head = path.rsplit("/", 1)[0]
    return head or "/"


def _op(fn: Callable[..., Any]) -> Callable[..., Any]:
    """A public Board method: recorded when a tool calls it, faults applied."""
    name = fn.__name__
    sig = inspect.signature(fn)

    @functools.wraps(fn)
    def wrapper(self: FakeBoard, *a: Any, **kw: Any) -> Any:
        bound = sig.bind(self, *a, **kw)
        bound.apply_defaults()
        args = tuple(
            v for k, v in bound.arguments.items()
            if k not in ("self", "progress", "consumer")
        )  # fmt: skip
        if self._depth == 0:
            self.calls.append(Call(name, args))
        self._depth += 1
        try:
            if name not in ("close", "open", "stop", "__enter__", "__exit__"):
                self._check_alive()
            if name != "write":  # write runs its hooks mid-transfer
                self._hooks(name, args)
            return fn(self, *a, **kw)
        finally:
            self._depth -= 1

    return wrapper


class FakeBoard:
    """A board stopped at the raw REPL, held in memory (see the module docstring)."""

    def __init__(
        self,
        files: dict[str, bytes] | None = None,
        *,
        port: str = "/dev/ttyFAKE0",
        sd: str = "card",
        clock: float | None = None,
        heap_free: int = 110 * 1024,
        heap_used: int = 40 * 1024,
        flash_bytes: int = 2 * 1024 * 1024,
        sd_free: int = 7 * 1024**3,
        machine: bool = True,
        uart: bool = True,
        modem: dict[bytes, bytes] | None = None,
        modem_pins: tuple[int, int] | None = None,
        pin_levels: dict[int, int] | None = None,
        release: str = RELEASE,
        uname_machine: str = MACHINE,
        mpy: int = MPY_ESP32,
        boot_text: bytes | None = None,
        after_boot: bytes = b"",
        sensors: Any = None,
    ):
        if sd not in ("card", "none"):
            raise ValueError("sd: 'card' (mounted at /sd) or 'none'")
        self.port = port
        self.files: dict[str, bytes] = {}
        self.dirs: dict[str, None] = {"/": None}  # ordered: FAT lists in order
        self.sd_state = sd
        self.clock = time.time() if clock is None else float(clock)
        self.heap_free, self.heap_used = heap_free, heap_used
        self.flash_bytes, self.sd_free = flash_bytes, sd_free
        self.machine, self.uart = machine, uart
        self.modem = modem
        self.modem_pins = modem_pins
        self.pin_levels = dict(pin_levels or {})
        self.release, self.uname_machine, self.mpy = release, uname_machine, mpy
        self.boot_text, self.after_boot = boot_text, after_boot
        self.sensors = sensors  # jksim.probes.Probes: what is on the sensors' wires
        self.sonar_uarts: list[Any] = []  # the sonar stand-ins the helper opened
        self.calls: list[Call] = []
        self.effects: list[tuple[str, ...]] = []
        self.pin_writes: list[tuple[int, int]] = []
        self.removed: dict[str, bytes] = {}  # path -> what it held when removed
        self.garbled: set[str] = set()  # reads of these arrive with a byte changed
        self.wdt_feeds = 0
        self.settled = 0
        self.restarts = 0
        self.closed = False
        self.running = False  # the firmware runs (after restart) until stop()
        self.lost: BoardError | None = None
        self._names: set[str] = set()
        self._helpers = False
        self._hooks_: list[_Hook] = []
        self._depth = 0
        if sd == "card":
            self.dirs["/sd"] = None
        for path, data in (files or {}).items():
            self.put(path, data)

    # --- setting up (not recorded)

    def put(self, path: str, data: bytes | str) -> None:
        """A file on the board before the tool runs, its folders made."""
        if isinstance(data, str):
            data = data.encode()
        self._mkdirs(_parent(path))
        self.files[path] = bytes(data)

    def load_dir(self, local: Path, at: str = "") -> None:
        """Every file under a local folder, at the same paths under `at`."""
        for p in sorted(Path(local).rglob("*")):
            rel = "/" + p.relative_to(local).as_posix()
            if p.is_dir():
                self._mkdirs(at + rel)
            else:
                self.put(at + rel, p.read_bytes())

    def reconnect(self) -> None:
        """A new session on the same board (the next `jalkal` command): the
        records start again, the firmware is stopped with Ctrl-C, the cable is back;
        the file system, clock and faults not yet fired stay."""
        self.calls.clear()
        self.effects.clear()
        self.lost = None
        self.closed = False
        self.running = False
        self._helpers = False

    def snapshot(self) -> dict[str, bytes]:
        return dict(self.files)

    def text(self, path: str) -> str:
        return self.files[path].decode()

    # --- what happened

    def called(self, method: str, match: str | None = None) -> list[Call]:
        return [
            c for c in self.calls
            if c.method == method and (match is None or _matches(c.path, match))
        ]  # fmt: skip

    def index(self, method: str, match: str | None = None) -> int:
        """Position in `calls` of the first call of method matching, -1 if none."""
        for i, c in enumerate(self.calls):
            if c.method == method and (match is None or _matches(c.path, match)):
                return i
        return -1

    def changes(self) -> list[tuple[str, ...]]:
        """File system changes (effects) other than making folders that exist."""
        return [e for e in self.effects if e[0] != "mkdir"]

    # --- faults

    def when(
        self,
        method: str,
        match: str | None = None,
        nth: int = 1,
        do: Callable[[FakeBoard], None] | None = None,
        fail: BaseException | None = None,
        lost: bool = False,
    ) -> None:
        self._hooks_.append(_Hook(method, match, nth, do, fail, lost))

    def cut(self, method: str, match: str | None = None, nth: int = 1) -> None:
        """The cable is pulled during the nth such call: BoardError, and lost."""
        err = BoardError(
            f"lost the board on {self.port} (device reports readiness to read but "
            "returned no data): check the cable and run the command again"
        )
        self.when(method, match, nth, fail=err, lost=True)

    def _hooks(self, name: str, args: tuple[Any, ...]) -> None:
        for h in self._hooks_:
            if h.fired or h.method != name:
                continue
            if h.match is not None and not _matches(args[0] if args else None, h.match):
                continue
            h.seen += 1
            if h.seen < h.nth:
                continue
            h.fired = True
            if h.do is not None:
                h.do(self)
            if h.fail is not None:
                if h.lost and isinstance(h.fail, BoardError):
                    self.lost = h.fail
                raise h.fail

    def _check_alive(self) -> None:
        if self.lost is not None:
            raise self.lost
        if self.closed:
            raise BoardError(f"lost the board on {self.port} (port closed)")
        if self.running:
            raise BoardError(
                f"lost the board on {self.port} (no raw REPL: the firmware runs since "
                "the restart; stop() first)"
            )

    # --- connection

    @_op
    def open(self) -> FakeBoard:
        self.closed = False
        self.stop()
        return self

    @_op
    def close(self) -> None:
        self.closed = True

    def __enter__(self) -> FakeBoard:
        return self.open()

    def __exit__(self, *exc: object) -> None:
        self.close()

    @_op
    def stop(self, soft_reset: bool = False) -> None:
        self.running = False
        self._helpers = False
        if soft_reset:  # a fresh interpreter, main.py not run (the raw REPL)
            self.restarts += 1
            self._names = set()

    # --- code

    def _need(self, *names: str) -> None:
        for n in names:
            if n not in self._names:
                raise BoardError(f"the board said: NameError: name '{n}' isn't defined")

    def _need_machine(self) -> None:
        if not self.machine:
            raise BoardError("the board said: ImportError: no module named 'machine'")

    @_op
    def exec(self, code: str, consumer: Callable[[bytes], None] | None = None) -> bytes:
        out = self._exec(code)
        if consumer is not None and out:
            consumer(out)
        return out

    def _exec(self, code: str) -> bytes:
        if code == HELPERS:
            self._names |= _defined(HELPERS)
            self._wdt()
            return b""
        if code in (doctor.DOCTOR_HELPERS, doctor_sensors.BOARD_CODE):
            self._names |= _defined(code)
            return b""
        if code == "_jk_wdt()":
            self._need("_jk_wdt")
            self._wdt()
            return b""
        if code == "import time":
            self._names.add("time")
            return b""
        if code == SETTLE:
            self._names.add("sys")
            self.settled += 1
            return b""
        m = re.fullmatch(
            r"import machine\nmachine\.RTC\(\)\.datetime\((\(.*\))\)", code
        )
        if m:
            self._need_machine()
            y, mo, d, _wd, h, mi, s, _sub = ast.literal_eval(m.group(1))
            self.clock = calendar.timegm((y, mo, d, h, mi, s, 0, 0, 0))
            self._names.add("machine")
            return b""
        m = re.fullmatch(
            r"import machine, time\nr = machine\.Pin\((\d+), machine\.Pin\.OUT\)\n"
            r"r\.value\((\d)\)\ntime\.sleep\((\d+)\)\nr\.value\((\d)\)",
            code,
        )
        if m:
            self._need_machine()
            pin, on, secs, off = (int(x) for x in m.groups())
            self.pin_writes += [(pin, on), (pin, off)]
            self.clock += secs
            self._names |= {"machine", "time", "r"}
            return b""
        raise UnknownCode(f"FakeBoard cannot answer exec({code!r})")

    @_op
    def eval(self, expr: str) -> Any:
        value = self._eval(expr)
        return ast.literal_eval(repr(value))  # as print(repr(...)) over the wire

    def _eval(self, expr: str) -> Any:
        if expr == "_jk_has_machine()":
            self._need("_jk_has_machine")
            return self.machine
        if expr == "_jk_has_uart()":
            self._need("_jk_has_uart")
            return self.machine and self.uart
        if expr == "(gc.collect(), gc.mem_free(), gc.mem_alloc())[1:]":
            self._need("gc")
            return (self.heap_free, self.heap_used)
        if expr == "time.gmtime()":
            self._need("time")
            return tuple(time.gmtime(int(self.clock)))[:8]
        m = re.fullmatch(r"\(lambda s: s\[0\] \* s\[3\]\)\(os\.statvfs\((.+)\)\)", expr)
        if m:
            self._need("os")
            return self._statvfs_free(ast.literal_eval(m.group(1)))
        m = re.fullmatch(
            r"\(lambda p: \(open\(p, 'w'\)\.write\('jalkal'\), open\(p\)\.read\(\) == "
            r"'jalkal', os\.remove\(p\)\)\[1\]\)\((.+)\)",
            expr,
        )
        if m:
            self._need("os")
            p = ast.literal_eval(m.group(1))
            self._write_file(p, b"jalkal")
            ok = self.files[p] == b"jalkal"
            self._remove(p)
            return ok
        m = re.fullmatch(r"_jk_at\((\d+), (\d+), (\d+), (\(.*\))\)", expr)
        if m:
            self._need("_jk_at")
            self._need_machine()
            tx, rx, _baud = (int(x) for x in m.groups()[:3])
            cmds = ast.literal_eval(m.group(4))
            wired = self.modem is not None and (
                self.modem_pins is None or self.modem_pins == (tx, rx)
            )
            out = []
            for c in cmds:
                ans = self.modem.get(c, b"") if wired and self.modem else b""
                self.clock += 0.1 if ans else 2.0  # silence: the 2 s timeout
                out.append(ans)
            return out
        m = re.fullmatch(
            r"\(lambda m: m\.Pin\((\d+), m\.Pin\.IN\)\.value\(\)\)"
            r"\(__import__\('machine'\)\)",
            expr,
        )
        if m:
            self._need_machine()
            return self.pin_levels.get(int(m.group(1)), 1)
        m = re.fullmatch(r"_jk_sensors\(('[^']*')\)", expr)
        if m:
            self._need("_jk_sensors")
            return self._sensor_rows(ast.literal_eval(m.group(1)))
        raise UnknownCode(f"FakeBoard cannot answer eval({expr!r})")

    def _sensor_rows(self, slot: str) -> Any:
        """_jk_sensors(slot): the helper's code itself, on this board (see the
        module docstring); an exception on the board is the BoardError it gives."""
        import builtins
        import io
        import json
        import types

        from jkfw import config, measure, sensors
        from jksim import probes
        from jksim.hw import SimHal

        board = self

        class Ms:  # the board's clock in ms, as the stand-ins read it
            @property
            def ms(self) -> int:
                return int(board.clock * 1000)

        def make_hal(cfg: dict[str, Any]) -> Any:
            if not board.machine:
                raise ImportError("no module named 'machine'")
            hal = SimHal(cfg, Ms())
            probes.fit(hal, board.sensors or probes.Probes())
            opened = hal.sonar_uart
            hal.sonar_uart = lambda: board._opened(opened())
            return hal

        def sleep_ms(ms: int) -> None:
            board.clock += ms / 1000

        has_jkfw = any(
            f"{slot}/jkfw/__init__{x}" in self.files for x in (".py", ".mpy")
        )
        mods = {
            "sys": types.SimpleNamespace(path=[]),
            "json": json,
            "time": types.SimpleNamespace(sleep_ms=sleep_ms),
            "jkfw": types.SimpleNamespace(
                config=config, measure=measure, sensors=sensors,
                hal=types.SimpleNamespace(Hal=make_hal),
            ),
        }  # fmt: skip

        def imp(name: str, *a: Any, **kw: Any) -> Any:
            if name not in mods or name == "jkfw" and not has_jkfw:
                raise ImportError(f"no module named '{name}'")
            return mods[name]

        def open_(path: str, *a: Any) -> Any:
            return io.StringIO(self._file(path).decode())

        env: dict[str, Any] = {
            "__builtins__": {**vars(builtins), "__import__": imp, "open": open_}
        }
        exec(doctor_sensors.BOARD_CODE, env)
        try:
            return env["_jk_sensors"](slot)
        except OSError as e:  # as Board.exec raises a board's OSError
            raise _oserror(e.errno) from None
        except Exception as e:  # the traceback's last line
            raise BoardError(f"the board said: {type(e).__name__}: {e}") from None

    def _opened(self, uart: Any) -> Any:
        self.sonar_uarts.append(uart)
        return uart

    @_op
    def helpers(self) -> None:
        if not self._helpers:
            self.exec(HELPERS)
            self._helpers = True

    @_op
    def keepalive(self) -> None:
        self.helpers()
        self.exec("_jk_wdt()")

    def _wdt(self) -> None:
        # _jk_wdt feeds the watchdog where a deployed firmware may have run
        if "/app/active" in self.files and self.machine:
            self.wdt_feeds += 1

    @_op
    def info(self) -> Info:
        self.helpers()
        ver = tuple(int(x) for x in self.release.split(".")[:3])
        return Info(self.release, ver, self.uname_machine, self.mpy, "esp32")  # type: ignore[arg-type]

    # --- file system (what the _jk_* helpers do on the board)

    def _on_card(self, path: str) -> bool:
        return self.sd_state == "card" and (path == "/sd" or path.startswith("/sd/"))

    def _statvfs_free(self, path: str) -> int:
        if self._on_card(path):
            return self.sd_free
        used = BLOCK * (2 + len([d for d in self.dirs if not self._on_card(d)]))
        for p, data in self.files.items():
            if not self._on_card(p):
                used += BLOCK * (1 + len(data) // BLOCK)
        return max(0, self.flash_bytes - used)

    def _mkdirs(self, path: str) -> None:
        q = ""
        for part in path.strip("/").split("/"):
            if not part:
                continue
            q += "/" + part
            if q in self.files:
                return  # os.mkdir fails, _jk_mkdirs goes on failing below it
            if q not in self.dirs:
                self.dirs[q] = None
                self.effects.append(("mkdir", q))

    def _file(self, path: str) -> bytes:
        if path in self.dirs:
            raise _oserror(errno.EISDIR)
        if path not in self.files:
            raise _oserror(errno.ENOENT)
        return self.files[path]

    def _write_file(self, path: str, data: bytes) -> None:
        if path in self.dirs:
            raise _oserror(errno.EISDIR)
        if _parent(path) not in self.dirs:
            raise _oserror(errno.ENOENT)
        self.files[path] = bytes(data)
        self.effects.append(("write", path))

    def _remove(self, path: str) -> None:
        if path in self.dirs:
            if any(_parent(p) == path for p in (*self.files, *self.dirs)):
                raise _oserror(errno.ENOTEMPTY)
            self.dirs.pop(path, None)
            self.effects.append(("rmdir", path))
            return
        data = self._file(path)
        del self.files[path]
        self.removed[path] = data
        self.effects.append(("remove", path))

    def _entries(self, folder: str) -> list[tuple[str, bool, int]]:
        if folder in self.files:
            raise _oserror(errno.ENOTDIR)
        if folder not in self.dirs:
            raise _oserror(errno.ENOENT)
        kids = [
            (p.rsplit("/", 1)[1], True, 0) for p in self.dirs
            if p != "/" and _parent(p) == folder
        ]  # fmt: skip
        kids += [
            (p.rsplit("/", 1)[1], False, len(d)) for p, d in self.files.items()
            if _parent(p) == folder
        ]  # fmt: skip
        if self._on_card(folder):
            return kids  # FAT: in the order they were made (dirs before files here)
        return sorted(kids)  # littlefs keeps a directory sorted by name

    @_op
    def size(self, path: str) -> int:
        self.helpers()
        if path in self.dirs:
            return 0
        return len(self.files[path]) if path in self.files else -1

    @_op
    def hashes(self, folder: str) -> dict[str, tuple[int, str]]:
        self.helpers()
        out: dict[str, tuple[int, str]] = {}

        def walk(shown: str, d: str) -> None:
            try:
                entries = self._entries(d)
            except OSError:
                return
            for name, is_dir, size in entries:
                p = shown + "/" + name  # as _jk_walk joins ("//x" under "/")
                real = d.rstrip("/") + "/" + name
                if is_dir:
                    walk(p, real)
                else:
                    out[p] = (size, hashlib.sha256(self.files[real]).hexdigest())

        walk(folder, folder)
        return out

    @_op
    def sha256(self, path: str, length: int = -1) -> str:
        self.helpers()
        data = self._file(path)
        return hashlib.sha256(data if length < 0 else data[:length]).hexdigest()

    @_op
    def listdir(self, folder: str) -> list[tuple[str, bool, int]]:
        self.helpers()
        if folder not in self.dirs and folder not in self.files:
            return []
        return self._entries(folder)

    @_op
    def makedirs(self, path: str) -> None:
        self.helpers()
        self._mkdirs(path)

    @_op
    def rmtree(self, path: str) -> None:
        self.helpers()
        if path not in self.dirs:
            return
        for p in sorted((p for p in self.files if p.startswith(path + "/")), key=len):
            self._remove(p)
        for d in sorted((d for d in self.dirs if d.startswith(path + "/")), key=len,
                        reverse=True):  # fmt: skip
            self._remove(d)
        self._remove(path)

    @_op
    def remove(self, path: str) -> None:
        self.helpers()
        self._remove(path)

    @_op
    def rename(self, src: str, dst: str) -> None:
        self.helpers()
        data = self._file(src)
        if _parent(dst) not in self.dirs:
            raise _oserror(errno.ENOENT)
        if dst in self.dirs:
            raise _oserror(errno.EISDIR)
        if dst in self.files and self._on_card(dst):
            raise _oserror(errno.EEXIST)  # FAT does not replace
        del self.files[src]
        self.files[dst] = data
        self.effects.append(("rename", src, dst))

    @_op
    def copy(self, src: str, dst: str) -> None:
        self.helpers()
        data = self._file(src)
        self._write_file(dst, data)
        self.effects[-1] = ("copy", src, dst)

    @_op
    def write(
        self, path: str, data: bytes, progress: Callable[[int, int], None] | None = None
    ) -> None:
        self.helpers()
        self._write_file(path, b"")  # _jk_open: the file is truncated first
        try:
            self._hooks("write", (path, data))
        except BaseException:
            sent = (max(len(data) - 1, 0) // WRITE_CHUNK) * WRITE_CHUNK
            self.files[path] = bytes(data[:sent])  # the chunks that got there
            raise
        self.files[path] = bytes(data)
        if progress:
            for i in range(0, len(data), WRITE_CHUNK):
                progress(min(i + WRITE_CHUNK, len(data)), len(data))

    @_op
    def write_atomic(self, path: str, data: bytes) -> None:
        self.write(path + ".tmp", data)
        self.rename(path + ".tmp", path)

    @_op
    def read(
        self,
        path: str,
        offset: int = 0,
        length: int = -1,
        progress: Callable[[int, int], None] | None = None,
    ) -> bytes:
        self.helpers()
        total = length if length >= 0 else max(self.size(path) - offset, 0)
        data = self._file(path)
        got = data[offset:] if length < 0 else data[offset : offset + length]
        if path in self.garbled and got:
            got = got[:-1] + bytes([got[-1] ^ 0x20])  # still valid base64, other bytes
        if progress:
            for i in range(0, len(got), READ_CHUNK):
                progress(min(i + READ_CHUNK, len(got)), total)
        return bytes(got)

    @_op
    def sd(self, pins: dict[str, Any]) -> str:
        self.helpers()
        # statvfs('/sd') != statvfs('/') only when a card is mounted there; with
        # nothing mounted, _jk_sd tries the mount, which fails without a card
        if self.sd_state == "card":
            return "card"
        if "/sd" in self.dirs:
            return "folder"
        if not self.machine:
            return "none: ImportError(\"no module named 'machine'\",)"
        return "none: OSError(16,)"

    # --- reset

    @_op
    def restart(self, listen_s: float = 3.0, until: bytes | None = None) -> bytes:
        self.exec(SETTLE)
        self.restarts += 1
        self._names = set()
        self._helpers = False
        self.running = True
        out = b"MPY: soft reboot\r\n" + self._boot()
        if until is not None and until in out:
            out = out[: out.index(until) + len(until)]
        self.clock += listen_s
        return out

    @_op
    def listen(self, seconds: float, until: bytes | None = None) -> bytes:
        self.clock += seconds
        return b""

    def _boot(self) -> bytes:
        if self.boot_text is not None:
            return self.boot_text
        main = self.files.get("/main.py")
        if main is None:
            return REPL_BANNER
        if main != deploy.MAIN_PY.encode():
            return b""
        a = self.files.get("/app/active", b"a").decode(errors="replace").strip()
        path, build, version = "-", "-", ""
        # "rom": the romfs partition, which this board's MicroPython does not have
        for s in ("rom", "a", "b") if a == "rom" else (a, "b" if a == "a" else "a"):
            p = "/rom" if s == "rom" else "/app/" + s
            man = self.files.get(f"{p}/MANIFEST")
            if man is None:
                continue
            words = man.decode(errors="replace").split("\n", 1)[0].split()
            if words:
                path, build = p, words[0]
                version = words[1] if len(words) > 1 else ""
                break
        has = any(
            f"{path}/jkfw/{n}" in self.files for n in ("main.py", "main.mpy")
        ) and any(f"{path}/jkfw/__init__{x}" in self.files for x in (".py", ".mpy"))
        if path == "-" or not has:
            return (
                b"Traceback (most recent call last):\r\n"
                b'  File "main.py", line 26, in <module>\r\n'
                b"ImportError: no module named 'jkfw.main'\r\n" + REPL_BANNER
            )
        banner = f"jalkal: jkfw {version} build {build} from {path}\r\n".encode()
        return banner + self.after_boot


def _matches(value: Any, pattern: str) -> bool:
    return isinstance(value, str) and fnmatch.fnmatchcase(value, pattern)


# --- the serial port of a running board (jalkal monitor) -------------------------


class FakeSerial:
    """A pyserial-like port on a board whose firmware runs and prints `chunks`.

    `read` hands out what the board printed, one chunk at a time (a chunk may end
    mid-line, as serial reads do). When nothing is left: `end="interrupt"` raises
    KeyboardInterrupt (the person presses Ctrl-C), "lost" raises the OSError an
    unplugged USB port gives, "silent" returns b"" after the read timeout (not
    slept). Written bytes act as on MicroPython: Ctrl-C stops the program (its
    KeyboardInterrupt traceback and the >>> prompt come out), Ctrl-B is the friendly
    REPL, Ctrl-D at the friendly REPL soft-resets and `boot` is printed next.
    """

    def __init__(
        self,
        chunks: Iterable[bytes] = (),
        *,
        boot: Iterable[bytes] = (),
        end: str = "interrupt",
        port: str = "/dev/ttyFAKE0",
    ):
        self.pending = [bytes(c) for c in chunks]
        self.boot = [bytes(c) for c in boot]
        self.end = end
        self.port = port
        self.timeout = 0.2
        self.written = bytearray()
        self.writes: list[bytes] = []
        self.events: list[str] = []
        self.mode = "running"
        self.closed = False
        self.reads = 0

    @property
    def in_waiting(self) -> int:
        return len(self.pending[0]) if self.pending else 0

    def read(self, n: int = 1) -> bytes:
        self.reads += 1
        if not self.pending:
            if self.end == "interrupt":
                raise KeyboardInterrupt
            if self.end == "lost":
                raise OSError(
                    errno.EIO, "device disconnected or multiple access on port"
                )
            return b""
        head = self.pending[0]
        out, rest = head[:n], head[n:]
        if rest:
            self.pending[0] = rest
        else:
            self.pending.pop(0)
        return out

    def write(self, data: bytes) -> int:
        self.writes.append(bytes(data))
        self.written += data
        for b in data:
            if b == 0x03 and self.mode == "running":
                self.mode = "friendly"
                self.pending.append(
                    b"Traceback (most recent call last):\r\n"
                    b'  File "main.py", line 30, in <module>\r\n'
                    b"KeyboardInterrupt: \r\n>>> "
                )
                self.events.append("stopped")
            elif b == 0x01 and self.mode != "running":
                self.mode = "raw"
            elif b == 0x02 and self.mode != "running":
                self.mode = "friendly"
                self.pending.append(b"\r\n" + REPL_BANNER)
            elif b == 0x04 and self.mode == "friendly":
                self.mode = "running"
                self.pending += [b"MPY: soft reboot\r\n", *self.boot]
                self.events.append("soft reset")
        return len(data)

    def reset_input_buffer(self) -> None:
        self.pending.clear()
        self.events.append("input flushed")

    def close(self) -> None:
        self.closed = True
