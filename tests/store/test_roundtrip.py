"""Events written through the real writer read back equal, on SQLite and PostgreSQL."""

import csv
import io
import json
from collections.abc import Iterator
from dataclasses import replace

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from sqlalchemy import select

from egresswatch.model import DnsAnswer, Event
from egresswatch.store import EventFilter, Store, migrate, open_store
from egresswatch.store.ingest import storable
from egresswatch.store.schema import Destination, DestinationTool, Hostname, NameBinding, Process
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


def write(store: Store, events: list[Event]) -> None:
    writer = store.writer()
    assert all(writer.submit(e) for e in events)
    assert writer.flush(30)
    assert writer.counters().get("store.written") == writer.counters().get("store.submitted")


def read_all(store: Store, **flt: object) -> list[Event]:
    return [s.event for s in store.query_events(EventFilter(**flt), limit=100_000)]  # type: ignore[arg-type]


def test_every_kind_round_trips_with_and_without_process(store: Store) -> None:
    proc = process()
    events = [
        dns_response(T0, proc=proc),
        dns_response(T0 + 1, "other.example", None),
        dns_query(T0 + 2, "q.example.net", proc),
        tls_hello(T0 + 3, "huggingface.co", proc),
        tls_hello(T0 + 4, None, None, category=None),
        tls_hello(T0 + 5, "cdn-lfs.hf.co", proc, kind="quic", category="model-cdn"),
        flow_start(T0 + 6),
        flow_start(
            T0 + 7,
            process(
                pid=7,
                tool=None,
                exe=None,
                exe_sha256=None,
                user=None,
                start_time=None,
                ppid=None,
                ancestry=(),
                netns=None,
                container="docker-0123abcd",
            ),
        ),
    ]
    write(store, events)
    stored = store.query_events(EventFilter(), limit=100)
    assert [s.event for s in stored] == events
    assert [s.id for s in stored] == sorted(s.id for s in stored)


def test_many_events_in_several_batches(store: Store) -> None:
    events = mixed(1500)
    write(store, events)
    assert read_all(store) == events
    counters = store.writer().counters()
    assert 3 <= counters["store.batches"] < 50


def test_hostile_strings_are_stored_exactly_except_nul(store: Store) -> None:
    events = []
    for i, text in enumerate(HOSTILE):
        proc = process(
            pid=100 + i,
            name=text,
            cmdline=(text, "--flag", text),
            user=text,
            exe=text,
            container=text,
            tool=text,
        )
        hello = tls_hello(T0 + i, text, proc, category=text)
        events.append(replace(hello, catalog_entry=text))
        answers = (DnsAnswer(text, "TXT", text, 5), DnsAnswer(text, "A", "192.0.2.1", 5))
        dns = dns_response(T0 + i + 0.5, text, proc)
        assert dns.observation.dns is not None
        obs = replace(dns.observation, dns=replace(dns.observation.dns, answers=answers))
        events.append(replace(dns, observation=obs, category=text, catalog_entry=text))
    write(store, events)
    got = read_all(store)
    assert len(got) == len(events)
    for want, have in zip(events, got, strict=True):
        if "\x00" in (want.host or ""):
            assert have.host == want.host.replace("\x00", "\\x00")  # type: ignore[union-attr]
            assert have.attribution.process is not None
            assert have.attribution.process.cmdline == want.attribution.process.cmdline  # type: ignore[union-attr]
        else:
            assert have == want


@pytest.fixture(scope="module")
def sqlite_store(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Store]:
    s = open_store(str(tmp_path_factory.mktemp("prop") / "prop.db"))
    s.writer(batch_interval=0.01)
    yield s
    s.close()


@settings(max_examples=60, deadline=None)
@given(host=st.text(max_size=80), args=st.lists(st.text(max_size=40), max_size=4))
def test_any_text_round_trips_on_sqlite(sqlite_store: Store, host: str, args: list[str]) -> None:
    proc = process(cmdline=tuple(args), name=host)
    write(sqlite_store, [tls_hello(T0, host, proc)])
    got = read_all(sqlite_store)[-1]
    assert got.host == storable(host)
    assert got.attribution.process is not None
    assert got.attribution.process.cmdline == tuple(args)  # JSON keeps even NUL exactly
    assert got.attribution.process.name == storable(host)


def test_filters_select_the_window_tool_category_and_host(store: Store) -> None:
    proc = process()
    events = [
        tls_hello(T0, "huggingface.co", proc),
        tls_hello(T0 + 10, "cdn-lfs.huggingface.co", None, category="model-cdn"),
        tls_hello(T0 + 20, "nothuggingface.co", proc, category="other"),
        dns_response(T0 + 30, "registry.ollama.ai", proc),
        dns_query(T0 + 40, "x_y%.example"),
    ]
    write(store, events)
    assert read_all(store, since=T0 + 10, until=T0 + 30) == events[1:3]
    assert read_all(store, tool="ollama") == [events[0], events[2], events[3]]
    assert read_all(store, category="model-cdn") == [events[1]]
    assert read_all(store, host="huggingface.co") == events[0:2]
    assert read_all(store, host="HUGGINGFACE.CO.") == events[0:2]
    assert read_all(store, host="x_y%.example") == [events[4]]
    assert read_all(store, host="%") == []
    newest = store.query_events(EventFilter(), limit=2)
    assert [s.event for s in newest] == events[3:]


def test_side_tables_intern_and_aggregate(store: Store) -> None:
    proc = process()
    reused = process(start_time=1_763_900_100.25)  # same pid, a new process
    events = [tls_hello(T0 + i, "huggingface.co", proc) for i in range(50)]
    events += [tls_hello(T0 + 60, "huggingface.co", reused), dns_response(T0 + 70, proc=proc)]
    write(store, events)
    with store.engine.connect() as conn:
        assert conn.execute(select(Process.start_time).order_by(Process.id)).scalars().all() == [
            proc.start_time,
            reused.start_time,
        ]
        dest = conn.execute(
            select(
                Destination.count,
                Destination.first_seen,
                Destination.last_seen,
                Destination.category,
            )
            .join(Hostname, Hostname.id == Destination.hostname_id)
            .where(Hostname.name == "huggingface.co")
        ).one()
        assert tuple(dest) == (51, T0, T0 + 60, "model-registry")
        tools = conn.execute(select(DestinationTool.tool, DestinationTool.count)).all()
        assert sorted(tools) == [("ollama", 1), ("ollama", 51)]
        bindings = {
            (name, src, exp)
            for name, src, exp in conn.execute(
                select(Hostname.name, NameBinding.source, NameBinding.expires).join(
                    Hostname, Hostname.id == NameBinding.hostname_id
                )
            )
        }
    # SNI binds the destination address without expiry; the DNS answer's A record binds the
    # queried name until ts + ttl.
    assert ("huggingface.co", 0, None) in bindings
    assert ("registry.ollama.ai", 4, T0 + 70 + 60) in bindings


def test_stats_report_counts_range_and_size(store: Store) -> None:
    write(store, mixed(40))
    stats = store.stats()
    assert stats.counts["events"] == 40
    assert stats.counts["dns_answers"] == 10 * 3
    assert stats.oldest == T0 and stats.newest == pytest.approx(T0 + 0.39)
    assert stats.size_bytes and stats.size_bytes > 0
    assert stats.revision == migrate.head_revision(store.engine)


def test_export_jsonl_and_csv(store: Store) -> None:
    proc = process(cmdline=("=HYPERLINK(1)", "-x"))
    events = [dns_response(T0, proc=proc), tls_hello(T0 + 1, "@evil", proc)]
    write(store, events)
    out = io.StringIO()
    assert store.export("jsonl", out) == 2
    records = [json.loads(line) for line in out.getvalue().splitlines()]
    assert [r["kind"] for r in records] == ["dns", "tls"]
    assert records[0]["answers"][1] == {
        "name": "edge.example-cdn.net",
        "type": "A",
        "data": "104.21.75.20",
        "ttl": 60,
    }
    assert records[1]["cmdline"] == ["=HYPERLINK(1)", "-x"]
    out = io.StringIO()
    assert store.export("csv", out, EventFilter(since=T0 + 0.5)) == 1
    rows = list(csv.DictReader(io.StringIO(out.getvalue())))
    assert len(rows) == 1
    assert rows[0]["host"] == "'@evil"  # a spreadsheet would run it as a formula otherwise
    assert json.loads(rows[0]["cmdline"]) == ["=HYPERLINK(1)", "-x"]


def test_the_cname_chain_is_stored_and_exported(store: Store) -> None:
    chain = ("m.example-mirror.net", "edge.example-cdn.net", "cdn-lfs.hf.co")
    via = {"cname_chain": chain, "category": "model-cdn", "catalog_entry": "cdn-lfs.hf.co"}
    events = [
        replace(tls_hello(T0, "m.example-mirror.net", process()), **via),  # type: ignore[arg-type]
        replace(flow_start(T0 + 1), host="m.example-mirror.net", **via),  # type: ignore[arg-type]
        tls_hello(T0 + 2, "plain.example", process()),
    ]
    write(store, events)
    assert read_all(store) == events
    out = io.StringIO()
    assert store.export("jsonl", out) == 3
    records = [json.loads(line) for line in out.getvalue().splitlines()]
    assert [r["cname_chain"] for r in records] == [list(chain), list(chain), None]
    out = io.StringIO()
    assert store.export("csv", out) == 3
    rows = list(csv.DictReader(io.StringIO(out.getvalue())))
    assert json.loads(rows[0]["cname_chain"]) == list(chain)
    assert rows[2]["cname_chain"] == ""
