"""`egresswatch run`: the main job. Capture, attribute, classify and store until stopped."""

import threading
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console

from egresswatch.errors import CaptureError, ConfigError, StoreError
from egresswatch.output import for_rich


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
    service.run(stop)
    stderr.print("[bold]egresswatch stopped[/]")
    for name, value in service.counters().snapshot().items():
        if value:
            stderr.print(f"  {for_rich(name)}: {value}")


def register(app: typer.Typer) -> None:
    app.command()(run)
