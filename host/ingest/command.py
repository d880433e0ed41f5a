"""`jalkal serve` and `jalkal replay`."""

from __future__ import annotations

import time
from urllib.parse import urlsplit

import click

from jkproto import link

from ..errors import JalkalError
from . import replay, serve

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
              help="DuckDB store file (created if missing).")  # fmt: skip
@click.option("--keys", "keys", required=True, metavar="FILE",
              help="Keys file: frames of other devices are rejected.")  # fmt: skip
@click.option("--http", "http", metavar="http://HOST:PORT",
              help=f"Serve POST {link.PATH} here (port 0: any free port; HOST:PORT "
              "also works). Default http://127.0.0.1:8080 when --mqtt is not "
              "given.")  # fmt: skip
@click.option("--mqtt", "mqtt_url", metavar="mqtt://HOST:PORT",
              help=f"Subscribe to {link.UP_TOPIC % '+'} on this broker.")  # fmt: skip
@click.option("--client-id", default=serve.DEFAULT_CLIENT_ID, show_default=True,
              help="MQTT client id (the persistent session's name).")  # fmt: skip
@click.option("--max-body", type=click.IntRange(27, 16 * 1024 * 1024),
              default=serve.MAX_BODY, show_default=True,
              help="Largest batch in bytes (HTTP body, MQTT payload).")  # fmt: skip
@click.option("-v", "--verbose", count=True, help="-v: one line per batch.")
def serve_cmd(
    store_path: str,
    keys: str,
    http: str | None,
    mqtt_url: str | None,
    client_id: str,
    max_body: int,
    verbose: int,
) -> None:
    """Ingest server: frames over HTTP and MQTT into an exactly-once DuckDB store.

    Prints the URLs it serves first (one a line), then runs until interrupted
    (Ctrl-C or SIGTERM). See docs/uplink.md for the wire contract."""
    if http is not None:
        http = http_address(http)
    serve.run(store_path, keys, http, mqtt_url, client_id, max_body, verbose)


# --- replay -------------------------------------------------------------------


@click.command("replay")
@click.argument("paths", nargs=-1, required=True, metavar="SOURCE...")
@click.option(
    "--to", "to", required=True, metavar="URL",
    help="http://HOST:PORT or mqtt://HOST:PORT of a `jalkal serve`.",
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
def replay_cmd(
    paths: tuple[str, ...],
    to: str,
    rate: float | None,
    batch: int,
    timeout: float,
    retries: int,
) -> None:
    """Send logged frames (files or directories, as `decode` reads them) to a server.

    Waits for each batch's acknowledgement; prints what was stored, duplicate and
    rejected. Exit status 1 if any frame was rejected or the server is unreachable."""
    t0 = time.monotonic()
    tot = replay.run(paths, to, rate, batch, timeout, retries)
    click.echo(f"replay: {tot.line()} in {time.monotonic() - t0:.1f} s")
    if tot.rejected:
        raise JalkalError(
            f"{tot.rejected} frames were rejected by the server "
            "(see docs/uplink.md for the reasons)"
        )
