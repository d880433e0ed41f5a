"""The connection the field tools share: mpremote's serial transport underneath.

`Board` opens PORT the way mpremote does (a serial device, the vboard's pty, or a
`socket://` / `rfc2217://` URL, through pyserial's `serial_for_url`), interrupts the
running program with Ctrl-C and drives the raw REPL. File work is done by small helper
functions sent to the board once per session (`_jk_*`), with paths passed as repr()
literals, data as base64 (the ESP32's binascii is C), and one exec per 3 KB written;
a file is read back in one exec that streams base64 lines.

Nothing here soft-resets the board on connect: the firmware is stopped with Ctrl-C
only, so the SD card it mounted stays mounted; `restart()` soft-resets from the
friendly REPL so that /main.py (the firmware) runs again, as after power-on.
"""

from __future__ import annotations

import ast
import base64
import binascii
import contextlib
import hashlib
import os
import re
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

from ..console import say
from ..errors import JalkalError

# one line, run on a board before a soft reset (raw or friendly REPL): a firmware
# stopped with Ctrl-C keeps what its meters counted since (jkfw.main.settle)
SETTLE = (
    "import sys; _m = sys.modules.get('jkfw.main'); "
    "_m and hasattr(_m, 'settle') and _m.settle()"
)

WRITE_CHUNK = 3072  # bytes per exec (4 KB of base64 on the wire)
READ_CHUNK = 1536  # bytes per base64 line the board prints
CONNECT_TIMEOUT_S = 10.0
Progress = Callable[[int, int], None]

# Helpers defined on the board once per session. Short names and no docstrings:
# they cost heap on the board while a tool is connected.
HELPERS = r"""
import os, sys, gc, binascii, hashlib
def _jk_hash(p, n=-1):
    h = hashlib.sha256()
    b = bytearray(1024)
    mv = memoryview(b)
    with open(p, 'rb') as f:
        while n:
            k = f.readinto(b if n < 0 or n >= 1024 else mv[:n])
            if not k:
                break
            h.update(mv[:k])
            if n > 0:
                n -= k
    return binascii.hexlify(h.digest()).decode()
def _jk_walk(d, out):
    try:
        it = list(os.ilistdir(d))
    except OSError:
        return out
    for e in it:
        p = d + '/' + e[0]
        if e[1] & 0x4000:
            _jk_walk(p, out)
        else:
            out.append((p, e[3] if len(e) > 3 else os.stat(p)[6]))
    return out
def _jk_hashes(d):
    print(repr([(p, s, _jk_hash(p)) for p, s in _jk_walk(d, [])]))
def _jk_mkdirs(p):
    q = ''
    for part in p.strip('/').split('/'):
        q += '/' + part
        try:
            os.mkdir(q)
        except OSError:
            pass
def _jk_rmtree(p):
    try:
        it = list(os.ilistdir(p))
    except OSError:
        return
    for e in it:
        q = p + '/' + e[0]
        if e[1] & 0x4000:
            _jk_rmtree(q)
        else:
            os.remove(q)
    os.rmdir(p)
def _jk_copy(a, b):
    buf = bytearray(1024)
    mv = memoryview(buf)
    with open(a, 'rb') as r, open(b, 'wb') as w:
        while True:
            k = r.readinto(buf)
            if not k:
                break
            w.write(mv[:k])
def _jk_open(p):
    global _jk_f
    _jk_f = open(p, 'wb')
def _jk_w(s):
    _jk_f.write(binascii.a2b_base64(s))
def _jk_close():
    global _jk_f
    _jk_f.close()
    _jk_f = None
def _jk_cat(p, off, n):
    b = bytearray(%d)
    mv = memoryview(b)
    with open(p, 'rb') as f:
        f.seek(off)
        while n:
            k = f.readinto(b if n < 0 or n >= len(b) else mv[:n])
            if not k:
                break
            sys.stdout.write(binascii.b2a_base64(mv[:k]))
            if n > 0:
                n -= k
def _jk_size(p):
    try:
        return os.stat(p)[6]
    except OSError:
        return -1
def _jk_wdt():
    # the firmware stopped by Ctrl-C leaves its watchdog running, and a soft reset
    # does not stop it (ESP32): feed it wherever a deployed firmware may have run
    try:
        ours = 'jkfw.hal' in sys.modules or bool(os.stat('/app/active'))
    except OSError:
        ours = False
    if ours:
        try:
            import machine
            machine.WDT(timeout=120000).feed()
        except Exception:
            pass
def _jk_sd(p):
    try:
        if os.statvfs('/sd') != os.statvfs('/'):
            return 'card'
    except OSError:
        pass
    try:
        import machine
        P = machine.Pin
        sd = machine.SDCard(slot=2, sck=P(p['sd_sck']), miso=P(p['sd_miso']),
                            mosi=P(p['sd_mosi']), cs=P(p['sd_cs']))
        os.mount(sd, '/sd')
        return 'card'
    except Exception as e:
        why = 'none: ' + (repr(e) if str(e) else type(e).__name__)
    try:
        if os.stat('/sd')[0] & 0x4000:
            return 'folder'
    except OSError:
        pass
    return why
_jk_wdt()
""" % (READ_CHUNK,)  # fmt: skip


class BoardError(JalkalError):
    """The board answered with an error, or stopped answering."""


@dataclass
class Info:
    """What the board says about itself."""

    release: str  # MicroPython version, e.g. "1.27.0"
    version: tuple[int, int, int]
    machine: str  # os.uname().machine, e.g. "Generic ESP32 module with ESP32"
    mpy: int  # sys.implementation._mpy (bytecode version, sub-version, arch)
    platform: str

    @property
    def chip(self) -> str:
        """esp32 or esp32s3 (from the uname text), or "" when it says neither."""
        m = self.machine.upper().replace("-", "")
        if "ESP32S3" in m:
            return "esp32s3"
        if "ESP32" in m:
            return "esp32"
        return ""


def _last_line(text: str) -> str:
    lines = [ln.strip() for ln in text.strip().splitlines() if ln.strip()]
    return lines[-1] if lines else "error"


def lit(value: Any) -> str:
    """A Python literal for board code (never string pasting: quotes, unicode)."""
    return repr(value)


class Board:
    """A board on PORT, stopped at the raw REPL while the tool works."""

    def __init__(self, port: str, baud: int = 115200):
        self.port = port
        self.baud = baud
        self.t: Any = None
        self.console = bytearray()  # output seen outside our own commands
        self._helpers = False

    # --- connection

    def open(self) -> Board:
        from mpremote.transport import TransportError
        from mpremote.transport_serial import SerialTransport

        try:
            self.t = SerialTransport(self.port, baudrate=self.baud)
        except (TransportError, OSError, ValueError) as e:
            raise BoardError(
                f"cannot open {self.port} ({e}): is the board plugged in "
                "(ls /dev/ttyUSB* /dev/ttyACM*)? close other programs using the port "
                "(mpremote, a serial monitor)"
            )
        self.stop()
        return self

    def close(self) -> None:
        if self.t is None:
            return
        with contextlib.suppress(Exception):
            if self.t.in_raw_repl:
                self.t.exit_raw_repl()
        with contextlib.suppress(Exception):
            self.t.close()
        self.t = None

    def __enter__(self) -> Board:
        return self.open()

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _lost(self, e: BaseException) -> BoardError:
        return BoardError(
            f"lost the board on {self.port} ({e or type(e).__name__}): check the cable "
            "and run the command again"
        )

    def stop(self, soft_reset: bool = False) -> None:
        """Ctrl-C what runs, enter the raw REPL (soft_reset: a fresh one, no main)."""
        from mpremote.transport import TransportError

        self._helpers = False
        for attempt in range(2):
            try:
                self.t.enter_raw_repl(
                    soft_reset=soft_reset, timeout_overall=CONNECT_TIMEOUT_S
                )
                return
            except TransportError:
                if attempt:
                    raise BoardError(
                        f"no MicroPython REPL answers on {self.port}: is MicroPython "
                        "flashed (jalkal flash)? press the board's reset button and "
                        "try again"
                    )
            except Exception as e:  # serial errors: unplugged, port gone
                raise self._lost(e)

    # --- code

    def exec(self, code: str, consumer: Callable[[bytes], None] | None = None) -> bytes:
        """Run code in the raw REPL; its output. Errors: OSError with the board's
        errno for file errors, BoardError with the last traceback line otherwise."""
        from mpremote.transport import TransportError, TransportExecError

        try:
            return bytes(self.t.exec(code, data_consumer=consumer))
        except TransportExecError as e:
            out = e.error_output
            m = re.search(r"OSError: \[Errno (\d+)\]", out) or re.search(
                r"OSError: (\d+)$", out.strip()
            )
            if m:
                n = int(m.group(1))
                raise OSError(n, os.strerror(n))
            raise BoardError(f"the board said: {_last_line(out)}")
        except TransportError as e:
            raise self._lost(e)
        except Exception as e:
            if isinstance(e, (OSError, BoardError)) and not _is_serial(e):
                raise
            raise self._lost(e)

    def eval(self, expr: str) -> Any:
        """A Python literal computed on the board."""
        out = self.exec(f"print(repr({expr}))").decode("utf-8", "replace").strip()
        try:
            return ast.literal_eval(out)
        except (ValueError, SyntaxError):
            raise BoardError(f"unexpected answer from the board: {out[:200]!r}")

    def helpers(self) -> None:
        if not self._helpers:
            self.exec(HELPERS)
            self._helpers = True

    def keepalive(self) -> None:
        """Feed the firmware's watchdog during long work (if the firmware ran)."""
        self.helpers()
        self.exec("_jk_wdt()")

    def info(self) -> Info:
        self.helpers()
        ver, release, machine, mpy, platform = self.eval(
            "(tuple(sys.implementation.version)[:3], os.uname().release, "
            "os.uname().machine, getattr(sys.implementation, '_mpy', 0), sys.platform)"
        )
        return Info(str(release), tuple(ver), str(machine), int(mpy), str(platform))

    # --- files

    def size(self, path: str) -> int:
        """Bytes in a file, -1 when there is none."""
        self.helpers()
        return int(self.eval(f"_jk_size({lit(path)})"))

    def hashes(self, folder: str) -> dict[str, tuple[int, str]]:
        """path -> (size, sha256 hex) of every file under folder ({} if none)."""
        self.helpers()
        out = self.exec(f"_jk_hashes({lit(folder)})").decode().strip()
        return {p: (s, h) for p, s, h in ast.literal_eval(out)}

    def sha256(self, path: str, length: int = -1) -> str:
        """sha256 hex of a file's first `length` bytes (all when -1)."""
        self.helpers()
        return str(self.eval(f"_jk_hash({lit(path)}, {int(length)})"))

    def listdir(self, folder: str) -> list[tuple[str, bool, int]]:
        """(name, is folder, size) in folder; [] when it does not exist."""
        self.helpers()
        got = self.eval(
            f"[(e[0], bool(e[1] & 0x4000), e[3] if len(e) > 3 else 0) "
            f"for e in os.ilistdir({lit(folder)})] "
            f"if _jk_size({lit(folder)}) >= 0 else []"
        )
        return [(str(n), bool(d), int(s)) for n, d, s in got]

    def makedirs(self, path: str) -> None:
        self.helpers()
        self.exec(f"_jk_mkdirs({lit(path)})")

    def rmtree(self, path: str) -> None:
        self.helpers()
        self.exec(f"_jk_rmtree({lit(path)})")

    def remove(self, path: str) -> None:
        self.helpers()
        self.exec(f"os.remove({lit(path)})")

    def rename(self, src: str, dst: str) -> None:
        """os.rename: atomic on littlefs, also over an existing file."""
        self.helpers()
        self.exec(f"os.rename({lit(src)}, {lit(dst)})")

    def copy(self, src: str, dst: str) -> None:
        """A copy made on the board (nothing crosses the cable)."""
        self.helpers()
        self.exec(f"_jk_copy({lit(src)}, {lit(dst)})")

    def write(self, path: str, data: bytes, progress: Progress | None = None) -> None:
        """Write a whole file (truncating), WRITE_CHUNK bytes per exec."""
        self.helpers()
        self.exec(f"_jk_open({lit(path)})")
        done = 0
        try:
            for i in range(0, len(data), WRITE_CHUNK):
                chunk = data[i : i + WRITE_CHUNK]
                self.exec(f"_jk_w({lit(base64.b64encode(chunk))})")
                done += len(chunk)
                if progress:
                    progress(done, len(data))
        finally:
            with contextlib.suppress(OSError, BoardError):
                self.exec("_jk_close()")

    def write_atomic(self, path: str, data: bytes) -> None:
        """Write beside path, then rename over it: old or new, never torn."""
        self.write(path + ".tmp", data)
        self.rename(path + ".tmp", path)

    def read(
        self,
        path: str,
        offset: int = 0,
        length: int = -1,
        progress: Progress | None = None,
    ) -> bytes:
        """Bytes of a file from offset (length -1: to its end), in one exec."""
        self.helpers()
        total = length if length >= 0 else max(self.size(path) - offset, 0)
        buf = bytearray()
        out = bytearray()

        def take(b: bytes) -> None:
            buf.extend(b)
            while b"\n" in buf:
                line, _, rest = bytes(buf).partition(b"\n")
                buf[:] = rest
                line = line.strip()
                if line:
                    try:
                        out.extend(binascii.a2b_base64(line))
                    except binascii.Error:
                        raise BoardError(f"garbled data reading {path} from the board")
                    if progress:
                        progress(len(out), total)

        self.exec(f"_jk_cat({lit(path)}, {int(offset)}, {int(length)})", consumer=take)
        take(b"\n")
        return bytes(out)

    def sd(self, pins: dict[str, Any]) -> str:
        """The SD card at /sd: "card" (mounted, by the firmware or now with the
        config's GPIO numbers), "folder" (a folder on the flash), or "none: why"."""
        self.helpers()
        gpio = {k: n for k, n in pins.items() if type(n) is int}
        return str(self.eval(f"_jk_sd({lit(gpio)})"))

    # --- reset

    def restart(self, listen_s: float = 3.0, until: bytes | None = None) -> bytes:
        """Soft reset from the friendly REPL, so boot.py and /main.py run as at
        power-on; the board's output for listen_s seconds (or until `until`).
        A firmware stopped by this session first logs what its meters counted while
        it was stopped (jkfw.main.settle): a soft reset clears the counters."""
        try:
            self.exec(SETTLE)
        except (BoardError, OSError) as e:
            say(
                f"note: the stopped firmware could not log its meters before the "
                f"restart ({e}); what they counted since it stopped is lost",
            )
        try:
            self.t.exit_raw_repl()
            self.listen(0.5, b">>> ")
            self.t.serial.write(b"\x04")
        except Exception as e:
            raise self._lost(e)
        self._helpers = False
        return self.listen(listen_s, until)

    def listen(self, seconds: float, until: bytes | None = None) -> bytes:
        """What the board prints in the next seconds (or until `until`)."""
        ser = self.t.serial
        old = ser.timeout
        out = bytearray()
        deadline = time.monotonic() + seconds
        try:
            ser.timeout = 0.05
            while time.monotonic() < deadline:
                out += ser.read(ser.in_waiting or 1)
                if until and until in out:
                    break
        except Exception as e:
            raise self._lost(e)
        finally:
            with contextlib.suppress(Exception):
                ser.timeout = old
        return bytes(out)


def _is_serial(e: BaseException) -> bool:
    try:
        import serial

        return isinstance(e, serial.SerialException)
    except ImportError:  # pragma: no cover
        return False


@dataclass(frozen=True)
class Port:
    """A serial port as pyserial lists it; vid is None for a port that is not USB."""

    device: str
    description: str
    vid: int | None = None
    pid: int | None = None
    serial: str | None = None

    @property
    def vid_pid(self) -> str:
        return "" if self.vid is None else f"{self.vid:04X}:{self.pid or 0:04X}"


def serial_ports(usb_only: bool = True) -> list[Port]:
    """The serial ports of this computer, by device name; USB ones (with a vendor
    id: a board's USB-serial chip) unless usb_only is False."""
    from serial.tools import list_ports

    found = [
        Port(p.device, p.description or "", p.vid, p.pid, p.serial_number)
        for p in list_ports.comports()
        if p.vid is not None or not usb_only
    ]
    return sorted(found, key=lambda p: p.device)


def find_port() -> str:
    """The one USB serial port plugged in; JalkalError when there is none or several."""
    ports = serial_ports()
    if len(ports) == 1:
        return ports[0].device
    if not ports:
        raise JalkalError(
            "no board found: plug it in or give -p PORT (jalkal ports lists them)"
        )
    listed = ", ".join(f"{p.device} ({p.description}, {p.vid_pid})" for p in ports)
    raise JalkalError(f"{len(ports)} boards found: {listed}; give -p PORT")


@contextlib.contextmanager
def connect(port: str) -> Iterator[Board]:
    """An open board, closed (back to the friendly REPL) however the block ends."""
    b = Board(port)
    b.open()
    try:
        yield b
    finally:
        b.close()


def sha256_hex(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()
