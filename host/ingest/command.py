"""`jalkal serve` and `jalkal replay`."""

from __future__ import annotations

import time
from typing import Any
from urllib.parse import urlsplit

import click

from jkproto import link

from ..errors import JalkalError
from . import mqttsub, replay, serve

# --- serve --------------------------------------------------------------------


def http_address(text: str) -> str:
    """HOST:PORT of `--http http://HOST[:PORT]`; HOST:PORT as given."""
    if "://" not in text:
        return text
    u = urlsplit(text)
    try:
        port = 80 if u.port is None else u.port
    except ValueError:
        port = -1
    if u.scheme != "http" or not u.hostname or u.path not in ("", "/") or port < 0:
        raise JalkalError(
            f"--http {text!r}: give http://HOST:PORT, e.g. http://127.0.0.1:8080"
        )
    host = f"[{u.hostname}]" if ":" in u.hostname else u.hostname
    return f"{host}:{port}"


@click.command("serve")
@click.option("--store", "store_path", required=True, metavar="DB",
              help="DuckDB store file (created if missing), or a PostgreSQL URL "
                   "postgresql://USER@HOST:PORT/DBNAME (the jalkal schema in it is "
                   "created if missing).")  # fmt: skip
@click.option("--keys", "keys", required=True, metavar="FILE",
              help="Keys file: frames of other devices are rejected.")  # fmt: skip
@click.option("--http", "http", metavar="http://HOST:PORT",
              help=f"Serve POST {link.PATH} here (port 0: any free port; HOST:PORT "
              "also works). Default http://127.0.0.1:8080 when --mqtt is not "
              "given.")  # fmt: skip
@click.option("--mqtt", "mqtt_url", metavar="mqtt://HOST:PORT",
              help=f"Subscribe to {link.UP_TOPIC % '+'} on this broker "
              "(mqtts://HOST:PORT: over TLS).")  # fmt: skip
@click.option("--mqtt-user", metavar="USER",
              help="Log in to the broker as USER (e.g. jalkal-serve).")  # fmt: skip
@click.option("--mqtt-password-file", metavar="FILE",
              help=f"The password, on the file's first line [default: "
              f"${mqttsub.PASSWORD_ENV}].")  # fmt: skip
@click.option("--mqtt-cafile", metavar="PEM",
              help="mqtts://: trust this CA for the broker's certificate "
              "[default: the system's CAs].")  # fmt: skip
@click.option("--client-id",
              help="MQTT client id, the persistent session's name [default: the "
              f"user name, else {serve.DEFAULT_CLIENT_ID}].")  # fmt: skip
@click.option("--max-body", type=click.IntRange(27, 16 * 1024 * 1024),
              default=serve.MAX_BODY, show_default=True,
              help="Largest batch in bytes (HTTP body, MQTT payload).")  # fmt: skip
@click.option("--max-connections", type=click.IntRange(1, 65536),
              default=serve.MAX_CONNECTIONS, show_default=True,
              help="Connections served at once; past that: 503 busy.")  # fmt: skip
@click.option("--request-timeout", type=click.FloatRange(0.1, 3600),
              default=serve.REQUEST_TIMEOUT_S, show_default=True, metavar="S",
              help="Seconds a whole request may take to arrive; then "
              "408.")  # fmt: skip
@click.option("--max-boot-ahead", type=click.IntRange(0, 65535),
              default=serve.MAX_BOOT_AHEAD, show_default=True, metavar="N",
              help="Refuse frames more than N boots past the device's latest "
              "stored boot (future_boot).")  # fmt: skip
@click.option("--tls-cert", metavar="PEM",
              help="Serve https with this certificate (chain); needs "
              "--tls-key.")  # fmt: skip
@click.option("--tls-key", metavar="PEM", help="The certificate's private key.")
@click.option("--insecure-keys-file", is_flag=True,
              help="Serve a keys file (or TLS key) that other users may read or "
                   "write.")  # fmt: skip
@click.option("--keys-poll", type=click.FloatRange(0, 3600), default=1.0,
              show_default=True, metavar="S",
              help="Read the keys file again when it changed, looking every S "
              "seconds (0: only on SIGHUP).")  # fmt: skip
@click.option("--mqtt-share", metavar="GROUP",
              help="Subscribe as one of several workers: $share/GROUP/"
              f"{link.UP_TOPIC % '+'} (MQTT 5); the broker gives each batch to "
              "one of the group.")  # fmt: skip
@click.option("--mqtt-session-expiry", type=click.IntRange(0, 0xFFFFFFFE),
              metavar="S",
              help="The broker may forget this server's MQTT session (and the "
              "batches queued for it) S seconds after it went away [default: "
              "never].")  # fmt: skip
@click.option("--log-format", type=click.Choice(["text", "json"]),
              default="text", show_default=True,
              help="The log on stderr: text lines, or one JSON object a "
              "line.")  # fmt: skip
@click.option("-v", "--verbose", count=True, help="-v: one line per batch.")
def serve_cmd(
    store_path: str,
    keys: str,
    http: str | None,
    mqtt_url: str | None,
    mqtt_user: str | None,
    mqtt_password_file: str | None,
    mqtt_cafile: str | None,
    client_id: str | None,
    max_body: int,
    max_connections: int,
    request_timeout: float,
    max_boot_ahead: int,
    tls_cert: str | None,
    tls_key: str | None,
    insecure_keys_file: bool,
    keys_poll: float,
    mqtt_share: str | None,
    mqtt_session_expiry: int | None,
    log_format: str,
    verbose: int,
    attach: Any = None,  # serve.run's attach (jalkal/command.py: --dashboard)
) -> None:
    """Ingest server: frames over HTTP and MQTT into an exactly-once DuckDB store.

    Prints the URLs it serves first (one a line), then runs until interrupted
    (Ctrl-C or SIGTERM). See docs/uplink.md for the wire contract."""
    if http is not None:
        http = http_address(http)
    login = None
    if mqtt_url:
        url = mqttsub.parse_mqtt_url(mqtt_url)
        login = mqttsub.login_for(url, mqtt_user, mqtt_password_file, mqtt_cafile)
    client_id = client_id or mqtt_user or serve.DEFAULT_CLIENT_ID
    if mqtt_share is not None:
        if not mqtt_url:
            raise JalkalError("--mqtt-share: only with --mqtt")
        mqttsub.check_share(mqtt_share)
    serve.run(store_path, keys, http, mqtt_url, client_id, max_body, verbose,
              mqtt_login=login, max_connections=max_connections,
              request_timeout=request_timeout, max_boot_ahead=max_boot_ahead,
              tls_cert=tls_cert, tls_key=tls_key,
              insecure_keys_file=insecure_keys_file, keys_poll=keys_poll,
              log_format=log_format, mqtt_share=mqtt_share,
              mqtt_session_expiry=mqtt_session_expiry, attach=attach)  # fmt: skip


# --- replay -------------------------------------------------------------------


@click.command("replay")
@click.argument("paths", nargs=-1, required=True, metavar="SOURCE...")
@click.option(
    "--to", "to", required=True, metavar="URL",
    help="http://HOST:PORT of a `jalkal serve`, or mqtt://HOST:PORT (mqtts://) "
    "of its broker.",
)  # fmt: skip
@click.option(
    "--rate", type=click.FloatRange(min=0, min_open=True), metavar="N",
    help="Send at most N frames per second.",
)  # fmt: skip
@click.option(
    "--batch", type=click.IntRange(1, 10000), default=replay.DEFAULT_BATCH,
    show_default=True, help="Frames per batch (and at most 256 KB).",
)  # fmt: skip
@click.option(
    "--timeout", type=click.FloatRange(min=0.1), default=30.0,
    show_default=True, help="Seconds to wait for each acknowledgement.",
)  # fmt: skip
@click.option(
    "--retries", type=click.IntRange(0, 100), default=6, show_default=True,
    help="Re-sends of a batch that got no answer.",
)  # fmt: skip
@click.option(
    "--keys", metavar="FILE",
    help="MQTT: log in as each device (its id and key's password) from this keys "
    "file.",
)  # fmt: skip
@click.option("--mqtt-user", metavar="USER", help="MQTT: log in as USER instead.")
@click.option(
    "--mqtt-password-file", metavar="FILE",
    help=f"MQTT: USER's password, on the file's first line [default: "
    f"${mqttsub.PASSWORD_ENV}].",
)  # fmt: skip
@click.option(
    "--mqtt-cafile", metavar="PEM",
    help="mqtts://: trust this CA for the broker's certificate [default: the "
    "system's CAs].",
)  # fmt: skip
def replay_cmd(
    paths: tuple[str, ...],
    to: str,
    rate: float | None,
    batch: int,
    timeout: float,
    retries: int,
    keys: str | None,
    mqtt_user: str | None,
    mqtt_password_file: str | None,
    mqtt_cafile: str | None,
) -> None:
    """Send logged frames (files or directories, as `decode` reads them) to a server.

    Waits for each batch's acknowledgement; prints what was stored, duplicate and
    rejected. Exit status 1 if any frame was rejected or the server is unreachable."""
    t0 = time.monotonic()
    login = replay.mqtt_login(to, keys, mqtt_user, mqtt_password_file, mqtt_cafile)
    tot = replay.run(paths, to, rate, batch, timeout, retries, login=login)
    click.echo(f"replay: {tot.line()} in {time.monotonic() - t0:.1f} s")
    if tot.rejected:
        raise JalkalError(
            f"{tot.rejected} frames were rejected by the server "
            "(see docs/uplink.md for the reasons)"
        )
