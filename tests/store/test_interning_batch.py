"""Batch interning (one statement per table) foresees every name a batch needs, on SQLite and
PostgreSQL, hostile text included: nothing is left to the row-at-a-time path."""

from dataclasses import replace

from sqlalchemy import text

from egresswatch.model import DnsAnswer, Event
from egresswatch.store import EventFilter, Store
from egresswatch.store.ingest import Ingest
from tests.store.factory import (
    HOSTILE,
    dns_query,
    dns_response,
    flow_start,
    mixed,
    process,
    tls_hello,
)

T0 = 1_763_900_000.0
SIDE = ("labels", "hostnames", "addresses", "executables", "processes", "destinations", "names",
        "destination_tools")  # fmt: skip


def _hostile() -> list[Event]:
    out: list[Event] = []
    for i, bad in enumerate(HOSTILE):
        proc = process(pid=100 + i, name=bad, cmdline=(bad,), exe=bad if i % 2 else None,
                       exe_sha256=None if i % 3 else bad, user=bad, tool=bad)  # fmt: skip
        out.append(tls_hello(T0 + i, bad, proc, kind="quic" if i % 2 else "tls", category=bad))
        answers = (DnsAnswer(bad, "A", "192.0.2.1", 5), DnsAnswer("x", bad, bad, 5))
        dns = dns_response(T0 + i + 0.5, bad, proc)
        assert dns.observation.dns is not None
        obs = replace(dns.observation, dns=replace(dns.observation.dns, answers=answers))
        out += [replace(dns, observation=obs), dns_query(T0 + i, bad, proc), flow_start(T0, proc)]
    return out


def _counts(store: Store) -> dict[str, int]:
    with store.engine.connect() as conn:
        return {t: conn.execute(text(f"SELECT count(*) FROM {t}")).scalar_one() for t in SIDE}


def test_batch_interning_needs_no_row_at_a_time_path(store: Store) -> None:
    events = _hostile() + mixed(300)
    ingest = Ingest()
    with store.engine.begin() as conn:
        ingest.write(conn, events)
    assert ingest.fallbacks == 0
    first = _counts(store)
    fresh = Ingest()  # an empty cache: every name is found by the batch SELECTs, none added
    with store.engine.begin() as conn:
        fresh.write(
            conn, [replace(e, observation=replace(e.observation, ts=T0 + 99)) for e in events]
        )
    assert fresh.fallbacks == 0
    assert _counts(store) == first
    stored = store.query_events(EventFilter(), limit=10 * len(events))
    assert len(stored) == 2 * len(events)
