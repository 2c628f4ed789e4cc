"""The compact events row: packed fields round-trip at their limits; time windows found
through id blocks stay exact when events arrive out of time order.
"""

import io
import json
import math
import random
from collections.abc import Iterator
from dataclasses import replace

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from sqlalchemy import select

from egresswatch.model import DnsAnswer, DnsMessage, Event, FlowKey, Observation
from egresswatch.store import EventFilter, Store, open_store
from egresswatch.store.retention import apply_retention
from egresswatch.store.schema import (
    BLOCK_BITS,
    DestinationBlock,
    EventBlock,
    Hostname,
    pack_flags,
)
from tests.store.factory import dns_response, flow_start, process, tls_hello

T0 = 1_763_900_000.0


@pytest.fixture(scope="module")
def sqlite_store(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Store]:
    s = open_store(str(tmp_path_factory.mktemp("compact") / "compact.db"))
    s.writer(batch_interval=0.01)
    yield s
    s.close()


def write(store: Store, events: list[Event], batch_size: int = 500) -> None:
    writer = store.writer(batch_interval=0.01, batch_size=batch_size)
    assert all(writer.submit(e) for e in events)
    assert writer.flush(60)
    assert writer.counters().get("store.written") == writer.counters().get("store.submitted")


def read(store: Store, limit: int = 100_000, **flt: object) -> list[Event]:
    return [s.event for s in store.query_events(EventFilter(**flt), limit)]  # type: ignore[arg-type]


ports = st.integers(0, 65535)
names = st.one_of(st.none(), st.sampled_from(["a.example", "b.example", "", "A.EXAMPLE"]))


@st.composite
def dns_events(draw: st.DrawFn) -> Event:
    qname = draw(names)
    answers = tuple(
        DnsAnswer(
            draw(st.sampled_from([qname or "x.example", "cdn.example", ""])), rtype, data, ttl
        )
        for rtype, data, ttl in draw(
            st.lists(
                st.tuples(
                    st.sampled_from(["A", "AAAA", "CNAME", "TXT"]),
                    st.sampled_from([None, "192.0.2.1", "2001:db8::1", "text"]),
                    st.integers(0, 2**32 - 1),
                ),
                max_size=3,
            )
        )
    )
    message = DnsMessage(
        id=draw(st.integers(0, 65535)),
        is_response=draw(st.booleans()),
        opcode=draw(st.integers(0, 15)),
        qname=qname,
        qtype=draw(st.sampled_from([None, "A", "TYPE65535"])),
        rcode=draw(st.sampled_from([None, "NOERROR", "RCODE4095"])),
        truncated=draw(st.booleans()),
        answers=answers,
    )
    flow = FlowKey(
        draw(st.sampled_from(["udp", "tcp"])), "10.0.0.2", draw(ports), "::1", draw(ports)
    )
    obs = Observation(
        T0 + draw(st.integers(0, 10**6)) / 1e3,
        "dns",
        flow,
        dns=message,
        dns_proto=draw(st.sampled_from([None, "dns", "mdns", "llmnr"])),
        tunneled=draw(st.booleans()),
    )
    event = dns_response(T0, proc=draw(st.sampled_from([None, process()])))
    host = draw(names)
    if host is None:  # the category is the destination's: none without a host
        event = replace(event, category=None, catalog_entry=None)
    return replace(
        event,
        observation=obs,
        host=host,
        name_source=draw(st.sampled_from([None, "sni", "quic-sni", "dns-same-pid", "dns-any"])),
        name_conflict=draw(st.booleans()),
        tool=draw(st.sampled_from([None, "ollama", "=x"])),
    )


@settings(max_examples=50, deadline=None)
@given(event=dns_events())
def test_every_packed_field_round_trips(sqlite_store: Store, event: Event) -> None:
    write(sqlite_store, [event])
    ts = event.observation.ts
    assert read(sqlite_store, since=ts, until=math.nextafter(ts, math.inf))[-1] == event


@pytest.mark.parametrize(
    ("sni", "host", "quic_version"),
    [("a.example", "a.example", 0), ("a.example", "b.example", 0xFFFFFFFF), (None, None, None)],
)
def test_hello_name_and_quic_version_round_trip(
    store: Store, sni: str | None, host: str | None, quic_version: int | None
) -> None:
    category = None if host is None else "model-cdn"  # a destination's, so none without a host
    base = tls_hello(T0, sni, process(), kind="quic", category=category)
    obs = replace(base.observation, quic_version=quic_version)
    events = [replace(base, observation=obs, host=host), flow_start(T0 + 1)]
    flow_obs = replace(events[1].observation, quic_version=7)  # a version without a hello
    events.append(replace(events[1], observation=replace(flow_obs, ts=T0 + 2)))
    write(store, events)
    assert read(store) == events


def test_a_value_that_does_not_fit_is_refused_not_truncated() -> None:
    with pytest.raises(ValueError):
        pack_flags({(0, 2): 4})


def shuffled_times(n: int, spread: float, seed: int) -> list[Event]:
    """n events whose ts is i plus up to `spread` seconds of jitter: arrival != time order."""
    rng = random.Random(seed)
    events = []
    for i in range(n):
        ts = T0 + i + rng.uniform(-spread, spread)
        proc = process() if i % 3 else None
        # DNS and TLS hosts apart: a destination's catalog entry is its latest event's.
        if i % 2:
            events.append(dns_response(ts, f"d{i % 7}.example", proc))
        else:
            category = "model-cdn" if i % 7 == 3 else "model-registry"
            events.append(tls_hello(ts, f"t{i % 7}.example", proc, category=category))
    return events


def by_time(events: list[Event]) -> list[Event]:
    # Stored order: time, then arrival (the id) for equal times.
    return [e for _, e in sorted(enumerate(events), key=lambda p: (p[1].observation.ts, p[0]))]


@pytest.mark.parametrize("spread", [3.0, 5000.0])
def test_windows_newest_and_export_are_exact_out_of_order(store: Store, spread: float) -> None:
    n = 3 * (1 << BLOCK_BITS) + 17
    events = shuffled_times(n, spread, seed=int(spread))
    write(store, events, batch_size=100)
    ordered = by_time(events)
    assert read(store) == ordered
    assert read(store, limit=40) == ordered[-40:]
    since, until = T0 + 300.5, T0 + 600.25
    window = [e for e in ordered if since <= e.observation.ts < until]
    assert read(store, since=since, until=until) == window
    assert read(store, since=since, until=until, limit=5) == window[-5:]
    assert (
        read(store, host="t3.example", limit=10)
        == [e for e in ordered if e.host == "t3.example"][-10:]
    )
    cdn = [e for e in ordered if e.category == "model-cdn"]
    assert cdn and read(store, category="model-cdn") == cdn
    assert read(store, category="model-cdn", limit=7) == cdn[-7:]
    assert read(store, category="model-cdn", since=since, until=until) == [
        e for e in window if e.category == "model-cdn"
    ]
    out = io.StringIO()
    assert store.export("jsonl", out, EventFilter(since=since)) == len(
        [e for e in ordered if e.observation.ts >= since]
    )
    stamps = [json.loads(line)["ts"] for line in out.getvalue().splitlines()]
    assert stamps == sorted(stamps) and stamps[0] >= since
    stats = store.stats()
    assert (stats.oldest, stats.newest) == (ordered[0].observation.ts, ordered[-1].observation.ts)


def test_export_pages_through_many_equal_times(store: Store) -> None:
    # Every event at one instant: windows cannot split them, (ts, id) paging must.
    events = [tls_hello(T0, f"h{i}.example") for i in range(2500)]
    write(store, events)
    out = io.StringIO()
    assert store.export("jsonl", out) == 2500
    ids = [json.loads(line)["event_id"] for line in out.getvalue().splitlines()]
    assert ids == sorted(set(ids))


def test_retention_deletes_exactly_the_old_events_and_their_blocks(store: Store) -> None:
    events = shuffled_times(3 * (1 << BLOCK_BITS), spread=50.0, seed=9)
    write(store, events, batch_size=64)
    with store.engine.connect() as conn:
        blocks_before = len(conn.execute(select(EventBlock.block)).all())
    cutoff = T0 + 400.0  # past all of the first block, into the second
    keep = [e for e in by_time(events) if e.observation.ts >= cutoff]
    # Directly, to choose `now`; the writer is idle and writes nothing afterwards.
    result = apply_retention(store.engine, max_age_days=1.0, now=cutoff + 86_400)
    assert result.events_deleted == len(events) - len(keep)
    assert read(store) == keep
    with store.engine.connect() as conn:
        blocks = set(conn.execute(select(EventBlock.block)).scalars())
        pairs = conn.execute(select(DestinationBlock.destination_id, DestinationBlock.block)).all()
        hosts = set(conn.execute(select(Hostname.name)).scalars())
    assert len(blocks) < blocks_before
    assert {b for _, b in pairs} <= blocks
    assert hosts == {e.host for e in keep} | {"edge.example-cdn.net"}
    assert read(store, category="model-cdn") == [e for e in keep if e.category == "model-cdn"]
