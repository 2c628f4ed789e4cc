"""Where alerts go: the AlertSink seam, and a Delivery that runs each sink on its own thread
behind a bounded queue, so a slow or dead sink never blocks the pipeline or the other sinks."""

import logging
import queue
import threading
from collections.abc import Sequence
from typing import Protocol

from egresswatch.counters import Counters
from egresswatch.model import SEVERITIES, Alert, Severity

log = logging.getLogger(__name__)
QUEUE_SIZE = 1000


class AlertSink(Protocol):
    """Delivers one alert; raises OSError (or returns False) when it could not."""

    name: str

    def send(self, alert: Alert) -> bool: ...


class _Worker(threading.Thread):
    def __init__(self, sink: AlertSink, minimum: Severity, counters: Counters) -> None:
        super().__init__(name=f"egresswatch-sink-{sink.name}", daemon=True)
        self.sink, self.minimum, self.counters = sink, minimum, counters
        self.queue: queue.Queue[Alert | None] = queue.Queue(maxsize=QUEUE_SIZE)

    def offer(self, alert: Alert) -> None:
        if SEVERITIES.index(alert.severity) < SEVERITIES.index(self.minimum):
            return
        try:
            self.queue.put_nowait(alert)
        except queue.Full:
            self.counters.add(f"sinks.{self.sink.name}.dropped")

    def run(self) -> None:
        while (alert := self.queue.get()) is not None:
            try:
                ok = self.sink.send(alert)
            except Exception:  # the containment point of a sink: log, count, keep delivering
                log.exception("alert sink %s failed", self.sink.name)
                ok = False
            self.counters.add(f"sinks.{self.sink.name}.{'sent' if ok else 'failed'}")


class Delivery:
    """Fans stored alerts out to the configured sinks; `send` never blocks."""

    def __init__(self, sinks: Sequence[tuple[AlertSink, Severity]]) -> None:
        self.counters = Counters()
        self._workers = [_Worker(s, m, self.counters) for s, m in sinks]

    def start(self) -> "Delivery":
        for worker in self._workers:
            worker.start()
        return self

    def send(self, alert: Alert) -> None:
        for worker in self._workers:
            worker.offer(alert)

    def close(self, timeout: float = 5.0) -> None:
        for worker in self._workers:
            try:
                worker.queue.put(None, timeout=timeout)
            except queue.Full:
                continue
        for worker in self._workers:
            worker.join(timeout)
