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
from egresswatch.report import render
from egresswatch.report.document import build_report
from egresswatch.report.signed import verify_report
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


def test_session_report_is_the_canonical_report_marked_unsigned_without_an_agent(
    sample_web: WebServer, sample_db: Path
) -> None:
    with sample_web.client() as client:
        sid = client.get("/api/sessions").json()["sessions"][1]["id"]
        got = client.get(f"/api/sessions/{sid}/report")
        md = client.get(f"/api/sessions/{sid}/report", params={"format": "md"})
        page = client.get(f"/api/sessions/{sid}/report", params={"format": "html"})
        by_session = client.get("/api/events", params={"session": sid}).json()["events"]
        missing = client.get("/api/sessions/999/report")
    envelope = got.json()
    report = envelope["report"]
    store = open_reader(str(sample_db))
    try:
        canonical = build_report(store.engine, sid)
        refused = [verify_report(d, store.engine) for d in (got.content, md.content, page.content)]
    finally:
        store.close()
    assert report["format"] == "egresswatch-session-report/1"
    assert report["evidence_sha256"] == canonical["evidence_sha256"]
    assert report["evidence"] == canonical["evidence"] and len(report["evidence"]) == len(
        HOSTILE_NAMES
    )
    assert report["session"]["verdict"] == "egress" and len(report["alerts"]) == 2
    assert sorted(e["event_id"] for e in by_session) == [e["event_id"] for e in report["evidence"]]
    assert envelope["signature"] is None and "no egresswatch agent" in envelope["unsigned"]
    assert got.headers["x-egresswatch-unsigned"].startswith("no egresswatch agent")
    assert missing.status_code == 404
    assert md.headers["content-type"].startswith("text/markdown")
    assert md.text.startswith("**UNSIGNED**: no egresswatch agent")
    body = md.text.replace(render.marker(canonical), "")  # the report's own marker comment
    assert re.search(r"(?<!\\)[<>]", body) is None  # every other angle bracket is escaped
    assert "\\<img src=x onerror=" in md.text
    assert page.headers["content-type"].startswith("text/html")
    assert "<img" not in page.text and "&lt;img src=x onerror=" in page.text
    assert '<p class="unsigned"><strong>UNSIGNED</strong>: no egresswatch agent' in page.text
    assert "script-src 'self'" in page.headers["content-security-policy"]
    assert [v.ok for v in refused] == [False] * 3  # verify refuses an unsigned report


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
