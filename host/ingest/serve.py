"""`jalkal serve`: the ingest server (HTTP and MQTT) in front of the frame store.

HTTP: ``POST /v1/frames`` with the frames back to back as the body
(``Content-Type: application/octet-stream``); the answer is the JSON of
``ack.IngestResult.to_json`` (what was stored, duplicate, rejected and why). MQTT: a
subscriber (persistent session, QoS 1) to ``jalkal/v1/<device>/up`` on a broker;
the same JSON is published on ``jalkal/v1/<device>/ack`` after the COMMIT. The whole
contract is in docs/uplink.md.
"""

from __future__ import annotations

import faulthandler
import json
import signal
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import IO, Any
from urllib.parse import urlsplit

from jkproto import link

from .. import __version__
from ..errors import JalkalError
from ..keys import load_keys
from .ack import STATUS, IngestResult
from .store import MAX_BODY, Store

API_PATH = link.PATH
HEALTH_PATH = link.HEALTH_PATH
UP_TOPIC = link.UP_TOPIC % "+"  # every device's
DEFAULT_CLIENT_ID = "jalkal-serve"
READ_TIMEOUT_S = 30  # a client must send its whole body within this


_OUT_LOCK = threading.Lock()


def say(line: str, out: IO[str] | None = None) -> None:
    """One whole line on stdout (what scripts read: the URLs, the subscription,
    the store) or `out`. print() writes the text and the newline apart, so two
    threads printing at once could glue their lines together."""
    out = out or sys.stdout
    with _OUT_LOCK:
        out.write(line + "\n")
        out.flush()


class Log:
    def __init__(self, verbose: int):
        self.verbose = verbose

    def __call__(self, msg: str, level: int = 0) -> None:
        if level <= self.verbose:
            say(f"serve: {msg}", sys.stderr)


def refused(reason: str, message: str, body: bytes = b"") -> IngestResult:
    """The answer to a request refused as a whole (the same JSON as any answer)."""
    import zlib

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


# --- HTTP -----------------------------------------------------------------------


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


def parse_mqtt_url(text: str) -> tuple[str, int]:
    u = urlsplit(text)
    try:
        port = u.port or 1883
    except ValueError:
        port = -1
    if u.scheme != "mqtt" or not u.hostname or not 0 < port <= 65535:
        raise JalkalError(
            f"{text!r}: give mqtt://HOST:PORT, e.g. mqtt://127.0.0.1:1883"
        )
    return u.hostname, port


# --- MQTT -----------------------------------------------------------------------


def device_of_topic(topic: str) -> str | None:
    """The device id of jalkal/v1/<device>/up, if the topic is one."""
    parts = topic.split("/")
    if len(parts) == 4 and topic == link.UP_TOPIC % parts[2]:
        return parts[2]
    return None


class MqttIngest:
    """Subscriber with a persistent session: QoS 1 batches published while the server
    was down are delivered when it is back; acks go out after the COMMIT."""

    def __init__(
        self, store: Store, host: str, port: int, client_id: str, log: Log,
        max_body: int,
    ):  # fmt: skip
        import paho.mqtt.client as mqtt

        self.store, self.log, self.max_body = store, log, max_body
        self.host, self.port = host, port
        self.subscribed = threading.Event()
        c = mqtt.Client(
            mqtt.CallbackAPIVersion.VERSION2,
            client_id=client_id,
            clean_session=False,
            protocol=mqtt.MQTTv311,
        )
        c.reconnect_delay_set(min_delay=1, max_delay=5)
        c.on_connect = self._on_connect
        c.on_disconnect = self._on_disconnect
        c.on_subscribe = self._on_subscribe
        c.on_message = self._on_message
        self.client = c

    def start(self) -> None:
        self.client.connect_async(self.host, self.port, keepalive=30)
        self.client.loop_start()

        def still_waiting() -> None:
            if not self.subscribed.is_set():
                self.log(f"mqtt {self.host}:{self.port}: not subscribed yet; retrying")

        t = threading.Timer(10.0, still_waiting)
        t.daemon = True
        t.start()

    def stop(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()

    def _on_connect(self, client, userdata, flags, reason_code, properties) -> None:  # type: ignore[no-untyped-def]
        if reason_code.is_failure:
            self.log(f"mqtt {self.host}:{self.port}: connection refused: {reason_code}")
            return
        self.log(
            f"mqtt {self.host}:{self.port}: connected "
            f"(session present: {bool(flags.session_present)})",
            1,
        )
        client.subscribe(UP_TOPIC, qos=1)

    def _on_subscribe(self, client, userdata, mid, reason_codes, properties) -> None:  # type: ignore[no-untyped-def]
        say(f"serve: mqtt subscribed {UP_TOPIC}")
        self.subscribed.set()

    def _on_disconnect(self, client, userdata, flags, reason_code, properties) -> None:  # type: ignore[no-untyped-def]
        self.subscribed.clear()
        if reason_code != 0:
            self.log(
                f"mqtt {self.host}:{self.port}: disconnected ({reason_code}); retrying"
            )

    def _on_message(self, client, userdata, msg) -> None:  # type: ignore[no-untyped-def]
        dev = device_of_topic(msg.topic)
        if dev is None:
            return  # not ours (the subscription only matches ours)
        body = bytes(msg.payload)
        try:
            device = int(dev, 16) if len(dev) == 8 and dev == dev.lower() else None
        except ValueError:
            device = None
        if device is None:
            res = refused(
                "bad_topic", f"{msg.topic}: device must be 8 lowercase hex", body
            )
        elif len(body) > self.max_body:
            res = refused(
                "too_large",
                f"payload of {len(body)} bytes; at most {self.max_body}",
                body,
            )
        else:
            try:
                res = self.store.ingest(body, via="mqtt", device=device)
            except Exception as e:  # store failure: no ack, the sender re-sends
                self.log(f"mqtt {msg.topic}: internal error: {e!r}; not acknowledged")
                return
            if res.error == "store_error":  # an empty ack would read as refused
                self.log(f"mqtt {msg.topic}: {res.message}; not acknowledged")
                return
        ack = json.dumps(res.to_json(), separators=(",", ":"))
        client.publish(link.ACK_TOPIC % dev, ack, qos=1)
        line, level = batch_line("mqtt", dev, res)
        self.log(line, level)


def run(
    store_path: str,
    keys: str,
    http: str | None = None,
    mqtt_url: str | None = None,
    client_id: str = DEFAULT_CLIENT_ID,
    max_body: int = MAX_BODY,
    verbose: int = 0,
) -> None:
    """`jalkal serve`: the store, the HTTP server and the MQTT subscriber, until
    SIGTERM or SIGINT; the URLs served are printed first (one a line)."""
    key_map = load_keys(keys)
    if http is None and mqtt_url is None:
        http = "127.0.0.1:8080"
    addr = parse_hostport(http) if http else None
    broker = parse_mqtt_url(mqtt_url) if mqtt_url else None
    # `kill -USR1 PID` writes every thread's stack to stderr (a server that hangs)
    if hasattr(signal, "SIGUSR1"):
        try:
            faulthandler.register(signal.SIGUSR1, all_threads=True)
        except (OSError, ValueError, AttributeError):  # stderr is not a file
            pass
    log = Log(verbose)
    new_store = not Path(store_path).exists()
    httpd = st = mq = None
    serving = False
    stop = threading.Event()
    try:
        if addr:  # listen first: a busy port leaves no new store behind
            try:
                httpd = IngestHTTPServer(addr, log, max_body)
            except OSError as e:
                raise JalkalError(
                    f"cannot listen on {addr[0]}:{addr[1]}: {e.strerror or e}"
                )
        st = Store(store_path, key_map)
        st.max_body = max_body
        if broker:
            mq = MqttIngest(st, broker[0], broker[1], client_id, log, max_body)
        # handler threads decode and check MACs (holding the GIL) while another
        # one waits in DuckDB (not holding it): hand the GIL back quickly when
        # DuckDB returns, or every store call waits out a 5 ms switch interval
        sys.setswitchinterval(0.0005)
        serving = True
        if httpd is not None:
            httpd.store = st
            host, port = str(httpd.server_address[0]), httpd.server_address[1]
            shown = f"[{host}]" if ":" in host else host
            say(f"serve: http://{shown}:{port}{API_PATH}")
            threading.Thread(target=httpd.serve_forever, daemon=True).start()
        if mq is not None and broker:
            say(
                f"serve: mqtt://{broker[0]}:{broker[1]} {UP_TOPIC} "
                f"(client id {client_id})"
            )
            mq.start()
        say(
            f"serve: store {store_path}: {st.count()} frames; keys for "
            f"{len(key_map)} devices"
        )

        def on_signal(signum: int, frame: Any) -> None:
            stop.set()

        for sig in (signal.SIGTERM, signal.SIGINT):
            signal.signal(sig, on_signal)
        while not stop.wait(1.0):
            pass
    finally:
        if httpd is not None:
            if serving:
                httpd.shutdown()
            httpd.server_close()
        if mq is not None and serving:
            mq.stop()
        if st is not None:
            st.close()
            if new_store and not serving:  # made by this run, never written to
                remove_new_store(Path(store_path))
        t = time.strftime("%H:%M:%S")
        log(f"stopped at {t}", 1)


def remove_new_store(path: Path) -> None:
    """A store file this run made before it failed to start, and DuckDB's
    write-ahead log beside it (the file held no frame)."""
    for p in (path, path.with_name(path.name + ".wal")):
        if p.is_file():
            p.unlink(missing_ok=True)
