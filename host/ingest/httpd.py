"""HTTP for `jalkal serve`: ``POST /v1/frames`` with the frames back to back as the
body, ``GET /v1/health``; every answer is the JSON of ``ack.IngestResult.to_json``
(docs/uplink.md).

Bounded (docs/uplink.md#limits): at most ``max_connections`` connections, each with
its own thread; past that HEALTH_RESERVE more are taken for ``GET /v1/health`` only
(with a short deadline), and any further one is answered 503 ``busy`` by the accept
loop itself and closed, no thread made. A request (TLS handshake, request line,
headers and body) must arrive whole within ``request_timeout`` seconds of the
connection's opening (of the previous answer, for a kept-alive connection), however
slowly its bytes trickle in: after that it is answered 408 ``timeout`` and closed.
Optionally over TLS (1.2 or later), the handshake done in the connection's thread."""

from __future__ import annotations

import errno
import io
import json
import socket
import ssl
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import urlsplit

from jkproto import link

from .. import __version__
from ..errors import JalkalError
from . import metrics, snapshot
from .ack import STATUS, refused
from .guard import Throttle, retry_after
from .log import Log
from .store import FrameStore

API_PATH = link.PATH
HEALTH_PATH = link.HEALTH_PATH
REQUEST_TIMEOUT_S = 30.0  # a whole request must arrive within this
MAX_CONNECTIONS = 256  # connections served at once (a thread each)
HEALTH_RESERVE = 4  # more connections past the cap, for GET /v1/health only
RESERVE_TIMEOUT_S = 2.0  # the deadline of a request on a reserved connection
WRITE_TIMEOUT_S = 10.0  # a client must take an answer within this
ACCEPT_BACKOFF_S = 0.1  # out of file descriptors: wait before accepting again
FD_MARGIN = 64  # descriptors besides the connections: the store, logs, MQTT


def tls_context(cert: str, key: str) -> ssl.SSLContext:
    """A server context for https: TLS 1.2 or later, the certificate chain and key."""
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    try:
        ctx.load_cert_chain(cert, key)
    except FileNotFoundError as e:
        raise JalkalError(f"TLS: no such file {e.filename or cert}")
    except (ssl.SSLError, OSError) as e:
        raise JalkalError(
            f"TLS: cannot use certificate {cert} with key {key}: {e}; give a PEM "
            "certificate (chain) and its unencrypted PEM private key"
        )
    return ctx


def ensure_fds(needed: int) -> None:
    """Raise the soft limit of open files to `needed` if it is lower."""
    try:
        import resource
    except ImportError:  # pragma: no cover - not on Unix
        return
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft != resource.RLIM_INFINITY and soft < needed:
        if hard != resource.RLIM_INFINITY and hard < needed:
            raise JalkalError(
                f"--max-connections needs {needed} open files; the limit is {hard} "
                "(ulimit -n): give a smaller --max-connections or raise the limit"
            )
        resource.setrlimit(resource.RLIMIT_NOFILE, (needed, hard))


def canned(status: int, reason: str, message: str) -> bytes:
    """A whole HTTP answer (JSON, Connection: close) for the accept loop."""
    body = (json.dumps(refused(reason, message).to_json(), separators=(",", ":"))
            + "\n").encode()  # fmt: skip
    phrase = {503: "Service Unavailable", 408: "Request Timeout"}[status]
    head = (
        f"HTTP/1.1 {status} {phrase}\r\nServer: jalkal-serve/{__version__}\r\n"
        f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n"
        "Retry-After: 1\r\nConnection: close\r\n\r\n"
    )
    return head.encode() + body


class IngestHTTPServer(ThreadingHTTPServer):
    """Bound and listening once made; requests are taken (by serve_forever) only
    after `store` is set."""

    daemon_threads = True
    request_queue_size = 128
    store: FrameStore
    guard: Throttle | None = None
    metrics: metrics.Metrics | None = None  # /metrics (serve sets it)
    snapshot: snapshot.Access | None = None  # GET /v1/snapshot (serve sets it)

    def __init__(
        self,
        addr: tuple[str, int],
        log: Log,
        max_body: int,
        max_connections: int = MAX_CONNECTIONS,
        request_timeout: float = REQUEST_TIMEOUT_S,
        tls: ssl.SSLContext | None = None,
    ):
        self.log = log
        self.max_body = max_body
        self.max_connections = max_connections
        self.request_timeout = request_timeout
        self.tls = tls
        self.slots = threading.Lock()
        self.open = 0  # connections with a thread
        self.refused_busy = 0
        self.timed_out = 0
        self.busy_answer = canned(503, "busy", f"more than {max_connections} "
                                  "connections at once; send again later")  # fmt: skip
        self.local = threading.local()
        ensure_fds(max_connections + HEALTH_RESERVE + FD_MARGIN)
        super().__init__(addr, Handler)

    def get_request(self) -> tuple[Any, Any]:
        try:
            return self.socket.accept()
        except OSError as e:  # out of descriptors: do not spin on the listener
            if e.errno in (errno.EMFILE, errno.ENFILE, errno.ENOBUFS, errno.ENOMEM):
                self.log(f"http: cannot accept: {e.strerror}; waiting", 0)
                time.sleep(ACCEPT_BACKOFF_S)
            raise

    def process_request(self, request: Any, client_address: Any) -> None:
        """In the accept loop: a thread for the connection, or 503 busy at once."""
        with self.slots:
            n = self.open
            full = n >= self.max_connections + HEALTH_RESERVE
            if full:
                self.refused_busy += 1
            else:
                self.open += 1
        if full:
            self.refuse_busy(request)
            return
        reserved = n >= self.max_connections
        t = threading.Thread(
            target=self.connection_thread,
            args=(request, client_address, reserved, time.monotonic()),
            daemon=True,
        )
        t.start()

    def refuse_busy(self, sock: socket.socket) -> None:
        """Answer 503 busy without blocking (plain HTTP; a TLS connection is only
        closed: its handshake would need a thread) and close."""
        try:
            sock.setblocking(False)
            if self.tls is None:
                sock.send(self.busy_answer)
                try:  # what the client sent already: read, or close() sends RST
                    sock.recv(65536)
                except OSError:
                    pass
        except OSError:
            pass
        self.shutdown_request(sock)

    def connection_thread(
        self, sock: socket.socket, addr: Any, reserved: bool, t0: float
    ) -> None:
        conn: Any = sock
        try:
            limit = RESERVE_TIMEOUT_S if reserved else self.request_timeout
            if self.tls is not None:
                sock.settimeout(max(0.01, t0 + limit - time.monotonic()))
                conn = self.tls.wrap_socket(sock, server_side=True)
            self.local.reserved, self.local.t0, self.local.limit = reserved, t0, limit
            self.finish_request(conn, addr)
        except (OSError, ValueError) as e:  # TLS handshake failed, client gone
            self.log(f"http {addr[0]}: connection ended: {e}", 2)
        except Exception:  # pragma: no cover - a bug: logged, the server goes on
            self.handle_error(conn, addr)
        finally:
            self.shutdown_request(conn)
            with self.slots:
                self.open -= 1

    def health(self) -> dict[str, Any]:
        with self.slots:
            return {
                "open": self.open,
                "max": self.max_connections,
                "refused_busy": self.refused_busy,
                "timed_out": self.timed_out,
            }


class DeadlineReader(io.RawIOBase):
    """The socket's bytes, each read waiting only until the request's deadline."""

    def __init__(self, sock: socket.socket):
        self.sock = sock
        self.deadline = 0.0
        self.got = 0  # bytes of this request
        self.timed_out = False

    def arm(self, deadline: float) -> None:
        self.deadline, self.got, self.timed_out = deadline, 0, False

    def readable(self) -> bool:
        return True

    def readinto(self, b: Any) -> int:
        left = self.deadline - time.monotonic()
        if left <= 0:
            self.timed_out = True
            raise TimeoutError("the request's deadline passed")
        self.sock.settimeout(left)
        try:
            n = self.sock.recv_into(b)
        except TimeoutError:
            self.timed_out = True
            raise
        self.got += n
        return n


class SocketWriter(io.BufferedIOBase):
    def __init__(self, sock: socket.socket):
        self.sock = sock

    def writable(self) -> bool:
        return True

    def write(self, b: Any) -> int:
        self.sock.sendall(b)
        return len(b)


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = f"jalkal-serve/{__version__}"
    disable_nagle_algorithm = True  # headers and body are two writes: no 40 ms stall
    server: IngestHTTPServer

    def setup(self) -> None:
        self.connection = self.request
        self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, True)
        local = self.server.local
        self.reserved, self.t0, self.limit = local.reserved, local.t0, local.limit
        self.reader = DeadlineReader(self.connection)
        self.rfile = io.BufferedReader(self.reader)
        self.wfile = SocketWriter(self.connection)

    def handle(self) -> None:
        start = self.t0
        while True:
            self.reader.arm(start + self.limit)
            self.answered = False
            self.close_connection = True
            self.command, self.request_version, self.requestline = "", "HTTP/1.1", ""
            self.handle_one_request()
            if self.reader.timed_out:
                with self.server.slots:
                    self.server.timed_out += 1
                if self.reader.got and not self.answered:  # cut mid-request: say so
                    self.close_connection = True
                    try:
                        self._refuse("timeout", self._late())
                    except OSError:
                        pass
                return
            if self.close_connection or self.reserved:
                return
            start = time.monotonic()

    def _late(self) -> str:
        return f"request not received whole within {self.limit:g} s"

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002
        pass  # one line per batch is logged by do_POST instead

    def _send(
        self, status: int, doc: dict[str, Any], extra: dict[str, str] | None = None
    ) -> None:
        data = (json.dumps(doc, separators=(",", ":")) + "\n").encode()
        self.answered = True
        self.connection.settimeout(WRITE_TIMEOUT_S)
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        for k, v in (extra or {}).items():
            self.send_header(k, v)
        if self.close_connection:
            self.send_header("Connection", "close")
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(data)

    def _refuse(
        self, reason: str, message: str, allow: str | None = None, wait: int = 0
    ) -> None:
        """Answer a request refused before its body was read: the body (if any) is
        left unread, so the connection is closed after the answer."""
        self.close_connection = True
        res = refused(reason, message)
        extra = {"Allow": allow} if allow else {}
        if wait:
            extra["Retry-After"] = str(wait)
        self._send(STATUS[reason], res.to_json(), extra)
        self.server.log(f"http {self.client_address[0]}: {reason}: {message}", 1)

    def _wrong_method(self) -> None:
        path = self.path.split("?", 1)[0]
        if path == API_PATH:
            self._refuse("method_not_allowed", f"{API_PATH} takes POST", "POST")
        elif path == HEALTH_PATH:
            self._refuse("method_not_allowed", f"{HEALTH_PATH} takes GET", "GET")
        else:
            self._refuse("not_found", f"no {path}; frames go to POST {API_PATH}")

    def _busy(self) -> None:
        msg = "the server is at its connection cap; send again later"
        self._refuse("busy", msg, wait=1)

    def _send_bytes(self, status: int, ctype: str, data: bytes) -> None:
        self.answered = True
        self.connection.settimeout(WRITE_TIMEOUT_S)
        self.send_response(status)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(data)))
        if self.close_connection:
            self.send_header("Connection", "close")
        self.end_headers()
        self.wfile.write(data)

    def do_GET(self) -> None:  # noqa: N802
        path, _, query = self.path.partition("?")
        if path in metrics.PATHS:  # /healthz, /metrics (also on a reserved slot)
            got = metrics.answer(self.server.metrics, self.server.store, path, query)
            self._send_bytes(*got)
            return
        if path == snapshot.SNAPSHOT_PATH and not self.reserved:  # reports
            snapshot.answer(self, self.server.snapshot)
            return
        if path != HEALTH_PATH:
            self._busy() if self.reserved else self._wrong_method()
            return
        n: int | None = None
        try:
            n, failure = self.server.store.count(), self.server.store.failure
        except Exception as e:  # the store is gone: say so, keep serving
            failure = f"the store failed: {str(e).splitlines()[0]}"
        doc = {link.OK: True, link.FRAMES: n, "version": __version__,
               "max_body": self.server.max_body,
               "connections": self.server.health()}  # fmt: skip
        if self.server.guard is not None:
            doc["throttle"] = self.server.guard.stats()
        if failure is None:
            self._send(200, doc)
            return
        doc.update({link.OK: False, link.ERROR: "store_error", link.MESSAGE: failure})
        self._send(STATUS["store_error"], doc)
        self.server.log(f"http {self.client_address[0]}: health: {failure}", 1)

    def do_POST(self) -> None:  # noqa: N802
        if self.reserved:
            self._busy()
            return
        try:
            self._post()
        except TimeoutError:
            self.close_connection = True
            try:
                self._refuse("timeout", self._late())
            except OSError:
                pass
        except OSError:
            self.close_connection = True  # the client went away
        except Exception as e:  # never let one request stop the server
            self.close_connection = True
            self.server.log(f"http {self.client_address[0]}: internal error: {e!r}")
            try:
                self._send(500, refused("internal_error", str(e)).to_json())
            except OSError:
                pass

    def _post(self) -> None:
        path = self.path.split("?", 1)[0]
        if path != API_PATH:
            self._wrong_method()
            return
        guard, who = self.server.guard, self.client_address[0]
        wait = guard.source_wait(who) if guard is not None else 0.0
        if wait > 0:  # refused before the body is read, let alone a MAC checked
            msg = f"too many failed MACs from {who}: locked; send again later"
            self._refuse("throttled", msg, wait=retry_after(wait))
            return
        ctype = self.headers.get("Content-Type", "").split(";")[0].strip().lower()
        if ctype != link.CONTENT_TYPE:
            self._refuse(
                "unsupported_media_type",
                f"Content-Type must be {link.CONTENT_TYPE}, got {ctype or 'none'}",
            )
            return
        if self.headers.get("Transfer-Encoding"):
            self._refuse("length_required", "send Content-Length, not chunked bodies")
            return
        raw = self.headers.get("Content-Length")
        if raw is None:
            self._refuse("length_required", "Content-Length is required")
            return
        try:
            length = int(raw)
            if length < 0:
                raise ValueError
        except ValueError:
            self._refuse("malformed_body", f"bad Content-Length {raw!r}")
            return
        limit = self.server.max_body
        if length > limit:
            self._refuse("too_large", f"body of {length} bytes; at most {limit}")
            return
        body = self.rfile.read(length)
        if len(body) < length:
            self.close_connection = True
            res = refused(
                "malformed_body", f"body ended after {len(body)} of {length} bytes"
            )
        else:
            res = self.server.store.ingest(body, via="http", source=who)
        extra = {"Retry-After": str(res.retry_after)} if res.retry_after else None
        if res.retry_after:
            self.close_connection = True
        # counted and logged before the answer: a scrape after it sees the batch
        self.server.log.batch("http", self.client_address[0], res)
        self._send(res.status(), res.to_json(), extra)

    def do_PUT(self) -> None:  # noqa: N802
        self._busy() if self.reserved else self._wrong_method()

    do_DELETE = do_PATCH = do_HEAD = do_OPTIONS = do_PUT  # noqa: N815


def parse_hostport(text: str) -> tuple[str, int]:
    if "://" in text:
        u = urlsplit(text)
        host, port = u.hostname or "", u.port
    else:
        host, _, p = text.rpartition(":")
        try:
            port = int(p)
        except ValueError:
            port = None
    if not host or port is None or not 0 <= port <= 65535:
        raise JalkalError(f"--http {text!r}: give HOST:PORT, e.g. 127.0.0.1:8080")
    return host.strip("[]"), port
