"""Run a script in real MicroPython (the WebAssembly port under Node).

    import mpyrun
    reason = mpyrun.available()      # None when ready
    out = mpyrun.run("print(1 + 1)")  # -> "2\\n"

Each run() is a fresh interpreter in a fresh Node process; see README.md.
Stdlib only.
"""

from __future__ import annotations

import base64
import functools
import json
import os
import shutil
import subprocess
from pathlib import Path

HERE = Path(__file__).resolve().parent
RUN_MJS = HERE / "run.mjs"
PACKAGE = "@micropython/micropython-webassembly-pyscript"
PACKAGE_DIR = HERE / "node_modules" / PACKAGE
INSTALL_HINT = "run: bash .ci/install-wasm.sh"
CWD = "/flash"  # fresh working folder inside the MicroPython file system
EX_HARNESS = 70  # run.mjs exit code for its own failures
MIN_NODE = 18

__all__ = [
    "MicroPythonError",
    "MicroPythonTimeout",
    "MicroPythonUnavailable",
    "available",
    "run",
]


class MicroPythonError(Exception):
    """The script failed: uncaught exception, sys.exit(n != 0) or timeout.

    Attributes: stdout, stderr (text), traceback (the MicroPython traceback,
    "" if none), returncode (None on timeout).
    """

    def __init__(self, message, stdout="", stderr="", traceback="", returncode=None):
        super().__init__(message)
        self.stdout = stdout
        self.stderr = stderr
        self.traceback = traceback
        self.returncode = returncode


class MicroPythonTimeout(MicroPythonError):
    """The script did not finish within timeout_s (the process was killed)."""


class MicroPythonUnavailable(RuntimeError):
    """Node or the MicroPython package is missing; the message says how to fix."""


def _node() -> str | None:
    return os.environ.get("JALKAL_NODE") or shutil.which("node")


@functools.cache
def _node_major(node: str) -> int | None:
    try:
        proc = subprocess.run(
            [node, "--version"], check=False, capture_output=True, text=True, timeout=30
        )
        return int(proc.stdout.strip().lstrip("v").split(".")[0])
    except (OSError, ValueError, subprocess.SubprocessError):
        return None


def _wanted_version() -> str | None:
    try:
        deps = json.loads((HERE / "package.json").read_text())["dependencies"]
        return deps[PACKAGE]
    except (OSError, ValueError, KeyError):
        return None


def available() -> str | None:
    """None when run() can work, else a one-line reason with the fix."""
    node = _node()
    if not node:
        return (
            "node not found on PATH (install Node.js >= 18, then " + INSTALL_HINT + ")"
        )
    major = _node_major(node)
    if major is None:
        return f"cannot run '{node} --version'"
    if major < MIN_NODE:
        return f"node v{major} is too old (need >= {MIN_NODE})"
    if not RUN_MJS.is_file():
        return f"{RUN_MJS} is missing"
    try:
        installed = json.loads((PACKAGE_DIR / "package.json").read_text())["version"]
    except (OSError, ValueError, KeyError):
        return f"npm package {PACKAGE} is not installed ({INSTALL_HINT})"
    wanted = _wanted_version()
    if wanted and installed != wanted:
        return f"{PACKAGE} {installed} installed, {wanted} pinned ({INSTALL_HINT})"
    if not (PACKAGE_DIR / "micropython.mjs").is_file():
        return f"{PACKAGE} install is incomplete ({INSTALL_HINT})"
    return None


def _decode(data: bytes | str | None) -> str:
    if data is None:
        return ""
    if isinstance(data, str):
        return data
    return data.decode("utf-8", errors="replace")


def _traceback(stderr: str) -> str:
    start = stderr.rfind("Traceback (most recent call last):")
    return stderr[start:] if start >= 0 else ""


def run(
    script: str,
    files: dict[str, bytes | str] | None = None,
    timeout_s: float = 60,
    heapsize: int | None = None,
    steps: list[str] | None = None,
    romfs: bytes | None = None,
) -> str:
    """Run `script` (source text) in a fresh MicroPython; return its stdout.

    `steps`: further scripts run afterwards in the same interpreter, each in its
    own call: gc.collect() there frees what earlier calls dropped (within one
    call, its own garbage stays reachable from the WebAssembly stack), which is
    how a live heap is measured.

    `files` maps paths in the MicroPython file system to contents (str is
    written as UTF-8); relative paths are relative to the working folder
    (a fresh, empty "/flash", which is also sys.path's ''), absolute ones
    such as "/lib/x.py" are absolute. Parent folders are created.

    Raises MicroPythonError (with .stdout, .stderr, .traceback) if the script
    raised, called sys.exit() with a failure status, left an asyncio task
    exception unretrieved, or timed out (MicroPythonTimeout); raises
    MicroPythonUnavailable if Node or the package is missing.
    `heapsize` is passed to loadMicroPython, but note that the WebAssembly
    heap grows on demand: it does not cap memory like a board's heap does.
    `romfs`: a ROMFS image (mpremote's `romfs build`) mounted at "/rom", in memory
    outside MicroPython's heap as a board's romfs partition is, with "/rom" and
    "/rom/lib" after the other entries of sys.path; .mpy modules imported from it
    run in place, their bytecode not copied into the heap.
    """
    reason = available()
    if reason:
        raise MicroPythonUnavailable(reason)
    manifest_files = []
    for name, content in (files or {}).items():
        data = content.encode("utf-8") if isinstance(content, str) else bytes(content)
        manifest_files.append([name, base64.b64encode(data).decode("ascii")])
    manifest = {
        "script": script,
        "steps": list(steps or []),
        "files": manifest_files,
        "heapsize": heapsize,
        "cwd": CWD,
        "romfs": base64.b64encode(romfs).decode("ascii") if romfs else None,
    }
    try:
        proc = subprocess.run(
            [_node(), str(RUN_MJS)],
            check=False,
            input=json.dumps(manifest).encode("utf-8"),
            capture_output=True,
            timeout=timeout_s,
        )
    except subprocess.TimeoutExpired as exc:
        out, err = _decode(exc.stdout), _decode(exc.stderr)
        raise MicroPythonTimeout(
            f"MicroPython script timed out after {timeout_s} s",
            stdout=out,
            stderr=err,
            traceback=_traceback(err),
        ) from None
    out, err = _decode(proc.stdout), _decode(proc.stderr)
    if proc.returncode == 0:
        return out
    tb = _traceback(err)
    if proc.returncode == EX_HARNESS:
        message = "MicroPython harness failed:\n" + err.strip()
    else:
        detail = tb or err.strip() or "(no output on stderr)"
        message = f"MicroPython script failed (exit {proc.returncode}):\n{detail}"
    raise MicroPythonError(
        message, stdout=out, stderr=err, traceback=tb, returncode=proc.returncode
    )
