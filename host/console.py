"""Messages for the person at the terminal, from library code that must not depend
on the command line: progress and warnings go to standard error, looked up at each
call (so a test runner's captured stream sees them)."""

from __future__ import annotations

import sys


def say(msg: str = "", nl: bool = True) -> None:
    """One progress or warning line on standard error (nl=False: no newline)."""
    sys.stderr.write(msg + ("\n" if nl else ""))
    sys.stderr.flush()


def show(msg: str = "") -> None:
    """One line of a command's answer on standard output."""
    sys.stdout.write(msg + "\n")
    sys.stdout.flush()
