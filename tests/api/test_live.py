"""Health, metrics and the live stream of a store that a real writer is filling meanwhile."""

import json
import queue
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from egresswatch.counters import Counters
from egresswatch.heartbeat import Heartbeat
from egresswatch.store import open_store
from egresswatch.store.database import Store
from egresswatch.store.status import AgentStatus, read_status, write_status
from tests.api.server import WebServer, web_server
from tests.store.factory import process, tls_hello


@pytest.fixture
def live(tmp_path: Path) -> Iterator[tuple[Store, WebServer]]:
    db = tmp_path / "live.db"
    store = open_store(str(db))
    store.writer(batch_interval=0.05)
    try:
        with web_server(db) as server:
            yield store, server
    finally:
        store.close()


def sse_events(server: WebServer, out: "queue.Queue[tuple[float, dict[str, object]]]",
               ready: threading.Event) -> None:  # fmt: skip
    with httpx.stream("GET", server.url + "/api/stream", timeout=30) as response:
        assert response.headers["content-type"].startswith("text/event-stream")
        kind = ""
        for line in response.iter_lines():
            if line.startswith(": connected"):
                ready.set()
            if line.startswith("event: "):
                kind = line[7:]
            if line.startswith("data: ") and kind == "event":
                out.put((time.monotonic(), json.loads(line[6:])))
                return


def test_a_stored_event_reaches_the_stream_within_a_second(
    live: tuple[Store, WebServer],
) -> None:
    store, server = live
    got: queue.Queue[tuple[float, dict[str, object]]] = queue.Queue()
    ready = threading.Event()
    reader = threading.Thread(target=sse_events, args=(server, got, ready), daemon=True)
    reader.start()
    assert ready.wait(10)
    writer = store.writer()
    assert writer.submit(tls_hello(time.time(), "live.example.org", process()))
    assert writer.flush(10)
    stored_at = time.monotonic()
    arrived, record = got.get(timeout=5)
    assert record["host"] == "live.example.org" and record["event_id"]
    assert arrived - stored_at < 1.0


def test_health_and_metrics_read_the_agents_heartbeat(live: tuple[Store, WebServer]) -> None:
    store, server = live
    with server.client() as client:
        before = client.get("/api/health").json()
        assert before["status"] == "no-agent" and before["agent"] is None
        counters = Counters()
        for name, n in (
            ("capture.dropped.queue_full", 3),
            ("agent.emitted.tls", 5),
            ("agent.attribution.no-socket", 2),
            ("store.error.disk_full", 1),
        ):
            counters.add(name, n)  # fmt: skip
        writer = store.writer()
        assert writer.submit(tls_hello(time.time() - 5, "beat.example.org", process()))
        assert writer.flush(10)
        Heartbeat(store, lambda: counters, lambda: 7, threading.Event()).beat()
        health = client.get("/api/health").json()
        metrics = client.get("/metrics").text
    assert health["status"] == "ok"
    agent = health["agent"]
    assert agent["queue_depth"] == 7 and agent["counters"]["agent.emitted.tls"] == 5
    assert agent["last_event_ts"] == pytest.approx(time.time() - 5, abs=3)
    assert 'egresswatch_capture_dropped_total{reason="queue_full"} 3.0' in metrics
    assert 'egresswatch_attribution_total{result="no-socket"} 2.0' in metrics
    assert 'egresswatch_store_errors_total{kind="disk_full"} 1.0' in metrics
    assert 'egresswatch_agent_events_total{kind="tls"} 5.0' in metrics
    assert "egresswatch_queue_depth 7.0" in metrics
    assert 'egresswatch_events_by_tool_total{tool="ollama"} 1.0' in metrics


def test_health_says_stale_when_the_agent_stopped_writing(live: tuple[Store, WebServer]) -> None:
    store, server = live
    beat = Heartbeat(store, Counters, lambda: 0, threading.Event())
    beat.started = time.time() - 100
    beat.beat()
    old = read_status(store.engine)
    assert old is not None
    aged = AgentStatus(old.pid, old.started, time.time() - 60, None, 0, old.counters)
    store.writer().call(lambda: write_status(store.engine, aged))
    with server.client() as client:
        assert client.get("/api/health").json()["status"] == "stale"


def test_a_reconnecting_client_gets_what_it_missed(live: tuple[Store, WebServer]) -> None:
    store, server = live
    writer = store.writer()
    for i in range(3):
        assert writer.submit(tls_hello(time.time(), f"missed{i}.example.org", process()))
    assert writer.flush(10)
    hosts = []
    headers = {"Last-Event-ID": "0"}
    with httpx.stream("GET", server.url + "/api/stream", headers=headers, timeout=10) as response:
        for line in response.iter_lines():
            if line.startswith("data: "):
                hosts.append(json.loads(line[6:])["host"])
            if len(hosts) == 3:
                break
    assert hosts == [f"missed{i}.example.org" for i in range(3)]


def test_metrics_show_the_agents_spool(live: tuple[Store, WebServer]) -> None:
    store, server = live
    counters = Counters()
    for name, n in (
        ("spool.bytes", 4096),
        ("spool.batches", 3),
        ("spool.dropped", 9),
        ("spool.drained", 1500),
        ("writer.retries", 4),
        ("store.submitted", 2000),
        ("store.written", 1500),
    ):
        counters.add(name, n)  # fmt: skip
    Heartbeat(store, lambda: counters, lambda: 0, threading.Event()).beat()
    with server.client() as client:
        metrics = client.get("/metrics").text
    assert "egresswatch_spool_bytes 4096.0" in metrics
    assert "egresswatch_spool_batches 3.0" in metrics
    assert "egresswatch_spool_dropped_events_total 9.0" in metrics
    assert "egresswatch_spool_drained_events_total 1500.0" in metrics
    assert "egresswatch_store_retries_total 4.0" in metrics
    assert "egresswatch_store_lag_events 491.0" in metrics  # the dropped 9 are settled
