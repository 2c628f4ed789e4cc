"""The event store: SQLite by default or PostgreSQL (a fleet); one writer thread, Alembic schema."""

from egresswatch.store.database import Store, open_reader, open_store
from egresswatch.store.queries import EventFilter, StoredEvent, StoreStats
from egresswatch.store.retention import RetentionResult
from egresswatch.store.writer import EventWriter

__all__ = [
    "EventFilter",
    "EventWriter",
    "RetentionResult",
    "Store",
    "StoreStats",
    "StoredEvent",
    "open_reader",
    "open_store",
]
