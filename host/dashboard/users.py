"""The dashboard's accounts: a JSON users file of names, roles and scrypt hashes.

    {"users": {"asha": {"role": "viewer",
                        "scrypt": {"n": 16384, "r": 8, "p": 1,
                                   "salt": "<32 hex>", "hash": "<64 hex>"}}}}

Passwords are never stored: each is hashed with hashlib.scrypt and a random
16-byte salt of its own. The file is written atomically and owner-only (0600,
fileio.atomic_write(secret=True)); the server refuses one open to others, as
`jalkal serve` refuses an open keys file."""

from __future__ import annotations

import hashlib
import hmac
import json
import os
import re
from dataclasses import dataclass
from pathlib import Path

from ..errors import JalkalError
from ..fileio import atomic_write, read_text
from ..keys import check_private

ROLES = ("viewer", "admin")
SCRYPT_N, SCRYPT_R, SCRYPT_P = 2**14, 8, 1  # 16 MiB and ~50 ms a check
SALT_BYTES = 16
HASH_BYTES = 32
MIN_PASSWORD = 10
NAME = re.compile(r"[A-Za-z0-9._@-]{1,64}")


@dataclass(frozen=True)
class User:
    name: str
    role: str
    salt: bytes
    hash: bytes
    n: int = SCRYPT_N
    r: int = SCRYPT_R
    p: int = SCRYPT_P


def scrypt(password: str, salt: bytes, n: int, r: int, p: int) -> bytes:
    return hashlib.scrypt(
        password.encode(),
        salt=salt,
        n=n,
        r=r,
        p=p,
        dklen=HASH_BYTES,
        maxmem=256 * n * r,
    )


def new_user(name: str, role: str, password: str) -> User:
    """A user with a fresh salt and the scrypt hash of the password."""
    if not NAME.fullmatch(name):
        raise JalkalError(
            f"user name {name!r}: use 1 to 64 letters, digits and . _ @ -"
        )
    if role not in ROLES:
        raise JalkalError(f"role must be one of {', '.join(ROLES)}, got {role!r}")
    if len(password) < MIN_PASSWORD:
        raise JalkalError(f"the password needs {MIN_PASSWORD} characters or more")
    salt = os.urandom(SALT_BYTES)
    return User(name, role, salt, scrypt(password, salt, SCRYPT_N, SCRYPT_R, SCRYPT_P))


def load_users(path: str | Path, missing_ok: bool = False) -> dict[str, User]:
    """The users of a users file (checked); {} for a missing one if missing_ok."""
    p = Path(path)
    if missing_ok and not p.exists():
        return {}
    text = read_text(p, "users file", "JSON", encoding="utf-8")
    try:
        doc = json.loads(text)
        out = {}
        for name, u in doc["users"].items():
            s = u["scrypt"]
            out[name] = User(
                name,
                str(u["role"]),
                bytes.fromhex(s["salt"]),
                bytes.fromhex(s["hash"]),
                int(s["n"]),
                int(s["r"]),
                int(s["p"]),
            )
            if out[name].role not in ROLES or not NAME.fullmatch(name):
                raise ValueError(f"user {name!r}")
    except (ValueError, KeyError, TypeError, AttributeError) as e:
        raise JalkalError(
            f"users file {p}: not a jalkal users file ({e}); make one with "
            "`jalkal dashboard-user add NAME --users FILE`"
        )
    return out


def save_users(path: str | Path, users: dict[str, User]) -> None:
    doc = {
        "users": {
            u.name: {
                "role": u.role,
                "scrypt": {
                    "n": u.n,
                    "r": u.r,
                    "p": u.p,
                    "salt": u.salt.hex(),
                    "hash": u.hash.hex(),
                },
            }
            for u in sorted(users.values(), key=lambda u: u.name)
        }
    }
    data = (json.dumps(doc, indent=2) + "\n").encode()
    atomic_write(path, lambda f: f.write(data), secret=True)


def add_user(path: str | Path, name: str, role: str, password: str) -> bool:
    """Add (or replace) a user in the users file; True when it replaced one."""
    users = load_users(path, missing_ok=True)
    had = name in users
    users[name] = new_user(name, role, password)
    save_users(path, users)
    return had


def remove_user(path: str | Path, name: str) -> None:
    users = load_users(path)
    if name not in users:
        raise JalkalError(f"users file {path} has no user {name!r}")
    del users[name]
    save_users(path, users)


_DUMMY = User("", "viewer", b"\0" * SALT_BYTES, b"\0" * HASH_BYTES)


def check_password(users: dict[str, User], name: str, password: str) -> User | None:
    """The user when the password is theirs; None otherwise (an unknown name
    costs the same scrypt, so it cannot be told from a wrong password)."""
    u = users.get(name)
    ref = u or _DUMMY
    got = scrypt(password, ref.salt, ref.n, ref.r, ref.p)
    ok = hmac.compare_digest(got, ref.hash)
    return u if ok and u is not None else None


def open_users(path: str | Path, insecure: bool = False) -> dict[str, User]:
    """The users file the server reads: private to its owner, with a user."""
    if not insecure:
        check_private(
            path,
            "--insecure-users-file",
            "users file",
            "try every password hash offline",
        )
    users = load_users(path)
    if not users:
        raise JalkalError(
            f"users file {path} has no user: add one with `jalkal dashboard-user "
            f"add NAME --role admin --users {path}`"
        )
    return users
