"""`egresswatch events` (rolled-up rows, --raw, --follow) and `egresswatch summary` (who talked to
what, how often, first and last seen)."""

import contextlib
import dataclasses
import time
from collections.abc import Callable, Sequence
from enum import StrEnum
from typing import TYPE_CHECKING, Annotated

import typer
from rich.console import Console

from egresswatch.cli.filters import event_filter, with_stored_tool
from egresswatch.cli.store_cmd import (
    CategoryOption,
    DbOption,
    HostOption,
    NodeOption,
    SinceOption,
    ToolOption,
    UntilOption,
    fail,
    store_session,
)
from egresswatch.cli.tables import Column, render, short_time
from egresswatch.output import printable, to_json_line

if TYPE_CHECKING:
    from egresswatch.store import EventFilter, Store, StoredEvent
    from egresswatch.store.summary import SummaryRow
    from egresswatch.store.views import ViewRow

EXIT_NOTHING_FOUND = 1
RAW_PER_ROW = 5  # raw events read per row shown: a lookup is 2-4 events, a connection 1-2
FOLLOW_INTERVAL = 1.0
FOLLOW_SETTLE = 1.0  # rows are shown once their events are this old, so a pair stays together
FOLLOW_LOOKBACK = 10.0  # events committed late (writer batches) are still picked up

JsonOption = Annotated[bool, typer.Option("--json", help="One JSON object per line.")]

ROW_COLUMNS = (
    Column("time", keep=0, min_width=8, no_wrap=True),
    Column("process", keep=0, min_width=12, max_width=24),
    Column("host", keep=0, min_width=20, fold=True),
    Column("category", keep=1, min_width=16),
    Column("detail", keep=2, min_width=16, max_width=32),
    Column("tool", keep=3, min_width=15, whole=True),
)
RAW_COLUMNS = (
    Column("time", keep=0, min_width=8, no_wrap=True),
    Column("kind", keep=1, min_width=4, no_wrap=True),
    Column("process", keep=0, min_width=12, max_width=24),
    Column("host", keep=0, min_width=20, fold=True),
    Column("category", keep=2, min_width=12),
    Column("destination", keep=3, min_width=16, fold=True),
    Column("via", keep=5, min_width=5),
    Column("tool", keep=4, min_width=15, whole=True),
)


class By(StrEnum):
    tool = "tool"
    process = "process"
    destination = "destination"
    category = "category"


def register(app: typer.Typer) -> None:
    """Add `events` and `summary` to the main CLI."""
    app.command("events")(events)
    app.command("summary")(summary)


def category_of() -> Callable[[str], str]:
    """The packaged catalog's category for a host (for rows stored without one)."""
    from egresswatch.classify.catalog import load_catalog

    catalog = load_catalog(None)
    return lambda host: catalog.classify(host).category


def events(
    *,
    db: DbOption = None,
    since: SinceOption = None,
    until: UntilOption = None,
    tool: ToolOption = None,
    category: CategoryOption = None,
    host: HostOption = None,
    node: NodeOption = None,
    as_json: Annotated[
        bool,
        typer.Option(
            "--json", help="Stored event records, one JSON object per line (implies --raw)."
        ),
    ] = False,
    raw: Annotated[
        bool, typer.Option("--raw", help="One row per stored event (packet-level records).")
    ] = False,
    follow: Annotated[
        bool, typer.Option("--follow", "-f", help="Keep showing new events until Ctrl-C.")
    ] = False,
    limit: Annotated[int, typer.Option(min=1, help="Show at most the newest N rows.")] = 100,
) -> None:
    """Show what processes looked up and connected to, oldest first (the newest LIMIT rows).

    A lookup and its answers are one row, a connection and its name are one row; --raw shows
    every stored event.
    """
    flt = event_filter(since, until, tool, category, host, node=node)
    raw = raw or as_json  # JSON output is the event record contract (docs/events.md)
    # Ctrl-C is how --follow ends: wherever it lands, it is a normal exit.
    stopping = contextlib.suppress(KeyboardInterrupt) if follow else contextlib.nullcontext()
    with stopping, store_session(db) as store:
        flt = with_stored_tool(store, flt)
        stored = store.query_events(flt, limit if raw else limit * RAW_PER_ROW + 1)
        full = len(stored) >= (limit if raw else limit * RAW_PER_ROW + 1)
        if not follow and not stored:
            _nothing_found(store, flt)
        shown = _show(stored, raw, as_json, limit, truncated=full)
        if follow:
            _follow(
                store, flt, raw=raw, as_json=as_json,
                last_id=max((s.id for s in stored), default=0), last_ts=shown,
            )  # fmt: skip


def _nothing_found(store: "Store", flt: "EventFilter") -> None:
    empty = store.stats().newest is None
    reason = (
        "the store is empty: start `egresswatch run`, or try `egresswatch demo`"
        if empty
        else "no events match (widen --since, or check --tool/--category/--host)"
    )
    typer.echo(f"egresswatch: {reason}", err=True)
    raise typer.Exit(EXIT_NOTHING_FOUND)


def _show(
    stored: "list[StoredEvent]", raw: bool, as_json: bool, limit: int, *, truncated: bool
) -> float:
    """Prints rows; returns the time of the newest event shown (0 when none)."""
    if raw:
        _print_raw(stored, as_json, header=True)
    else:
        from egresswatch.store.views import roll_up

        rows = roll_up(stored, category_of())
        truncated = truncated or len(rows) > limit
        _print_rows(rows[-limit:], header=True)
    if truncated and not as_json:
        typer.echo(
            f"(showing the newest {limit} rows; older events match too: "
            "raise --limit or narrow --since)",
            err=True,
        )
    return max((s.event.observation.ts for s in stored), default=0.0)


def _print_rows(rows: "list[ViewRow]", *, header: bool) -> None:
    cells = [
        (short_time(r.ts), _who(r.process, r.pid, r.attribution), r.host, r.category,
         r.detail(), r.tool)
        for r in rows
    ]  # fmt: skip
    _table(ROW_COLUMNS, cells, header)


def _print_raw(stored: "list[StoredEvent]", as_json: bool, *, header: bool) -> None:
    from egresswatch.store.export import event_record

    records = [event_record(s) for s in stored]
    if as_json:
        for record in records:
            typer.echo(to_json_line(record))
        return
    cells = [
        (short_time(r["ts"]), r["kind"], _who(r["process"], r["pid"], r["attribution"]),
         r["host"] or r.get("qname"), r["category"], f"{r['dst']}:{r['dport']}",
         r["name_source"], r["tool"])
        for r in records
    ]  # fmt: skip
    _table(RAW_COLUMNS, cells, header)


def _who(process: str | None, pid: int | None, attribution: str) -> str:
    return f"{process}[{pid}]" if pid is not None else attribution


def _table(
    columns: tuple[Column, ...], cells: Sequence[Sequence[str | None]], header: bool
) -> None:
    console = Console(highlight=False)
    if header:
        render(columns, cells, console)
        return
    for row in cells:  # --follow: one plain line per row, no table to re-align
        console.out(" ".join(printable(c) if c else "-" for c in row), highlight=False)


def _follow(
    store: "Store", flt: "EventFilter", *, raw: bool, as_json: bool, last_id: int, last_ts: float
) -> None:
    """Poll the store for events newer than `last_id` until interrupted."""
    while True:
        time.sleep(FOLLOW_INTERVAL)
        now = time.time()
        since = max(last_ts, now - 3600) - FOLLOW_LOOKBACK
        window = dataclasses.replace(flt, since=since, until=now - FOLLOW_SETTLE)
        fresh = [s for s in store.query_events(window, 100_000) if s.id > last_id]
        if fresh:
            last_id = max(s.id for s in fresh)
            last_ts = max(s.event.observation.ts for s in fresh)
            _print_fresh(fresh, raw, as_json)


def _print_fresh(fresh: "list[StoredEvent]", raw: bool, as_json: bool) -> None:
    if raw:
        _print_raw(fresh, as_json, header=False)
    else:
        from egresswatch.store.views import roll_up

        _print_rows(roll_up(fresh, category_of()), header=False)


def summary(
    *,
    db: DbOption = None,
    since: Annotated[
        str, typer.Option(help="Start of the window: 10m, 2h, 1d, epoch seconds or ISO time.")
    ] = "1d",
    until: UntilOption = None,
    by: Annotated[By, typer.Option("--by", help="What to group by.")] = By.destination,
    tool: ToolOption = None,
    category: CategoryOption = None,
    host: HostOption = None,
    as_json: JsonOption = False,
) -> None:
    """What talked to what: counts, first and last seen, grouped by tool, process,
    destination or category."""
    from egresswatch.store.queries import iter_events
    from egresswatch.store.summary import summarise
    from egresswatch.store.views import roll_up

    flt = event_filter(since, until, tool, category, host)
    with store_session(db) as store:
        flt = with_stored_tool(store, flt)
        stored = _reading(lambda: list(iter_events(store.engine, flt)))
        groups = summarise(roll_up(stored, category_of()), by)
        if not groups:
            _nothing_found(store, flt)
    _print_summary(groups, by, as_json)


def _reading(read: Callable[[], "list[StoredEvent]"]) -> "list[StoredEvent]":
    from sqlalchemy.exc import SQLAlchemyError

    try:
        return read()
    except SQLAlchemyError as exc:
        fail(f"cannot read the event store: {exc}")


def _print_summary(groups: "list[SummaryRow]", by: str, as_json: bool) -> None:
    from egresswatch.store.summary import peer_title

    if as_json:
        for group in groups:
            typer.echo(to_json_line(group.to_dict(by)))
        return
    columns = (
        Column(by, keep=0, min_width=16, fold=True),
        Column("conns", keep=0, min_width=5, no_wrap=True),
        Column("lookups", keep=1, min_width=7, no_wrap=True),
        Column("first", keep=2, min_width=8, no_wrap=True),
        Column("last", keep=0, min_width=8, no_wrap=True),
        Column(peer_title(by), keep=0, min_width=20, fold=True),
    )
    cells = [
        (g.key, str(g.connections), str(g.lookups), short_time(g.first), short_time(g.last),
         g.top_peers())
        for g in groups
    ]  # fmt: skip
    render(columns, cells, Console(highlight=False))
