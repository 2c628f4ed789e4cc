"""Captures from elsewhere into the store: name and classify replayed observations offline.

No process can be attributed after the fact, so every event is `unknown:offline`.
"""

from collections.abc import Iterable

from egresswatch.classify.catalog import Catalog
from egresswatch.daemon import classify_event
from egresswatch.model import Attribution, Event, Observation
from egresswatch.naming import Namer
from egresswatch.store.writer import MAX_BUFFER, EventWriter

OFFLINE = Attribution("unknown:offline")
FLUSH_TIMEOUT = 60.0
FLUSH_EVERY = MAX_BUFFER // 2


def offline_events(observations: Iterable[Observation], catalog: Catalog) -> Iterable[Event]:
    """Each observation named from the capture's own DNS and SNI, then classified."""
    namer = Namer()
    for obs in observations:
        naming = namer.name(obs, None)
        event = Event(
            obs, OFFLINE, host=naming.host, name_source=naming.source, name_conflict=naming.conflict
        )
        yield classify_event(catalog, event)


def record_events(events: Iterable[Event], writer: EventWriter) -> int:
    """Hands every event to the writer, letting it catch up every FLUSH_EVERY events (a file
    is read faster than it is stored, and the buffer holds MAX_BUFFER); returns how many were
    accepted. Refused ones are counted by the writer (store.dropped.*).
    """
    accepted = 0
    for count, event in enumerate(events, 1):
        accepted += writer.submit(event)
        if count % FLUSH_EVERY == 0:
            writer.flush(FLUSH_TIMEOUT)
    writer.flush(FLUSH_TIMEOUT)
    return accepted
