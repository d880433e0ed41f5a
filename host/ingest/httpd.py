"""HTTP for `jalkal serve`: ``POST /v1/frames`` with the frames back to back as the
body, ``GET /v1/health``; every answer is the JSON of ``ack.IngestResult.to_json``
(docs/uplink.md)."""

from __future__ import annotations

import json
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import urlsplit

from jkproto import link

from .. import __version__
from ..errors import JalkalError
from .ack import STATUS, batch_line, refused
from .log import Log
from .store import Store

API_PATH = link.PATH
HEALTH_PATH = link.HEALTH_PATH
READ_TIMEOUT_S = 30  # a client must send its whole body within this


class IngestHTTPServer(ThreadingHTTPServer):
    """Bound and listening once made; requests are taken (by serve_forever) only
    after `store` is set."""

    daemon_threads = True
    request_queue_size = 64
    store: Store

    def __init__(self, addr: tuple[str, int], log: Log, max_body: int):
        self.log = log
        self.max_body = max_body
        super().__init__(addr, Handler)


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = f"jalkal-serve/{__version__}"
    timeout = READ_TIMEOUT_S
    disable_nagle_algorithm = True  # headers and body are two writes: no 40 ms stall
    server: IngestHTTPServer

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002
        pass  # one line per batch is logged by do_POST instead

    def _send(
        self, status: int, doc: dict[str, Any], extra: dict[str, str] | None = None
    ) -> None:
        data = (json.dumps(doc, separators=(",", ":")) + "\n").encode()
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

    def _refuse(self, reason: str, message: str, allow: str | None = None) -> None:
        """Answer a request refused before its body was read: the body (if any) is
        left unread, so the connection is closed after the answer."""
        self.close_connection = True
        res = refused(reason, message)
        extra = {"Allow": allow} if allow else None
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

    def do_GET(self) -> None:  # noqa: N802
        path = self.path.split("?", 1)[0]
        if path != HEALTH_PATH:
            self._wrong_method()
            return
        n: int | None = None
        try:
            n, failure = self.server.store.count(), self.server.store.failure
        except Exception as e:  # the store is gone: say so, keep serving
            failure = f"the store failed: {str(e).splitlines()[0]}"
        doc = {link.OK: True, link.FRAMES: n, "version": __version__,
               "max_body": self.server.max_body}  # fmt: skip
        if failure is None:
            self._send(200, doc)
            return
        doc.update({link.OK: False, link.ERROR: "store_error", link.MESSAGE: failure})
        self._send(STATUS["store_error"], doc)
        self.server.log(f"http {self.client_address[0]}: health: {failure}", 1)

    def do_POST(self) -> None:  # noqa: N802
        try:
            self._post()
        except TimeoutError:
            self.close_connection = True
            try:
                self._refuse("timeout", f"body not received within {READ_TIMEOUT_S} s")
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
            res = self.server.store.ingest(body, via="http")
        self._send(res.status(), res.to_json())
        line, level = batch_line("http", self.client_address[0], res)
        self.server.log(line, level)

    def do_PUT(self) -> None:  # noqa: N802
        self._wrong_method()

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
