"""Retention: delete events older than an age or beyond a size, then the side rows nothing uses."""

import time
from dataclasses import dataclass
from typing import Any

from sqlalchemy import (
    ColumnElement,
    Connection,
    Delete,
    Engine,
    delete,
    exists,
    func,
    select,
    union,
    update,
)

from egresswatch.store.queries import database_size
from egresswatch.store.schema import (
    Address,
    AlertRow,
    Destination,
    DestinationTool,
    DnsAnswerRow,
    EventRow,
    Executable,
    HelloShape,
    Hostname,
    Label,
    NameBinding,
    Process,
    SessionRow,
)

DAY = 86_400.0
# Delete to this fraction of max_bytes so the next run does not have to start straight away.
SIZE_HEADROOM = 0.9
CHUNK = 20_000
SIZE_PASSES = 8


@dataclass(frozen=True, slots=True)
class RetentionResult:
    events_deleted: int
    side_rows_deleted: int
    size_before: int | None
    size_after: int | None


def apply_retention(
    engine: Engine,
    *,
    max_age_days: float | None = None,
    max_bytes: int | None = None,
    now: float | None = None,
) -> RetentionResult:
    """Apply both limits (either may be None); safe to run while the writer is writing."""
    now = time.time() if now is None else now
    with engine.connect() as conn:
        before = database_size(conn)
    deleted = side = 0
    if max_age_days is not None:
        deleted += _delete_before(engine, now - max_age_days * DAY)
        side += _delete_orphans(engine) if deleted else 0
    if max_bytes is not None and before is not None:
        # SQLite measures pages in use, so repeat until under budget (partly filled pages
        # and the fixed schema make one estimate fall short); elsewhere one estimate.
        for _ in range(SIZE_PASSES if engine.dialect.name == "sqlite" else 1):
            trimmed = _trim_to_size(engine, max_bytes)
            if not trimmed:
                break
            deleted += trimmed
            side += _delete_orphans(engine)
    if deleted:
        _release_space(engine)
    with engine.connect() as conn:
        after = database_size(conn)
    return RetentionResult(deleted, side, before, after)


def _delete_before(engine: Engine, cutoff: float) -> int:
    """Delete events with ts < cutoff in chunks, so the writer is never locked out for long."""
    total = 0
    while True:
        with engine.begin() as conn:
            ids = select(EventRow.id).where(EventRow.ts < cutoff).order_by(EventRow.ts)
            n = _delete_events(conn, [r[0] for r in conn.execute(ids.limit(CHUNK))])
        total += n
        if n < CHUNK:
            return total


def _trim_to_size(engine: Engine, max_bytes: int) -> int:
    with engine.connect() as conn:
        size = database_size(conn) or 0
        count = conn.execute(select(func.count()).select_from(EventRow)).scalar_one()
    if size <= max_bytes or count == 0:
        return 0
    # Estimate from the current bytes per event: freed pages are reused, not returned, so
    # re-measuring after each delete would not show progress on every backend.
    keep = int(count * max_bytes * SIZE_HEADROOM / size)
    with engine.connect() as conn:
        cutoff_row = conn.execute(
            select(EventRow.ts).order_by(EventRow.ts.desc()).offset(keep).limit(1)
        ).first()
    if cutoff_row is None:
        return 0
    return _delete_before(engine, cutoff_row[0] + 1e-6)


def _delete_events(conn: Connection, ids: list[int]) -> int:
    if not ids:
        return 0
    conn.execute(update(AlertRow).where(AlertRow.event_id.in_(ids)).values(event_id=None))
    conn.execute(delete(DnsAnswerRow).where(DnsAnswerRow.event_id.in_(ids)))
    return int(conn.execute(delete(EventRow).where(EventRow.id.in_(ids))).rowcount)


def _delete_orphans(engine: Engine) -> int:
    """Side rows no remaining event (or session, binding, answer) refers to."""
    total = 0
    with engine.begin() as conn:
        # Bindings and destinations carry their own last_seen; drop those older than every event.
        oldest = conn.execute(select(func.min(EventRow.ts))).scalar()
        horizon = float("inf") if oldest is None else oldest
        total += _rowcount(conn, delete(NameBinding).where(NameBinding.last_seen < horizon))
        unused_dest = ~exists().where(EventRow.destination_id == Destination.id)
        conn.execute(
            delete(DestinationTool).where(
                DestinationTool.destination_id.in_(select(Destination.id).where(unused_dest))
            )
        )
        total += _rowcount(conn, delete(Destination).where(unused_dest))
        used_procs = _ids_in_use(EventRow.process_id, SessionRow.process_id)
        total += _rowcount(conn, delete(Process).where(Process.id.not_in(used_procs)))
        used_hellos = _ids_in_use(EventRow.hello_id)
        total += _rowcount(conn, delete(HelloShape).where(HelloShape.id.not_in(used_hellos)))
        total += _rowcount(
            conn, delete(Executable).where(~exists().where(Process.exe_id == Executable.id))
        )
        total += _rowcount(conn, delete(Hostname).where(*_unused_hostname()))
        total += _rowcount(conn, delete(Address).where(*_unused_address()))
        total += _rowcount(conn, delete(Label).where(*_unused_label()))
    return total


def _ids_in_use(*columns: Any) -> Any:
    # NOT IN (a UNION b ...) is one pass per referring table; NOT EXISTS per row would scan
    # the unindexed events columns (sni_id, src_id...) once per side row.
    return union(*(select(c).where(c.is_not(None)) for c in columns))


def _unused_hostname() -> list[ColumnElement[bool]]:
    used = _ids_in_use(
        Destination.hostname_id,
        EventRow.qname_id,
        EventRow.sni_id,
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
        EventRow.status_id, EventRow.qtype_id, EventRow.rcode_id, DnsAnswerRow.type_id
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
