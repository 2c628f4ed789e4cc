"""Fleet node: events, sessions and alerts carry the agent's node, filter by it, keep NULL for
rows stored before revision 0006, and each node keeps its own status row."""

from dataclasses import replace
from pathlib import Path

import pytest
from sqlalchemy import text

from egresswatch.model import Alert, Event
from egresswatch.record import event_to_dict
from egresswatch.store import EventFilter, Store, migrate
from egresswatch.store.alerts import AlertFilter, list_alerts, record_alert
from egresswatch.store.engine import make_engine, resolve_url
from egresswatch.store.sessions import NewSession, latest_open, list_sessions, open_session
from egresswatch.store.status import AgentStatus, read_status, read_statuses, write_status
from tests.store.factory import backend_url, dns_query, process, tls_hello

T0 = 1_763_900_000.0


def _write(store: Store, events: list[Event]) -> None:
    writer = store.writer()
    assert all(writer.submit(e) for e in events)
    assert writer.flush(30)


def test_events_keep_their_node_and_filter_by_it(store: Store) -> None:
    proc = process()
    events = [
        replace(tls_hello(T0, "huggingface.co", proc), node="box-a"),
        replace(dns_query(T0 + 1, "q.example.net", proc), node="box-b"),
        replace(tls_hello(T0 + 2, "hf.co", proc), node="box-a"),
        tls_hello(T0 + 3, "old.example.org", proc),  # a record without a node
        replace(tls_hello(T0 + 4, "evil.example", proc), node="<b>x</b>'\"; DROP"),
    ]
    _write(store, events)
    stored = [s.event for s in store.query_events(EventFilter(), limit=100)]
    assert stored == events
    assert [e.node for e in stored] == ["box-a", "box-b", "box-a", None, "<b>x</b>'\"; DROP"]
    only_a = store.query_events(EventFilter(node="box-a"), limit=100)
    assert [s.event.host for s in only_a] == ["huggingface.co", "hf.co"]
    assert store.query_events(EventFilter(node="nowhere"), limit=100) == []
    assert event_to_dict(only_a[0].event)["node"] == "box-a"
    assert event_to_dict(stored[3])["node"] is None


def test_sessions_and_alerts_carry_their_node(store: Store) -> None:
    with store.engine.begin() as conn:
        a = open_session(conn, NewSession(T0, "auto", tools=("ollama",), node="box-a"))
        b = open_session(conn, NewSession(T0 + 1, "auto", tools=("ollama",), node="box-b"))
        alert = Alert("egress-during-session", "high", T0, "m", tool="ollama", host="h.example")
        first, new_a = record_alert(conn, replace(alert, node="box-a"))
        _, new_b = record_alert(conn, replace(alert, node="box-b"))
        again, repeat = record_alert(conn, replace(alert, node="box-a", time=T0 + 5))
        assert latest_open(conn, "auto", node="box-a") == a
        assert latest_open(conn, "auto", node="box-b") == b
    # the same finding on two nodes is two alerts; on one node it is a repeat
    assert new_a and new_b and not repeat and again.id == first.id and again.count == 2
    sessions = list_sessions(store.engine)
    assert [(s.id, s.node) for s in sessions] == [(a, "box-a"), (b, "box-b")]
    assert [s.id for s in list_sessions(store.engine, node="box-b")] == [b]
    alerts = list_alerts(store.engine, AlertFilter(node="box-a"))
    assert [(x.node, x.count) for x in alerts] == [("box-a", 2)]
    assert {x.node for x in list_alerts(store.engine, AlertFilter())} == {"box-a", "box-b"}


def test_each_node_keeps_its_own_status_row(store: Store) -> None:
    _write(store, [replace(tls_hello(T0, "hf.co", process()), node="box-a")])

    def status(node: str, updated: float, depth: int) -> AgentStatus:
        return AgentStatus(100, T0, updated, None, depth, {"agent.emitted.tls": depth}, node)

    write_status(store.engine, status("box-a", T0 + 10, 1))
    write_status(store.engine, status("box-b", T0 + 20, 2))
    write_status(store.engine, status("box-a", T0 + 30, 3))  # replaces box-a's row only
    rows = read_statuses(store.engine)
    assert [(s.node, s.queue_depth, s.updated) for s in rows] == [
        ("box-a", 3, T0 + 30),
        ("box-b", 2, T0 + 20),
    ]
    # box-a's last event is its own; box-b stored none
    assert rows[0].last_event_ts == T0 and rows[1].last_event_ts is None
    b = read_status(store.engine, node="box-b")
    assert b is not None and b.queue_depth == 2
    newest = read_status(store.engine)
    assert newest is not None and newest.node == "box-a"


@pytest.mark.parametrize(
    "backend", ["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)]
)
def test_rows_stored_before_0006_have_no_node(backend: str, tmp_path: Path) -> None:
    url = backend_url(backend, tmp_path)
    engine = make_engine(resolve_url(url))
    try:
        migrate.upgrade(engine, "0005")
        with engine.begin() as conn:
            conn.execute(
                text(
                    "INSERT INTO sessions (started, trigger, strict, tools, serving, egress) "
                    "VALUES (1.0, 'manual', false, '[]', '[]', 0)"
                )
            )
            conn.execute(
                text(
                    "INSERT INTO agent_status (name, pid, started, updated, queue_depth, counters)"
                    " VALUES ('agent', 1, 1.0, 2.0, 0, '{}')"
                )
            )
        migrate.upgrade(engine)
        assert migrate.current_revision(engine) == migrate.head_revision(engine)
        with engine.connect() as conn:
            assert conn.execute(text("SELECT node FROM sessions")).scalar_one() is None
            assert conn.execute(text("SELECT count(*) FROM agent_status")).scalar_one() == 0
        migrate.downgrade(engine, "0005")
        migrate.upgrade(engine)
    finally:
        engine.dispose()
