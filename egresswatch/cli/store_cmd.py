"""CLI commands that manage the event store (`db upgrade|stats`, `export`) and the options and
store session the reading commands share."""

import json
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, NoReturn

import typer
from rich.console import Console
from rich.table import Table
from rich.text import Text

from egresswatch.cli.filters import event_filter, with_stored_tool
from egresswatch.errors import StoreError
from egresswatch.output import printable

if TYPE_CHECKING:  # the store (SQLAlchemy, Alembic) is imported when a command needs it
    from egresswatch.store import Store

DbOption = Annotated[
    str | None,
    typer.Option("--db", help="SQLAlchemy URL or SQLite path (default: the agent's database)."),
]
SinceOption = Annotated[
    str | None, typer.Option(help="Start of the window: 10m, 2h, 7d, epoch seconds or ISO time.")
]
UntilOption = Annotated[str | None, typer.Option(help="End of the window (same forms as --since).")]
ToolOption = Annotated[str | None, typer.Option(help="Only events charged to this LLM tool.")]
CategoryOption = Annotated[str | None, typer.Option(help="Only this destination category.")]
HostOption = Annotated[str | None, typer.Option(help="Only this host and names under it.")]
NodeOption = Annotated[
    str | None, typer.Option("--node", help="Only what this agent stored ([agent] node).")
]


def register(app: typer.Typer) -> None:
    """Add the store's commands to the main CLI."""
    db = typer.Typer(help="Manage the event store.", no_args_is_help=True)
    db.command("upgrade")(db_upgrade)
    db.command("stats")(db_stats)
    from egresswatch.cli.retention_cmd import db_retention

    db.command("retention")(db_retention)
    app.add_typer(db, name="db")
    app.command("export")(export)


@contextmanager
def store_session(url: str | None, *, must_exist: bool = True) -> Iterator["Store"]:
    """The store at `url` for one command; a store error becomes one line and exit 1."""
    from egresswatch.store import open_store
    from egresswatch.store.engine import resolve_url

    resolved = resolve_url(url)
    try:
        if must_exist:
            _require_database(resolved)
        store = open_store(resolved)
    except StoreError as exc:
        fail(str(exc))
    try:
        yield store
    except StoreError as exc:
        fail(str(exc))
    finally:
        store.close()


def _require_database(url: str) -> None:
    from sqlalchemy.engine import make_url
    from sqlalchemy.exc import ArgumentError

    try:
        parsed = make_url(url)
    except ArgumentError:
        return  # open_store reports it
    if parsed.get_backend_name() == "sqlite" and parsed.database:
        path = Path(parsed.database)
        if parsed.database != ":memory:" and not path.exists():
            raise StoreError(f"no event store at {path} (start the agent, or pass --db)")


def fail(message: str) -> NoReturn:
    """Print `error: message` (escaped) on stderr and exit 1."""
    typer.echo(f"error: {printable(message)}", err=True)
    raise typer.Exit(1)


def db_upgrade(db: DbOption = None) -> None:
    """Create the store or migrate it to the newest schema."""
    with store_session(db, must_exist=False) as store:
        typer.echo(f"{store.url}: schema at revision {store.stats().revision}")


def db_stats(
    db: DbOption = None,
    as_json: Annotated[bool, typer.Option("--json", help="One JSON object.")] = False,
) -> None:
    """Size, row counts and the time range of the stored events."""
    with store_session(db) as store:
        stats = store.stats()
    if as_json:
        typer.echo(json.dumps({
            "url": stats.url, "size_bytes": stats.size_bytes, "counts": stats.counts,
            "oldest": stats.oldest, "newest": stats.newest, "revision": stats.revision,
        }))  # fmt: skip
        return
    console = Console(highlight=False)
    console.print(Text(f"database  {stats.url} (revision {stats.revision})"))
    size = "unknown" if stats.size_bytes is None else f"{stats.size_bytes / 1e6:.2f} MB"
    console.print(Text(f"size      {size}"))
    console.print(Text(f"oldest    {_iso(stats.oldest)}\nnewest    {_iso(stats.newest)}"))
    table = Table("table", "rows", box=None)
    for name, count in stats.counts.items():
        table.add_row(name, str(count))
    console.print(table)


def export(
    *,
    db: DbOption = None,
    fmt: Annotated[str, typer.Option("--format", help="jsonl or csv.")] = "jsonl",
    output: Annotated[Path | None, typer.Option(help="File to write (default: stdout).")] = None,
    since: SinceOption = None,
    until: UntilOption = None,
    tool: ToolOption = None,
    category: CategoryOption = None,
    host: HostOption = None,
    node: NodeOption = None,
) -> None:
    """Write every matching event, oldest first, as JSON lines or CSV."""
    from egresswatch.store.export import FORMATS

    if fmt not in FORMATS:
        raise typer.BadParameter(f"use one of: {', '.join(FORMATS)}", param_hint="--format")
    flt = event_filter(since, until, tool, category, host, node=node)
    with store_session(db) as store:
        flt = with_stored_tool(store, flt)
        if output is None:
            count = store.export(fmt, sys.stdout, flt)
        else:
            with output.open("w", encoding="utf-8", newline="") as out:
                count = store.export(fmt, out, flt)
    typer.echo(f"exported {count} events", err=True)


def _iso(ts: float | None) -> str:
    return "-" if ts is None else datetime.fromtimestamp(ts, UTC).isoformat(timespec="seconds")
