"""A server's answer to an upload batch, signed as protocol/SPEC.md "Uplink" says
(codec.ack_msg over the body's SHA-256 and the numbers, HMAC-SHA256 with the
device's key, 16 hex digits), for the fake
servers of the firmware tests. Field order and spelling as jalkal serve's."""

from __future__ import annotations

import hashlib
import json
import secrets
import zlib

from jkproto import codec


def sig(key: bytes | None, device: str, msg_args: tuple) -> str:
    """The sig of an answer (random digits when key is None: an unknown device)."""
    if key is None:
        return secrets.token_hex(codec.ACK_SIG_LEN)
    return codec.ack_sig(codec.Signer(key), codec.ack_msg(device, *msg_args)).decode()


def answer(
    key: bytes | None, body: bytes, frames: int, stored: int, duplicate: int,
    acked_bytes: int, error: str = "", device: str = "0a1b2c3d",
    front: dict | None = None,
) -> bytes:  # fmt: skip
    """The JSON answer (compact, as jalkal serve writes it); front: fields put
    before all others (to push the signed ones past the board's 160 bytes)."""
    crc = zlib.crc32(body)
    doc = dict(front or {})
    doc.update(ok=not error, frames=frames, stored=stored, duplicate=duplicate)
    doc["acked_bytes"] = acked_bytes
    if error:
        doc["error"] = error
    sha = hashlib.sha256(body).digest()
    args = (sha, len(body), frames, stored, duplicate, acked_bytes, error)
    doc["sig"] = sig(key, device, args)
    doc["device"] = device
    doc.update(rejected=frames - stored - duplicate, body_bytes=len(body))
    doc["body_crc32"] = f"{crc:08x}"
    doc.setdefault("acked", [])
    return json.dumps(doc, separators=(",", ":")).encode()
