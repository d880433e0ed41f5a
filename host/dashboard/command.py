"""`jalkal dashboard` and `jalkal dashboard-user`: the options; the server is in
server.py, the numbers in model.py, the accounts in users.py."""

from __future__ import annotations

import signal
import sys
import threading

import click

from ..errors import JalkalError
from ..reports.command import villages_option


@click.command("dashboard")
@click.option(
    "--store",
    "store",
    required=True,
    metavar="DB",
    help="The store: jalkal serve's DuckDB file (read through the server "
    "while it runs) or a postgresql:// URL.",
)
@villages_option
@click.option(
    "--users",
    "users",
    required=True,
    metavar="FILE",
    help="The accounts (jalkal dashboard-user add).",
)
@click.option(
    "--listen",
    default="127.0.0.1:8090",
    show_default=True,
    metavar="HOST:PORT",
    help="Where the dashboard answers (port 0: any free port).",
)
@click.option(
    "--as-of",
    "as_of",
    metavar="now|latest|TIME",
    default="now",
    show_default=True,
    help="'Today' on the wall clock, the day of the latest frame in the store (as "
    "report --alerts), or a UTC time 2026-03-12T06:30Z (for replayed or simulated "
    "data).",
)
@click.option(
    "--tls-cert",
    metavar="FILE",
    help="Serve https with this PEM "
    "certificate (chain); the session cookie is then Secure.",
)
@click.option("--tls-key", metavar="FILE", help="The certificate's private key.")
@click.option(
    "--insecure-users-file", is_flag=True, help="Accept a users file others may read."
)
def dashboard_cmd(
    store: str,
    villages: str,
    users: str,
    listen: str,
    as_of: str,
    tls_cert: str | None,
    tls_key: str | None,
    insecure_users_file: bool,
) -> None:
    """A live dashboard for the people who answer for the water: State, district,
    block and village pages, the escalation list and a JSON API (/v1/...), with
    the numbers of `jalkal report`, behind a login. See docs/dashboard.md."""
    from ..registry import load_registry
    from . import server
    from .sessions import sessions_for
    from .source import AggregateReader, Live
    from .users import open_users

    if bool(tls_cert) != bool(tls_key):
        raise click.UsageError("give --tls-cert and --tls-key together")
    accounts = open_users(users, insecure_users_file)
    reg = load_registry(villages)
    tls = server.tls_context(tls_cert, tls_key) if tls_cert and tls_key else None
    live = Live(AggregateReader(store), reg, as_of)
    sessions = sessions_for(users, insecure_users_file)
    srv = server.serve(live, accounts, listen, tls, sessions)
    done = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_a: done.set())
    click.echo(
        f"dashboard: {srv.url} ({len(accounts)} users, "
        f"{len(live.view.villages)} villages, store {store})"
    )
    sys.stdout.flush()
    try:
        while not done.wait(0.5):
            pass
    finally:
        server.stop(srv)
        click.echo("dashboard: stopped")


@click.command("dashboard-user")
@click.argument("action", type=click.Choice(["add", "remove"]))
@click.argument("name")
@click.option(
    "--users",
    "users",
    required=True,
    metavar="FILE",
    help="The users file (made when missing; written 0600).",
)
@click.option(
    "--role",
    type=click.Choice(["viewer", "admin"]),
    default="viewer",
    show_default=True,
    help="admin also sees the device list.",
)
@click.option(
    "--password-file",
    metavar="FILE",
    help="Read the password from the first line of FILE ('-': standard "
    "input) instead of asking for it.",
)
def dashboard_user_cmd(
    action: str, name: str, users: str, role: str, password_file: str | None
) -> None:
    """Add or remove a dashboard account in a users file: passwords are kept only
    as scrypt hashes with a salt of their own; the file is owner-only (0600)."""
    from .users import add_user, remove_user

    if action == "remove":
        remove_user(users, name)
        click.echo(f"dashboard-user: {name} removed from {users}")
        return
    if password_file == "-":
        password = sys.stdin.readline().rstrip("\r\n")
    elif password_file:
        from pathlib import Path

        from ..fileio import read_text

        text = read_text(Path(password_file), "password file", "text")
        password = text.splitlines()[0] if text else ""
    else:
        password = click.prompt(
            f"password for {name}", hide_input=True, confirmation_prompt=True
        )
    replaced = add_user(users, name, role, password)
    click.echo(
        f"dashboard-user: {name} ({role}) {'replaced' if replaced else 'added'}"
        f" in {users}"
    )


__all__ = ["JalkalError", "dashboard_cmd", "dashboard_user_cmd"]
