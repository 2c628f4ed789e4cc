"""store/views.py and store/summary.py: rows a person reads, from real stored events."""

import time
from pathlib import Path

from egresswatch.model import Attribution, DnsMessage, Event, FlowKey, Observation
from egresswatch.store import open_store
from egresswatch.store.queries import StoredEvent
from egresswatch.store.summary import summarise
from egresswatch.store.views import roll_up, tool_labels
from tests.cli.session import CLIENT, RESOLVER, lookup_and_connect, proc, store_events


def _stored(events: list[Event]) -> list[StoredEvent]:
    return [StoredEvent(i, e) for i, e in enumerate(events, 1)]


def _dns_socket_flow(ts: float, sport: int) -> Event:
    flow = FlowKey("udp", CLIENT, sport, RESOLVER, 53)
    return Event(Observation(ts, "flow", flow), Attribution("exact", proc()))


def test_a_curl_is_a_lookup_row_and_a_connection_row() -> None:
    events = lookup_and_connect(10.0, "hf.co", "10.199.7.9", proc("curl", 7), 41000, "other")
    rows = roll_up(_stored([_dns_socket_flow(9.999, 41000), *events]))
    assert [r.what for r in rows] == ["lookup", "connection"]
    lookup, connection = rows
    assert lookup.qtypes == ["A", "AAAA"] and lookup.answers == ["10.199.7.9"]
    assert lookup.server == RESOLVER and lookup.port == 53 and lookup.protocol == "dns"
    assert len(lookup.event_ids) == 5  # the socket's flow, 2 queries, 2 responses
    assert lookup.detail() == "A,AAAA -> 10.199.7.9"
    assert connection.protocol == "tls" and connection.host == "hf.co"
    assert connection.detail() == "10.199.7.9:443 tls" and connection.pid == 7


def test_a_failed_lookup_says_so_and_is_classified_on_read() -> None:
    query = DnsMessage(9, False, 0, "nx.example", "A", None, False, ())
    reply = DnsMessage(9, True, 0, "nx.example", "A", "NXDOMAIN", False, ())
    out = FlowKey("udp", CLIENT, 41500, RESOLVER, 53)
    back = FlowKey("udp", RESOLVER, 53, CLIENT, 41500)
    who = Attribution("unknown:no-socket")
    events = [Event(Observation(1.0, "dns", out, dns=query), who),
              Event(Observation(1.1, "dns", back, dns=reply), who)]  # fmt: skip
    (row,) = roll_up(_stored(events), lambda host: f"category-of-{host}")
    assert row.detail() == "A -> NXDOMAIN" and row.host == "nx.example"
    assert row.category == "category-of-nx.example" and row.process is None


def test_summary_counts_rows_per_group() -> None:
    events = [
        *lookup_and_connect(1.0, "a.example", "10.199.7.1", proc("x", 1, "Ollama"), 41000, "o"),
        *lookup_and_connect(2.0, "a.example", "10.199.7.1", proc("y", 2, "Jan"), 41010, "o"),
        *lookup_and_connect(3.0, "b.example", "10.199.7.2", proc("y", 2, "Jan"), 41020, "o"),
    ]
    rows = roll_up(_stored(events))
    first, second = summarise(rows, "destination")
    assert (first.key, first.connections, first.lookups) == ("a.example", 2, 2)
    assert (
        second.key == "b.example"
        and first.top_peers() == "x (2), y (2)"
        and (first.first, first.last) == (1.0, 2.02)
    )
    by_tool = {g.key: g for g in summarise(rows, "tool")}
    assert by_tool["Jan"].connections == 2 and by_tool["Jan"].peers["b.example"] == 2


def test_tool_labels_are_the_distinct_stored_ones(tmp_path: Path) -> None:
    now = time.time()
    events = [
        *lookup_and_connect(now, "a.example", "10.199.7.1", proc("x", 1, "Ollama"), 41000, "o"),
        *lookup_and_connect(now, "b.example", "10.199.7.2", proc("y", 2), 41010, "o"),
    ]
    store = open_store(store_events(tmp_path / "e.db", events))
    try:
        assert tool_labels(store.engine) == ["Ollama"]
    finally:
        store.close()
