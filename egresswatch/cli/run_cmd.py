"""`egresswatch run`: the main job. Capture, attribute, classify and store until stopped."""

import re
import threading
import time
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, NoReturn

import typer
from rich.console import Console

from egresswatch.errors import CaptureError, ConfigError, StoreError
from egresswatch.output import for_rich

if TYPE_CHECKING:
    from egresswatch.alerts.policy import Policy
    from egresswatch.classify.catalog import Catalog
    from egresswatch.cli.run_status import Tally
    from egresswatch.config import Settings
    from egresswatch.daemon import Service
    from egresswatch.store.database import Store
    from egresswatch.webproc import WebProcess

_DRIVER_PREFIX = re.compile(r"\(\w+(?:\.\w+)*\) ")  # "(sqlite3.OperationalError) "


def run(  # noqa: PLR0917 - typer maps each option to a parameter
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
    verbose: Annotated[
        bool, typer.Option("--verbose", "-v", help="Print every internal counter at the end.")
    ] = False,
    no_web: Annotated[
        bool, typer.Option("--no-web", help="Do not start the dashboard (egresswatch web).")
    ] = False,
    web_port: Annotated[int, typer.Option("--web-port", min=1, max=65535)] = 8765,
    node: Annotated[
        str | None,
        typer.Option("--node", help="Node name stored with every event. Default: [agent] node."),
    ] = None,
) -> None:
    """Run the monitor: capture live, name the process and destination of every flow, store it.

    Read the results with `egresswatch events` (e.g. `egresswatch events --since 10m`).
    """
    from egresswatch.cli.agent_cmd import build_attributor, stop_on_signals
    from egresswatch.cli.run_status import Tally, follow_up_command
    from egresswatch.daemon import build_service
    from egresswatch.journal_logging import configure_logging
    from egresswatch.watchdog import announce_ready

    stderr = Console(stderr=True)
    configure_logging()  # structured journal entries under systemd
    settings, store, catalog, policy = _prepare(db, interface, config, stderr, node)
    stop = threading.Event()
    try:
        service = build_service(
            settings, store, catalog, build_attributor(stderr), stop, policy=policy
        )
    except StoreError as err:
        store.close()
        _fail(stderr, str(err))
    tally = Tally(service.agent.sink)
    service.agent.sink = tally
    try:
        service.capture.start()
    except CaptureError as err:
        store.close()
        _fail(stderr, str(err))
    stop_on_signals(stop)
    shown_db = db if db is not None else settings.store.url
    stderr.print(
        f"egresswatch: recording to {for_rich(store.url)}; Ctrl-C stops. To see what was "
        f"recorded, run:\n  {for_rich(follow_up_command(shown_db))}",
        soft_wrap=True,
        highlight=False,
    )
    web = None if no_web else _start_web(settings.store.url, web_port, stderr)
    if web is not None and service.control is not None:
        service.control.pin_web(web.process)  # a `nobody` dashboard is trusted by its pid
    notifier, _watchdog = announce_ready(
        lambda: service.agent.last_turn, stop, "capture live, store open"
    )
    try:
        _run_with_status(service, tally, stop, stderr, verbose)
    finally:
        notifier.stopping()
        if web is not None:
            web.stop()


def _prepare(
    db: str | None,
    interface: list[str] | None,
    config: Path | None,
    stderr: Console,
    node: str | None = None,
) -> "tuple[Settings, Store, Catalog, Policy]":
    """Settings with the flags applied, the open store, the catalog and the alert policy;
    exit 2 on bad input."""
    from egresswatch.alerts.policy import load_policy
    from egresswatch.classify.catalog import load_catalog
    from egresswatch.config import load_settings, with_node
    from egresswatch.store.shared import open_agent_store

    try:
        settings = with_node(load_settings(config), node)
        if db is not None:
            store_settings = settings.store.model_copy(update={"url": db})
            settings = settings.model_copy(update={"store": store_settings})
        if interface:
            capture = settings.capture.model_copy(update={"interfaces": interface})
            settings = settings.model_copy(update={"capture": capture})
        catalog = load_catalog(settings.catalog.extra)
        policy = load_policy(settings.alerts.policy)
    except ConfigError as err:
        _fail(stderr, str(err))
    spooling = settings.store.spool_max_bytes > 0
    try:
        # a shared store is never migrated here; an unreachable one is spooled for (issue #9)
        store = open_agent_store(settings.store.url, allow_unreachable=spooling)
    except StoreError as err:
        _fail(stderr, store_advice(str(err)))
    if store.pending_check is not None:
        stderr.print(
            f"[yellow]warning:[/] the event store {for_rich(store.url)} is unreachable: "
            "capturing into the local spool until it answers; its schema is checked then "
            "(docs/fleet.md, 'Spool')",
            soft_wrap=True,
            highlight=False,
        )
    return settings, store, catalog, policy


def store_advice(message: str) -> str:
    """A store error without driver jargon, with what to do about it."""
    plain = _DRIVER_PREFIX.sub("", message)
    return (
        f"{plain}. Pass --db with a writable SQLite path (e.g. --db /var/lib/egresswatch/events.db)"
        " or a reachable database URL."
    )


def _fail(stderr: Console, message: str) -> NoReturn:
    stderr.print(f"[red]error:[/] {for_rich(message)}", soft_wrap=True, highlight=False)
    raise typer.Exit(2)


def _run_with_status(
    service: "Service", tally: "Tally", stop: threading.Event, stderr: Console, verbose: bool
) -> None:
    from egresswatch.cli.run_status import StatusLine, end_summary

    status = StatusLine(tally, lambda: service.counters().snapshot(), stop)
    if stderr.is_terminal:
        status.start()
    started = time.monotonic()
    service.run(stop)
    if status.is_alive():
        status.join(timeout=2)
    counters = service.counters().snapshot()
    for line in end_summary(tally, counters, time.monotonic() - started).splitlines():
        stderr.print(for_rich(line), highlight=False, soft_wrap=True)
    if verbose:
        for name, value in counters.items():
            if value:
                stderr.print(f"  {for_rich(name)}: {value}", highlight=False)


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
