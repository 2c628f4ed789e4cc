"""Retention: delete events older than an age or beyond a size, then the side rows nothing uses."""

import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import (
    ColumnElement,
    Connection,
    Delete,
    Engine,
    RowMapping,
    delete,
    exists,
    func,
    select,
    union,
    update,
)

from egresswatch.store import rollup
from egresswatch.store.queries import database_size
from egresswatch.store.schema import (
    Address,
    AlertRow,
    Destination,
    DestinationBlock,
    DestinationTool,
    DnsAnswerRow,
    EventBlock,
    EventRow,
    Executable,
    Hostname,
    IngestBatch,
    Label,
    NameBinding,
    Process,
    SessionEventRow,
)
from egresswatch.store.window import id_bounds, in_ids, nth_newest_ts, oldest_ts

DAY = 86_400.0
# Delete to this fraction of max_bytes so the next run does not have to start straight away.
SIZE_HEADROOM = 0.9
CHUNK = 20_000
SIZE_PASSES = 8


@dataclass(frozen=True, slots=True)
class RetentionResult:
    events_deleted: int
    side_rows_deleted: int  # hosts, addresses, processes, labels... no event refers to any more
    size_before: int | None
    size_after: int | None
    blocks_deleted: int = 0
    batches_deleted: int = 0


def _forget_batches(engine: Engine, before: float) -> int:
    """Batch ids only guard a re-drain after a crash; those as old as the events can go."""
    with engine.begin() as conn:
        return _rowcount(conn, delete(IngestBatch).where(IngestBatch.written_at < before))


def apply_retention(
    engine: Engine,
    *,
    max_age_days: float | None = None,
    max_bytes: int | None = None,
    now: float | None = None,
    side_rows: bool = True,
) -> RetentionResult:
    """Apply both limits (either may be None); safe to run while the writer is writing.

    `side_rows=False` trims only events and what belongs to them (DNS answers, session
    evidence, blocks, batch ids, the rollup): side rows stay, since on a shared store a running
    agent may have just interned (and cached) one that no event refers to yet.
    """
    now = time.time() if now is None else now
    with engine.connect() as conn:
        before = database_size(conn)
    deleted = side = blocks = batches = 0
    if max_age_days is not None:
        deleted, blocks = _delete_before(engine, now - max_age_days * DAY)
        batches = _forget_batches(engine, now - max_age_days * DAY)
        side += _delete_orphans(engine) if deleted and side_rows else 0
    if max_bytes is not None and before is not None:
        # SQLite measures pages in use, so repeat until under budget (partly filled pages
        # and the fixed schema make one estimate fall short); elsewhere one estimate.
        for _ in range(SIZE_PASSES if engine.dialect.name == "sqlite" else 1):
            trimmed, gone = _trim_to_size(engine, max_bytes)
            if not trimmed:
                break
            deleted, blocks = deleted + trimmed, blocks + gone
            side += _delete_orphans(engine) if side_rows else 0
    if deleted and not side_rows:
        _delete_stale_pairs(engine)
    if deleted:
        _release_space(engine)
    with engine.connect() as conn:
        after = database_size(conn)
    return RetentionResult(deleted, side, before, after, blocks, batches)


def _delete_stale_pairs(engine: Engine) -> None:
    """Destination/block pairs of deleted blocks (the orphan sweep does this otherwise): a
    writer adds a block and its pairs in one transaction, so none of its own can go."""
    with engine.begin() as conn:
        conn.execute(delete(DestinationBlock).where(DestinationBlock.block.not_in(_blocks())))


@dataclass(frozen=True, slots=True)
class RetentionPlan:
    """What `apply_retention` with the same limits would delete now (a dry run)."""

    events: int
    blocks: int
    batches: int
    cutoff: float | None  # events older than this go
    size: int | None


def plan_retention(
    engine: Engine,
    *,
    max_age_days: float | None = None,
    max_bytes: int | None = None,
    now: float | None = None,
) -> RetentionPlan:
    """Count, without deleting, the events, blocks and batch ids the limits would remove (the
    size limit by the same one-pass estimate PostgreSQL's run uses)."""
    now = time.time() if now is None else now
    cutoffs = [] if max_age_days is None else [now - max_age_days * DAY]
    with engine.connect() as conn:
        size = database_size(conn)
        if max_bytes is not None:
            by_size = _size_cutoff(conn, max_bytes)
            cutoffs += [] if by_size is None else [by_size]
        if not cutoffs:
            return RetentionPlan(0, 0, 0, None, size)
        cutoff = max(cutoffs)
        count = select(func.count()).select_from(EventRow).where(EventRow.ts < cutoff)
        blocks = select(func.count()).select_from(EventBlock).where(EventBlock.last_ts < cutoff)
        batches = 0
        if max_age_days is not None:
            old = IngestBatch.written_at < now - max_age_days * DAY
            counted = select(func.count()).select_from(IngestBatch).where(old)
            batches = int(conn.execute(counted).scalar_one())
        return RetentionPlan(
            int(conn.execute(count).scalar_one()),
            int(conn.execute(blocks).scalar_one()),
            batches,
            cutoff,
            size,
        )


def _delete_before(engine: Engine, cutoff: float) -> tuple[int, int]:
    """Delete events with ts < cutoff in chunks, so the writer is never locked out for long;
    (events, blocks) deleted."""
    total = blocks = 0
    while True:
        with engine.begin() as conn:
            bounds = id_bounds(conn, None, cutoff)
            if bounds is None:
                return total, blocks
            doomed = select(*_ROLLED).where(in_ids(bounds), EventRow.ts < cutoff)
            n = _delete_events(conn, [r._mapping for r in conn.execute(doomed.limit(CHUNK))])
            if n < CHUNK:
                # Every event of these blocks is gone; blocks that keep some stay (a bound).
                blocks += _rowcount(conn, delete(EventBlock).where(EventBlock.last_ts < cutoff))
        total += n
        if n < CHUNK:
            return total, blocks


def _size_cutoff(conn: Connection, max_bytes: int) -> float | None:
    """The ts before which events go to bring the store under `max_bytes`; None: none need."""
    size = database_size(conn) or 0
    count = conn.execute(select(func.count()).select_from(EventRow)).scalar_one()
    if size <= max_bytes or count == 0:
        return None
    # Estimate from the current bytes per event: freed pages are reused, not returned, so
    # re-measuring after each delete would not show progress on every backend.
    keep = int(count * max_bytes * SIZE_HEADROOM / size)
    cutoff = nth_newest_ts(conn, select(EventRow.ts), keep + 1)
    return None if cutoff is None else cutoff + 1e-6


def _trim_to_size(engine: Engine, max_bytes: int) -> tuple[int, int]:
    with engine.connect() as conn:
        cutoff = _size_cutoff(conn, max_bytes)
    return (0, 0) if cutoff is None else _delete_before(engine, cutoff)


# What deleting an event needs: its id, and what the per-minute rollup counted it under.
_ROLLED = (
    EventRow.id,
    EventRow.ts,
    EventRow.tool_id,
    EventRow.destination_id,
    EventRow.process_id,
    EventRow.node_id,
)


def _delete_events(conn: Connection, rows: Sequence[RowMapping]) -> int:
    if not rows:
        return 0
    ids = [r["id"] for r in rows]
    rollup.subtract(conn, rollup.tally(rows))
    conn.execute(update(AlertRow).where(AlertRow.event_id.in_(ids)).values(event_id=None))
    conn.execute(delete(SessionEventRow).where(SessionEventRow.event_id.in_(ids)))
    conn.execute(delete(DnsAnswerRow).where(DnsAnswerRow.event_id.in_(ids)))
    return int(conn.execute(delete(EventRow).where(EventRow.id.in_(ids))).rowcount)


def _delete_orphans(engine: Engine) -> int:
    """Side rows no remaining event (or session, binding, answer) refers to."""
    total = 0
    with engine.begin() as conn:
        # Bindings and destinations carry their own last_seen; drop those older than every event.
        oldest = oldest_ts(conn)
        horizon = float("inf") if oldest is None else oldest
        total += _rowcount(conn, delete(NameBinding).where(NameBinding.last_seen < horizon))
        # A destination's last_seen is its newest event's ts, which retention has kept if it
        # kept any of them: older than every event means no event refers to it.
        unused_dest = select(Destination.id).where(Destination.last_seen < horizon)
        conn.execute(delete(DestinationBlock).where(DestinationBlock.block.not_in(_blocks())))
        conn.execute(
            delete(DestinationBlock).where(DestinationBlock.destination_id.in_(unused_dest))
        )
        conn.execute(delete(DestinationTool).where(DestinationTool.destination_id.in_(unused_dest)))
        total += _rowcount(conn, delete(Destination).where(Destination.last_seen < horizon))
        used_procs = _ids_in_use(EventRow.process_id)
        total += _rowcount(conn, delete(Process).where(Process.id.not_in(used_procs)))
        total += _rowcount(
            conn, delete(Executable).where(~exists().where(Process.exe_id == Executable.id))
        )
        total += _rowcount(conn, delete(Hostname).where(*_unused_hostname()))
        total += _rowcount(conn, delete(Address).where(*_unused_address()))
        total += _rowcount(conn, delete(Label).where(*_unused_label()))
    return total


def _blocks() -> Any:
    return select(EventBlock.block)


def _ids_in_use(*columns: Any) -> Any:
    # NOT IN (a UNION b ...) is one pass per referring table; NOT EXISTS per row would scan
    # the unindexed events columns (name_id, src_id...) once per side row.
    return union(*(select(c).where(c.is_not(None)) for c in columns))


def _unused_hostname() -> list[ColumnElement[bool]]:
    used = _ids_in_use(
        Destination.hostname_id,
        EventRow.name_id,
        DnsAnswerRow.hostname_id,
        NameBinding.hostname_id,
    )
    return [Hostname.id.not_in(used)]


def _unused_address() -> list[ColumnElement[bool]]:
    used = _ids_in_use(
        EventRow.src_id, EventRow.dst_id, DnsAnswerRow.address_id, NameBinding.address_id
    )
    return [Address.id.not_in(used)]


def _unused_label() -> list[ColumnElement[bool]]:
    used = _ids_in_use(
        EventRow.status_id,
        EventRow.tool_id,
        EventRow.detail_id,
        EventRow.node_id,
        DnsAnswerRow.type_id,
    )
    return [Label.id.not_in(used)]


def _rowcount(conn: Connection, stmt: Delete) -> int:
    return int(conn.execute(stmt).rowcount)


def _release_space(engine: Engine) -> None:
    # SQLite keeps freed pages; with auto_vacuum=INCREMENTAL the file can give them back.
    if engine.dialect.name == "sqlite":
        with engine.connect() as conn:
            raw = conn.connection.driver_connection
            # executescript steps the pragma to the end (each step frees one page); the
            # TRUNCATE checkpoint then moves the smaller image into the file.
            raw.executescript("PRAGMA incremental_vacuum;")  # type: ignore[union-attr]
            raw.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchall()  # type: ignore[union-attr]
