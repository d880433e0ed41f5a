"""The server's output: whole lines on stdout (what scripts read: the URLs, the
subscription, the store) and a log on stderr, shared by its threads.

The log is text (``serve: <message>``, the default) or, with ``--log-format json``,
one JSON object a line: ``time`` (UTC, ISO 8601), ``level`` (``warning`` for what
is always shown, ``info`` for what -v shows, ``debug`` for -vv), ``event`` and the
event's fields; a batch (`Log.batch`) carries transport, source, device, frames,
stored, duplicate, rejected, reasons and ms."""

from __future__ import annotations

import json
import sys
import threading
import time
from collections.abc import Callable
from typing import IO, Any

from jkproto import objects as ob

from .ack import REASONS, IngestResult, batch_line

_OUT_LOCK = threading.Lock()
FORMATS = ("text", "json")
LEVELS = ("warning", "info", "debug")  # by verbosity: 0 always shown, 1 -v, 2 -vv


def say(line: str, out: IO[str] | None = None) -> None:
    """One whole line on stdout (what scripts read: the URLs, the subscription,
    the store) or `out`. print() writes the text and the newline apart, so two
    threads printing at once could glue their lines together."""
    out = out or sys.stdout
    with _OUT_LOCK:
        out.write(line + "\n")
        out.flush()


def utc_now() -> str:
    t = time.time()
    return (
        time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(t)) + f".{int(t % 1 * 1e3):03d}Z"
    )


def batch_fields(via: str, who: str, res: IngestResult) -> dict[str, Any]:
    """A batch's fields for a structured log line."""
    reasons: dict[str, int] = {}
    if res.error:
        reasons[res.error] = 1
    for code in set(res.outcome.tolist()):
        if code > 1:
            reasons[REASONS[code]] = res.count(code)
    devs = sorted({int(d) for d in res.device.tolist()})
    if res.who is not None and not devs:
        devs = [res.who]
    return {
        "transport": via, "source": who,
        "device": ob.device_str(devs[0]) if len(devs) == 1 else
        [ob.device_str(d) for d in devs] or None,
        "frames": res.frames, "stored": res.stored, "duplicate": res.duplicate,
        "rejected": res.rejected, "reasons": reasons, "bytes": res.body_bytes,
        "ms": round(res.seconds * 1e3, 2),
    }  # fmt: skip


class Log:
    """The server's log on stderr; `hooks` see every batch (the metrics)."""

    def __init__(self, verbose: int, fmt: str = "text"):
        self.verbose = verbose
        self.json = fmt == "json"
        self.hooks: list[Callable[[str, IngestResult], None]] = []

    def __call__(
        self, msg: str, level: int = 0, event: str = "message",
        severity: str | None = None, **fields: Any,
    ) -> None:  # fmt: skip
        """One line at verbosity `level`; in JSON, `event` and `fields` with it
        (severity: the JSON level, if not the verbosity's)."""
        if level > self.verbose:
            return
        if not self.json:
            say(f"serve: {msg}", sys.stderr)
            return
        sev = severity or LEVELS[min(level, 2)]
        doc = {"time": utc_now(), "level": sev, "event": event}
        doc.update(fields)
        doc["message"] = msg
        say(json.dumps(doc, separators=(",", ":"), default=str), sys.stderr)

    def batch(self, via: str, who: str, res: IngestResult) -> None:
        """A batch answered: its line (-v; always when something was refused) and
        the hooks."""
        for hook in self.hooks:
            try:
                hook(via, res)
            except Exception as e:  # pragma: no cover - metrics never stop ingest
                self(f"metrics: {e!r}", 0, "internal_error")
        line, level = batch_line(via, who, res)
        if level <= self.verbose:
            fields = batch_fields(via, who, res) if self.json else {}
            sev = "warning" if level == 0 else "info"
            self(line, level, "batch", sev, **fields)
