"""Mosquitto's files for jalkal's MQTT (`jalkal broker`, `jalkal provision
--mosquitto DIR`): one account per device and per server worker, and ACLs so a
device can only publish its own batches and read its own acks.

In DIR:

- ``passwd``: Mosquitto's ``password_file``, one ``user:$7$<iterations>$<salt>$<hash>``
  line per account, as ``mosquitto_passwd`` writes it: PBKDF2-HMAC-SHA512, a 12-byte
  random salt, 101 iterations, salt and the 64-byte hash in base64 (eclipse/mosquitto
  src/password_mosq.h ``SALT_LEN``, ``PW_DEFAULT_ITERATIONS``; src/password_mosq.c
  ``pw__hash``: ``PKCS5_PBKDF2_HMAC(password, salt, iterations, sha512, 64)``;
  apps/mosquitto_passwd/mosquitto_passwd.c ``output_new_password``:
  ``"%s:$%d$%d$%s$%s\\n"``, user, hash type 7, iterations, salt64, hash64). A device's
  user name is its id, its password ``codec.mqtt_password`` of its key (what the board
  sends); a server worker's password is random, in ``<user>.password`` (0600), which
  `jalkal serve --mqtt-password-file` reads.
- ``acl``: ``pattern write jalkal/v1/%u/up`` and ``pattern read jalkal/v1/%u/ack`` for
  every account, and read on every ``up``, write on every ``ack`` for the servers.
  That read also lets a server worker take its share of the batches through an
  MQTT 5 shared subscription (``$share/GROUP/jalkal/v1/+/up``, `jalkal serve
  --mqtt-share`): Mosquitto 2 lets a subscription through and checks ``read``
  against the topic of each message it delivers (src/security_default.c
  ``mosquitto_acl_check_default`` skips MOSQ_ACL_SUBSCRIBE; src/subs.c
  ``subs__send`` checks MOSQ_ACL_READ on the message's topic).
- ``mosquitto.conf``: no anonymous clients, these two files, and on every listener
  ``use_username_as_clientid true`` (the broker replaces the client id with the user
  name, so nobody can take over another account's session or knock it off).

Secrets are written whole (temporary file, rename), owner-only; a file replaced keeps
its owner (the broker reads them as its own user, e.g. ``mosquitto``)."""

from __future__ import annotations

import base64
import hashlib
import hmac
import os
import re
import secrets
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO

from jkproto import codec, link

from ..console import plural
from ..errors import JalkalError
from ..fileio import atomic_write, read_optional
from ..keys import load_keys

PASSWD, ACL, CONF = "passwd", "acl", "mosquitto.conf"
SERVER_USER = "jalkal-serve"
ITERATIONS = 101  # PW_DEFAULT_ITERATIONS, src/password_mosq.h
SALT_LEN = 12  # SALT_LEN, src/password_mosq.h
DEVICE_USER = re.compile(r"^[0-9a-f]{8}$")
SERVER_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")
HEADER = "# written by jalkal broker (host/field/broker.py), see docs/uplink.md\n"


def hash_password(password: bytes, salt: bytes | None = None,
                  iterations: int = ITERATIONS) -> str:  # fmt: skip
    """``$7$<iterations>$<salt>$<hash>``, as mosquitto_passwd writes it."""
    salt = secrets.token_bytes(SALT_LEN) if salt is None else salt
    digest = hashlib.pbkdf2_hmac("sha512", password, salt, iterations, 64)
    b64 = base64.b64encode
    return f"$7${iterations}${b64(salt).decode()}${b64(digest).decode()}"


def password_matches(encoded: str, password: bytes) -> bool:
    """Whether a password file's hash (``$7$``) is that of password."""
    parts = encoded.split("$")
    if len(parts) != 5 or parts[1] != "7" or not parts[2].isdigit():
        return False
    try:
        salt = base64.b64decode(parts[3], validate=True)
        want = base64.b64decode(parts[4], validate=True)
    except ValueError:
        return False
    got = hashlib.pbkdf2_hmac("sha512", password, salt, int(parts[2]), len(want))
    return hmac.compare_digest(got, want)


def device_password(key: bytes) -> bytes:
    """A device's MQTT password (32 hex digits), from its key: what the board sends."""
    return bytes(codec.mqtt_password(codec.Signer(key)))


def check_server_user(name: str) -> str:
    if not SERVER_NAME.match(name) or DEVICE_USER.match(name):
        raise JalkalError(
            f"server user {name!r}: letters, digits, '.', '_' and '-' (at most 64), "
            "and not 8 hex digits (those are devices' user names)"
        )
    return name


# --- the files' text ------------------------------------------------------------


def parse_passwd(text: str, where: str) -> dict[str, str]:
    """user -> hash, in the file's order (comments and blank lines dropped)."""
    out: dict[str, str] = {}
    for n, line in enumerate(text.splitlines(), 1):
        if not line.strip() or line.startswith("#"):
            continue
        user, sep, pw = line.partition(":")
        if not sep or not user or not pw:
            raise JalkalError(f"{where} line {n}: not user:hash; nothing written")
        out[user] = pw
    return out


def passwd_text(entries: dict[str, str]) -> str:
    return HEADER + "".join(f"{u}:{h}\n" for u, h in entries.items())


def entry(old: dict[str, str], user: str, password: bytes) -> str:
    """The hash line for user: the old one while it still matches (a file written
    again from the same keys is the same file), else a new one."""
    prev = old.get(user)
    return (
        prev if prev and password_matches(prev, password) else hash_password(password)
    )


def acl_text(servers: Iterable[str]) -> str:
    """The ACL file: patterns for every account (%u: the user name), then what each
    server worker may do. Mosquitto reads a topic only while one line allows it."""
    up, ack = link.UP_TOPIC, link.ACK_TOPIC
    lines = [
        HEADER.rstrip("\n"),
        "# a device (user name = its id) publishes its batches and reads its acks:",
        f"pattern write {up % '%u'}",
        f"pattern read {ack % '%u'}",
    ]
    lines += [
        "",
        "# the server workers read every batch (also through a shared subscription,",
        f"# $share/GROUP/{up % '+'}: read is checked on each batch's own topic)",
        "# and answer every device:",
    ]
    for s in servers:
        lines += [f"user {s}", f"topic read {up % '+'}", f"topic write {ack % '+'}", ""]
    if not lines[-1]:
        lines.pop()
    return "\n".join(lines) + "\n"


@dataclass
class Listeners:
    """The broker's listeners: plain MQTT on port (0: none), MQTT over TLS on
    tls_port when given a certificate and key; bind: one address, or all."""

    port: int = 1883
    bind: str | None = None
    tls_port: int = 8883
    tls_cert: Path | None = None
    tls_key: Path | None = None
    extra: list[str] = field(default_factory=list)


def conf_text(out: Path, ls: Listeners) -> str:
    where = f" {ls.bind}" if ls.bind else ""
    lines = [
        HEADER.rstrip("\n"),
        "# use: mosquitto -c THIS_FILE, or copy it into /etc/mosquitto/conf.d/",
        "# (Mosquitto 2; reload the accounts with: kill -HUP <mosquitto's pid>)",
        "# and in the main config: persistence true, max_queued_messages for an",
        "# outage of the server (docs/uplink.md#mqtt)",
        "per_listener_settings false",
        "allow_anonymous false",
        f"password_file {out.resolve() / PASSWD}",
        f"acl_file {out.resolve() / ACL}",
    ]
    if ls.port:
        lines += ["", f"listener {ls.port}{where}", "use_username_as_clientid true"]
    if ls.tls_cert and ls.tls_key:
        lines += [
            "", f"listener {ls.tls_port}{where}",
            f"certfile {ls.tls_cert.resolve()}", f"keyfile {ls.tls_key.resolve()}",
            "use_username_as_clientid true",
        ]  # fmt: skip
    return "\n".join(lines + ls.extra) + "\n"


# --- writing ----------------------------------------------------------------------


def write(path: Path, data: bytes, secret: bool) -> None:
    """Replace path with data (secret: owner-only), keeping the old file's owner."""
    try:
        st = path.stat()
    except OSError:
        st = None

    def put(f: IO[bytes]) -> None:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())

    atomic_write(path, put, secret=secret)
    if st is not None and hasattr(os, "chown"):
        try:
            os.chown(path, st.st_uid, st.st_gid)
        except OSError:
            pass  # not root: the file is this user's, as atomic_write left it


def server_password(path: Path) -> tuple[bytes, bool]:
    """The server account's password from its file, or a new one (made: True)."""
    data = read_optional(path)
    if data is not None and data.strip():
        return data.strip(), False
    return secrets.token_hex(16).encode(), True


@dataclass
class Written:
    out: Path
    devices: int
    servers: list[tuple[str, Path, bool]]  # user, password file, made now
    tls: bool


def write_all(keys: Path, out: Path, servers: list[str], ls: Listeners) -> Written:
    """`jalkal broker`: the password file for every device of the keys file and every
    server worker, the ACL file and the config snippet, in out."""
    key_map = load_keys(keys)
    if not servers:
        servers = [SERVER_USER]
    for s in servers:
        check_server_user(s)
    if len(set(servers)) != len(servers):
        raise JalkalError("--server-user: each name once")
    if bool(ls.tls_cert) != bool(ls.tls_key):
        raise JalkalError("a TLS listener needs both --tls-cert and --tls-key")
    for p in (ls.tls_cert, ls.tls_key):
        if p is not None and not p.is_file():
            raise JalkalError(f"{p}: no such file (a PEM certificate or key)")
    if not ls.port and not ls.tls_cert:
        raise JalkalError(
            "--port 0 and no TLS listener: the broker would listen nowhere"
        )
    if out.exists() and not out.is_dir():
        raise JalkalError(f"--out {out}: not a directory")
    passwd_path = out / PASSWD
    old_bytes = read_optional(passwd_path)
    old = (
        parse_passwd(old_bytes.decode("utf-8", "replace"), str(passwd_path))
        if old_bytes
        else {}
    )
    entries: dict[str, str] = {}
    made: list[tuple[str, Path, bool]] = []
    secrets_out: list[tuple[Path, bytes]] = []
    for s in servers:
        pw_path = out / f"{s}.password"
        pw, new = server_password(pw_path)
        entries[s] = entry(old, s, pw)
        made.append((s, pw_path, new))
        if new:
            secrets_out.append((pw_path, pw + b"\n"))
    for dev in sorted(key_map):
        entries[dev] = entry(old, dev, device_password(key_map[dev]))
    try:
        out.mkdir(parents=True, exist_ok=True, mode=0o700)
    except OSError as e:
        raise JalkalError(f"--out {out}: cannot make the folder: {e.strerror or e}")
    for path, data in secrets_out:  # before the password file that names them
        write(path, data, True)
    write(passwd_path, passwd_text(entries).encode(), True)
    write(out / ACL, acl_text(servers).encode(), False)
    write(out / CONF, conf_text(out, ls).encode(), False)
    return Written(out, len(key_map), made, bool(ls.tls_cert))


def device_update(
    folder: Path, device: str, key: bytes
) -> tuple[Path, bytes, bytes, str]:
    """`jalkal provision --mosquitto DIR`: the password file with the device's line
    added or replaced (path, old bytes, new bytes, a note for the summary). The file
    must exist (`jalkal broker` makes it, with the server's account)."""
    path = folder / PASSWD
    old_bytes = read_optional(path)
    if old_bytes is None:
        raise JalkalError(
            f"--mosquitto {folder}: no {PASSWD} there; make the broker's files first: "
            f"jalkal broker --keys KEYS --out {folder}; nothing written"
        )
    entries = parse_passwd(old_bytes.decode("utf-8", "replace"), str(path))
    had = device in entries
    entries[device] = hash_password(device_password(key))
    note = (
        f"{path}: MQTT login of {device} {'replaced' if had else 'added'}; reload the "
        "broker (kill -HUP <mosquitto's pid>)"
    )
    return path, old_bytes, passwd_text(entries).encode(), note


def summary(w: Written) -> str:
    lines = [
        f"{w.out / PASSWD}  {plural(w.devices, 'device')} and "
        f"{plural(len(w.servers), 'server account')} (owner-only)",
        f"{w.out / ACL}  each device: publish its up, read its ack; the servers: "
        "read every up, publish every ack",
        f"{w.out / CONF}  no anonymous clients, user name as client id"
        + (", a TLS listener" if w.tls else ""),
    ]
    for user, path, new in w.servers:
        lines.append(
            f"{path}  password of {user} ({'new' if new else 'kept'}, owner-only)"
        )
    user, path, _new = w.servers[0]
    lines.append(
        f"next: mosquitto -c {w.out / CONF}; jalkal serve ... --mqtt mqtt://HOST:PORT "
        f"--mqtt-user {user} --mqtt-password-file {path}"
    )
    return "\n".join(lines)
