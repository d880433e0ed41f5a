"""`jalkal serve`: the ingest server (HTTP and MQTT) in front of the frame store.

HTTP (httpd.py): ``POST /v1/frames`` with the frames back to back as the body; the
answer is the JSON of ``ack.IngestResult.to_json`` (what was stored, duplicate,
rejected and why). MQTT (mqttsub.py): a subscriber to ``jalkal/v1/<device>/up``; the
same JSON is published on ``jalkal/v1/<device>/ack`` after the COMMIT. The whole
contract is in docs/uplink.md.
"""

from __future__ import annotations

import faulthandler
import signal
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from ..errors import JalkalError
from ..keys import check_private, load_keys
from .boots import MAX_BOOT_AHEAD
from .guard import from_env
from .httpd import (
    API_PATH,
    MAX_CONNECTIONS,
    REQUEST_TIMEOUT_S,
    IngestHTTPServer,
    parse_hostport,
    tls_context,
)
from .keywatch import POLL_S, KeyWatch
from .log import Log, say
from .metrics import Metrics
from .mqttsub import DEFAULT_CLIENT_ID, Login, MqttIngest, parse_mqtt_url
from .snapshot import Access, publish, withdraw
from .store import MAX_BODY, FrameStore, open_store


def run(
    store_path: str,
    keys: str,
    http: str | None = None,
    mqtt_url: str | None = None,
    client_id: str = DEFAULT_CLIENT_ID,
    max_body: int = MAX_BODY,
    verbose: int = 0,
    mqtt_login: Login | None = None,
    *,
    max_connections: int = MAX_CONNECTIONS,
    request_timeout: float = REQUEST_TIMEOUT_S,
    max_boot_ahead: int = MAX_BOOT_AHEAD,
    tls_cert: str | None = None,
    tls_key: str | None = None,
    insecure_keys_file: bool = False,
    keys_poll: float = POLL_S,
    log_format: str = "text",
    mqtt_share: str | None = None,
    mqtt_session_expiry: int | None = None,
    attach: Callable[[FrameStore], Callable[[], None]] | None = None,
) -> None:
    """`jalkal serve`: the store, the HTTP server and the MQTT subscriber, until
    SIGTERM or SIGINT; the URLs served are printed first (one a line). The keys
    file is read again when it changes (every keys_poll seconds; 0: only on
    SIGHUP) and on SIGHUP (keywatch.py). attach(store): more to run on the open
    store (`serve --dashboard`: jalkal/command.py), started once the server
    listens; it returns what stops it."""
    if not insecure_keys_file:  # an open keys file is refused, as ssh does
        check_private(keys)
        if tls_key:
            check_private(tls_key, what="TLS key", harm="pose as this server")
    key_map = load_keys(keys)
    if (tls_cert is None) != (tls_key is None):
        raise JalkalError("give --tls-cert and --tls-key together (or neither)")
    tls = tls_context(tls_cert, tls_key) if tls_cert and tls_key else None
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
    log = Log(verbose, log_format)
    metrics = new_metrics(log)
    new_store = not Path(store_path).exists()
    httpd = st = mq = watch = None
    detach: Callable[[], None] | None = None
    serving = False
    stop = threading.Event()
    access: Access | None = None  # reports' snapshot: token and sidecar file
    try:
        if addr:  # listen first: a busy port leaves no new store behind
            try:
                httpd = IngestHTTPServer(
                    addr, log, max_body, max_connections, request_timeout, tls
                )
            except OSError as e:
                raise JalkalError(
                    f"cannot listen on {addr[0]}:{addr[1]}: {e.strerror or e}"
                )
        st = open_store(store_path, key_map)
        st.max_body = max_body
        st.boots.ahead = max_boot_ahead
        st.guard = from_env(log)
        if broker:
            login = (mqtt_login or Login()).for_url(broker)  # mqtts://: TLS
            mq = MqttIngest(
                st, broker[0], broker[1], client_id, log, max_body, login,
                share=mqtt_share, session_expiry=mqtt_session_expiry,
            )  # fmt: skip
        watch = KeyWatch(keys, st, key_map, log, keys_poll, not insecure_keys_file)
        if metrics is not None:
            metrics.store, metrics.guard, metrics.keys = st, st.guard, watch
            metrics.httpd = httpd
            log.hooks.append(metrics.batch)
            metrics.note = lambda msg: log(msg, 0, "metrics_seeded")
            metrics.seed_in_background(st)
        # handler threads decode and check MACs (holding the GIL) while another
        # one waits in DuckDB (not holding it): hand the GIL back quickly when
        # DuckDB returns, or every store call waits out a 5 ms switch interval
        sys.setswitchinterval(0.0005)
        serving = True
        if httpd is not None:
            httpd.store, httpd.guard, httpd.metrics = st, st.guard, metrics
            host, port = str(httpd.server_address[0]), httpd.server_address[1]
            shown = f"[{host}]" if ":" in host else host
            scheme = "https" if tls else "http"
            url = f"{scheme}://{shown}:{port}"
            httpd.snapshot = access = publish(store_path, url, tls_cert)
            say(f"serve: {scheme}://{shown}:{port}{API_PATH}")
            threading.Thread(target=httpd.serve_forever, daemon=True).start()
        if mq is not None and broker:
            say(
                f"serve: mqtt{'s' if broker[2] else ''}://{broker[0]}:{broker[1]} "
                f"{mq.topic} "
                f"(client id {client_id})"
            )
            mq.start()
        say(
            f"serve: store {st.name}: {st.count()} frames; keys for "
            f"{len(key_map)} devices"
        )

        def on_signal(signum: int, frame: Any) -> None:
            stop.set()

        for sig in (signal.SIGTERM, signal.SIGINT):
            signal.signal(sig, on_signal)
        hup = watch.hup
        if hasattr(signal, "SIGHUP"):  # read the keys file again
            signal.signal(signal.SIGHUP, lambda signum, frame: hup())
        watch.start()
        if attach is not None:
            detach = attach(st)
        while not stop.wait(1.0):
            pass
    finally:
        if detach is not None:
            detach()
        withdraw(access)  # the sidecar first: readers stop coming
        if metrics is not None:
            metrics.stop()
        if watch is not None:
            watch.stop()
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


def new_metrics(log: Log) -> Metrics | None:
    """This server's metrics; None (and /metrics answers 503) without
    prometheus-client."""
    try:
        return Metrics()
    except ImportError:
        log("metrics: prometheus-client is not installed: /metrics answers 503 "
            "(pip install 'prometheus-client>=0.20,<1')", 0, "metrics_off")  # fmt: skip
        return None


def remove_new_store(path: Path) -> None:
    """A store file this run made before it failed to start, and DuckDB's
    write-ahead log beside it (the file held no frame)."""
    for p in (path, path.with_name(path.name + ".wal")):
        if p.is_file():
            p.unlink(missing_ok=True)
