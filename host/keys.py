"""Keys file: {"devices": {"<device id>": {"key": "<64 hex chars>", ...}}}."""

from __future__ import annotations

import json
import re
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


def signers(keys: dict[str, bytes]) -> dict[str, codec.Signer]:
    """One Signer per device."""
    return {dev: codec.Signer(k) for dev, k in keys.items()}
