"""The server's output: whole lines on stdout (what scripts read: the URLs, the
subscription, the store) and a log on stderr, shared by its threads."""

from __future__ import annotations

import sys
import threading
from typing import IO

_OUT_LOCK = threading.Lock()


def say(line: str, out: IO[str] | None = None) -> None:
    """One whole line on stdout (what scripts read: the URLs, the subscription,
    the store) or `out`. print() writes the text and the newline apart, so two
    threads printing at once could glue their lines together."""
    out = out or sys.stdout
    with _OUT_LOCK:
        out.write(line + "\n")
        out.flush()


class Log:
    def __init__(self, verbose: int):
        self.verbose = verbose

    def __call__(self, msg: str, level: int = 0) -> None:
        if level <= self.verbose:
            say(f"serve: {msg}", sys.stderr)
