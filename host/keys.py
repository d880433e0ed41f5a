"""Keys file: {"devices": {"<device id>": {"key": "<64 hex chars>", ...}}}."""

from __future__ import annotations

import json
import os
import re
import stat
from pathlib import Path

from jkproto import codec

from .errors import JalkalError
from .fileio import read_text

_DEVICE = re.compile(r"^[0-9a-f]{8}$")
_KEY = re.compile(r"^[0-9a-fA-F]{64}$")


def parse_keys(doc: object, where: str = "keys file") -> dict[str, bytes]:
    """Device id -> 32-byte key, from a parsed keys document."""
    if not isinstance(doc, dict) or not isinstance(doc.get("devices"), dict):
        raise JalkalError(f'{where}: needs an object {{"devices": {{...}}}}')
    out: dict[str, bytes] = {}
    for dev, entry in doc["devices"].items():
        if not _DEVICE.match(dev):
            raise JalkalError(
                f"{where}: device id {dev!r} is not 8 lowercase hex digits"
            )
        key = entry.get("key") if isinstance(entry, dict) else None
        if not isinstance(key, str) or not _KEY.match(key):
            raise JalkalError(f"{where}: device {dev}: key must be 64 hex characters")
        out[dev] = bytes.fromhex(key)
    return out


def load_keys(path: str | Path) -> dict[str, bytes]:
    """Read and check a keys file."""
    p = Path(path)
    text = read_text(p, "keys file", "JSON", encoding="utf-8")
    try:
        doc = json.loads(text)
    except json.JSONDecodeError as e:
        raise JalkalError(f"keys file {p}: not JSON (line {e.lineno}: {e.msg})")
    return parse_keys(doc, f"keys file {p}")


def check_private(
    path: str | Path,
    override: str = "--insecure-keys-file",
    what: str = "keys file",
    harm: str = "forge every device's frames",
) -> None:
    """Refuse a secret file (the keys file, a TLS private key) that group or others
    may read or write, as ssh refuses an open private key; `override` names the
    option that accepts it anyway."""
    p = Path(path)
    if os.name != "posix":  # pragma: no cover - no such modes elsewhere
        return
    try:
        mode = stat.S_IMODE(p.stat().st_mode)
    except OSError:
        return  # load_keys says what is wrong with it
    if mode & 0o077:
        raise JalkalError(
            f"{what} {p} is open to other users (mode {mode:04o}): anyone who can "
            f"read it can {harm}; run `chmod 600 {p}` "
            f"(or pass {override} to serve it anyway)"
        )


def signers(keys: dict[str, bytes]) -> dict[str, codec.Signer]:
    """One Signer per device."""
    return {dev: codec.Signer(k) for dev, k in keys.items()}
