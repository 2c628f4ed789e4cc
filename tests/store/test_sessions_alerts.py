"""Sessions and alerts go through the single writer, keep their evidence, dedup and read back."""

import threading
import time
from collections.abc import Sequence
from dataclasses import replace

from egresswatch.model import Alert, Event, ProcessRef
from egresswatch.store import Store
from egresswatch.store.alerts import AlertFilter, acknowledge, list_alerts, record_alert
from egresswatch.store.sessions import (
    NewSession,
    add_evidence,
    close_session,
    evidence_ids,
    get_session,
    latest_open,
    list_sessions,
    open_session,
    writing,
)
from tests.store.factory import process, tls_hello

HOSTILE = "evil\x1b[31m\u202e.example\x00"


def alert(host: str = "api.openai.com", session: int | None = None, ts: float = 1e9) -> Alert:
    return Alert(
        rule="egress-during-session",
        severity="critical",
        time=ts,
        message=f"ollama contacted {host}",
        session=session,
        tool="ollama",
        pid=812,
        process="ollama",
        exe="/usr/bin/ollama",
        exe_sha256="ab" * 32,
        host=host,
        category="cloud-llm-api",
    )


def record(store: Store, found: Alert) -> tuple[Alert, bool]:
    return writing(store.engine, lambda conn: record_alert(conn, found))


def post_and_wait(store: Store, job: object) -> object:
    done: list[object] = []
    writer = store.writer()
    assert writer.post(job, done.append)  # type: ignore[arg-type]
    assert writer.flush()
    return done[0]


def test_a_session_records_its_evidence_events_and_ends_with_verdict_egress(store: Store) -> None:
    writer = store.writer()
    written: list[tuple[int, Event]] = []
    got = threading.Event()

    def hook(pairs: Sequence[tuple[int, Event]]) -> None:
        written.extend(pairs)
        got.set()

    writer.on_written(hook)
    new = NewSession(start=100.0, trigger="manual", label="run", strict=True, tools=("ollama",))
    sid = post_and_wait(store, lambda conn: open_session(conn, new))
    assert isinstance(sid, int)
    events = [tls_hello(101.0 + i, "api.openai.com", process()) for i in range(3)]
    for event in events:
        assert writer.submit(event)
    assert writer.flush() and got.wait(5)
    assert [e for _, e in written] == events
    ids = [i for i, _ in written]
    post_and_wait(store, lambda conn: add_evidence(conn, sid, ids, 105.0))
    post_and_wait(store, lambda conn: add_evidence(conn, sid, ids[:1], 106.0))  # no double count
    assert post_and_wait(store, lambda conn: close_session(conn, sid, 110.0)) == "egress"
    assert post_and_wait(store, lambda conn: close_session(conn, sid, 111.0)) is None
    stored = get_session(store.engine, sid)
    assert stored is not None
    assert (stored.end, stored.verdict, stored.egress, stored.strict) == (110.0, "egress", 3, True)
    assert stored.tools == ("ollama",) and stored.label == "run"
    assert evidence_ids(store.engine, sid) == sorted(ids)


def test_a_session_without_egress_is_clean_and_open_ones_are_listed(store: Store) -> None:
    client = ProcessRef(7, HOSTILE, "/usr/bin/curl")
    first = writing(
        store.engine,
        lambda c: open_session(c, NewSession(start=1.0, trigger="auto", client=client)),
    )
    second = writing(store.engine, lambda c: open_session(c, NewSession(2.0, "manual")))
    assert writing(store.engine, lambda c: latest_open(c, "auto")) == first
    assert writing(store.engine, latest_open) == second
    assert writing(store.engine, lambda c: close_session(c, first, 5.0)) == "clean"
    sessions = list_sessions(store.engine)
    assert [(s.id, s.verdict) for s in sessions] == [(first, "clean"), (second, "open")]
    assert (
        sessions[0].client is not None
        and sessions[0].client.name == "evil\x1b[31m\u202e.example\\x00"
    )
    assert [s.id for s in list_sessions(store.engine, only_open=True)] == [second]
    assert [s.id for s in list_sessions(store.engine, since=10.0)] == [second]


def test_repeats_of_an_alert_are_one_row_with_a_count(store: Store) -> None:
    sid = writing(store.engine, lambda c: open_session(c, NewSession(1.0, "manual")))
    results = [record(store, alert(session=sid, ts=ts)) for ts in (10.0, 11.0, 12.0)]
    assert [new for _, new in results] == [True, False, False]
    unhashed = replace(alert(session=sid, ts=13.0), exe_sha256=None)  # its hash came later
    assert not record(store, unhashed)[1]
    other, new = writing(store.engine, lambda c: record_alert(c, alert(HOSTILE, session=sid)))
    assert new and other.id != results[0][0].id
    alerts = list_alerts(store.engine, AlertFilter(session=sid))
    assert [(a.host, a.count, a.time, a.last_time) for a in alerts] == [
        ("api.openai.com", 4, 10.0, 13.0),
        ("evil\x1b[31m\u202e.example\\x00", 1, 1e9, 1e9),
    ]
    assert list_sessions(store.engine)[0].alerts == 2


def test_alert_filters_and_acknowledgement(store: Store) -> None:
    now = time.time()
    low = Alert("new-destination", "low", now - 100, "m", host="a.example")
    high = Alert("exposed-api", "high", now, "m", host="b.example")
    stored = [record(store, a)[0] for a in (low, high)]
    ids = [a.id for a in stored]
    assert ids[0] is not None and ids[1] is not None
    engine = store.engine
    assert [a.rule for a in list_alerts(engine, AlertFilter(severity="medium"))] == ["exposed-api"]
    assert [a.rule for a in list_alerts(engine, AlertFilter(since=now - 10))] == ["exposed-api"]
    assert acknowledge(engine, [ids[1], 999]) == [ids[1]]
    assert [a.rule for a in list_alerts(engine, AlertFilter(only_open=True))] == ["new-destination"]
