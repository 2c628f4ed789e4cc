"""The store as one object: open (and migrate) a database, start its writer, read, trim, export."""

import logging
import os
from collections.abc import Callable
from pathlib import Path
from typing import TextIO, TypeVar

from sqlalchemy import Engine
from sqlalchemy.exc import SQLAlchemyError

from egresswatch.errors import StoreError
from egresswatch.store import export as export_mod
from egresswatch.store import migrate
from egresswatch.store.engine import make_engine, make_reader_engine, resolve_url
from egresswatch.store.layout import check_layout
from egresswatch.store.queries import (
    EventFilter,
    StoredEvent,
    StoreStats,
    query_events,
    store_stats,
)
from egresswatch.store.retention import RetentionResult, apply_retention
from egresswatch.store.spool import Spool
from egresswatch.store.writer import BATCH_INTERVAL, BATCH_SIZE, MAX_BUFFER, EventWriter

log = logging.getLogger(__name__)
T = TypeVar("T")


class Store:
    """An open event store. Reads may come from any thread; writes go through `writer()`."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self._writer: EventWriter | None = None
        # set when the store was unreachable at open: the checks still to run (shared.py)
        self.pending_check: Callable[[], None] | None = None

    @property
    def url(self) -> str:
        return self.engine.url.render_as_string(hide_password=True)

    def writer(
        self,
        *,
        batch_size: int = BATCH_SIZE,
        batch_interval: float = BATCH_INTERVAL,
        max_buffer: int = MAX_BUFFER,
        spool: Spool | None = None,
    ) -> EventWriter:
        """The store's one writer thread, started on first use (later options are ignored).

        With `spool`, batches the store cannot take go there (store/spool.py); a store opened
        while unreachable (`pending_check`) is checked by the writer once it answers.
        """
        if self._writer is None:
            writer = EventWriter(
                self.engine,
                batch_size=batch_size,
                batch_interval=batch_interval,
                max_buffer=max_buffer,
                spool=spool,
                ready_check=self.pending_check if spool is not None else None,
            )
            self._writer = writer.start()
        return self._writer

    def query_events(self, flt: EventFilter | None = None, limit: int = 100) -> list[StoredEvent]:
        return _reading(lambda: query_events(self.engine, flt or EventFilter(), limit))

    def stats(self) -> StoreStats:
        return _reading(lambda: store_stats(self.engine, migrate.current_revision(self.engine)))

    def export(self, fmt: str, out: TextIO, flt: EventFilter | None = None) -> int:
        """Write matching events to `out` as "jsonl" or "csv"; returns how many."""
        return _reading(lambda: export_mod.export(self.engine, fmt, out, flt or EventFilter()))

    def apply_retention(
        self, *, max_age_days: float | None = None, max_bytes: int | None = None
    ) -> RetentionResult:
        """Trim the store; runs on the writer thread when there is one (single-writer rule)."""

        def trim() -> RetentionResult:
            return apply_retention(self.engine, max_age_days=max_age_days, max_bytes=max_bytes)

        if self._writer is not None:
            return self._writer.call(trim)
        return _reading(trim)

    def close(self) -> None:
        if self._writer is not None:
            self._writer.close()
        self.engine.dispose()


def open_store(url: str | None = None, *, upgrade: bool = True) -> Store:
    """Open the store at `url` (None: the default path), migrating it to the newest schema.

    Raises StoreError with the reason when the database cannot be opened or migrated.
    """
    engine = make_engine(resolve_url(url))
    if upgrade:
        try:
            migrate.upgrade(engine)
        except StoreError as exc:
            engine.dispose()
            reason = str(exc.__cause__ or exc).splitlines()[0]
            where = engine.url.render_as_string(hide_password=True)
            raise StoreError(
                f"cannot open the event store {where}: {reason}{_hint(engine)}"
            ) from exc
        _check_layout(engine)
    return Store(engine)


def _check_layout(engine: Engine) -> None:
    try:
        check_layout(engine, migrate.current_revision(engine))
    except BaseException:
        engine.dispose()
        raise


def open_reader(url: str | None = None) -> Store:
    """Open the store at `url` for reading only: it is never created, migrated or written.

    Raises StoreError when it is missing, unreadable, or its schema is not the one this
    egresswatch reads (then it names both revisions and the command that migrates).
    """
    engine = make_reader_engine(resolve_url(url))
    try:
        check_at_head(engine)
    except BaseException:
        engine.dispose()
        raise
    return Store(engine)


def check_at_head(engine: Engine) -> None:
    """StoreError unless the database's schema revision is the newest one shipped."""
    where = engine.url.render_as_string(hide_password=True)
    try:
        current = migrate.current_revision(engine)
    except SQLAlchemyError as exc:
        reason = str(exc.orig if hasattr(exc, "orig") else exc).splitlines()[0]
        raise StoreError(f"cannot read the event store {where}: {reason}") from exc
    head = migrate.head_revision(engine)
    if current == head:
        check_layout(engine, current)
        return
    if current is None:
        raise StoreError(
            f"{where} is not an egresswatch store yet (no schema): run `egresswatch db upgrade`"
        )
    raise StoreError(
        f"the event store {where} is at schema revision {current}, this egresswatch reads "
        f"{head}: run `egresswatch db upgrade --db ...` (as the user that owns it)"
    )


def _hint(engine: Engine) -> str:
    """Why SQLite may have failed: it needs to write the file and create -wal/-shm beside it."""
    database = engine.url.database
    if engine.dialect.name != "sqlite" or not database or database.startswith("file:"):
        return ""
    path = Path(database)
    if not os.access(path.parent, os.W_OK):
        return f" (the directory {path.parent} is read-only or not writable)"
    if path.exists() and not os.access(path, os.W_OK):
        return f" (the file {path} is read-only)"
    return ""


def _reading(action: Callable[[], T]) -> T:
    try:
        return action()
    except SQLAlchemyError as exc:
        raise StoreError(f"cannot read the event store: {exc}") from exc
