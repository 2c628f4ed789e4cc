"""A session's evidence read from the store, in the canonical form its SHA-256 is taken of."""

import hashlib
import json
from typing import Any

from sqlalchemy import Engine

from egresswatch.output import event_to_dict
from egresswatch.store.queries import EventFilter, iter_events
from egresswatch.store.sessions import evidence_ids, reading


def canonical(value: Any) -> bytes:
    """Sorted keys, no spaces, ASCII only: the same bytes for the same content everywhere."""
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=True).encode()


def evidence_records(engine: Engine, session_id: int) -> list[dict[str, Any]]:
    """Every evidence event of the session as its `events --json` object plus `event_id`."""
    wanted = set(evidence_ids(engine, session_id))
    if not wanted:
        return []

    def read() -> list[dict[str, Any]]:
        records = []
        for stored in iter_events(engine, EventFilter()):
            if stored.id in wanted:
                records.append({"event_id": stored.id, **event_to_dict(stored.event)})
        return sorted(records, key=lambda r: int(r["event_id"]))

    return reading(read)


def evidence_sha256(records: list[dict[str, Any]]) -> str:
    return hashlib.sha256(canonical(records)).hexdigest()
