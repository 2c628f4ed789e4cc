"""store.rows maps both ways: any Event written through the real writer into SQLite reads back
equal (every flag bit, optional field, DNS answer, hello part and process fact)."""

import uuid
from collections.abc import Iterator
from typing import get_args

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from egresswatch.model import (
    Attribution,
    AttributionMethod,
    ClientHello,
    DnsAnswer,
    DnsMessage,
    Event,
    FlowKey,
    Observation,
    ObservationKind,
    ProcessInfo,
    ProcessRef,
)
from egresswatch.store import Store, open_store
from egresswatch.store.reads import events_after, newest_id

TEXT = st.text(alphabet=st.characters(codec="utf-8", exclude_characters="\x00"), max_size=30)
OPT_TEXT = st.none() | TEXT
ADDR = st.ip_addresses().map(str)
PORT = st.integers(0, 65535)
BIG = st.integers(0, 2**31 - 1)


@st.composite
def processes(draw: st.DrawFn) -> ProcessInfo:
    return ProcessInfo(
        pid=draw(st.integers(1, 2**22)),
        name=draw(TEXT),
        exe=draw(OPT_TEXT),
        exe_sha256=draw(st.none() | st.binary(min_size=32, max_size=32).map(bytes.hex)),
        cmdline=tuple(draw(st.lists(TEXT, max_size=3))),
        user=draw(OPT_TEXT),
        ppid=draw(st.none() | st.integers(0, 2**22)),
        start_time=draw(st.none() | st.floats(0, 2e9)),
        ancestry=tuple(draw(st.lists(st.builds(ProcessRef, BIG, TEXT, OPT_TEXT), max_size=2))),
        netns=draw(st.none() | st.integers(0, 2**32)),
        container=draw(OPT_TEXT),
        tool=draw(OPT_TEXT),
        tool_reason=draw(OPT_TEXT),
    )


@st.composite
def dns_messages(draw: st.DrawFn, qname: str | None) -> DnsMessage:
    address = st.builds(DnsAnswer, st.just(qname or "") | TEXT, st.sampled_from(["A", "AAAA"]),
                        ADDR, BIG)  # fmt: skip
    other = st.builds(DnsAnswer, st.just(qname or "") | TEXT, st.sampled_from(["CNAME", "TXT"]),
                      OPT_TEXT, BIG)  # fmt: skip
    return DnsMessage(
        id=draw(st.integers(0, 65535)),
        is_response=draw(st.booleans()),
        opcode=draw(st.integers(0, 15)),
        qname=qname,
        qtype=draw(OPT_TEXT),
        rcode=draw(OPT_TEXT),
        truncated=draw(st.booleans()),
        answers=tuple(draw(st.lists(address | other, max_size=3))),
    )


@st.composite
def events(draw: st.DrawFn) -> Event:
    kind = draw(st.sampled_from(get_args(ObservationKind)))
    host = draw(st.none() | TEXT.map(lambda t: f"{t}.{uuid.uuid4().hex}"))  # new per example
    name = draw(st.none() | st.just(host) | TEXT)  # the packet's own name: qname or SNI
    flow = FlowKey(draw(st.sampled_from(["udp", "tcp"])), draw(ADDR), draw(PORT), draw(ADDR),
                   draw(PORT))  # fmt: skip
    hello = ClientHello(name, tuple(draw(st.lists(TEXT, max_size=3))), draw(st.integers(0, 65535)),
                        tuple(draw(st.lists(st.integers(0, 65535), max_size=3))),
                        draw(st.booleans()))  # fmt: skip
    observation = Observation(
        ts=draw(st.floats(1.6e9, 1.9e9)),
        kind=kind,
        flow=flow,
        dns=draw(dns_messages(name)) if kind == "dns" else None,
        dns_proto=draw(st.none() | st.sampled_from(["dns", "mdns", "llmnr"])),
        hello=hello if kind in ("tls", "quic") else None,
        quic_version=draw(st.none() | BIG),
        tunneled=draw(st.booleans()),
    )
    proc = draw(st.none() | processes())
    method = draw(st.none() | st.sampled_from(get_args(AttributionMethod)))
    category = None if host is None else draw(OPT_TEXT)
    classified = category is not None
    return Event(
        observation=observation,
        attribution=Attribution("exact" if proc else "unknown:" + draw(TEXT), proc, method),
        host=host,
        name_source=draw(
            st.none() | st.sampled_from(["sni", "quic-sni", "dns-same-pid", "dns-any", "dns"])
        ),
        name_conflict=draw(st.booleans()),
        category=category,
        catalog_entry=draw(OPT_TEXT) if classified else None,
        tool=draw(OPT_TEXT),
        name_candidates=tuple(draw(st.just([]) | st.lists(TEXT, min_size=2, max_size=3))),
        category_source=draw(OPT_TEXT) if classified else None,
        category_confidence=draw(st.none() | st.floats(0, 1)) if classified else None,
    )


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Store]:
    opened = open_store(str(tmp_path_factory.mktemp("rows") / "rows.db"))
    opened.writer(batch_interval=0.01)
    yield opened
    opened.close()


@settings(max_examples=150, deadline=None)
@given(event=events())
def test_any_event_reads_back_equal(store: Store, event: Event) -> None:
    before = newest_id(store.engine)
    writer = store.writer()
    assert writer.submit(event) and writer.flush(30)
    assert writer.counters().get("store.written") == writer.counters().get("store.submitted")
    (stored,) = events_after(store.engine, before)
    assert stored.event == event
