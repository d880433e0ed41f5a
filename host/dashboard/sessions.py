"""Login sessions, kept in the server's memory: a random 256-bit id in an HttpOnly,
SameSite=Strict cookie (Secure over https), an absolute expiry, and a per-session
CSRF token every POST must carry in a hidden field. A browser that has not logged
in gets a session without a user, so the login form is CSRF-checked too; logging
in makes a new id (no session fixation). Failed logins of one name are throttled."""

from __future__ import annotations

import hmac
import secrets
import threading
import time
from collections import OrderedDict
from dataclasses import dataclass

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


class Sessions:
    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.all: OrderedDict[str, Session] = OrderedDict()
        self.fails: dict[str, list[float]] = {}

    def new(self, user: str | None = None, role: str | None = None) -> Session:
        s = Session(
            id=secrets.token_urlsafe(32),  # 256 random bits
            csrf=secrets.token_urlsafe(32),
            expires=time.time() + (SESSION_S if user else ANON_S),
            user=user,
            role=role,
        )
        with self.lock:
            self.all[s.id] = s
            while len(self.all) > MAX_SESSIONS:
                self.all.popitem(last=False)
        return s

    def get(self, sid: str | None) -> Session | None:
        if not sid:
            return None
        with self.lock:
            s = self.all.get(sid)
            if s is not None and s.expires < time.time():
                del self.all[sid]
                return None
            return s

    def drop(self, sid: str) -> None:
        with self.lock:
            self.all.pop(sid, None)

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
