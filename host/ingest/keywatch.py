"""Devices added or revoked while `jalkal serve` runs: the keys file is read again
when it changes (its inode, size or modification time, looked at every `interval`
seconds; `jalkal provision` replaces it by rename) and on SIGHUP.

A keys file that does not parse, or that others may read (unless
--insecure-keys-file), is not taken: the keys in use stay, and one log line says
why (once per version of the file). Each reload logs one line with the devices
added, removed and whose key changed. From then on a removed device's frames are
refused (unknown_device) and a new device's are accepted."""

from __future__ import annotations

import os
import threading
import time
from pathlib import Path
from typing import Any

from ..errors import JalkalError
from ..keys import check_private, load_keys
from .log import Log

POLL_S = 1.0


def signature(path: Path) -> tuple[int, int, int, int] | None:
    """What changes when the file is replaced or written: (device, inode, size,
    mtime in ns); None when it cannot be looked at."""
    try:
        st = os.stat(path)
    except OSError:
        return None
    return (st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns)


class KeyWatch:
    """Reloads the keys of `store` (``set_keys``) from `path`."""

    def __init__(
        self, path: str | Path, store: Any, keys: dict[str, bytes], log: Log,
        interval: float = POLL_S, check_modes: bool = True,
    ):  # fmt: skip
        self.path = Path(path)
        self.store, self.log = store, log
        self.keys = dict(keys)  # the keys in use
        self.interval = interval
        self.check_modes = check_modes
        self.sig = signature(self.path)
        self.loaded_at = time.time()
        self.reloads = 0  # taken
        self.failures = 0  # not taken
        self.lock = threading.Lock()  # one reload at a time
        self.wake = threading.Event()  # SIGHUP
        self.stopping = threading.Event()
        self.thread: threading.Thread | None = None

    def start(self) -> None:
        self.thread = threading.Thread(target=self.run, name="keywatch", daemon=True)
        self.thread.start()

    def stop(self) -> None:
        self.stopping.set()
        self.wake.set()
        if self.thread is not None:
            self.thread.join(5)

    def hup(self) -> None:
        """SIGHUP: read the file again now, changed or not (safe in a signal
        handler: it only sets an event)."""
        self.wake.set()

    def run(self) -> None:
        while not self.stopping.is_set():
            # interval 0: no polling, SIGHUP only
            hup = self.wake.wait(self.interval if self.interval > 0 else None)
            if self.stopping.is_set():
                return
            self.wake.clear()
            try:
                self.check(forced=hup)
            except Exception as e:  # pragma: no cover - a bug: logged, go on
                self.log(f"keys: reload failed: {e!r}", 0, "keys_reload_failed")

    def check(self, forced: bool = False) -> bool | None:
        """Reload if the file changed (or forced): True taken, False not taken,
        None nothing to do."""
        with self.lock:
            sig = signature(self.path)
            if not forced and sig == self.sig:
                return None
            self.sig = sig  # a broken version is reported once, not every second
            why = "SIGHUP" if forced else "changed"
            try:
                if self.check_modes:
                    check_private(self.path)
                keys = load_keys(self.path)
            except JalkalError as e:
                self.failures += 1
                self.log(
                    f"keys: {self.path} ({why}) not taken: {e}; still serving the "
                    f"{len(self.keys)} devices loaded before",
                    0, "keys_reload_failed", path=str(self.path), reason=str(e),
                    devices=len(self.keys),
                )  # fmt: skip
                return False
            old = self.keys
            added = sorted(set(keys) - set(old))
            removed = sorted(set(old) - set(keys))
            changed = sorted(d for d in set(keys) & set(old) if keys[d] != old[d])
            self.store.set_keys(keys)
            self.keys = keys
            self.reloads += 1
            self.loaded_at = time.time()
            self.log(
                f"keys: reloaded {self.path} ({why}): {len(keys)} devices, "
                f"{len(added)} added, {len(removed)} removed, {len(changed)} with "
                "a new key",
                0, "keys_reload", "info", path=str(self.path), devices=len(keys),
                added=len(added), removed=len(removed), changed=len(changed),
                added_devices=added[:20], removed_devices=removed[:20],
            )  # fmt: skip
            return True
