"""The store's single writer thread: a bounded queue in, batched transactions out.

`submit` never blocks the pipeline: when the queue is full the event is dropped and counted.
When the database cannot be written (read-only, disk full, server gone) the current batch is
kept and retried with back-off while new events queue up to the bound, so memory stays bounded.
Other writes (sessions, alerts) come in as jobs through `post`, and `on_written` callbacks learn
each committed event's id.

With a `Spool` (store/spool.py, the agent's `run`), a batch the server cannot take is appended to
the spool instead and the writer goes on collecting; the server is retried with back-off and,
once back, the spool is drained oldest first before any new batch is written. Every batch then
carries a unique id recorded in `ingest_batches` in the same transaction as its events, so a
batch drained twice (a crash after the commit, before the spool forgot it) is skipped.
Jobs are not spooled: they wait in memory (MAX_JOBS) while the server is down and are counted in
`store.jobs.dropped` when that overflows or the agent stops first.
"""

import contextlib
import logging
import os
import queue
import socket
import threading
import time
from collections import deque
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import Future
from typing import Any, TypeVar
from uuid import uuid4

from sqlalchemy import Connection, Engine, insert, select
from sqlalchemy.exc import OperationalError, SQLAlchemyError

from egresswatch.counters import Counters
from egresswatch.errors import StoreError
from egresswatch.model import Event
from egresswatch.store.ingest import Ingest
from egresswatch.store.schema import IngestBatch
from egresswatch.store.spool import Spool

log = logging.getLogger(__name__)
T = TypeVar("T")
Written = Callable[[Sequence[tuple[int, Event]]], None]
Job = Callable[[Connection], Any]

BATCH_SIZE = 500
BATCH_INTERVAL = 0.2
CHECKPOINT_INTERVAL = 1.0
MAX_BUFFER = 50_000
MAX_JOBS = 10_000
RETRY_MIN, RETRY_MAX = 0.2, 5.0
LOG_REPEAT = 60.0


def failure_kind(exc: BaseException) -> str:
    """A short counter key for why a write failed (SQLite message or PostgreSQL SQLSTATE)."""
    orig = getattr(exc, "orig", exc)
    state = getattr(orig, "sqlstate", None) or ""
    text = str(orig).lower()
    if "full" in text or state == "53100":
        return "disk_full"
    if "readonly" in text or "read-only" in text or state == "25006":
        return "read_only"
    if "unable to open" in text:
        return "cannot_open"
    if "i/o error" in text:
        return "io_error"
    if "locked" in text or "busy" in text:
        return "locked"
    return "unavailable" if isinstance(exc, OperationalError) else "other"


class EventWriter:
    """Owns the only write connection to the store; see the module docstring."""

    def __init__(
        self,
        engine: Engine,
        *,
        batch_size: int = BATCH_SIZE,
        batch_interval: float = BATCH_INTERVAL,
        max_buffer: int = MAX_BUFFER,
        checkpoint_interval: float = CHECKPOINT_INTERVAL,
        spool: Spool | None = None,
        ready_check: Callable[[], None] | None = None,
    ) -> None:
        self._engine = engine
        self._spool = spool
        # run once the server answers, before anything is written (an agent started while the
        # shared store was unreachable has not checked its schema yet)
        self._ready_check = ready_check
        self._down = ready_check is not None
        self._retry_at = 0.0
        self._delay = RETRY_MIN
        self._down_logged_at = 0.0
        self._instance = f"{socket.gethostname()[:40]}:{os.getpid()}:{uuid4().hex[:12]}"
        self._seq = 0
        self._draining = False  # writing a spooled batch: it may have been committed before
        self._spool_counters: dict[str, int] = {} if spool is None else spool.snapshot()
        self._batch_size = batch_size
        self._interval = batch_interval
        self._checkpoint_interval = checkpoint_interval
        # None wakes the thread for a posted job (see `post`); it is never written.
        self._queue: queue.Queue[Event | None] = queue.Queue(maxsize=max_buffer)
        self._ingest = Ingest()
        self._counters = Counters()
        self._lock = threading.Lock()
        self._progress = threading.Condition(self._lock)
        self._accepted = 0
        self._settled = 0  # written, or given up on at shutdown
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="egresswatch-store", daemon=True)
        self._last_error: str | None = None
        self._last_checkpoint = time.monotonic()
        self._calls: queue.SimpleQueue[tuple[Callable[[], Any], Future[Any]]] = queue.SimpleQueue()
        self._jobs: deque[tuple[Job, Callable[[Any], None] | None]] = deque()
        self._written_hooks: list[Written] = []
        self._jobs_logged_at = 0.0

    # -- producer side ---------------------------------------------------------------------

    def start(self) -> "EventWriter":
        self._thread.start()
        return self

    def submit(self, event: Event) -> bool:
        """Queue `event` for writing; False (and a counted drop) when the buffer is full."""
        with self._lock:
            if self._stop.is_set():
                self._counters.add("store.dropped.closed")
                return False
            try:
                self._queue.put_nowait(event)
            except queue.Full:
                self._counters.add("store.dropped.queue_full")
                return False
            self._accepted += 1
            self._counters.add("store.submitted")
        return True

    def post(self, job: Job, then: Callable[[Any], None] | None = None) -> bool:
        """Run `job(conn)` in its own transaction on the writer thread, then `then(result)`.

        Never blocks: False (and a counted drop) when MAX_JOBS are already waiting.
        """
        with self._lock:
            if self._stop.is_set() or len(self._jobs) >= MAX_JOBS:
                self._counters.add("store.jobs.dropped")
                return False
            self._jobs.append((job, then))
            self._accepted += 1
        with contextlib.suppress(queue.Full):  # a full queue wakes the thread anyway
            self._queue.put_nowait(None)
        return True

    def on_written(self, hook: Written) -> None:
        """Call `hook([(event_id, event), ...])` on the writer thread after each commit."""
        self._written_hooks.append(hook)

    def flush(self, timeout: float = 10.0) -> bool:
        """Wait until everything submitted so far is committed; False on timeout."""
        with self._progress:
            target = self._accepted
            return self._progress.wait_for(lambda: self._settled >= target, timeout)

    def close(self, timeout: float = 10.0) -> None:
        """Write what is queued (for up to `timeout` seconds), then stop the thread."""
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(timeout)
        lost = self._queue.qsize()
        if lost:
            log.error("event store closed with %d events unwritten", lost)
            with self._lock:
                self._counters.add("store.dropped.shutdown", lost)

    def call(self, action: Callable[[], T], timeout: float = 300.0) -> T:
        """Run `action` on the writer thread between batches (e.g. retention), return its result.

        Other writers would invalidate the interning caches; running here keeps one writer.
        """
        if not self._thread.is_alive():
            return action()
        future: Future[T] = Future()
        self._calls.put((action, future))
        return future.result(timeout)

    def counters(self) -> Mapping[str, int]:
        with self._lock:
            values = dict(self._counters.snapshot())
            if self._spool is not None:
                values.update(self._spool_counters)
            return values

    @property
    def last_error(self) -> str | None:
        """The latest write failure while it lasts (None once writes succeed again)."""
        return self._last_error

    # -- writer thread ---------------------------------------------------------------------

    def _run(self) -> None:
        if self._spool is not None:
            try:
                self._run_spooled(self._spool)
            finally:
                self._spool.close()
            return
        pending: list[Event] = []
        while True:
            self._run_calls()
            self._run_jobs()
            if not pending:
                pending = self._collect()
            if not pending:
                if self._stop.is_set():
                    self._run_jobs()
                    return
                continue
            try:
                done = self._commit(pending)
            except Exception:
                # The containment point of the store: a bug must not kill the only writer.
                log.exception("event store writer failed on a batch; dropping it")
                self._give_up(pending, "store.dropped.bug")
                done = True
            if done:
                pending = []
            elif self._stop.is_set():
                self._give_up(pending, "store.dropped.shutdown")
                return

    def _collect(self) -> list[Event]:
        try:
            first = self._queue.get(timeout=0.1)
        except queue.Empty:
            return []
        if first is None:
            return []  # a job was posted: run it now
        batch = [first]
        deadline = time.monotonic() + self._interval
        while len(batch) < self._batch_size:
            try:
                item = self._queue.get_nowait()
            except queue.Empty:
                item = None
            if item is not None:
                batch.append(item)
                continue
            remaining = deadline - time.monotonic()
            if remaining <= 0 or self._stop.is_set() or self._jobs:
                break
            # Short waits: close() must not wait out a long batch interval.
            time.sleep(min(remaining, 0.02))
        return batch

    def _commit(self, batch: Sequence[Event]) -> bool:
        """Write `batch` in one transaction, retrying with back-off on failure; True once done."""
        delay = RETRY_MIN
        logged_at = 0.0
        while True:
            try:
                written = self._write_or_isolate(batch)
            except OperationalError as exc:
                logged_at = self._report(exc, logged_at)
                self._run_calls()
                if self._stop.wait(delay):
                    return False
                delay = min(delay * 2, RETRY_MAX)
                continue
            self._settle(batch, written, logged_at)
            return True

    def _write_or_isolate(
        self, batch: Sequence[Event], batch_id: str | None = None
    ) -> list[tuple[int, Event]]:
        try:
            return self._write(batch, batch_id)
        except OperationalError:
            raise
        except (SQLAlchemyError, ValueError, KeyError, TypeError):
            return self._write_one_by_one(batch, batch_id)

    def _write(
        self, batch: Sequence[Event], batch_id: str | None = None
    ) -> list[tuple[int, Event]]:
        """Commit `batch` ([] when `batch_id` was committed before: nothing is written twice)."""
        try:
            with self._engine.begin() as conn:
                if batch_id is not None and not _claim(conn, batch_id, len(batch), self._draining):
                    with self._lock:
                        self._counters.add("spool.duplicates_skipped", len(batch))
                    return []
                ids = self._ingest.write_ids(conn, batch)
                return list(zip(ids, batch, strict=True))
        except BaseException:
            self._ingest.forget()
            raise

    def _write_one_by_one(
        self, batch: Sequence[Event], batch_id: str | None = None
    ) -> list[tuple[int, Event]]:
        """A batch that fails for a reason other than the database's state: isolate bad events."""
        written: list[tuple[int, Event]] = []
        for n, event in enumerate(batch):
            try:
                written += self._write([event], None if batch_id is None else f"{batch_id}/{n}")
            except OperationalError:
                raise
            except (SQLAlchemyError, ValueError, KeyError, TypeError) as exc:
                log.warning("event store rejected an event: %s", exc)
                with self._lock:
                    self._counters.add("store.dropped.invalid")
        return written

    def _settle(
        self, batch: Sequence[Event], written: list[tuple[int, Event]], logged_at: float
    ) -> None:
        if logged_at:
            log.warning("event store writable again; resuming")
        self._last_error = None
        self._tell_written(written)
        with self._progress:
            self._counters.add("store.written", len(written))
            self._counters.add("store.batches")
            self._settled += len(batch)
            self._progress.notify_all()
        self._maybe_checkpoint()

    def _report(self, exc: BaseException, logged_at: float) -> float:
        kind = failure_kind(exc)
        self._last_error = f"{kind}: {getattr(exc, 'orig', exc)}"
        with self._lock:
            self._counters.add(f"store.error.{kind}")
        now = time.monotonic()
        if not logged_at or now - logged_at >= LOG_REPEAT:
            log.error(
                "cannot write to the event store (%s); buffering, dropping when full",
                self._last_error,
            )
            return now
        return logged_at

    def _give_up(self, batch: Sequence[Event], counter: str) -> None:
        log.error("event store gave up on %d events (%s)", len(batch), counter)
        with self._progress:
            self._counters.add(counter, len(batch))
            self._settled += len(batch)
            self._progress.notify_all()

    def _tell_written(self, written: list[tuple[int, Event]]) -> None:
        for hook in self._written_hooks:
            try:
                hook(written)
            except Exception:  # a listener's bug must not stop the only writer
                log.exception("a listener of written events failed")
                with self._lock:
                    self._counters.add("store.hook_errors")

    def _run_jobs(self) -> None:
        """Run the queued jobs; one the database cannot take now stays first in line."""
        while self._jobs:
            job, then = self._jobs[0]
            try:
                with self._engine.begin() as conn:
                    result = job(conn)
            except OperationalError as exc:
                if self._spool is not None:
                    self._went_down(exc)
                else:
                    self._jobs_logged_at = self._report(exc, self._jobs_logged_at)
                if not self._stop.is_set():
                    return
                result, counter = None, "store.jobs.dropped"
            except Exception:  # the containment point for jobs, like the one for batches
                log.exception("a store job failed; dropping it")
                result, counter = None, "store.jobs.failed"
            else:
                counter = "store.jobs.done"
                self._finish_job(then, result)
            self._jobs.popleft()
            with self._progress:
                self._counters.add(counter)
                self._settled += 1
                self._progress.notify_all()

    def _finish_job(self, then: Callable[[Any], None] | None, result: Any) -> None:
        if then is None:
            return
        try:
            then(result)
        except Exception:
            log.exception("a store job's continuation failed")
            with self._lock:
                self._counters.add("store.jobs.then_errors")

    def _run_calls(self) -> None:
        while not self._calls.empty():
            action, future = self._calls.get_nowait()
            if not future.set_running_or_notify_cancel():
                continue
            try:
                future.set_result(action())
            except Exception as exc:  # handed to the caller, which re-raises it
                future.set_exception(exc)
            finally:
                self._ingest.forget()

    def _maybe_checkpoint(self) -> None:
        # With synchronous=NORMAL only a checkpoint fsyncs the WAL; doing one a second bounds
        # what a power cut can take back to about a second of commits.
        if self._engine.dialect.name != "sqlite":
            return
        now = time.monotonic()
        if now - self._last_checkpoint < self._checkpoint_interval:
            return
        self._last_checkpoint = now
        try:
            with self._engine.connect() as conn:
                conn.exec_driver_sql("PRAGMA wal_checkpoint(PASSIVE)")
        except SQLAlchemyError:
            with self._lock:
                self._counters.add("store.checkpoint_failed")

    # -- with a spool ----------------------------------------------------------------------

    def _run_spooled(self, spool: Spool) -> None:
        while True:
            self._run_calls()
            if self._server_ready():
                self._run_jobs()
                self._drain(spool)
            batch = self._collect()
            if batch:
                try:
                    self._write_or_spool(spool, batch)
                except Exception:
                    log.exception("event store writer failed on a batch; dropping it")
                    self._give_up(batch, "store.dropped.bug")
            self._publish(spool)
            if not batch and self._stop.is_set():
                if self._server_ready():
                    self._drain(spool, until=time.monotonic() + 2.0)
                    self._run_jobs()  # what the server cannot take now is counted as dropped
                else:
                    self._drop_jobs()  # not one connect timeout per job on the way out
                self._publish(spool)
                return

    def _drop_jobs(self) -> None:
        if self._jobs:
            log.error("event store unreachable at shutdown: %d jobs dropped", len(self._jobs))
        with self._progress:
            self._counters.add("store.jobs.dropped", len(self._jobs))
            self._settled += len(self._jobs)
            self._jobs.clear()
            self._progress.notify_all()

    def _next_id(self) -> str:
        self._seq += 1
        return f"{self._instance}:{self._seq}"

    def _write_or_spool(self, spool: Spool, batch: list[Event]) -> None:
        batch_id = self._next_id()
        if not len(spool) and self._server_ready():
            try:
                written = self._write_or_isolate(batch, batch_id)
            except OperationalError as exc:
                self._went_down(exc)
            else:
                self._up()
                self._settle(batch, written, 0.0)
                return
        spool.append(batch_id, batch)  # refused beyond the bound: counted in spool.dropped
        with self._progress:  # spooled (or dropped and counted): settled as far as flush goes
            self._settled += len(batch)
            self._progress.notify_all()

    def _drain(self, spool: Spool, until: float | None = None) -> None:
        """Write spooled batches, oldest first, for up to half a second (new events wait)."""
        deadline = until if until is not None else time.monotonic() + 0.5
        while len(spool) and time.monotonic() < deadline and self._server_ready():
            item = spool.peek()
            if item is None:
                return
            batch_id, events = item
            self._draining = True
            try:
                written = self._write_or_isolate(events, batch_id)
            except OperationalError as exc:
                self._went_down(exc)
                return
            except Exception:  # a bug must not wedge the drain on one record forever
                log.exception("event store writer failed on a spooled batch; dropping it")
                spool.pop(0)
                with self._lock:
                    self._counters.add("store.dropped.bug", len(events))
                continue
            finally:
                self._draining = False
            spool.pop(len(events))
            self._up()
            self._tell_written(written)
            with self._lock:
                self._counters.add("store.written", len(written))
                self._counters.add("store.batches")
            self._maybe_checkpoint()
        if not len(spool):
            spool.sync()

    def _server_ready(self) -> bool:
        """False while in back-off after a failure; runs the deferred schema check once."""
        if not self._down:
            return True
        if time.monotonic() < self._retry_at:
            return False
        if self._ready_check is not None:
            try:
                self._ready_check()
            except (SQLAlchemyError, StoreError) as exc:
                self._went_down(exc)
                return False
            self._ready_check = None
            log.warning("event store reachable and its schema checked; writing")
        return True

    def _went_down(self, exc: BaseException) -> None:
        now = time.monotonic()
        self._down = True
        self._retry_at = now + self._delay
        self._delay = min(self._delay * 2, RETRY_MAX)
        kind = failure_kind(exc) if isinstance(exc, SQLAlchemyError) else "schema"
        self._last_error = f"{kind}: {getattr(exc, 'orig', exc)}"
        with self._lock:
            self._counters.add(f"store.error.{kind}")
            self._counters.add("writer.retries")
        if not self._down_logged_at or now - self._down_logged_at >= LOG_REPEAT:
            self._down_logged_at = now
            log.error(
                "cannot write to the event store (%s); spooling to %s",
                self._last_error,
                self._spool.path if self._spool is not None else "memory",
            )

    def _up(self) -> None:
        if self._down:
            log.warning("event store writable again; draining the spool")
        self._down, self._delay, self._down_logged_at = False, RETRY_MIN, 0.0
        self._last_error = None

    def _publish(self, spool: Spool) -> None:
        spool.sync(force=False)  # what the last append left unsynced, within FSYNC_INTERVAL
        snapshot = spool.snapshot()
        with self._lock:
            self._spool_counters = snapshot


class _SplitBefore(ValueError):
    """This batch was written event by event before (`id/n`): do it that way again."""


def _claim(conn: Connection, batch_id: str, events: int, seen_before: bool) -> bool:
    """Record `batch_id` in this transaction; False when an earlier one already did.

    A batch once isolated event by event left `batch_id/n` rows instead (maybe only some, if
    the agent died meanwhile): _SplitBefore sends it down that path, which checks each one.
    """
    if seen_before:  # only a spooled batch can have been committed already
        ids = [batch_id, *(f"{batch_id}/{n}" for n in range(events))]  # primary-key lookups
        found = set(
            conn.execute(
                select(IngestBatch.batch_id).where(IngestBatch.batch_id.in_(ids))
            ).scalars()
        )
        if batch_id in found:
            return False
        if found:
            raise _SplitBefore(batch_id)
    conn.execute(
        insert(IngestBatch).values(batch_id=batch_id, written_at=time.time(), events=events)
    )
    return True
