"""The writer through a PostgreSQL outage (issue #9), on a throwaway cluster of its own: events
are spooled while the server is down and drained in order once it is back, each exactly once;
a spool bound is respected and the loss counted exactly; an agent can start while it is down.

The main outage lasts the issue's 30 s; the bound test's lasts SHORT_OUTAGE (the back-off doubles
from 0.2 s to its 5 s cap within 5 failed retries, so 8 s already covers retries at the cap).
"""

import threading
import time
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import pytest
from sqlalchemy import create_engine, text

from egresswatch.model import Event
from egresswatch.store import open_store
from egresswatch.store.shared import open_agent_store
from egresswatch.store.spool import Spool, encode
from egresswatch.store.writer import EventWriter
from tests.store.factory import mixed
from tests.store.pg_cluster import Cluster, throwaway_cluster

pytestmark = pytest.mark.postgres
OUTAGE = 30.0
SHORT_OUTAGE = 8.0
RATE = 400  # events/s


def with_ts(event: Event, ts: float) -> Event:
    return replace(event, observation=replace(event.observation, ts=ts))


@pytest.fixture(scope="module")
def cluster() -> Iterator[Cluster]:
    with throwaway_cluster() as made:
        open_store(made.url).close()  # migrated once, to the newest revision
        yield made


@pytest.fixture
def clean(cluster: Cluster) -> Cluster:
    engine = create_engine(cluster.url)
    with engine.begin() as conn:
        names = conn.execute(
            text("SELECT tablename FROM pg_tables WHERE schemaname = 'public'")
        ).scalars()
        tables = ", ".join(n for n in names if n != "alembic_version")
        conn.execute(text(f"TRUNCATE {tables} CASCADE"))
    engine.dispose()
    return cluster


class Feeder(threading.Thread):
    """Submits event i (ts = i) at RATE per second until stopped."""

    def __init__(self, writer: EventWriter) -> None:
        super().__init__(daemon=True)
        self.writer, self.stop, self.submitted, self.refused = writer, threading.Event(), 0, 0
        self.template = mixed(64)

    def run(self) -> None:
        started = time.monotonic()
        while not self.stop.is_set():
            due = int((time.monotonic() - started) * RATE)
            while self.submitted < due:
                event = with_ts(self.template[self.submitted % 64], float(self.submitted))
                if not self.writer.submit(event):
                    self.refused += 1
                self.submitted += 1
            time.sleep(0.005)


def stored_ts(url: str) -> list[float]:
    engine = create_engine(url)
    with engine.connect() as conn:
        rows = [r[0] for r in conn.execute(text("SELECT ts FROM events ORDER BY id"))]
    engine.dispose()
    return rows


def wait_drained(writer: EventWriter, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if writer.flush(1.0) and writer.counters().get("spool.batches", 0) == 0:
            return
        time.sleep(0.2)
    pytest.fail(f"spool not drained: {dict(writer.counters())}")


def run_outage(
    cluster: Cluster, spool: Spool, outage: float = OUTAGE
) -> tuple[EventWriter, Feeder]:
    engine = create_engine(cluster.url, pool_pre_ping=True)
    writer = EventWriter(engine, spool=spool).start()
    feeder = Feeder(writer)
    feeder.start()
    time.sleep(1.5)
    cluster.stop()
    try:
        time.sleep(outage)
    finally:
        cluster.start()
    time.sleep(1.5)
    feeder.stop.set()
    feeder.join()
    wait_drained(writer)
    writer.close()
    engine.dispose()
    return writer, feeder


def test_outage_loses_nothing_and_writes_nothing_twice(clean: Cluster, tmp_path: Path) -> None:
    writer, feeder = run_outage(clean, Spool(tmp_path / "s.spool"))
    counters = writer.counters()
    assert feeder.refused == 0
    assert counters["spool.spooled"] > RATE * (OUTAGE - 1)  # the outage did go to the spool
    assert counters["writer.retries"] >= 4
    assert stored_ts(clean.url) == [float(i) for i in range(feeder.submitted)]  # once, in order
    assert counters["spool.drained"] == counters["spool.spooled"]
    assert counters.get("spool.dropped", 0) == 0


def test_tiny_bound_counts_exactly_what_it_dropped(clean: Cluster, tmp_path: Path) -> None:
    bound = len(encode("x" * 40, mixed(64))) * 6  # a few batches' worth
    writer, feeder = run_outage(
        clean, Spool(tmp_path / "s.spool", max_bytes=bound), outage=SHORT_OUTAGE
    )
    counters = writer.counters()
    stored = stored_ts(clean.url)
    dropped = counters["spool.dropped"]
    assert dropped > RATE  # the outage outgrew the bound
    assert len(stored) == len(set(stored))  # nothing twice
    assert len(stored) + dropped == feeder.submitted  # and every loss counted
    assert stored == sorted(stored)  # the oldest were kept, drained first


def test_agent_starts_while_the_server_is_down(clean: Cluster, tmp_path: Path) -> None:
    clean.stop()
    try:
        store = open_agent_store(clean.url, allow_unreachable=True)
        assert store.pending_check is not None
        writer = store.writer(spool=Spool(tmp_path / "s.spool"))
        events = [with_ts(e, float(i)) for i, e in enumerate(mixed(300))]
        for event in events:
            assert writer.submit(event)
        assert writer.flush(5.0)
        time.sleep(0.5)
        assert writer.counters()["spool.spooled"] == 300
    finally:
        clean.start()
    wait_drained(writer)
    store.close()
    assert stored_ts(clean.url) == [float(i) for i in range(300)]
