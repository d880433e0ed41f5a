"""A modem that is nothing but documented answers: each command the board writes is
answered with the next scripted answer, taken from tests/data/modem/*.jsonl (SIMCom
manuals and application notes, 3GPP examples, answers posted from real modules).
The bytes travel over the simulator's UART at the line rate, so the driver sees them
arrive in pieces as it would on a board."""

import json
from pathlib import Path

from jksim.hw import SimUart

DATA = Path(__file__).parent / "data" / "modem"


def records() -> dict:
    """Every fixture record by id."""
    out = {}
    for f in sorted(DATA.glob("*.jsonl")):
        for n, line in enumerate(f.read_text(encoding="utf-8").splitlines(), 1):
            if line.strip():
                r = json.loads(line)
                r["_file"] = f"{f.name}:{n}"
                out.setdefault(r["id"], r)
    return out


REC = records()


def answer(rid: str) -> bytes:
    return REC[rid]["answer"].encode("latin-1")


def chunks(rid: str) -> list:
    r = REC[rid]
    return [c.encode("latin-1") for c in r.get("chunks") or [r["answer"]]]


class Step:
    """The board writes a line starting with `cmd` (then `raw` bytes of data, if
    any); the module answers `parts[0]` after `delay_ms`, the rest of `parts` after
    the data (or straight after, without data)."""

    def __init__(self, cmd, parts, raw=0, delay_ms=20, gap_ms=20):
        self.cmd = cmd
        self.parts = [parts] if isinstance(parts, bytes) else list(parts)
        self.raw = raw
        self.delay_ms = delay_ms
        self.gap_ms = gap_ms  # between the parts after the first


class Script:
    def __init__(self, clock, steps, first=b""):
        self.clock = clock
        self.uart = SimUart(clock)
        self.uart.peer = self
        self.steps = list(steps)
        self.wire = bytearray()
        self.line = bytearray()
        self.raw = 0
        self.rest = []
        self.gap_ms = 20
        self.unexpected = []
        if first:
            self.uart.send(first, 10)  # URCs before any command (boot)

    def receive(self, data):
        for c in data:
            self.wire.append(c)
            if self.raw:
                self.raw -= 1
                if not self.raw:
                    for p in self.rest:
                        self.uart.send(p, self.gap_ms)
                continue
            if c == 13:
                line = bytes(self.line)
                self.line = bytearray()
                self.command(line)
            elif c != 10:
                self.line.append(c)

    def command(self, line):
        if not self.steps or not line.startswith(self.steps[0].cmd):
            self.unexpected.append(line)  # nothing answers: the test sees it
            return
        s = self.steps.pop(0)
        self.uart.send(s.parts[0], s.delay_ms)
        self.raw, self.rest, self.gap_ms = s.raw, s.parts[1:], s.gap_ms
        if not s.raw:
            for p in self.rest:
                self.uart.send(p, s.gap_ms)


def run(clock, coro, ms=600000):
    """Run coro on the virtual clock until it returns (at most ms); its result."""
    out = []

    async def wrap():
        out.append(await coro)

    clock.spawn(wrap())
    end = clock.ms + ms
    while not out and clock.ms < end and not clock.failures:
        clock.run_until(clock.ms + 20)
    assert clock.failures == []
    assert out, "did not finish"
    return out[0]
