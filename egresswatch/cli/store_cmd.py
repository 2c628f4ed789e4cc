"""CLI commands that read and manage the event store: `db upgrade|stats`, `events`, `export`."""

import json
import re
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, NoReturn

import typer
from rich.console import Console
from rich.table import Table
from rich.text import Text

from egresswatch.errors import StoreError
from egresswatch.output import printable, to_json_line

if TYPE_CHECKING:  # the store (SQLAlchemy, Alembic) is imported when a command needs it
    from egresswatch.store import EventFilter, Store

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

_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}
_DURATION = re.compile(r"^(\d+(?:\.\d+)?)([smhdw])$")


def register(app: typer.Typer) -> None:
    """Add the store's commands to the main CLI."""
    db = typer.Typer(help="Manage the event store.", no_args_is_help=True)
    db.command("upgrade")(db_upgrade)
    db.command("stats")(db_stats)
    app.add_typer(db, name="db")
    app.command("events")(events)
    app.command("export")(export)


def parse_when(text: str, now: float) -> float:
    """`10m` (ago), epoch seconds, or an ISO-8601 time (UTC unless it has an offset)."""
    match = _DURATION.match(text.strip())
    if match:
        return now - float(match.group(1)) * _UNITS[match.group(2)]
    try:
        return float(text)
    except ValueError:
        pass
    try:
        when = datetime.fromisoformat(text)
    except ValueError:
        raise typer.BadParameter(f"not a duration, epoch or ISO time: {text!r}") from None
    return (when if when.tzinfo else when.replace(tzinfo=UTC)).timestamp()


@contextmanager
def _store(url: str | None, *, must_exist: bool = True) -> Iterator["Store"]:
    from egresswatch.store import open_store
    from egresswatch.store.engine import resolve_url

    resolved = resolve_url(url)
    try:
        if must_exist:
            _require_database(resolved)
        store = open_store(resolved)
    except StoreError as exc:
        _fail(str(exc))
    try:
        yield store
    except StoreError as exc:
        _fail(str(exc))
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


def _fail(message: str) -> NoReturn:
    typer.echo(f"error: {printable(message)}", err=True)
    raise typer.Exit(1)


def _filter(
    since: str | None, until: str | None, tool: str | None, category: str | None, host: str | None
) -> "EventFilter":
    from egresswatch.store import EventFilter

    now = time.time()
    return EventFilter(
        since=None if since is None else parse_when(since, now),
        until=None if until is None else parse_when(until, now),
        tool=tool,
        category=category,
        host=host,
    )


def db_upgrade(db: DbOption = None) -> None:
    """Create the store or migrate it to the newest schema."""
    with _store(db, must_exist=False) as store:
        typer.echo(f"{store.url}: schema at revision {store.stats().revision}")


def db_stats(
    db: DbOption = None,
    as_json: Annotated[bool, typer.Option("--json", help="One JSON object.")] = False,
) -> None:
    """Size, row counts and the time range of the stored events."""
    with _store(db) as store:
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


def events(
    *,
    db: DbOption = None,
    since: SinceOption = None,
    until: UntilOption = None,
    tool: ToolOption = None,
    category: CategoryOption = None,
    host: HostOption = None,
    as_json: Annotated[bool, typer.Option("--json", help="One JSON object per line.")] = False,
    limit: Annotated[int, typer.Option(min=1, help="Show at most the newest N.")] = 100,
) -> None:
    """Show stored events, oldest first (the newest LIMIT of the window)."""
    flt = _filter(since, until, tool, category, host)
    with _store(db) as store:
        stored = store.query_events(flt, limit)
    from egresswatch.store.export import event_record

    records = [event_record(s) for s in stored]
    if as_json:
        for record in records:
            typer.echo(to_json_line(record))
        return
    _print_table(records)


def _print_table(records: list[dict[str, Any]]) -> None:
    table = Table("time", "kind", "process", "tool", "host", "category", "destination", "via")
    for r in records:
        proc = f"{r['process']}[{r['pid']}]" if r["pid"] is not None else r["attribution"]
        cells = (
            r["time"], r["kind"], proc, r["tool"], r["host"] or r.get("qname"), r["category"],
            f"{r['dst']}:{r['dport']}", r["name_source"],
        )  # fmt: skip
        # Text cells are never parsed as markup, and printable() defuses terminal controls.
        table.add_row(*(Text(printable(str(c))) if c is not None else Text("-") for c in cells))
    Console(highlight=False).print(table)


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
) -> None:
    """Write every matching event, oldest first, as JSON lines or CSV."""
    from egresswatch.store.export import FORMATS

    if fmt not in FORMATS:
        raise typer.BadParameter(f"use one of: {', '.join(FORMATS)}", param_hint="--format")
    flt = _filter(since, until, tool, category, host)
    with _store(db) as store:
        if output is None:
            count = store.export(fmt, sys.stdout, flt)
        else:
            with output.open("w", encoding="utf-8", newline="") as out:
                count = store.export(fmt, out, flt)
    typer.echo(f"exported {count} events", err=True)


def _iso(ts: float | None) -> str:
    return "-" if ts is None else datetime.fromtimestamp(ts, UTC).isoformat(timespec="seconds")
