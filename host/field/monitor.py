"""`jalkal monitor`: what a running board says, with its frames decoded.

The monitor only listens: it opens PORT (as mpremote would, through pyserial's
`serial_for_url`) and never sends a byte unless asked to restart the board
(`--restart`: Ctrl-C, then a soft reset from the friendly REPL, so the boot is seen).
The firmware keeps running and the pump keeps being controlled.

Lines the board prints are shown as they come, their control characters (terminal
escape sequences) as text. A line `jkf <hex>` is one frame as the
firmware logged it: it is decoded with the host decoder (and its MAC checked with
--keys) and shown as one line: time, device/boot#seq, kind and fields.
"""

from __future__ import annotations

import re
import sys
import time
from typing import IO, Any

from jkproto import codec
from jkproto import objects as ob

from ..console import visible
from ..errors import JalkalError
from ..keys import load_keys, signers
from .board import SETTLE

FRAME_LINE = re.compile(rb"^jkf ([0-9a-fA-F]+)\s*$")
SKIP = {"device", "boot", "seq", "kind", "ts", "time", "uptime_s", "prev", "mac"}


def frame_text(
    data: bytes,
    sg: dict[str, codec.Signer] | None,
    meters: dict[str, dict[str, int]] | None = None,
) -> str:
    """One line for a frame's bytes (or why they are not one). `meters`: pulses per
    m³ of each device's meters, learnt from its boot frames (not from one whose MAC
    is bad); with them a reading or gap also shows its pulses in litres."""
    n = codec.frame_len(data, 0, len(data))
    if not n or n != len(data):
        return f"frame? {data.hex()} (CRC or length wrong)"
    o = ob.to_obj(data, 0, n)
    if "raw" in o:
        return f"frame v{o.get('version')} {o.get('error', 'unknown version')}"
    when = o.get("ts") or f"uptime {o.get('uptime_s')} s"
    fields = []
    for k, v in o.items():
        if k in SKIP:
            continue
        if isinstance(v, list):
            v = ",".join(map(str, v)) or "-"
        fields.append(f"{k} {v}")
    mac = ""
    if sg is not None:
        s = sg.get(o["device"])
        mac = (
            "  [unknown device]"
            if s is None
            else "  [MAC ok]"
            if codec.verify(data, 0, n, s)
            else "  [MAC BAD]"
        )
    litres = meter_litres(o, None if mac == "  [MAC BAD]" else meters)
    if litres:
        fields.append(f"({litres})")
    return (
        f"{when}  {o['device']} {o['boot']}#{o['seq']}  {o['kind']:<9} "
        f"{' '.join(fields)}{mac}"
    )


def meter_litres(o: dict[str, Any], meters: dict[str, dict[str, int]] | None) -> str:
    """ "totals: source 100 L, supply 50 L" for a reading, "12,340 L" for a gap,
    once the device's boot frame gave its meters' pulses per m³ (kept in meters)."""
    if meters is None:
        return ""
    if o["kind"] == "boot":
        meters[o["device"]] = {
            m: int(o.get(f"{m}_pulses_per_m3") or 0) for m in ob.METERS
        }
        return ""
    per_m3 = meters.get(o["device"], {})

    def litres(meter: Any, pulses: Any) -> str:
        if not isinstance(pulses, int) or not per_m3.get(str(meter)):
            return ""
        x = pulses * 1000 / per_m3[str(meter)]
        return f"{x:,.0f} L" if x >= 100 or x == int(x) else f"{x:.1f} L"

    if o["kind"] == "gap":
        return litres(o.get("meter"), o.get("pulses"))
    if o["kind"] != "reading":
        return ""
    each = [(m, litres(m, o.get(f"{m}_pulses"))) for m in ob.METERS]
    known = ", ".join(f"{m} {text}" for m, text in each if text)
    return f"totals: {known}" if known else ""


class Printer:
    """Board output in, lines out: frames decoded, the rest as the board said."""

    def __init__(self, out: IO[str], sg: dict[str, codec.Signer] | None):
        self.out = out
        self.sg = sg
        self.buf = b""
        self.frames = 0
        self.lines = 0
        self.meters: dict[str, dict[str, int]] = {}  # device -> pulses per m³

    def feed(self, data: bytes) -> None:
        self.buf += data
        while b"\n" in self.buf:
            line, self.buf = self.buf.split(b"\n", 1)
            self.line(line.rstrip(b"\r"))

    def line(self, line: bytes) -> None:
        if not line.strip():
            return
        m = FRAME_LINE.match(line)
        stamp = time.strftime("%H:%M:%S")
        if m:
            self.frames += 1
            digits = m.group(1).decode()
            if len(digits) % 2:
                text = f"frame? {digits} (odd number of hex digits: cut short)"
            else:
                text = frame_text(bytes.fromhex(digits), self.sg, self.meters)
            self.out.write(f"{stamp} {text}\n")
        else:
            self.lines += 1
            self.out.write(f"{stamp} | {visible(line.decode('utf-8', 'replace'))}\n")
        self.out.flush()

    def flush(self) -> None:
        if self.buf.strip():
            self.line(self.buf.rstrip(b"\r"))
        self.buf = b""


def open_port(port: str) -> Any:
    import serial

    try:
        return serial.serial_for_url(port, baudrate=115200, timeout=0.2)
    except (serial.SerialException, OSError, ValueError) as e:
        raise JalkalError(
            f"cannot open {port} ({e}): is the board plugged in? close other programs "
            "using the port (mpremote, another monitor)"
        )


def restart(ser: Any) -> None:
    """Ctrl-C, then Ctrl-B (friendly REPL) and Ctrl-D: a soft reset that runs
    /main.py, as at power-on. Before the reset the stopped firmware logs what its
    meters counted since it stopped (jkfw.main.settle; a soft reset clears them)."""
    ser.write(b"\r\x03\x03")
    time.sleep(0.3)
    ser.write(b"\r\x02")
    time.sleep(0.3)
    ser.write(SETTLE.encode() + b"\r")
    time.sleep(0.3)
    ser.reset_input_buffer()
    ser.write(b"\x04")


def run(
    ser: Any,
    keys: str | None = None,
    seconds: float | None = None,
    do_restart: bool = False,
    out: IO[str] = sys.stdout,
) -> Printer:
    """Print what an open serial port (pyserial) carries until `seconds` pass or
    Ctrl-C, its frames decoded (and checked with the keys file's keys)."""
    sg = signers(load_keys(keys)) if keys else None
    p = Printer(out, sg)
    end = None if seconds is None else time.monotonic() + seconds
    try:
        if do_restart:
            restart(ser)
        while end is None or time.monotonic() < end:
            try:
                data = ser.read(ser.in_waiting or 1)
            except Exception as e:  # unplugged, vboard gone
                raise JalkalError(f"lost the board on {ser.port} ({e})")
            if data:
                p.feed(data)
    except KeyboardInterrupt:
        pass
    finally:
        p.flush()
    return p
