"""The server's MAC checker: codec.Signer with the HMAC pads hashed once."""

from __future__ import annotations

import hashlib
from typing import Any

import numpy as np

from jkproto import codec as c


class FastSigner(c.Signer):
    """codec.Signer with the HMAC pads hashed once: the same MAC, ~1.7x faster
    (the board's Signer cannot copy hash states; CPython's can)."""

    def __init__(self, key: bytes):
        super().__init__(key)
        self._inner = hashlib.sha256(self._ipad)
        self._outer = hashlib.sha256(self._opad)

    def digest(self, msg: Any) -> bytes:
        h = self._inner.copy()
        h.update(msg)
        o = self._outer.copy()
        o.update(h.digest())
        return o.digest()

    def mac(self, msg: Any) -> bytes:
        return self.digest(msg)[: c.MAC_LEN]

    def verify_many(
        self, buf: bytes, offsets: list[int], lengths: list[int]
    ) -> np.ndarray:
        """codec.verify of every frame buf[offset : offset + length], in one loop."""
        inner, outer = self._inner, self._outer
        out = np.zeros(len(offsets), bool)
        for i, (o, n) in enumerate(zip(offsets, lengths, strict=True)):
            e = o + n - c.TRAILER_LEN
            h = inner.copy()
            h.update(buf[o:e])
            g = outer.copy()
            g.update(h.digest())
            out[i] = g.digest()[: c.MAC_LEN] == buf[e : e + c.MAC_LEN]
        return out
