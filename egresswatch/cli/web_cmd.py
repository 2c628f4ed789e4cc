"""`egresswatch web`: serve the JSON API and the dashboard from the store (read-only)."""

import os
from pathlib import Path
from typing import Annotated, NoReturn

import typer

from egresswatch.errors import ConfigError, StoreError
from egresswatch.output import printable


def web(
    *,
    db: Annotated[
        str | None,
        typer.Option("--db", help="SQLAlchemy URL or SQLite path. Default: the standard path."),
    ] = None,
    host: Annotated[
        str, typer.Option("--host", help="Address to bind. Anything but loopback needs the token.")
    ] = "127.0.0.1",
    port: Annotated[int, typer.Option("--port", min=1, max=65535)] = 8765,
    show_token: Annotated[
        bool, typer.Option("--show-token", help="Print the access token and its URL, then exit.")
    ] = False,
    token_file: Annotated[
        Path | None, typer.Option("--token-file", help="Default: beside the standard store.")
    ] = None,
    allow_host: Annotated[
        list[str] | None,
        typer.Option("--allow-host", help="Another Host name the browser may use (repeatable)."),
    ] = None,
    unprivileged: Annotated[
        bool, typer.Option("--require-unprivileged", hidden=True, help="Refuse root/capabilities.")
    ] = False,
) -> None:
    """Serve the API (/api/..., /openapi.json, /metrics) and the dashboard at / .

    Binds loopback by default. On any other address every request needs the token
    (`--show-token`), and without TLS it travels in clear text.
    """
    from egresswatch.api.privilege import forbid_tracing, privileges
    from egresswatch.api.server import WebOptions, build_components, is_loopback, serve, url_host
    from egresswatch.api.token import default_token_path, load_or_create_token

    db = db or os.environ.get("EGRESSWATCH_DB") or None
    if unprivileged and privileges():
        _fail(f"the web process must run without root or capabilities; has {privileges()}")
    if unprivileged:
        forbid_tracing()  # a shared web user's other processes cannot act as this one
    try:
        token = None
        if show_token or not is_loopback(host):
            token = load_or_create_token(token_file or default_token_path())
        url = f"http://{url_host(host)}:{port}/"
        if show_token:
            typer.echo(f"token: {token}\nopen: {url}?token={token}")
            return
        options = WebOptions(db, host, port, token, tuple(allow_host or ()))
        components = build_components(options)
    except (ConfigError, StoreError) as err:
        _fail(str(err))
    if token is not None:
        typer.echo(
            f"warning: serving on {printable(host)} without TLS: the token and the data cross the "
            "network in clear text. Prefer loopback with an SSH tunnel.",
            err=True,
        )
    typer.echo(
        f"egresswatch web: {url}" + ("  (token: egresswatch web --show-token)" if token else "")
    )
    serve(components, options)


def _fail(message: str) -> NoReturn:
    typer.echo(f"error: {printable(message)}", err=True)
    raise typer.Exit(2)


def register(app: typer.Typer) -> None:
    app.command()(web)
