"""The dashboard's HTTP server: the standard library's ThreadingHTTPServer (as
`jalkal serve`), Jinja2 templates, a session login, the JSON API and
server-sent events (/events) that tell an open page when the View changed.

Only /healthz, /login and /static/ answer without a session; a page asks for
the login page instead (303), an API path answers 401. Every POST carries the
session's CSRF token; GET never changes anything; the viewer role writes
nothing (the only POSTs are login and logout), and only the admin role sees the
device list."""

from __future__ import annotations

import json
import mimetypes
import ssl
import threading
import time
from http import cookies
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, quote, urlsplit

from .. import __version__
from ..errors import JalkalError
from . import api, model
from .chart import lpcd_svg
from .sessions import COOKIE, Session, Sessions, cookie_header
from .source import Live
from .users import User, check_password

HERE = Path(__file__).parent
STATIC = HERE / "static"
MAX_FORM = 4096  # bytes of a login or logout form
EVENT_KEEPALIVE_S = 15.0
PAGES = ("/", "/summary", "/villages", "/alerts", "/devices")
SECURITY_HEADERS = {
    "Content-Security-Policy": "default-src 'self'; img-src 'self' data:; "
    "style-src 'self'; script-src 'self'; object-src 'none'; base-uri 'none'; "
    "form-action 'self'; frame-ancestors 'none'",
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-store",
}


def templates() -> Any:
    import jinja2

    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(str(HERE / "templates")),
        autoescape=True,
        undefined=jinja2.StrictUndefined,
    )
    env.filters["num"] = lambda x: "–" if x is None else f"{x:,.0f}"
    env.filters["lpcd"] = lambda x: "–" if x is None else f"{x:.1f}"
    env.filters["when"] = lambda s: "never" if not s else s.replace("T", " ")[:16] + "Z"
    env.filters["q"] = lambda d: "&".join(
        f"{k}={quote(str(v), safe='')}" for k, v in d.items() if v not in (None, "")
    )
    env.globals.update(
        STATUSES=model.STATUSES,
        STATUS_LABELS=model.STATUS_LABELS,
        BANDS=model.BANDS,
        BAND_LABELS=model.BAND_LABELS,
        version=__version__,
        vid=lambda a: model.village_id(
            (a["state"] or "", a["district"] or "", a["block"] or "", a["village"])
        ),
    )
    return env


class DashboardServer(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True

    def __init__(
        self,
        addr: tuple[str, int],
        live: Live,
        users: dict[str, User],
        tls: ssl.SSLContext | None = None,
        sessions: Sessions | None = None,
    ):
        super().__init__(addr, Handler)
        self.live, self.users, self.tls = live, users, tls
        self.sessions = sessions or Sessions()
        self.env = templates()
        self.stopping = threading.Event()
        if tls is not None:
            self.socket = tls.wrap_socket(
                self.socket, server_side=True, do_handshake_on_connect=False
            )

    @property
    def url(self) -> str:
        host, port = self.server_address[:2]
        name = host.decode() if isinstance(host, bytes) else host
        return f"{'https' if self.tls else 'http'}://{name}:{port}/"


class Handler(BaseHTTPRequestHandler):
    server: DashboardServer
    session: Session | None = None
    protocol_version = "HTTP/1.1"
    timeout = 30
    # the headers and the body go out in separate writes: without this a
    # kept-alive connection waits out the client's delayed ACK (40 ms) each time
    disable_nagle_algorithm = True

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002
        pass  # pages are not logged; errors are said where they happen

    # --- answers --------------------------------------------------------------

    def send(
        self,
        status: int,
        ctype: str,
        body: bytes,
        headers: dict[str, str] | None = None,
    ) -> None:
        self.send_response(status)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(body)))
        for k, v in {**SECURITY_HEADERS, **(headers or {})}.items():
            self.send_header(k, v)
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def json(
        self, status: int, obj: Any, headers: dict[str, str] | None = None
    ) -> None:
        body = (json.dumps(obj, ensure_ascii=False, default=str) + "\n").encode()
        self.send(status, "application/json", body, headers)

    def error(self, status: int, message: str) -> None:
        if self.path.startswith("/v1/") or self.path == "/events":
            self.json(status, {"error": message})
        else:
            self.page("error.html", status, message=message, status=status)

    def page(self, name: str, code: int = 200, **ctx: Any) -> None:
        s = getattr(self, "session", None)
        ctx.setdefault("session", s)
        ctx.setdefault("view", self.server.live.view)
        ctx.setdefault("stale", self.server.live.error)
        ctx.setdefault("api", None)
        html = self.server.env.get_template(name).render(**ctx)
        self.send(code, "text/html; charset=utf-8", html.encode())

    def redirect(self, to: str, headers: dict[str, str] | None = None) -> None:
        self.send(303, "text/plain", b"", {"Location": to, **(headers or {})})

    # --- the request ----------------------------------------------------------

    def current(self) -> Session | None:
        jar = cookies.SimpleCookie()
        try:
            jar.load(self.headers.get("Cookie", ""))
        except cookies.CookieError:
            return None
        m = jar.get(COOKIE)
        return self.server.sessions.get(m.value if m else None)

    def do_HEAD(self) -> None:  # noqa: N802
        self.do_GET()

    def do_GET(self) -> None:  # noqa: N802
        try:
            self.get()
        except (BrokenPipeError, ConnectionResetError):
            pass

    def do_POST(self) -> None:  # noqa: N802
        try:
            self.post()
        except (BrokenPipeError, ConnectionResetError):
            pass

    def refuse_write(self) -> None:
        self.session = self.current()
        if self.session is None or self.session.user is None:
            self.error(401, "log in first")
        else:
            self.send(
                405,
                "text/plain",
                b"nothing here can be changed\n",
                {"Allow": "GET, HEAD"},
            )

    do_PUT = do_DELETE = do_PATCH = refuse_write  # noqa: N815

    def get(self) -> None:
        u = urlsplit(self.path)
        path, q = u.path, parse_qs(u.query)
        if path == "/healthz":
            live = self.server.live
            ok = live.error is None
            self.json(
                200 if ok else 503,
                {"ok": ok, "frames": live.view.count, "error": live.error},
            )
            return
        if path.startswith("/static/"):
            self.static(path.removeprefix("/static/"))
            return
        self.session = s = self.current()
        if path == "/login":
            self.login_form(q)
            return
        if s is None or s.user is None:
            if path.startswith("/v1/") or path == "/events":
                self.json(
                    401,
                    {"error": "log in first"},
                    {"WWW-Authenticate": 'Cookie realm="jalkal"'},
                )
            else:
                nxt = quote(path + (f"?{u.query}" if u.query else ""), safe="")
                self.redirect(f"/login?next={nxt}")
            return
        try:
            self.route(path, q, s)
        except api.NotFound as e:
            self.error(404, str(e))
        except api.BadRequest as e:
            self.error(400, str(e))

    def route(self, path: str, q: dict[str, list[str]], s: Session) -> None:
        view = self.server.live.view
        admin = s.role == "admin"
        if path == "/events":
            self.events()
        elif path == api.OPENAPI_PATH:
            self.send(200, "application/json", api.OPENAPI.read_bytes())
        elif (m := api.match(path)) is not None:
            if api.ROUTES[m[0]][1] and not admin:
                self.error(403, "the device list is for admins")
                return
            self.json(200, api.call(view, m[0], m[1], q))
        elif path in ("/", "/summary"):
            data = api.summary(view, q)
            self.page("summary.html", data=data, api="/v1/summary?" + _qs(q))
        elif path == "/villages":
            data = api.villages(view, q)
            self.page("villages.html", data=data, api="/v1/villages?" + _qs(q))
        elif path.startswith("/village/"):
            vid = path.removeprefix("/village/")
            data = api.village(view, vid)
            chart = lpcd_svg(view.days.get(vid, []), model.DAYS_SHOWN)
            self.page(
                "village.html",
                data=data,
                chart=chart,
                days=view.days.get(vid, []),
                api=f"/v1/villages/{vid}",
            )
        elif path == "/alerts":
            self.page("alerts.html", data=api.alert_rows(view, q), api="/v1/alerts")
        elif path == "/devices":
            if not admin:
                self.error(403, "the device list is for admins")
                return
            self.page("devices.html", data=api.devices(view, q), api="/v1/devices")
        else:
            self.error(404, f"no page {path}")

    def static(self, name: str) -> None:
        p = STATIC / name
        if "/" in name or name.startswith(".") or not p.is_file():
            self.error(404, "no such file")
            return
        ctype = mimetypes.guess_type(name)[0] or "application/octet-stream"
        self.send(200, ctype, p.read_bytes(), {"Cache-Control": "max-age=3600"})

    def events(self) -> None:
        """Server-sent events: `update` with the frame count whenever the View
        changes; a comment line as keep-alive; ends at logout or shutdown."""
        live, s = self.server.live, self.session
        assert s is not None
        self.send_response(200)
        self.send_header("Content-Type", "text/event-stream")
        self.send_header("Cache-Control", "no-store")
        self.send_header("X-Content-Type-Options", "nosniff")
        self.send_header("Connection", "close")
        self.end_headers()
        self.close_connection = True
        version = live.version
        self.wfile.write(b"retry: 2000\n\n")
        self.wfile.flush()
        while not self.server.stopping.is_set() and self.server.sessions.get(s.id):
            now = live.wait(version, EVENT_KEEPALIVE_S)
            if self.server.stopping.is_set():
                break
            if now != version:
                version = now
                msg = {
                    "version": now,
                    "frames": live.view.count,
                    "as_of": model.iso(live.view.now),
                }
                self.wfile.write(f"event: update\ndata: {json.dumps(msg)}\n\n".encode())
            else:
                self.wfile.write(b": keep-alive\n\n")
            self.wfile.flush()

    # --- login and logout -------------------------------------------------------

    def login_form(
        self, q: dict[str, list[str]], status: int = 200, message: str | None = None
    ) -> None:
        s = self.session
        if s is None:
            s = self.server.sessions.new()  # a login-form session: its CSRF token
        nxt = _safe_next((q.get("next") or ["/"])[0])
        html = self.server.env.get_template("login.html").render(
            session=s, next=nxt, message=message, view=None, stale=None, api=None
        )
        self.send(
            status,
            "text/html; charset=utf-8",
            html.encode(),
            {"Set-Cookie": cookie_header(s, self.server.tls is not None)},
        )

    def form(self) -> dict[str, str] | None:
        ctype = self.headers.get("Content-Type", "").split(";")[0].strip()
        try:
            n = int(self.headers.get("Content-Length", "0"))
        except ValueError:
            return None
        if ctype != "application/x-www-form-urlencoded" or not 0 <= n <= MAX_FORM:
            return None
        data = parse_qs(self.rfile.read(n).decode("utf-8", "replace"))
        return {k: v[0] for k, v in data.items()}

    def post(self) -> None:
        path = urlsplit(self.path).path
        self.session = s = self.current()
        f = self.form()
        if path not in ("/login", "/logout"):
            self.refuse_write()
            return
        if s is None or f is None or not s.csrf_ok(f.get("csrf")):
            self.close_connection = True
            self.error(
                403,
                "the form has expired or did not come from this "
                "dashboard: open the page again",
            )
            return
        secure = self.server.tls is not None
        if path == "/logout":
            self.server.sessions.drop(s.id)
            self.redirect("/login", {"Set-Cookie": cookie_header(s, secure, True)})
            return
        name, pw = f.get("user", ""), f.get("password", "")
        sessions = self.server.sessions
        q = {"next": [f.get("next", "/")]}
        if sessions.locked(name):
            self.login_form(
                q, 429, "too many failed logins for this name: try again in 15 minutes"
            )
            return
        user = check_password(self.server.users, name, pw)
        if user is None:
            sessions.failed(name)
            self.login_form(q, 401, "wrong name or password")
            return
        sessions.succeeded(name)
        sessions.drop(s.id)  # a new id once logged in: no session fixation
        new = sessions.new(user.name, user.role)
        self.redirect(
            _safe_next(f.get("next", "/")), {"Set-Cookie": cookie_header(new, secure)}
        )


def _qs(q: dict[str, list[str]]) -> str:
    return "&".join(f"{k}={quote(v[0], safe='')}" for k, v in sorted(q.items()) if v)


def _safe_next(nxt: str) -> str:
    """Only a path on this server (never //host or a scheme): no open redirect."""
    if not nxt.startswith("/") or nxt.startswith("//") or "\\" in nxt:
        return "/"
    return nxt if not nxt.startswith("/login") else "/"


def tls_context(cert: str, key: str) -> ssl.SSLContext:
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    try:
        ctx.load_cert_chain(cert, key)
    except (ssl.SSLError, OSError) as e:
        raise JalkalError(f"TLS: cannot use certificate {cert} with key {key}: {e}")
    return ctx


def parse_listen(text: str) -> tuple[str, int]:
    host, _, p = text.rpartition(":")
    try:
        port = int(p)
    except ValueError:
        port = -1
    if not host or not 0 <= port <= 65535:
        raise JalkalError(f"--listen {text!r}: give HOST:PORT, e.g. 127.0.0.1:8090")
    return host.strip("[]"), port


def serve(
    live: Live,
    users: dict[str, User],
    listen: str,
    tls: ssl.SSLContext | None = None,
    sessions: Sessions | None = None,
) -> DashboardServer:
    """Start the View's thread and the server (its own thread); stop with stop().
    sessions: kept in a file (sessions_for), else in memory."""
    try:
        srv = DashboardServer(parse_listen(listen), live, users, tls, sessions)
    except OSError as e:
        raise JalkalError(f"cannot listen on {listen}: {e.strerror or e}")
    live.start()
    threading.Thread(
        target=srv.serve_forever,
        name="dashboard-http",
        kwargs={"poll_interval": 0.2},
        daemon=True,
    ).start()
    return srv


def stop(srv: DashboardServer) -> None:
    srv.stopping.set()
    srv.live.stop()
    srv.shutdown()
    srv.server_close()
    time.sleep(0)  # let the event streams see the stop
