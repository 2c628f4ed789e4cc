"""The alert engine on a real store: committed events -> session evidence, deduplicated alerts
stored through the single writer, a real webhook receiver, the idle timeout of auto sessions."""

import dataclasses
import threading
import time
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path

import pytest

from egresswatch.alerts.engine import AlertEngine
from egresswatch.alerts.held import HeldFindings
from egresswatch.alerts.owners import ConnectionOwners
from egresswatch.alerts.policy import load_policy
from egresswatch.alerts.rules import Listener, RuleSet
from egresswatch.alerts.sinks import Delivery
from egresswatch.alerts.webhook import WebhookSink
from egresswatch.bus import Bus
from egresswatch.model import Alert, Attribution, Event, FlowKey, Observation, ProcessRef
from egresswatch.sessions.tracker import SessionTracker
from egresswatch.store import Store, open_store
from egresswatch.store.alerts import AlertFilter, list_alerts
from egresswatch.store.sessions import (
    NewSession,
    close_session,
    evidence_ids,
    get_session,
    open_session,
    writing,
)
from tests.alerts.receiver import Received, receiver
from tests.store.factory import process, tls_hello

CURL = process(900, tool=None, name="curl", exe="/usr/bin/curl")
OLLAMA = process(812, tool="Ollama", name="ollama", exe="/usr/bin/ollama")
EXPOSED = Listener("Ollama", 812, "ollama", "/usr/bin/ollama", "0.0.0.0", 11434)


class Running:
    def __init__(self, store: Store, got: Received, idle: float = 120.0) -> None:
        self.store = store
        self.writer = store.writer()
        self.feed: Bus[object] = Bus()
        self.published: list[object] = []
        self.feed.subscribe(self.published.append)
        self.tracker = SessionTracker(self.writer, store.engine, idle)
        self.delivery = Delivery([(WebhookSink(got.url), "low")]).start()
        self.engine = AlertEngine(
            self.writer,
            tracker=self.tracker,
            rules=RuleSet(load_policy()),
            delivery=self.delivery,
            feed=self.feed,
            stop=threading.Event(),
            scanner=self.listeners,
        )
        self.writer.on_written(self.engine.offer)
        self.engine.start()

    def listeners(self) -> Mapping[int, Sequence[Listener]]:
        return {11434: [EXPOSED]}

    def alerts(self, rule: str, count: int = 1, timeout: float = 10.0) -> list[Alert]:
        deadline = time.monotonic() + timeout
        while True:
            self.writer.flush()
            found = [a for a in list_alerts(self.store.engine, AlertFilter()) if a.rule == rule]
            if sum(a.count for a in found) >= count or time.monotonic() > deadline:
                return found
            time.sleep(0.05)


@pytest.fixture
def running(tmp_path: Path) -> Iterator[tuple[Running, Received]]:
    store = open_store(str(tmp_path / "events.db"))
    with receiver() as got:
        run = Running(store, got)
        yield run, got
        run.engine.drain(5)
        run.delivery.close()
    store.close()


def test_egress_in_a_strict_session_is_one_alert_with_a_count_and_evidence(
    running: tuple[Running, Received],
) -> None:
    run, got = running
    before = tls_hello(time.time() - 30, "api.openai.com", CURL, category="cloud-llm-api")
    new = NewSession(time.time() - 10, "manual", strict=True)
    sid = writing(run.store.engine, lambda conn: open_session(conn, new))
    run.tracker.refresh()
    assert run.writer.submit(before)
    now = time.time()
    for i in range(5):
        run.writer.submit(tls_hello(now + i, "api.openai.com", CURL, category="cloud-llm-api"))
    (alert,) = run.alerts("egress-during-session", count=5)
    assert (alert.count, alert.session, alert.pid, alert.process) == (5, sid, 900, "curl")
    assert (alert.severity, alert.host, alert.category) == (
        "critical",
        "api.openai.com",
        "cloud-llm-api",
    )
    assert got.wait(2)
    bodies = [b for b in got.json_bodies() if b["rule"] == "egress-during-session"]
    assert len(bodies) == 1 and bodies[0]["session"] == sid and bodies[0]["id"] == alert.id
    assert any(isinstance(p, Alert) and p.rule == "egress-during-session" for p in run.published)
    run.writer.flush()
    deadline = time.monotonic() + 5
    while len(evidence_ids(run.store.engine, sid)) < 5 and time.monotonic() < deadline:
        time.sleep(0.05)
    assert len(evidence_ids(run.store.engine, sid)) == 5  # not the event before the session
    assert writing(run.store.engine, lambda conn: close_session(conn, sid, time.time())) == "egress"
    stored = get_session(run.store.engine, sid)
    assert stored is not None and stored.alerts >= 1 and stored.verdict == "egress"


def test_without_a_session_the_same_request_raises_no_session_alert(
    running: tuple[Running, Received],
) -> None:
    run, _got = running
    run.writer.submit(tls_hello(time.time(), "api.openai.com", CURL, category="cloud-llm-api"))
    assert run.alerts("exposed-api")  # the engine ran: the listener check fired
    run.writer.flush()
    run.engine.drain(2)
    run.writer.flush()
    assert run.alerts("egress-during-session", timeout=0) == []


def test_an_exposed_listener_alerts_once(running: tuple[Running, Received]) -> None:
    run, got = running
    (alert,) = run.alerts("exposed-api")
    assert alert.host == "0.0.0.0:11434" and alert.tool == "Ollama" and alert.severity == "high"
    run.engine.check_listeners()
    run.writer.flush()
    assert run.alerts("exposed-api", timeout=0)[0].count == 1
    assert got.wait(1) and got.json_bodies()[0]["rule"] == "exposed-api"


def test_an_automatic_session_closes_after_the_idle_timeout(tmp_path: Path) -> None:
    store = open_store(str(tmp_path / "events.db"))
    clock = [time.time()]
    tracker = SessionTracker(store.writer(), store.engine, 120.0, clock=lambda: clock[0])
    server = ProcessRef(812, "ollama", "/usr/bin/ollama")
    opened = tracker.inference("Ollama", server, None, "llama3", clock[0])
    assert opened is not None
    again = tracker.inference("Ollama", server, None, None, clock[0] + 60)
    assert again is not None and again.id == opened.id
    clock[0] += 150
    assert tracker.expire() == []  # 90 s since the last request
    clock[0] += 40
    assert tracker.expire() == [opened.id]
    store.writer().flush()
    closed = get_session(store.engine, opened.id)
    assert closed is not None and closed.verdict == "clean" and closed.model == "llama3"
    assert closed.end == pytest.approx(opened.start + 60)
    store.close()


def test_findings_of_an_unnamed_connection_wait_for_its_hello() -> None:
    held = HeldFindings(hold_seconds=2.0, limit=2)
    first, second, third = (FlowKey("tcp", "10.0.0.2", p, "192.0.2.1", 443) for p in (1, 2, 3))
    finding = Alert("egress-during-session", "critical", 1.0, "m", host="192.0.2.1")
    assert held.hold(first, [finding], now=0.0) == []
    assert held.hold(second, [finding], now=0.5) == []
    held.named(first)  # its ClientHello came: the hello's own findings stand for it
    assert held.due(now=2.0) == []
    assert held.due(now=2.5) == [finding]
    assert held.hold(first, [finding], 3.0) == [] and held.hold(second, [finding], 3.0) == []
    assert held.hold(third, [finding], 3.0) == [finding]  # over the bound: the oldest goes now


def test_a_hello_whose_lookup_failed_is_charged_to_the_connections_opener() -> None:
    owners = ConnectionOwners()
    hello = tls_hello(2.0, "api.openai.com", None, category="cloud-llm-api")
    flow = hello.observation.flow
    syn = Event(Observation(1.0, "flow", flow), Attribution("exact", OLLAMA))
    assert owners.fill(syn) is syn
    filled = owners.fill(hello)
    assert filled.attribution.process == OLLAMA and filled.tool == "Ollama"
    other = dataclasses.replace(flow, sport=flow.sport + 1)
    stranger = dataclasses.replace(
        hello, observation=dataclasses.replace(hello.observation, flow=other)
    )
    assert owners.fill(stranger).attribution.process is None


def test_held_findings_are_released_when_the_hello_finds_nothing() -> None:
    held = HeldFindings()
    flow = FlowKey("tcp", "10.0.0.2", 1, "192.0.2.1", 443)
    finding = Alert("egress-during-session", "critical", 1.0, "m", host="192.0.2.1")
    held.hold(flow, [finding], now=0.0)
    assert held.release(flow) == [finding] and held.due(now=10.0) == []
