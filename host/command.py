"""The commands that join two wings: `jalkal serve` with `--dashboard` (the
ingest server and the dashboard in one process, sharing the store). It sits
above the wings and the dashboard (pyproject.toml's layers), so neither imports
the other: the ingest server runs what it is given on its open store
(ingest.serve.run's attach), the dashboard reads the store it is handed."""

from __future__ import annotations

from typing import Any

import click

from .ingest import command as ingest

_DASHBOARD = [
    click.Option(
        ["--dashboard", "dashboard"], metavar="HOST:PORT",
        help="Also serve the dashboard here (its own address; the ingest endpoint "
        "stays on --http with no login), on this process's store: the daily "
        "aggregates are kept current as batches commit. Needs --users and "
        "--villages.",
    ),
    click.Option(["--users", "users"], metavar="FILE",
                 help="With --dashboard: its accounts (jalkal dashboard-user)."),
    click.Option(["--villages", "villages"], metavar="FILE",
                 help="With --dashboard: the village registry CSV."),
    click.Option(
        ["--as-of", "as_of"], metavar="now|latest|TIME", default="now",
        show_default=True, help="With --dashboard: 'today' (as jalkal dashboard).",
    ),
    click.Option(["--insecure-users-file", "insecure_users_file"], is_flag=True,
                 help="With --dashboard: accept a users file others may read."),
]  # fmt: skip


def _serve(
    dashboard: str | None,
    users: str | None,
    villages: str | None,
    as_of: str,
    insecure_users_file: bool,
    **opts: Any,
) -> None:
    if dashboard is None:
        if users or villages:
            raise click.UsageError("--users and --villages go with --dashboard")
        ingest.serve_cmd.callback(**opts)  # type: ignore[misc]
        return
    if not users or not villages:
        raise click.UsageError("--dashboard needs --users FILE and --villages FILE")
    from .dashboard import server
    from .dashboard.sessions import sessions_for
    from .dashboard.source import AggregateReader, Live, parse_time
    from .dashboard.users import open_users
    from .registry import load_registry

    accounts = open_users(users, insecure_users_file)  # wrong files fail first
    reg = load_registry(villages)
    if as_of not in ("now", "latest"):
        parse_time(as_of)
    server.parse_listen(dashboard)
    sessions = sessions_for(users, insecure_users_file)
    cert, key = opts.get("tls_cert"), opts.get("tls_key")
    tls = server.tls_context(cert, key) if cert and key else None

    def attach(store: Any) -> Any:
        live = Live(AggregateReader(str(opts["store_path"]), store), reg, as_of)
        srv = server.serve(live, accounts, dashboard, tls, sessions)
        click.echo(f"serve: dashboard {srv.url} ({len(accounts)} users, "
                   f"{len(live.view.villages)} villages)")  # fmt: skip
        return lambda: server.stop(srv)

    ingest.serve_cmd.callback(**opts, attach=attach)  # type: ignore[misc]


serve_cmd = click.Command(
    "serve",
    callback=_serve,
    params=[*ingest.serve_cmd.params, *_DASHBOARD],
    help=(ingest.serve_cmd.help or "")
    + "\n\nWith --dashboard HOST:PORT the dashboard (docs/dashboard.md) runs in "
    "this process too, on its own address, reading this process's store.",
)
