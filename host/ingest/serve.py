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
from pathlib import Path
from typing import Any

from ..errors import JalkalError
from ..keys import load_keys
from .httpd import API_PATH, IngestHTTPServer, parse_hostport
from .log import Log, say
from .mqttsub import DEFAULT_CLIENT_ID, UP_TOPIC, MqttIngest, parse_mqtt_url
from .store import MAX_BODY, Store


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
