"""The live feed: one thread notices newly stored events and fans them out to SSE clients.

For SQLite it watches the database and WAL files' size and mtime (a stat, not a query) and
reads when they changed, and once a second anyway; other backends are read once a second. A
read is one range of rowids after the last one seen.
Each subscriber has a bounded queue; one that falls behind loses items and is told so.
"""

import asyncio
import logging
import os
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sqlalchemy.exc import SQLAlchemyError

from egresswatch.api.mapping import alert_out
from egresswatch.counters import Counters
from egresswatch.store.database import Store
from egresswatch.store.export import event_record
from egresswatch.store.reads import alerts_after, events_after, newest_alert_id, newest_id

log = logging.getLogger(__name__)

WATCH_INTERVAL = 0.05  # a stat of two files: cheap enough for sub-second delivery
POLL_INTERVAL = 1.0  # backends without files to watch
BACKSTOP = 1.0  # read at least this often anyway (file times can be coarse): one rowid range
SUBSCRIBER_QUEUE = 2000
BATCH = 500


@dataclass(frozen=True, slots=True)
class FeedItem:
    """One message for live clients: `kind` is the SSE event name."""

    kind: str
    id: int
    data: dict[str, Any]


@dataclass(eq=False)
class Subscription:
    loop: asyncio.AbstractEventLoop
    queue: asyncio.Queue[FeedItem | None] = field(
        default_factory=lambda: asyncio.Queue(SUBSCRIBER_QUEUE)
    )
    lagged: bool = False


class LiveFeed:
    """Watches the store from one thread; `subscribe()` from the event loop to receive items."""

    def __init__(self, store: Store) -> None:
        self.store = store
        self.counters = Counters()
        self._subscribers: set[Subscription] = set()
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="egresswatch-feed", daemon=True)
        self._files = _watched_files(store)
        self.last_id = 0
        self.last_alert_id = 0

    def start(self) -> None:
        self.last_id = newest_id(self.store.engine)
        self.last_alert_id = newest_alert_id(self.store.engine)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(5)

    def subscribe(self) -> Subscription:
        sub = Subscription(asyncio.get_running_loop())
        with self._lock:
            self._subscribers.add(sub)
        return sub

    def unsubscribe(self, sub: Subscription) -> None:
        with self._lock:
            self._subscribers.discard(sub)

    def _run(self) -> None:
        interval = WATCH_INTERVAL if self._files else POLL_INTERVAL
        seen: tuple[int, ...] | None = None
        due = 0  # ticks left to read: a change is read twice (see below)
        idle = 0.0
        while not self._stop.wait(interval):
            now = _signature(self._files)
            idle += interval
            if now != seen:
                # The WAL grows a moment before the commit is visible to readers: read on this
                # tick and the next, so a commit caught half-way is not missed.
                seen, due = now, 2
            if due == 0 and idle < BACKSTOP:
                continue
            due, idle = max(0, due - 1), 0.0
            try:
                self._publish_new()
            except SQLAlchemyError as err:  # the store may be busy or migrating: retry next tick
                self.counters.add("feed.read_errors")
                log.warning("live feed cannot read the store: %s", err)

    def _publish_new(self) -> None:
        for alert in alerts_after(self.store.engine, self.last_alert_id, BATCH):
            self.last_alert_id = alert.id or self.last_alert_id
            self.publish(FeedItem("alert", self.last_alert_id, alert_out(alert).model_dump()))
        while True:
            found = events_after(self.store.engine, self.last_id, BATCH)
            for stored in found:
                self.publish(FeedItem("event", stored.id, event_record(stored)))
            if found:
                self.last_id = found[-1].id
            if len(found) < BATCH:
                return

    def publish(self, item: FeedItem) -> None:
        with self._lock:
            subscribers = list(self._subscribers)
        for sub in subscribers:
            sub.loop.call_soon_threadsafe(_offer, sub, item)
        self.counters.add(f"feed.published.{item.kind}")


def _offer(sub: Subscription, item: FeedItem) -> None:
    try:
        sub.queue.put_nowait(item)
    except asyncio.QueueFull:
        sub.lagged = True


def _watched_files(store: Store) -> tuple[Path, ...]:
    url = store.engine.url
    if url.get_backend_name() != "sqlite" or not url.database or url.database == ":memory:":
        return ()
    db = Path(url.database)
    return (db, db.with_name(db.name + "-wal"))


def _signature(files: tuple[Path, ...]) -> tuple[int, ...]:
    parts: list[int] = []
    for path in files:
        try:
            st = os.stat(path)
        except OSError:
            parts += [0, 0]
            continue
        parts += [st.st_mtime_ns, st.st_size]
    return tuple(parts)
