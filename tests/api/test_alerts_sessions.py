"""/api/alerts (+ ack), /api/sessions (+ start, stop) and the session report on a real store."""

import re
import shutil
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
import uvicorn

from egresswatch.api.app import create_app
from egresswatch.api.commands import Commands
from egresswatch.api.components import WebComponents
from egresswatch.api.feed import LiveFeed
from egresswatch.api.guard import GuardPolicy
from egresswatch.store import open_reader
from tests.api.server import HOSTILE_NAMES, WebServer, free_port, web_server


@pytest.fixture
def own_web(sample_db: Path, tmp_path: Path) -> Iterator[WebServer]:
    """A writable copy of the sample store, so acks and session changes stay in this test."""
    db = tmp_path / "events.db"
    shutil.copy(sample_db, db)
    with web_server(db) as server:
        yield server


def test_alerts_newest_first_filtered_and_acknowledged(own_web: WebServer) -> None:
    origin = {"Origin": own_web.url}
    with own_web.client() as client:
        alerts = client.get("/api/alerts").json()["alerts"]
        high = client.get("/api/alerts", params={"severity": "high"}).json()["alerts"]
        acked = client.post(f"/api/alerts/{alerts[-1]['id']}/ack", headers=origin)
        still_open = client.get("/api/alerts", params={"open": "true"}).json()["alerts"]
        missing = client.post("/api/alerts/9999/ack", headers=origin)
    assert [a["rule"] for a in alerts] == ["egress-during-session", "untrusted-destination"]
    assert [a["message"] for a in high] == [HOSTILE_NAMES[0]]
    assert acked.status_code == 200 and acked.json() == {"acknowledged": [alerts[-1]["id"]]}
    assert [a["id"] for a in still_open] == [alerts[0]["id"]]
    assert missing.status_code == 404 and missing.json()["error"] == "not_found"


def test_sessions_start_stop_and_verdicts(own_web: WebServer) -> None:
    origin = {"Origin": own_web.url}
    with own_web.client() as client:
        before = client.get("/api/sessions").json()["sessions"]
        started = client.post("/api/sessions", json={"label": "bench run"}, headers=origin)
        sid = started.json()["id"]
        stopped = client.post(f"/api/sessions/{sid}/stop", headers=origin)
        again = client.post(f"/api/sessions/{sid}/stop", headers=origin)
        foreign = client.post("/api/sessions", headers={"Origin": "http://evil.example"})
    assert [s["verdict"] for s in before] == ["open", "egress"]
    assert before[1]["label"] == HOSTILE_NAMES[2] and before[1]["alerts"] == 2
    assert started.status_code == 201 and started.json()["verdict"] == "open"
    assert stopped.json()["verdict"] == "clean" and stopped.json()["end"] is not None
    assert again.status_code == 409
    assert foreign.status_code == 403


def test_session_report_in_json_markdown_and_html(sample_web: WebServer) -> None:
    with sample_web.client() as client:
        sid = client.get("/api/sessions").json()["sessions"][1]["id"]
        report = client.get(f"/api/sessions/{sid}/report").json()
        md = client.get(f"/api/sessions/{sid}/report", params={"format": "md"})
        page = client.get(f"/api/sessions/{sid}/report", params={"format": "html"})
    assert report["session"]["verdict"] == "egress" and len(report["alerts"]) == 2
    assert report["evidence_total"] == len(report["evidence"]) == len(HOSTILE_NAMES)
    with sample_web.client() as client:
        by_session = client.get("/api/events", params={"session": sid}).json()["events"]
        none = client.get("/api/events", params={"session": 999}).json()["events"]
    assert sorted(e["event_id"] for e in by_session) == [e["event_id"] for e in report["evidence"]]
    assert none == []
    assert md.headers["content-type"].startswith("text/markdown")
    assert re.search(r"(?<!\\)[<>]", md.text) is None  # every angle bracket is escaped
    assert "\\<img src\\=x onerror\\=" in md.text
    assert page.headers["content-type"].startswith("text/html")
    assert "<img" not in page.text and "&lt;img src=x onerror=" in page.text
    assert "script-src 'self'" in page.headers["content-security-policy"]


def test_a_web_process_that_cannot_write_refuses_changes_and_says_why(sample_db: Path) -> None:
    """The app as `egresswatch run`'s unprivileged child builds it: commands without an engine."""
    store = open_reader(str(sample_db))
    components = WebComponents(
        store=store,
        feed=LiveFeed(store),
        guard=GuardPolicy(frozenset({"127.0.0.1"})),
        commands=Commands(None, "events.db is read-only"),
    )
    port = free_port()
    server = uvicorn.Server(uvicorn.Config(create_app(components), port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    try:
        while not server.started:
            time.sleep(0.05)
        base = f"http://127.0.0.1:{port}"
        refused = httpx.post(base + "/api/sessions", headers={"Origin": base})
        listed = httpx.get(base + "/api/sessions")
    finally:
        server.should_exit = True
        thread.join(10)
        store.close()
    assert refused.status_code == 503 and refused.json() == {
        "error": "store_unavailable",
        "detail": "this web process cannot change the store: events.db is read-only",
    }
    assert listed.status_code == 200
