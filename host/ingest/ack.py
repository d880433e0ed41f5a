"""What the server answers for one upload batch: the outcome of every frame, the
HTTP status, and the acknowledgement body the board reads (docs/uplink.md), signed
with the key of the answer's device (protocol/SPEC.md "Uplink").

On the wire a frame of an unknown device reads as ``bad_mac`` and its answer carries
a random ``sig`` of the same length, so an answer does not tell which device ids the
server knows; inside the server (``outcome``, ``summary()``, the logs) the two stay
apart."""

from __future__ import annotations

import hashlib
import secrets
import zlib
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from jkproto import codec, link
from jkproto import objects as ob

from ..errors import JalkalError

MAX_ERRORS = 50  # per-frame error entries listed in a response

# outcome codes per frame: 0 stored, 1 duplicate, then the rejection reasons
STORED, DUPLICATE = 0, 1
REASONS = (
    "stored", "duplicate", "unknown_device", "bad_mac", "wrong_device",
    "unsupported_version", "malformed_frame", "conflict", "broken_chain",
    "future_boot", "throttled",
)  # fmt: skip
(UNKNOWN_DEVICE, BAD_MAC, WRONG_DEVICE, UNSUPPORTED_VERSION, MALFORMED_FRAME,
 CONFLICT, BROKEN_CHAIN, FUTURE_BOOT, THROTTLED) = range(2, len(REASONS))  # fmt: skip

# HTTP status of a request in which no frame was acknowledged, by (first) reason
STATUS = {
    "unknown_device": 403, "bad_mac": 403, "wrong_device": 403,
    "unsupported_version": 400, "malformed_frame": 400, "malformed_body": 400,
    "conflict": 409, "broken_chain": 409, "future_boot": 409, "too_large": 413,
    "internal_error": 500,
    "throttled": 429,  # too many failed MACs from this device or source: wait
    "busy": 503,  # the server is at its connection cap: send again later
    "store_error": 503,  # the COMMIT failed (a full disk): send again later
    # refused by the server before the store sees the body
    "not_found": 404, "method_not_allowed": 405, "length_required": 411,
    "unsupported_media_type": 415, "timeout": 408, "bad_topic": 400,
}  # fmt: skip

MESSAGES = {
    "unknown_device": "device is not in the server's keys file",
    "bad_mac": "MAC does not verify with the device's key",
    "wrong_device": "frame of another device than the topic names",
    "unsupported_version": "frame version is not 1",
    "malformed_frame": "payload shorter than its kind needs",
    "conflict": "another frame with the same (device, boot, seq) is stored",
    "broken_chain": "prev does not match the stored neighbour in the chain",
    "future_boot": "boot number implausibly far ahead of the device's stored boots",
    "throttled": "not checked: the device's failed-MAC budget was spent earlier in "
    "this body; send again later",
}


class BodyError(JalkalError):
    """The whole batch is refused (nothing stored): reason is one of STATUS."""

    def __init__(self, reason: str, message: str):
        super().__init__(message)
        self.reason = reason
        self.message = message


@dataclass
class IngestResult:
    """What one batch did. ``outcome[i]`` is the code (index into REASONS) of the
    i-th frame of the body; device/boot/seq/offset/length are the frames' fields."""

    body_bytes: int
    body_crc32: int
    outcome: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int8))
    device: np.ndarray = field(default_factory=lambda: np.zeros(0, np.uint32))
    boot: np.ndarray = field(default_factory=lambda: np.zeros(0, np.uint16))
    seq: np.ndarray = field(default_factory=lambda: np.zeros(0, np.uint16))
    offset: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int64))
    length: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int64))
    signer: Any = None  # the key of the answer's device (store.ingest sets it)
    who: int | None = None  # the answer's device (bind sets it), if any
    body_sha256: bytes = b""  # what the sig covers of the body (bind sets it)
    error: str | None = None  # body-level reason (malformed_body, too_large…)
    message: str | None = None
    seconds: float = 0.0
    retry_after: int = 0  # throttled: seconds until a re-send is let in (429)

    @property
    def frames(self) -> int:
        return int(self.outcome.size)

    def count(self, code: int) -> int:
        return int(np.count_nonzero(self.outcome == code))

    @property
    def stored(self) -> int:
        return self.count(STORED)

    @property
    def duplicate(self) -> int:
        return self.count(DUPLICATE)

    @property
    def rejected(self) -> int:
        return int(np.count_nonzero(self.outcome > DUPLICATE))

    @property
    def acked(self) -> int:
        return self.stored + self.duplicate

    def first_reason(self) -> str | None:
        if self.error:
            return self.error
        bad = np.flatnonzero(self.outcome > DUPLICATE)
        return REASONS[int(self.outcome[bad[0]])] if bad.size else None

    def status(self) -> int:
        """HTTP status: 200 when any frame was acknowledged, else the status of the
        body-level error (503 for a failed COMMIT) or of the first rejected frame's
        reason."""
        if self.error is None and self.acked:
            return 200
        return STATUS.get(self.first_reason() or "malformed_body", 400)

    def acked_runs(self) -> list[list[Any]]:
        """[device hex, boot, first seq, last seq] for every run of acknowledged
        frames with consecutive seq, in body order."""
        ok = np.flatnonzero(self.outcome <= DUPLICATE)
        if ok.size == 0:
            return []
        d = self.device[ok].astype(np.int64)
        b = self.boot[ok].astype(np.int64)
        s = self.seq[ok].astype(np.int64)
        cont = np.zeros(ok.size, bool)
        cont[1:] = (d[1:] == d[:-1]) & (b[1:] == b[:-1]) & (s[1:] == s[:-1] + 1)
        starts = np.flatnonzero(~cont)
        ends = np.r_[starts[1:], ok.size] - 1
        return [
            [ob.device_str(int(d[i])), int(b[i]), int(s[i]), int(s[j])]
            for i, j in zip(starts.tolist(), ends.tolist(), strict=True)
        ]

    def acked_bytes(self) -> int:
        """Length of the longest prefix of the body whose frames were all acked."""
        bad = np.flatnonzero(self.outcome > DUPLICATE)
        if self.error is not None:
            return 0
        if bad.size == 0:
            return self.body_bytes
        return int(self.offset[bad[0]])

    def reason_counts(self, wire: bool = False) -> dict[str, int]:
        """Rejected frames per reason; wire: as the answer tells them (an unknown
        device's frames counted as bad_mac)."""
        out = self.wire_outcome() if wire else self.outcome
        reasons: dict[str, int] = {}
        for code, n in enumerate(np.bincount(out, minlength=len(REASONS))):
            if code > DUPLICATE and n:
                reasons[REASONS[code]] = int(n)
        return reasons

    def wire_outcome(self) -> np.ndarray:
        """outcome as the answer tells it: unknown_device reads as bad_mac."""
        return np.where(self.outcome == UNKNOWN_DEVICE, BAD_MAC, self.outcome).astype(
            self.outcome.dtype
        )

    def bind(self, who: int, body: bytes) -> None:
        """Make the answer name device who and sign for this body (store.ingest)."""
        self.who = who
        self.body_sha256 = hashlib.sha256(body).digest()

    def sign(self, device: str, error: str) -> str:
        """The answer's sig (docs: protocol/SPEC.md "Uplink"): 16 hex digits of
        HMAC-SHA256 with the device's key over codec.ack_msg; random digits when the
        server has no key for the device (they verify with no key)."""
        if self.signer is None:
            return secrets.token_hex(codec.ACK_SIG_LEN)
        msg = codec.ack_msg(
            device, self.body_sha256, self.body_bytes, self.frames, self.stored,
            self.duplicate, self.acked_bytes(), error,
        )  # fmt: skip
        return str(codec.ack_sig(self.signer, msg).decode())

    def to_json(self) -> dict[str, Any]:
        """The response body of POST /v1/frames and of an MQTT ack. The fields a
        board reads and the sig come first: it keeps only the answer's first 160
        bytes."""
        wire = self.wire_outcome()
        errors = []
        for i in np.flatnonzero(wire > DUPLICATE)[:MAX_ERRORS].tolist():
            r = REASONS[int(wire[i])]
            e: dict[str, Any] = {"index": i, "offset": int(self.offset[i]), "reason": r}
            if r != "unsupported_version":
                e["device"] = ob.device_str(int(self.device[i]))
                e["boot"] = int(self.boot[i])
                e["seq"] = int(self.seq[i])
            errors.append(e)
        first = self.first_reason()
        if first == REASONS[UNKNOWN_DEVICE]:
            first = REASONS[BAD_MAC]
        out: dict[str, Any] = {
            link.OK: self.error is None and self.rejected == 0,
            link.FRAMES: self.frames,
            link.STORED: self.stored,
            link.DUPLICATE: self.duplicate,
            link.ACKED_BYTES: self.acked_bytes(),
        }
        if first is not None:
            out[link.ERROR] = first
        if self.who is not None:
            device = ob.device_str(self.who)
            out[link.SIG] = self.sign(device, first or "")
            out[link.DEVICE] = device
        out.update({
            link.REJECTED: self.rejected,
            link.BODY_BYTES: self.body_bytes,
            link.BODY_CRC32: f"{self.body_crc32:08x}",
            link.ACKED: self.acked_runs(),
            link.REASONS: self.reason_counts(wire=True),
            link.ERRORS: errors,
        })  # fmt: skip
        if first is not None:
            out[link.MESSAGE] = self.message or MESSAGES.get(first, first)
        return out

    def summary(self) -> str:
        s = (
            f"{self.frames} frames, {self.stored} stored, {self.duplicate} duplicate, "
            f"{self.rejected} rejected"
        )
        if self.error:
            s += f" (refused: {self.error}: {self.message})"
        elif self.rejected:
            s += (
                " ("
                + ", ".join(f"{k} {v}" for k, v in self.reason_counts().items())
                + ")"
            )
        return s


def refused(reason: str, message: str, body: bytes = b"") -> IngestResult:
    """The answer to a request refused as a whole (the same JSON as any answer)."""
    res = IngestResult(body_bytes=len(body), body_crc32=zlib.crc32(body))
    res.error, res.message = reason, message
    return res


def batch_line(via: str, who: str, res: IngestResult) -> tuple[str, int]:
    """One log line per batch; level 0 (always shown) when something was refused."""
    line = (
        f"{via} {who}: {res.body_bytes} B, {res.summary()} in "
        f"{res.seconds * 1e3:.1f} ms"
    )
    return line, 0 if (res.error or res.rejected) else 1
