"""`egresswatch run`: the main job. Capture, attribute, classify and store until stopped."""

import threading
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from rich.console import Console

from egresswatch.errors import CaptureError, ConfigError, StoreError
from egresswatch.output import for_rich

if TYPE_CHECKING:
    from egresswatch.webproc import WebProcess


def run(
    db: Annotated[
        str | None,
        typer.Option("--db", help="SQLAlchemy URL or SQLite path. Default: the standard path."),
    ] = None,
    interface: Annotated[
        list[str] | None,
        typer.Option("--interface", "-i", help="Capture only here (repeatable). Default: all."),
    ] = None,
    config: Annotated[
        Path | None, typer.Option("--config", help="Settings file (TOML).", dir_okay=False)
    ] = None,
    no_web: Annotated[
        bool, typer.Option("--no-web", help="Do not start the dashboard (egresswatch web).")
    ] = False,
    web_port: Annotated[int, typer.Option("--web-port", min=1, max=65535)] = 8765,
) -> None:
    """Run the monitor: capture live, name the process and destination of every flow, store it.

    Read the results with `egresswatch events` (e.g. `egresswatch events --since 10m`).
    """
    # The whole service (capture, attribution, SQLAlchemy, Alembic) loads only for this command.
    from egresswatch.alerts.policy import load_policy
    from egresswatch.classify.catalog import load_catalog
    from egresswatch.cli.agent_cmd import build_attributor, stop_on_signals
    from egresswatch.config import load_settings
    from egresswatch.daemon import build_service
    from egresswatch.store.database import open_store

    stderr = Console(stderr=True)
    try:
        settings = load_settings(config)
        if db is not None:
            settings = settings.model_copy(
                update={"store": settings.store.model_copy(update={"url": db})}
            )
        if interface:
            capture = settings.capture.model_copy(update={"interfaces": interface})
            settings = settings.model_copy(update={"capture": capture})
        catalog = load_catalog(settings.catalog.extra)
        policy = load_policy(settings.alerts.policy)
        store = open_store(settings.store.url)
    except (ConfigError, StoreError) as err:
        stderr.print(f"[red]error:[/] {for_rich(str(err))}", soft_wrap=True)
        raise typer.Exit(2) from err
    stop = threading.Event()
    service = build_service(settings, store, catalog, build_attributor(stderr), stop, policy=policy)
    try:
        service.capture.start()
    except CaptureError as err:
        store.close()
        stderr.print(f"[red]error:[/] {for_rich(str(err))}", soft_wrap=True)
        raise typer.Exit(2) from err
    stop_on_signals(stop)
    stderr.print(
        f"egresswatch: recording to {for_rich(store.url)}; "
        "see `egresswatch events --since 10m`. Ctrl-C stops.",
        soft_wrap=True,
    )
    web = None if no_web else _start_web(settings.store.url, web_port, stderr)
    service.run(stop)
    if web is not None:
        web.stop()
    stderr.print("[bold]egresswatch stopped[/]")
    for name, value in service.counters().snapshot().items():
        if value:
            stderr.print(f"  {for_rich(name)}: {value}")


def _start_web(url: str | None, port: int, stderr: Console) -> "WebProcess | None":
    """The dashboard as an unprivileged child process; a failure to start it is reported."""
    from egresswatch.store.engine import resolve_url
    from egresswatch.webproc import start_web

    try:
        web = start_web(resolve_url(url), "127.0.0.1", port)
    except (OSError, LookupError) as err:
        stderr.print(f"[yellow]warning:[/] dashboard not started: {for_rich(str(err))}")
        return None
    stderr.print(f"egresswatch: dashboard at {web.url} (running as {for_rich(web.user)})")
    return web


def register(app: typer.Typer) -> None:
    app.command()(run)
