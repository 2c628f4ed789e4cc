"""kill -9 of a spooling writer (issue #9): the database stays sound, a restarted writer drains
what was left, nothing is written twice and at most about a second of events is lost."""

import signal
import sqlite3
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pytest
from sqlalchemy import create_engine, text

from egresswatch.store import open_store
from egresswatch.store.spool import Spool
from tests.store.factory import mixed
from tests.store.pg_cluster import throwaway_cluster

REPO = Path(__file__).resolve().parents[2]
RATE = 2000


def child(db: str, spool: Path, rate: int) -> "subprocess.Popen[str]":
    return subprocess.Popen(
        [sys.executable, "-m", "tests.store.spool_child", db, str(spool), str(rate)],
        cwd=REPO, stdout=subprocess.PIPE, text=True,
    )  # fmt: skip


def report(line: str) -> dict[str, int]:
    words = line.split()
    return {words[i]: int(words[i + 1]) for i in range(0, len(words) - 1, 2)}


def read_until(
    proc: "subprocess.Popen[str]", done: Callable[[dict[str, int]], bool]
) -> dict[str, int]:
    """Reads reports until `done` says so ({} on the child's "done")."""
    assert proc.stdout is not None
    deadline = time.monotonic() + 90.0
    while time.monotonic() < deadline:
        line = proc.stdout.readline()
        assert line, "the spool child exited early"
        if line.strip() == "done":
            return {}
        seen = report(line)
        if done(seen):
            return seen
    pytest.fail("the spool child never got there")


def kill(proc: "subprocess.Popen[str]") -> None:
    proc.send_signal(signal.SIGKILL)
    proc.wait(10)
    assert proc.stdout is not None
    proc.stdout.close()


def drain_again(db: str, spool: Path) -> None:
    proc = child(db, spool, 0)
    try:
        read_until(proc, lambda seen: False)  # returns on "done"
        assert proc.wait(30) == 0
    finally:
        if proc.poll() is None:
            kill(proc)
        elif proc.stdout is not None:
            proc.stdout.close()


def test_kill_9_mid_drain_on_postgres_writes_nothing_twice(tmp_path: Path) -> None:
    spool = tmp_path / "s.spool"
    with throwaway_cluster() as cluster:
        open_store(cluster.url).close()
        proc = child(cluster.url, spool, RATE)
        try:
            read_until(proc, lambda seen: seen["written"] > RATE)
            cluster.stop()
            try:
                read_until(proc, lambda seen: seen["spooled"] > 4 * RATE)
            finally:
                cluster.start()
            # kill it while the spool is being drained (new events keep arriving meanwhile)
            last = read_until(proc, lambda seen: seen["drained"] > 0 and seen["batches"] > 0)
        finally:
            kill(proc)
        left = Spool(spool)
        found = left.snapshot()
        left.close()
        assert found["spool.batches"] > 0  # killed mid-drain, so there is something to re-drain
        drain_again(cluster.url, spool)
        engine = create_engine(cluster.url)
        with engine.connect() as conn:
            stamps = [r[0] for r in conn.execute(text("SELECT ts FROM events ORDER BY id"))]
        engine.dispose()
    assert len(stamps) == len(set(stamps))  # nothing twice
    assert stamps == sorted(stamps)  # and in order
    assert last["submitted"] - len(stamps) <= RATE  # at most ~1 s of events lost


def test_kill_9_under_load_on_sqlite_keeps_it_sound(tmp_path: Path) -> None:
    db, spool = str(tmp_path / "events.db"), tmp_path / "s.spool"
    proc = child(db, spool, RATE)
    try:
        last = read_until(proc, lambda seen: seen["written"] > 2 * RATE)
    finally:
        kill(proc)
    drain_again(db, spool)
    conn = sqlite3.connect(db)
    try:
        assert conn.execute("PRAGMA integrity_check").fetchall() == [("ok",)]
        stamps = [int(ts) for (ts,) in conn.execute("SELECT ts FROM events ORDER BY id")]
    finally:
        conn.close()
    assert stamps == list(range(len(stamps)))  # once each, in order, no gap
    assert last["submitted"] - len(stamps) <= RATE


def test_a_batch_drained_twice_is_written_once(tmp_path: Path) -> None:
    """The crash window itself: committed, but killed before the spool forgot the batch."""
    db, events = str(tmp_path / "events.db"), mixed(50)
    skipped = []
    for attempt in range(2):  # the second writer is the one after the restart
        spool = Spool(tmp_path / f"s{attempt}.spool")
        spool.append("node:1:abc:7", events)
        store = open_store(db)
        writer = store.writer(spool=spool)
        deadline = time.monotonic() + 10
        while writer.counters().get("spool.batches", 1) and time.monotonic() < deadline:
            time.sleep(0.05)
        skipped.append(writer.counters().get("spool.duplicates_skipped", 0))
        assert store.stats().counts["events"] == 50
        store.close()
    assert skipped == [0, 50]


def test_a_batch_split_before_is_redone_event_by_event(tmp_path: Path) -> None:
    """A batch once isolated event by event (ids `id/n`), killed half way: only the rest goes in."""
    db, events = str(tmp_path / "events.db"), mixed(3)
    spool = Spool(tmp_path / "s.spool")
    spool.append("node:1:abc:9/0", events[:1])  # what the first run managed before dying
    spool.append("node:1:abc:9", events)  # the whole batch, drained again after the restart
    store = open_store(db)
    writer = store.writer(spool=spool)
    deadline = time.monotonic() + 10
    while writer.counters().get("spool.batches", 1) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert writer.counters()["spool.duplicates_skipped"] == 1
    stored = [e.event.observation.ts for e in store.query_events(limit=10)]
    store.close()
    assert sorted(stored) == sorted(e.observation.ts for e in events)
