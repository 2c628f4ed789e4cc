"""A small thread-safe publish/subscribe bus: the live feed from the pipeline to its readers.

Handlers run on the publisher's thread and must not block (hand off to a queue or an event
loop with `call_soon_threadsafe`); a failing handler is counted and the others still run.
"""

import logging
import threading
from collections.abc import Callable
from typing import Generic, TypeVar

from egresswatch.counters import Counters

log = logging.getLogger(__name__)
T = TypeVar("T")


class Bus(Generic[T]):
    """subscribe(handler) -> unsubscribe; publish(item) calls every current handler."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._handlers: tuple[Callable[[T], None], ...] = ()
        self.counters = Counters()

    def subscribe(self, handler: Callable[[T], None]) -> Callable[[], None]:
        with self._lock:
            self._handlers = (*self._handlers, handler)

        def unsubscribe() -> None:
            with self._lock:
                self._handlers = tuple(h for h in self._handlers if h is not handler)

        return unsubscribe

    def publish(self, item: T) -> None:
        for handler in self._handlers:  # a snapshot: subscribing meanwhile is safe
            try:
                handler(item)
            except Exception:  # one bad subscriber must not stop the pipeline or the others
                log.exception("a live-feed subscriber failed")
                self.counters.add("bus.handler_errors")
