"""`egresswatch db retention` run by the owner of a shared PostgreSQL store (docs/fleet.md's
roles): old events and blocks go, recent ones stay, the per-minute rollup stays exact, and an
agent writing at the same time with the names it has cached loses nothing."""

import json
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import replace
from typing import Any

import pytest
from sqlalchemy import Engine, func, select

from egresswatch.model import Event
from egresswatch.store import EventFilter, Store, open_store
from egresswatch.store.schema import EventBlock, EventRow, Hostname, Process, TimelineMinute
from egresswatch.store.shared import open_agent_store
from egresswatch.store.status import AgentStatus, write_status
from egresswatch.store.writer import EventWriter
from tests.store.factory import dns_query, process, tls_hello
from tests.store.test_shared_pg import Shared, _doc_sql, _superuser, shared

pytestmark = [pytest.mark.postgres, pytest.mark.timeout(300)]
__all__ = ["shared"]  # the fixture, imported
DAY = 86_400.0
HOSTS = [f"h{i}.fleet.example" for i in range(40)]
OLD_HOSTS = [f"old{i}.fleet.example" for i in range(40)]  # only old events refer to these
OLD2_HOSTS = [f"older{i}.fleet.example" for i in range(20)]


@pytest.fixture
def fleet(shared: Shared) -> Iterator[Shared]:
    """The shared database migrated by its owner and granted to its agent role as documented."""
    open_store(shared.owner_url).close()
    grants = _doc_sql("sql grants", shared.database).replace(
        "ALTER DEFAULT PRIVILEGES", f"ALTER DEFAULT PRIVILEGES FOR ROLE {shared.database}_owner"
    )
    _superuser(grants, shared.database)
    yield shared


def events_at(start: float, n: int, pid: int = 7, hosts: list[str] = HOSTS) -> list[Event]:
    """n events over the same hosts and process (what an agent interns once and caches)."""
    proc = process(pid=pid, name=f"tool{pid}")
    out: list[Event] = []
    for i in range(n):
        host = hosts[i % len(hosts)]
        made = tls_hello(start + i * 0.5, host, proc) if i % 2 else dns_query(start + i * 0.5, host)
        out.append(replace(made, node="box-a"))
    return out


def retention(url: str, *args: str) -> dict[str, Any]:
    done = subprocess.run(
        [sys.executable, "-m", "egresswatch", "db", "retention", "--db", url, "--json", *args],
        capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    report: dict[str, Any] = json.loads(done.stdout)
    return report


def submit(writer: EventWriter, events: list[Event]) -> None:
    assert all(writer.submit(e) for e in events)
    assert writer.flush(60)


def count(engine: Engine, entity: type, *where: object) -> int:
    with engine.connect() as conn:
        query = select(func.count()).select_from(entity).where(*where)  # type: ignore[arg-type]
        return int(conn.execute(query).scalar_one())


def assert_rollup_exact(engine: Engine) -> None:
    """Every dimension's per-minute counts are the events' own."""
    with engine.connect() as conn:
        minute = func.floor(EventRow.ts / 60).label("m")
        counted = conn.execute(select(minute, func.count()).group_by(minute)).all()
        events: dict[int, int] = {int(m): int(c) for m, c in counted}
        dims = conn.execute(select(TimelineMinute.dimension).distinct()).scalars().all()
        assert dims, "no rollup rows"
        for dim in dims:
            rolled = conn.execute(
                select(TimelineMinute.minute, func.sum(TimelineMinute.count))
                .where(TimelineMinute.dimension == dim, TimelineMinute.count != 0)
                .group_by(TimelineMinute.minute)
            ).all()
            assert {int(m): int(c) for m, c in rolled} == events


def test_owner_trims_old_events_while_an_agent_writes(fleet: Shared) -> None:
    now = time.time()
    agent = open_agent_store(fleet.agent_url)
    owner = open_store(fleet.owner_url, upgrade=False)
    try:
        writer = agent.writer(batch_interval=0.02)
        submit(writer, events_at(now - 30 * DAY, 400, pid=9, hosts=OLD_HOSTS))
        kept = events_at(now - 2 * DAY, 100)
        submit(writer, kept)
        dry = retention(fleet.owner_url, "--max-age-days", "7", "--dry-run")
        assert dry["events_deleted"] == 400 and count(owner.engine, EventRow) == 500
        # The agent runs on with OLD_HOSTS and process 9 in its cache; no event refers to
        # them after this, until the agent writes them again.
        reports = [retention(fleet.owner_url, "--max-age-days", "7")]
        fresh = events_at(time.time(), 40, 9, OLD_HOSTS)
        submit(writer, fresh)
        submit(writer, events_at(now - 20 * DAY, 200, pid=10, hosts=OLD2_HOSTS))
        stop = threading.Event()

        def keep_writing() -> None:  # cached host and process ids, all the time
            while not stop.is_set():
                batch = events_at(time.time(), 40) + events_at(time.time(), 40, 9, OLD_HOSTS)
                fresh.extend(batch)
                submit(writer, batch)

        thread = threading.Thread(target=keep_writing)
        thread.start()
        try:
            reports += [retention(fleet.owner_url, "--max-age-days", "7") for _ in range(2)]
        finally:
            stop.set()
            thread.join(60)
        counters = writer.counters()
    finally:
        agent.close()
    try:
        assert [r["events_deleted"] for r in reports] == [400, 200, 0]
        assert reports[0]["blocks_deleted"] >= 1
        assert all(r["side_rows_deleted"] is None for r in reports)
        assert not any(k.startswith(("store.error", "store.dropped")) for k in counters), counters
        stored = [s.event for s in owner.query_events(EventFilter(), limit=100_000)]

        def by_ts(events: list[Event]) -> list[Event]:
            return sorted(events, key=lambda e: e.observation.ts)

        assert len(fresh) >= 120  # nothing lost, nothing written twice, nothing old left:
        assert by_ts(stored) == by_ts(kept + fresh)
        assert count(owner.engine, EventBlock, EventBlock.last_ts < now - 7 * DAY) == 0
        assert count(owner.engine, Hostname) == len(HOSTS + OLD_HOSTS + OLD2_HOSTS)  # kept
        assert count(owner.engine, Process) >= 3
        assert_rollup_exact(owner.engine)
    finally:
        owner.close()


def test_side_rows_need_the_agents_stopped(fleet: Shared) -> None:
    now = time.time()
    agent = open_agent_store(fleet.agent_url)
    try:
        submit(agent.writer(batch_interval=0.02), events_at(now - 30 * DAY, 80))
        status = AgentStatus(pid=1, started=now, updated=now, last_event_ts=None, queue_depth=0,
                             counters={}, node="box-a")  # fmt: skip
        write_status(agent.engine, status)
    finally:
        agent.close()
    args = ["--max-age-days", "7", "--side-rows"]
    refused = subprocess.run(
        [sys.executable, "-m", "egresswatch", "db", "retention", "--db", fleet.owner_url, *args],
        capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip
    owner: Store = open_store(fleet.owner_url, upgrade=False)
    try:
        assert refused.returncode == 1 and "box-a" in refused.stderr, refused.stderr
        assert count(owner.engine, EventRow) == 80  # refused before deleting anything
        write_status(owner.engine, replace(status, updated=now - 600))  # the agent stopped
        report = retention(fleet.owner_url, *args)
        assert report["events_deleted"] == 80 and report["side_rows_deleted"] >= len(HOSTS)
        assert count(owner.engine, Hostname) == 0 and count(owner.engine, EventRow) == 0
    finally:
        owner.close()
