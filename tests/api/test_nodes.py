"""A fleet store read through the real web process and CLI: every record names its node, and
/api/events, /api/alerts, /api/sessions, /api/timeline, /api/health and `events`/`export` filter
or group by it."""

import csv
import io
import json
import time
from dataclasses import replace
from pathlib import Path

from egresswatch.model import Alert
from egresswatch.store import open_store
from egresswatch.store.alerts import record_alert
from egresswatch.store.sessions import NewSession, open_session
from egresswatch.store.status import AgentStatus, write_status
from tests.api.server import egresswatch, web_server, write_events
from tests.store.factory import dns_query, process, tls_hello

HOSTILE_NODE = "<img src=x onerror=alert(1)>"


def fleet_db(db: Path, now: float) -> None:
    proc = process()
    events = [
        replace(tls_hello(now - 60, "huggingface.co", proc), node="box-a"),
        replace(dns_query(now - 50, "q.example.net", proc), node="box-b"),
        replace(tls_hello(now - 40, "hf.co", proc), node="box-a"),
        replace(tls_hello(now - 30, "cdn.example.org", proc), node=HOSTILE_NODE),
        tls_hello(now - 20, "before-nodes.example.org", proc),
    ]
    write_events(db, events)
    store = open_store(str(db))
    try:
        with store.engine.begin() as conn:
            open_session(conn, NewSession(now - 55, "auto", tools=("ollama",), node="box-a"))
            open_session(conn, NewSession(now - 45, "auto", tools=("ollama",), node="box-b"))
            alert = Alert("untrusted-destination", "high", now - 40, "m", host="hf.co")
            record_alert(conn, replace(alert, node="box-a"))
            record_alert(conn, replace(alert, node="box-b"))
        for node, updated in (("box-a", now), ("box-b", now - 3600)):
            status = AgentStatus(1, now - 100, updated, None, 0, {}, node)
            write_status(store.engine, status)
    finally:
        store.close()


def test_api_shows_filters_and_groups_by_node(tmp_path: Path) -> None:
    db = tmp_path / "events.db"
    now = time.time()
    fleet_db(db, now)
    with web_server(db) as server, server.client() as client:
        every = client.get("/api/events", params={"since": "1h"}).json()["events"]
        only_a = client.get("/api/events", params={"node": "box-a"}).json()["events"]
        hostile = client.get("/api/events", params={"node": HOSTILE_NODE}).json()["events"]
        alerts = client.get("/api/alerts", params={"node": "box-b"}).json()["alerts"]
        sessions = client.get("/api/sessions", params={"node": "box-a"}).json()["sessions"]
        timeline = client.get("/api/timeline", params={"since": "1h", "group": "node"}).json()
        health = client.get("/api/health").json()
        metrics = client.get("/metrics").text
        too_long = client.get("/api/events", params={"node": "x" * 254})
    assert [e["node"] for e in every] == [None, HOSTILE_NODE, "box-a", "box-b", "box-a"]
    assert [e["host"] for e in only_a] == ["hf.co", "huggingface.co"]
    assert [e["host"] for e in hostile] == ["cdn.example.org"]
    assert [(a["node"], a["host"]) for a in alerts] == [("box-b", "hf.co")]
    assert [s["node"] for s in sessions] == ["box-a"]
    assert timeline["group"] == "node"
    assert sorted(timeline["groups"], key=str) == sorted(
        ["box-a", "box-b", HOSTILE_NODE, None], key=str
    )
    per_node = {p["group"]: 0 for p in timeline["points"]}
    for point in timeline["points"]:
        per_node[point["group"]] += point["count"]
    assert per_node == {"box-a": 2, "box-b": 1, HOSTILE_NODE: 1, None: 1}
    assert health["status"] == "ok" and health["agent"]["node"] == "box-a"
    assert [(n["node"], n["status"]) for n in health["nodes"]] == [
        ("box-a", "ok"),
        ("box-b", "stale"),
    ]
    assert too_long.status_code in {400, 422}
    ages = {
        line.split('"')[1]: float(line.split()[-1])
        for line in metrics.splitlines()
        if line.startswith("egresswatch_node_status_age_seconds{")
    }
    assert set(ages) == {"box-a", "box-b"} and ages["box-a"] < 60 < 3000 < ages["box-b"]


def test_cli_events_and_export_filter_by_node(tmp_path: Path) -> None:
    db = tmp_path / "events.db"
    fleet_db(db, time.time())
    shown = egresswatch("events", "--db", str(db), "--node", "box-a", "--json")
    records = [json.loads(line) for line in shown.stdout.splitlines()]
    assert [(r["node"], r["host"]) for r in records] == [
        ("box-a", "huggingface.co"),
        ("box-a", "hf.co"),
    ]
    alerts = egresswatch("alerts", "--db", str(db), "--node", "box-a", "--json")
    assert [json.loads(line)["node"] for line in alerts.stdout.splitlines()] == ["box-a"]
    sessions = egresswatch("sessions", "--db", str(db), "--node", "box-b", "--json")
    assert [json.loads(line)["node"] for line in sessions.stdout.splitlines()] == ["box-b"]
    none = egresswatch("events", "--db", str(db), "--node", "box-z", check=False)
    assert none.returncode == 1
    out = tmp_path / "b.csv"
    egresswatch(
        "export", "--db", str(db), "--node", "box-b", "--format", "csv", "--output", str(out)
    )
    rows = list(csv.DictReader(io.StringIO(out.read_text(), newline="")))
    assert [(r["node"], r["qname"]) for r in rows] == [("box-b", "q.example.net")]
