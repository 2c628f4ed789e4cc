"""classified_event: an event gets category, source and confidence; the store keeps them."""

from pathlib import Path

from egresswatch.classify.catalog import load_catalog
from egresswatch.classify.verdict import classified_event
from egresswatch.model import Attribution, ClientHello, Event, FlowKey, Observation
from egresswatch.output import event_to_dict
from egresswatch.store import EventFilter, open_store
from tests.store.factory import process

CATALOG = load_catalog()
T0 = 1_763_900_000.0


def _hello(host: str | None, dst: str, tool: str | None) -> Event:
    hello = ClientHello(host, ("h2",), 0x0303, (0x0304,), False)
    obs = Observation(T0, "tls", FlowKey("tcp", "10.0.0.2", 50000, dst, 443), hello=hello)
    proc = process(tool=tool, tool_reason="its script imports gradio") if tool else None
    status = "exact" if proc else "unknown:no-socket"
    return Event(obs, Attribution(status, proc), host=host, name_source="sni", tool=tool)


def test_the_tool_that_sent_it_decides_the_role() -> None:
    event = classified_event(
        CATALOG, _hello("api.gradio.app", "203.0.113.9", "Gradio apps (library)")
    )
    assert (event.category, event.category_source) == ("update-check", "catalog")
    assert event.category_confidence == 1.0
    assert event.catalog_entry == "api.gradio.app"


def test_an_unnamed_loopback_flow_is_local_and_a_cname_passes_a_category_on() -> None:
    local = classified_event(CATALOG, _hello(None, "127.0.0.1", None))
    assert (local.category, local.category_source) == ("local", "address")
    via = classified_event(
        CATALOG, _hello("m.example.net", "203.0.113.9", None), ("m.example.net", "cdn-lfs.hf.co")
    )
    assert (via.category, via.category_source) == ("model-cdn", "cname")


def test_the_record_and_the_store_keep_how_it_was_decided(tmp_path: Path) -> None:
    event = classified_event(
        CATALOG, _hello("huggingface.co", "203.0.113.9", "Gradio apps (library)")
    )
    record = event_to_dict(event)
    assert record["category"] == "telemetry"
    assert record["category_source"] == "catalog"
    assert record["category_confidence"] == 1.0
    assert record["tool_reason"] == "its script imports gradio"
    store = open_store(str(tmp_path / "events.db"))
    try:
        writer = store.writer()
        assert writer.submit(event)
        assert writer.flush(30)
        (stored,) = [s.event for s in store.query_events(EventFilter(), limit=10)]
    finally:
        store.close()
    assert (stored.category, stored.category_source) == ("telemetry", "catalog")
    assert stored.category_confidence == 1.0
    assert stored.attribution.process is not None
    assert stored.attribution.process.tool_reason == "its script imports gradio"
