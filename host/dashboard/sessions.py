"""Login sessions: a random 256-bit id in an HttpOnly, SameSite=Strict cookie
(Secure over https), an absolute expiry, and a per-session CSRF token every POST
must carry in a hidden field. A browser that has not logged in gets a session
without a user, so the login form is CSRF-checked too; logging in makes a new id
(no session fixation). Failed logins of one name are throttled.

Sessions are found by the SHA-256 of their id, never the id itself: the logged-in
ones are kept in a file (``<users file>.sessions``, owner-only, written at every
login and logout) so that they survive a restart of the dashboard, and a copy of
that file gives nobody a cookie that works. Expired ones are left out when it is
read and when it is written."""

from __future__ import annotations

import hashlib
import hmac
import json
import secrets
import threading
import time
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path

from .. import console
from ..fileio import atomic_write, read_optional
from ..keys import check_private

COOKIE = "jalkal_session"
SESSION_S = 8 * 3600  # a login lasts a working day
ANON_S = 1800  # a login form is good for half an hour
MAX_SESSIONS = 10_000  # the oldest go first past this (a flood of GET /login)
FAILS = 5  # failed logins of a name within FAIL_WINDOW_S before it is locked
FAIL_WINDOW_S = 900.0


@dataclass
class Session:
    id: str
    csrf: str
    expires: float
    user: str | None = None
    role: str | None = None

    def csrf_ok(self, token: str | None) -> bool:
        return token is not None and hmac.compare_digest(
            token.encode(), self.csrf.encode()
        )


def token_hash(sid: str) -> str:
    return hashlib.sha256(sid.encode()).hexdigest()


class Sessions:
    """The sessions by the hash of their id; path: the file the logged-in ones
    are kept in (None: memory only)."""

    def __init__(self, path: str | Path | None = None, check: bool = True) -> None:
        self.lock = threading.Lock()
        self.all: OrderedDict[str, Session] = OrderedDict()
        self.fails: dict[str, list[float]] = {}
        self.path = Path(path) if path is not None else None
        self.check = check
        if self.path is not None:
            self.load()

    def load(self) -> None:
        assert self.path is not None
        # whoever can write it could add a session of their own (never read it)
        if self.check:
            check_private(self.path, "--insecure-users-file", "sessions file",
                          "log in as anyone")  # fmt: skip
        raw = read_optional(self.path)
        try:
            doc = json.loads(raw) if raw else {}
            now = time.time()
            for h, v in doc.get("sessions", {}).items():
                if float(v["expires"]) > now and v.get("user"):
                    self.all[str(h)] = Session(
                        "", str(v["csrf"]), float(v["expires"]), str(v["user"]),
                        str(v["role"]),
                    )  # fmt: skip
        except (ValueError, KeyError, TypeError, AttributeError) as e:
            console.say(f"dashboard: {self.path} is not a sessions file ({e}): "
                        "everyone logs in again")  # fmt: skip
            self.all.clear()

    def save(self) -> None:
        """Write the logged-in sessions (the caller holds the lock)."""
        if self.path is None:
            return
        now = time.time()
        doc = {
            "sessions": {
                h: {"csrf": s.csrf, "expires": s.expires, "user": s.user,
                    "role": s.role}
                for h, s in self.all.items() if s.user and s.expires > now
            }
        }  # fmt: skip
        data = json.dumps(doc, indent=1).encode()
        atomic_write(self.path, lambda f: f.write(data), secret=True)

    def new(self, user: str | None = None, role: str | None = None) -> Session:
        s = Session(
            id=secrets.token_urlsafe(32),  # 256 random bits
            csrf=secrets.token_urlsafe(32),
            expires=time.time() + (SESSION_S if user else ANON_S),
            user=user,
            role=role,
        )
        with self.lock:
            self.all[token_hash(s.id)] = s
            while len(self.all) > MAX_SESSIONS:
                self.all.popitem(last=False)
            if user:
                self.save()
        return s

    def get(self, sid: str | None) -> Session | None:
        if not sid:
            return None
        h = token_hash(sid)
        with self.lock:
            s = self.all.get(h)
            if s is not None and s.expires < time.time():
                del self.all[h]
                return None
            if s is not None and not s.id:  # read from the file: the id it showed
                s.id = sid
            return s

    def drop(self, sid: str) -> None:
        with self.lock:
            s = self.all.pop(token_hash(sid), None)
            if s is not None and s.user:
                self.save()

    def locked(self, name: str) -> bool:
        now = time.monotonic()
        with self.lock:
            recent = [t for t in self.fails.get(name, []) if now - t < FAIL_WINDOW_S]
            self.fails[name] = recent
            return len(recent) >= FAILS

    def failed(self, name: str) -> None:
        with self.lock:
            self.fails.setdefault(name, []).append(time.monotonic())
            if len(self.fails) > MAX_SESSIONS:
                self.fails.pop(next(iter(self.fails)))

    def succeeded(self, name: str) -> None:
        with self.lock:
            self.fails.pop(name, None)


def cookie_header(s: Session, secure: bool, clear: bool = False) -> str:
    """The Set-Cookie value of a session (or one that removes the cookie)."""
    age = 0 if clear else int(max(s.expires - time.time(), 0))
    value = "" if clear else s.id
    return f"{COOKIE}={value}; Path=/; Max-Age={age}; HttpOnly; SameSite=Strict" + (
        "; Secure" if secure else ""
    )


def sessions_for(users: str | Path, insecure: bool = False) -> Sessions:
    """The sessions of the dashboard with this users file, kept beside it."""
    return Sessions(Path(str(users) + ".sessions"), check=not insecure)
