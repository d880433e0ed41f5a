"""Reading inputs and writing outputs the same way in every command: files named
or found under a folder, read with a one-line error, written whole or not at all."""

from __future__ import annotations

import os
import stat
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


def read_optional(p: Path) -> bytes | None:
    """The bytes of a file that may not exist yet (None then); any other failure
    to read it is a one-line error."""
    try:
        return p.read_bytes()
    except FileNotFoundError:
        return None
    except OSError as e:
        raise JalkalError(f"cannot read {p}: {e.strerror or e}")


def read_text(p: Path, what: str, expected: str, encoding: str = "utf-8-sig") -> str:
    """The text of an input file (`what`: "keys file", …); a one-line error when it
    cannot be read or is not UTF-8 text (`expected`: what it should hold)."""
    try:
        return p.read_text(encoding=encoding)
    except OSError as e:
        raise JalkalError(f"cannot read {what} {p}: {e.strerror or e}")
    except UnicodeDecodeError:
        raise JalkalError(f"{what} {p}: not UTF-8 text ({expected} expected)")


SECRET_MODE = 0o600  # a key, or a config that holds one: owner-only
SHARED_MODE = 0o666  # anything else: what the umask leaves of this, as `cp` does


def atomic_write(
    out: str | Path, write: Callable[[IO[bytes]], Any], *, secret: bool = False
) -> None:
    """Write to a temporary file beside OUT, then rename: no half-written output.

    A secret (keys, a board's config) is owner-only (0600) from its first byte;
    anything else gets 0666 less the umask, or keeps the mode of the file it
    replaces. A device or pipe at OUT (/dev/null) is written, never replaced. A
    folder, a missing or read-only folder, or a read-only file at OUT is refused
    with one line naming the path and what to do."""
    target = Path(out)
    check_target(str(out), target)
    if target.exists() and not target.is_file():  # /dev/null, a pipe: never replaced
        try:
            with open(target, "wb") as f:
                write(f)
            return
        except OSError as e:
            raise JalkalError(f"cannot write {target}: {e.strerror or e}")
    mode = SECRET_MODE if secret else SHARED_MODE
    fd, tmp = _create_beside(target, mode)
    try:
        with os.fdopen(fd, "wb") as f:
            if secret:
                os.fchmod(f.fileno(), SECRET_MODE)
            elif target.is_file():
                os.fchmod(f.fileno(), stat.S_IMODE(target.stat().st_mode))
            write(f)
        os.replace(tmp, target)
    except OSError as e:
        tmp.unlink(missing_ok=True)
        if isinstance(e, IsADirectoryError):
            raise JalkalError(f"{target} is a folder; give a file name for the output")
        raise JalkalError(f"cannot write {target}: {e.strerror or e}")
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def check_target(text: str, target: Path) -> None:
    """A one-line JalkalError unless a file can be written at target."""
    folder = target.parent
    if text.endswith(("/", os.sep)) or target.is_dir():
        raise JalkalError(
            f"{text or target} is a folder; give a file name for the output, e.g. "
            f"{target / 'out.txt'}"
        )
    if target.exists() and not target.is_file():  # a device or pipe: written in place
        if not os.access(target, os.W_OK):
            raise JalkalError(f"cannot write {target}: not writable")
        return
    if not folder.exists():
        raise JalkalError(f"cannot write {target}: folder {folder} does not exist; "
                          "create it first")  # fmt: skip
    if not folder.is_dir():
        raise JalkalError(f"cannot write {target}: {folder} is a file, not a folder")
    if not os.access(folder, os.W_OK | os.X_OK):
        raise JalkalError(
            f"cannot write {target}: folder {folder} is read-only; write elsewhere "
            "or make it writable"
        )
    if target.exists() and not os.access(target, os.W_OK):
        raise JalkalError(
            f"{target} is read-only; it is left as it is (make it writable, e.g. "
            f"chmod u+w {target}, or write elsewhere)"
        )


def _create_beside(target: Path, mode: int) -> tuple[int, Path]:
    """A new file beside target, open for writing, created with `mode` (less the
    umask): its descriptor and path."""
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_CLOEXEC", 0)
    while True:
        tmp = target.parent / f".{target.name}.{os.urandom(4).hex()}.tmp"
        try:
            return os.open(tmp, flags, mode), tmp
        except FileExistsError:
            continue
        except OSError as e:
            raise JalkalError(f"cannot write {target}: {e.strerror or e}")
