"""Messages for the person at the terminal, from library code that must not depend
on the command line: progress and warnings go to standard error, looked up at each
call (so a test runner's captured stream sees them)."""

from __future__ import annotations

import re
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import IO


def say(msg: str = "", nl: bool = True) -> None:
    """One progress or warning line on standard error (nl=False: no newline)."""
    sys.stderr.write(msg + ("\n" if nl else ""))
    sys.stderr.flush()


@contextmanager
def progress(
    label: str,
    total: float,
    enabled: bool | None = None,
    file: IO[str] | None = None,
    label_alone: bool = True,
) -> Iterator[Callable[[float], None]]:
    """A bar with the share done and the time left (rich) on standard error while
    long work runs, when that is a terminal (or `enabled`); elsewhere (a log file,
    a pipe, a test) the label once (unless not `label_alone`) and nothing more.
    Yields advance(amount)."""
    stream = file or sys.stderr
    on = stream.isatty() if enabled is None else enabled
    if not on:
        if label_alone:
            stream.write(label + "\n")
            stream.flush()
        yield lambda amount: None
        return
    from rich.console import Console
    from rich.progress import (
        BarColumn,
        Progress,
        TaskProgressColumn,
        TextColumn,
        TimeRemainingColumn,
    )

    bar = Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        TaskProgressColumn(),
        TextColumn("left"),
        TimeRemainingColumn(),
        console=Console(file=stream, force_terminal=True),
        transient=True,  # the command's own summary follows
    )
    with bar:
        task = bar.add_task(label, total=total)
        yield lambda amount: bar.advance(task, amount)


def show(msg: str = "") -> None:
    """One line of a command's answer on standard output."""
    sys.stdout.write(msg + "\n")
    sys.stdout.flush()


def plural(n: int, word: str, words: str = "") -> str:
    """A count and its noun as people write them: "1 file", "2 files", "1,024 files"
    (`words`: the plural when it is not word + "s")."""
    return f"{n:,} {word if n == 1 else (words or word + 's')}"


# (seconds, name) largest first; years only from two on ("400 days", not "1 year")
UNITS = (
    (365 * 86400, "year"),
    (86400, "day"),
    (3600, "hour"),
    (60, "minute"),
    (1, "second"),
)


def duration(seconds: float) -> str:
    """A length of time in words: "0.5 seconds", "1 minute 15 seconds", "3 hours
    12 minutes", "279 days", "26 years". Under ten of the largest unit the next one
    is given too. The sign is dropped: say "ahead", "behind" or "left" around it."""
    s = abs(seconds)
    if s < 9.95:
        x = round(s, 1)
        return f"{x:g} second" + ("" if x == 1 else "s")
    n = round(s)
    i = next(i for i, (size, _) in enumerate(UNITS) if n >= size * (2 if i == 0 else 1))
    size, name = UNITS[i]
    if n >= 10 * size or i == 0:
        return plural(round(n / size), name)
    small, small_name = UNITS[i + 1]
    big, part = n // size, n % size // small
    return plural(big, name) + (f" {plural(part, small_name)}" if part else "")


# C0 controls but tab, DEL and C1 (0x9b is a CSI): a terminal would act on them
CONTROL = re.compile("[\x00-\x08\x0a-\x1f\x7f-\x9f]")


def visible(text: str) -> str:
    """Text from a board (a line it printed, a config string, a file name), safe
    on a terminal: each control character (an escape sequence's ESC, a carriage
    return, a bell, a newline) shown as text, e.g. \\x1b."""
    return CONTROL.sub(lambda m: f"\\x{ord(m.group()):02x}", text)
