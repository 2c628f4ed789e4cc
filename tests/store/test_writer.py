"""The writer under stress: locked, killed, full or read-only databases never block or kill it."""

import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest

from egresswatch.errors import StoreError
from egresswatch.store import EventFilter, open_store
from egresswatch.store.writer import EventWriter
from tests.store.factory import mixed, need_root_mount, tls_hello, tmpfs

REPO = Path(__file__).resolve().parents[2]


def submit_all(writer: EventWriter, n: int, start: float = 1e9) -> tuple[int, float]:
    """Submit n events; returns how many were accepted and the slowest submit in seconds."""
    accepted, slowest = 0, 0.0
    for event in mixed(n, start=start):
        t = time.perf_counter()
        accepted += writer.submit(event)
        slowest = max(slowest, time.perf_counter() - t)
    return accepted, slowest


def test_submit_never_blocks_and_counts_drops_while_the_database_is_locked(tmp_path: Path) -> None:
    store = open_store(str(tmp_path / "locked.db"))
    writer = store.writer(max_buffer=50, batch_interval=0.01, batch_size=20)
    blocker = sqlite3.connect(tmp_path / "locked.db", isolation_level=None)
    blocker.execute("BEGIN IMMEDIATE")  # holds the write lock, like a stuck second writer
    try:
        accepted, slowest = submit_all(writer, 500)
        assert slowest < 0.05
        assert 50 <= accepted <= 50 + 20 + 1  # the queue plus the batch the writer holds
        assert writer.counters()["store.dropped.queue_full"] == 500 - accepted
        assert not writer.flush(0.3)
    finally:
        blocker.execute("ROLLBACK")
        blocker.close()
    assert writer.flush(30)
    assert writer.counters()["store.written"] == accepted
    assert len(store.query_events(EventFilter(), 1000)) == accepted
    store.close()


def test_close_writes_what_is_queued(tmp_path: Path) -> None:
    store = open_store(str(tmp_path / "close.db"))
    writer = store.writer(batch_interval=5.0)
    accepted, _ = submit_all(writer, 300)
    store.close()
    assert writer.counters()["store.written"] == accepted == 300
    assert not writer.submit(mixed(1)[0])
    reopened = open_store(str(tmp_path / "close.db"))
    assert reopened.stats().counts["events"] == 300
    reopened.close()


def test_kill_9_under_load_keeps_a_sound_database_and_loses_under_a_second(tmp_path: Path) -> None:
    db, rate = tmp_path / "killed.db", 3000
    child = subprocess.Popen(
        [sys.executable, "-m", "tests.store.writer_child", str(db), str(rate)],
        cwd=REPO,
        stdout=subprocess.PIPE,
        text=True,
    )
    assert child.stdout is not None
    last = child.stdout.readline()  # the child is up (imports, migrations): 3 s of writing
    deadline = time.monotonic() + 3.0
    try:
        while time.monotonic() < deadline:
            line = child.stdout.readline()
            assert line, "the writer child exited early"
            last = line
    finally:
        child.send_signal(signal.SIGKILL)
        child.wait(10)
        child.stdout.close()
    _, committed, _, submitted = last.split()
    committed_n, submitted_n = int(committed), int(submitted)
    assert committed_n > rate  # it really was writing under load
    conn = sqlite3.connect(db)
    try:
        assert conn.execute("PRAGMA integrity_check").fetchall() == [("ok",)]
        stamps = [int(ts) for (ts,) in conn.execute("SELECT ts FROM events ORDER BY ts")]
    finally:
        conn.close()
    # Whole batches survive: the stored events are exactly the first N submitted.
    assert stamps == list(range(len(stamps)))
    assert len(stamps) >= committed_n
    assert submitted_n - len(stamps) <= rate  # at most ~1 s of submitted events lost
    store = open_store(str(db))  # and the agent can carry on with it
    assert store.stats().counts["events"] == len(stamps)
    store.close()


def test_full_disk_buffers_bounded_counts_drops_and_resumes(tmp_path: Path) -> None:
    with tmpfs(tmp_path / "fs", "2m") as fs:
        store = open_store(str(fs / "events.db"))
        writer = store.writer(max_buffer=200, batch_interval=0.02, batch_size=100)
        assert submit_all(writer, 100)[0] == 100
        assert writer.flush(30)
        filler = fs / "filler"
        _fill(filler)
        accepted, slowest = 0, 0.0
        for i in range(6):  # new names each round need new pages, which cannot be had
            ok, slow = submit_all(writer, 400, start=2e9 + i * 1000)
            accepted, slowest = accepted + ok, max(slowest, slow)
            time.sleep(0.25)
        counters = writer.counters()
        assert counters.get("store.error.disk_full", 0) >= 1
        assert writer.last_error is not None and writer.last_error.startswith("disk_full")
        assert counters["store.dropped.queue_full"] == 2400 - accepted > 0
        assert accepted <= 200 + 100 + 100  # queue + the batch being retried + one written
        assert slowest < 0.05
        filler.unlink()  # space returns
        assert writer.flush(30)
        assert writer.last_error is None
        assert writer.counters()["store.written"] == 100 + accepted
        assert store.stats().counts["events"] == 100 + accepted
        with store.engine.connect() as conn:
            assert conn.exec_driver_sql("PRAGMA integrity_check").scalar() == "ok"
        store.close()


def _fill(path: Path) -> None:
    with path.open("wb", buffering=0) as f:
        for size in (65536, 4096, 512):
            try:
                while True:
                    f.write(b"\0" * size)
            except OSError:
                continue


def test_read_only_directory_fails_to_open_with_a_clear_error(tmp_path: Path) -> None:
    need_root_mount()
    rw, ro = tmp_path / "rw", tmp_path / "ro"
    rw.mkdir()
    ro.mkdir()
    store = open_store(str(rw / "events.db"))
    store.writer().submit(tls_hello(1e9))
    store.close()
    subprocess.run(["mount", "--bind", str(rw), str(ro)], check=True)
    try:
        subprocess.run(["mount", "-o", "remount,bind,ro", str(ro)], check=True)
        with pytest.raises(StoreError, match=r"cannot open the event store .*read-only"):
            open_store(str(ro / "events.db"))
    finally:
        subprocess.run(["umount", str(ro)], check=False)


def test_read_only_database_counts_errors_and_drops_without_crashing(tmp_path: Path) -> None:
    path = tmp_path / "ro.db"
    open_store(str(path)).close()
    store = open_store(f"sqlite:///file:{path}?mode=ro&uri=true")
    writer = store.writer(max_buffer=30, batch_interval=0.01, batch_size=10)
    accepted, slowest = submit_all(writer, 200)
    time.sleep(0.5)
    counters = writer.counters()
    assert counters.get("store.error.read_only", 0) >= 1
    assert writer.last_error is not None and "readonly" in writer.last_error
    assert counters["store.dropped.queue_full"] == 200 - accepted
    assert slowest < 0.05
    assert writer._thread.is_alive()
    store.close()
    assert writer.counters()["store.dropped.shutdown"] == accepted
