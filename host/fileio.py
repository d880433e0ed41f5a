"""Reading inputs and writing outputs the same way in every command: files named
or found under a folder, read with a one-line error, written whole or not at all."""

from __future__ import annotations

import os
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import IO, Any

from .errors import JalkalError


def input_files(paths: tuple[str, ...]) -> list[Path]:
    """Files named, and every file under a named directory (sorted)."""
    out: list[Path] = []
    for name in paths:
        p = Path(name)
        if p.is_dir():
            found = sorted(f for f in p.rglob("*") if f.is_file())
            if not found:
                raise JalkalError(f"{p}: directory has no files")
            out.extend(found)
        elif p.exists():
            out.append(p)
        else:
            raise JalkalError(f"{p}: no such file or directory")
    return out


def read_bytes(p: Path) -> bytes:
    try:
        return p.read_bytes()
    except OSError as e:
        raise JalkalError(f"cannot read {p}: {e.strerror or e}")


def atomic_write(out: str | Path, write: Callable[[IO[bytes]], Any]) -> None:
    """Write to a temporary file beside OUT, then rename: no half-written output."""
    target = Path(out)
    try:
        fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", dir=target.parent or ".")
    except OSError as e:
        raise JalkalError(f"cannot write {target}: {e.strerror or e}")
    try:
        with os.fdopen(fd, "wb") as f:
            write(f)
        os.replace(tmp, target)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
