"""Retention by age and by size removes old events and the side rows only they used."""

import dataclasses
import time
from pathlib import Path

from sqlalchemy import func, insert, select

from egresswatch.model import Event
from egresswatch.store import EventFilter, Store, open_store
from egresswatch.store.schema import (
    AlertRow,
    DnsAnswerRow,
    EventRow,
    Executable,
    Hostname,
    NameBinding,
    Process,
)
from tests.store.factory import dns_response, mixed, process, tls_hello

DAY = 86_400.0


def write(store: Store, events: list[Event]) -> None:
    writer = store.writer(batch_interval=0.02)
    assert all(writer.submit(e) for e in events)
    assert writer.flush(30)


def count(store: Store, entity: type) -> int:
    with store.engine.connect() as conn:
        return int(conn.execute(select(func.count()).select_from(entity)).scalar_one())


def names(store: Store) -> set[str]:
    with store.engine.connect() as conn:
        return set(conn.execute(select(Hostname.name)).scalars())


def test_age_limit_deletes_old_events_and_their_orphans(store: Store) -> None:
    now = time.time()
    old_proc = process(pid=11, exe="/opt/old/bin", exe_sha256="aa" * 32, tool=None)
    new_proc = process(pid=22)
    old = [dns_response(now - 10 * DAY + i, f"old{i}.example", old_proc) for i in range(20)]
    new = [tls_hello(now - DAY + i, "huggingface.co", new_proc) for i in range(5)]
    write(store, old + new)
    with store.engine.begin() as conn:
        old_id = conn.execute(select(func.min(EventRow.id))).scalar_one()
        conn.execute(
            insert(AlertRow).values(
                first_ts=now,
                last_ts=now,
                count=1,
                rule="r",
                severity="info",
                message="m",
                event_id=old_id,
                acknowledged=False,
                dedup_key="k",
            )
        )
    result = store.apply_retention(max_age_days=7)
    assert result.events_deleted == 20
    assert result.side_rows_deleted > 0
    assert [s.event for s in store.query_events(EventFilter(), 100)] == new
    assert count(store, DnsAnswerRow) == 0
    assert count(store, Process) == 1
    assert count(store, Executable) == 1
    assert count(store, NameBinding) == 1  # the SNI binding of the recent hello
    assert names(store) == {"huggingface.co"}
    with store.engine.connect() as conn:
        assert conn.execute(select(AlertRow.event_id)).scalar_one() is None


def test_age_limit_keeps_the_node_label_of_the_remaining_events(store: Store) -> None:
    """A node's name is an interned label used by nothing else: retention must not orphan it."""
    now = time.time()
    old = [dns_response(now - 10 * DAY + i, f"old{i}.example", process(pid=11)) for i in range(5)]
    new = [tls_hello(now - DAY + i, "huggingface.co", process(pid=22)) for i in range(3)]
    on_node = [dataclasses.replace(e, node="box-only-here") for e in old + new]
    write(store, on_node)
    assert store.apply_retention(max_age_days=7).events_deleted == 5
    kept = [s.event for s in store.query_events(EventFilter(), 100)]
    assert [e.node for e in kept] == ["box-only-here"] * 3
    assert store.query_events(EventFilter(node="box-only-here"), 100)


def test_nothing_to_delete_changes_nothing(store: Store) -> None:
    events = mixed(30, start=time.time() - 60)
    write(store, events)
    result = store.apply_retention(max_age_days=1, max_bytes=10**12)
    assert (result.events_deleted, result.side_rows_deleted) == (0, 0)
    assert [s.event for s in store.query_events(EventFilter(), 100)] == events


def test_size_limit_keeps_the_newest_events_within_the_budget(tmp_path: Path) -> None:
    store = open_store(str(tmp_path / "size.db"))
    try:
        events = [
            dns_response(1e9 + i, f"host{i}.example.org", addr=f"10.1.{i // 250}.{i % 250}")
            for i in range(2000)
        ]
        write(store, events)
        size = store.stats().size_bytes
        assert size is not None
        budget = size // 2
        result = store.apply_retention(max_bytes=budget)
        assert result.size_after is not None and result.size_after <= budget
        kept = [s.event for s in store.query_events(EventFilter(), 10_000)]
        assert 500 < len(kept) < 1000
        assert kept == events[-len(kept) :]
        assert (tmp_path / "size.db").stat().st_size < size  # incremental vacuum gave pages back
    finally:
        store.close()


def test_retention_while_the_writer_runs_keeps_every_event(tmp_path: Path) -> None:
    """Retention deletes side rows the writer has cached; it must run on the writer thread."""
    store = open_store(str(tmp_path / "live.db"))
    try:
        writer = store.writer(batch_interval=0.02)
        now = time.time()
        write(store, [tls_hello(now - 30 * DAY, "gone.example", process(pid=5))])
        store.apply_retention(max_age_days=7)
        assert names(store) == set()
        again = [tls_hello(now + i, "gone.example", process(pid=5)) for i in range(10)]
        write(store, again)
        assert writer.counters().get("store.dropped.invalid", 0) == 0
        assert [s.event for s in store.query_events(EventFilter(), 100)] == again
    finally:
        store.close()
