"""The server's certificate, pinned on SIM7600 boards with an https:// or mqtts://
uplink (docs/uplink.md "TLS for boards"). A board has no CA store: `jalkal provision
--server-cert FILE` checks the certificate, writes its SHA-256 into config.json
(uplink_cert_sha256) and keeps the file beside it; `jalkal deploy` copies that file
to the board (jkfw.tls.CERT), where the firmware checks it against the fingerprint
before it loads it into the modem. SIM800 and SIM7000 boards stay on http://."""

from __future__ import annotations

import hashlib
import ssl
from pathlib import Path
from typing import Any

from ..errors import JalkalError

FILE = "server.pem"  # beside config.json in provision's --out folder
MAX_BYTES = 10240  # AT+CCERTDOWN takes 1-10240 bytes (SIM7600 manual §10.2.13)
SCHEMES = ("https://", "mqtts://")
WHY_NOT = (
    "TLS runs on the SIM7600's own SSL only; on this board use http:// (frames "
    "and the server's answers are signed: nobody can forge or replay them, but "
    "they travel readable)"
)


def is_tls(url: Any) -> bool:
    return isinstance(url, str) and url.startswith(SCHEMES)


def fingerprint(data: bytes) -> str:
    """The SHA-256 of the file's bytes, as the board computes it (64 hex digits)."""
    return hashlib.sha256(data).hexdigest()


def read_cert(path: Path) -> bytes:
    """The bytes of a PEM certificate file, checked: one or more certificates,
    no private key, small enough for the modem."""
    try:
        data = path.read_bytes()
    except OSError as e:
        raise JalkalError(f"--server-cert {path}: cannot read it: {e.strerror or e}")
    text = data.decode("ascii", "replace")
    if "PRIVATE KEY" in text:
        raise JalkalError(
            f"--server-cert {path}: it holds a private key; give the certificate "
            "only (the key stays on the server)"
        )
    if "-----BEGIN CERTIFICATE-----" not in text:
        raise JalkalError(
            f"--server-cert {path}: not a PEM certificate (-----BEGIN "
            "CERTIFICATE-----); convert a .der one with: openssl x509 -in FILE "
            "-inform der -out server.pem"
        )
    try:
        ssl.create_default_context(cadata=text)
    except (ssl.SSLError, ValueError) as e:
        raise JalkalError(f"--server-cert {path}: not a readable certificate ({e})")
    if len(data) > MAX_BYTES:
        raise JalkalError(
            f"--server-cert {path}: {len(data)} bytes; the modem takes at most "
            f"{MAX_BYTES}: give the server's own (self-signed) certificate"
        )
    return data


def pin(raw: dict[str, Any], known: dict[str, Any], cert: Path | None) -> str:
    """Check an https/mqtts uplink against the board's modem and put the server
    certificate's fingerprint into raw (config.json); a note for the summary."""
    url = raw.get("uplink_url", "")
    if not is_tls(url):
        if cert is not None:
            raise JalkalError("--server-cert: for an https:// or mqtts:// --uplink")
        return ""
    if raw.get("modem") != "sim7600":
        raise JalkalError(f"--uplink {url}: {WHY_NOT}")
    if cert is None:
        raise JalkalError(
            f"--uplink {url}: a board checks the server against its certificate "
            "only: give --server-cert FILE (the PEM the server presents)"
        )
    if "uplink_cert_sha256" not in known:
        raise JalkalError("--server-cert: this firmware cannot pin a certificate yet")
    raw["uplink_cert_sha256"] = fingerprint(read_cert(cert))
    return (
        f"server certificate pinned (sha256 {raw['uplink_cert_sha256'][:16]}...); "
        f"jalkal deploy copies {FILE} to the board"
    )


def writes(cert: Path | None, out: Path) -> list[tuple[Path, bytes, bool]]:
    """The certificate's copy beside config.json, as provision writes its files."""
    return [] if cert is None else [(out / FILE, read_cert(cert), False)]


def board_cert(cfg: dict[str, Any], config_path: str) -> bytes | None:
    """For deploy: the pinned certificate (beside config.json) when the config has
    a TLS uplink, checked against its fingerprint; None without TLS."""
    if not is_tls(cfg.get("uplink_url")):
        return None
    path = Path(config_path).parent / FILE
    again = "run jalkal provision --server-cert FILE again for this board"
    try:
        data = path.read_bytes()
    except OSError as e:
        raise JalkalError(
            f"{path}: {e.strerror or e}; config.json pins the server's certificate "
            f"and deploy copies it from beside config.json: {again}"
        )
    if fingerprint(data) != cfg.get("uplink_cert_sha256"):
        raise JalkalError(
            f"{path} is not the certificate config.json pins (uplink_cert_sha256); "
            f"the board would refuse it: {again}"
        )
    return data
