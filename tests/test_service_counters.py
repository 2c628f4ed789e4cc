"""Every counter reaches `run`'s summary: the attributor's own (its contained errors) included.

The agent is fed from a capture file: file and live capture share one Frame type.
"""

import threading
from pathlib import Path

import pytest

from egresswatch.alerts.policy import load_policy
from egresswatch.capture.frame import Frame
from egresswatch.capture.pcapfile import read_frames
from egresswatch.classify.catalog import load_catalog
from egresswatch.config import Settings
from egresswatch.counters import Counters
from egresswatch.daemon import build_service
from egresswatch.model import Attribution, FlowKey
from egresswatch.store.database import open_store
from tests.conftest import corpus_capture, load_expected

CAPTURE = "ndpi__dns"  # five DNS messages


class ContainingAttributor:
    """Like ProcessResolver: never raises, counts its own faults in `counters`."""

    def __init__(self) -> None:
        self.counters = Counters()

    def attribute(
        self,
        flow: FlowKey,
        ts: float,
        *,
        ifindex: int = 0,
        local: str = "auto",
        new_connection: bool = False,
    ) -> Attribution:
        self.counters.add("attribute.errors")
        return Attribution("unknown:lookup-error")


@pytest.mark.corpus
def test_service_counters_include_the_attributors(tmp_path: Path, corpus_dir: Path) -> None:
    store = open_store(f"sqlite:///{tmp_path / 'events.db'}")
    attributor = ContainingAttributor()
    service = build_service(
        Settings(), store, load_catalog(), attributor, threading.Event(), policy=load_policy()
    )
    try:
        frames: list[Frame] = list(read_frames(corpus_capture(CAPTURE)))
        events = [event for frame in frames for event in service.agent.handle(frame)]
        counters = service.counters()
    finally:
        store.close()
    dns_events = [e for e in events if e.observation.kind == "dns"]
    assert len(dns_events) == len(load_expected(CAPTURE)["dns"]) == 5
    assert counters.get("attribute.errors") == attributor.counters.get("attribute.errors") > 0
    assert counters.get("agent.emitted.dns") == 5
