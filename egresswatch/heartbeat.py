"""The agent's heartbeat: its counters and queue depth written to the store's status row every
few seconds, so the separate, unprivileged web process can show them (/api/health, /metrics).
"""

import logging
import os
import threading
import time
from collections.abc import Callable
from concurrent.futures import TimeoutError as FutureTimeout

from sqlalchemy.exc import SQLAlchemyError

from egresswatch.counters import Counters
from egresswatch.errors import StoreError
from egresswatch.store.database import Store
from egresswatch.store.status import AgentStatus, write_status

log = logging.getLogger(__name__)

HEARTBEAT_INTERVAL = 2.0
WRITE_TIMEOUT = 10.0


class Heartbeat(threading.Thread):
    """Writes an AgentStatus every `interval` seconds through the store's one writer."""

    def __init__(
        self,
        store: Store,
        counters: Callable[[], Counters],
        queue_depth: Callable[[], int],
        stop: threading.Event,
        interval: float = HEARTBEAT_INTERVAL,
        *,
        node: str | None = None,
    ) -> None:
        super().__init__(name="egresswatch-heartbeat", daemon=True)
        self.store, self.stop, self.interval = store, stop, interval
        self.node = node
        self._counters, self._queue_depth = counters, queue_depth
        self.started = time.time()
        self.counters = Counters()

    def run(self) -> None:
        self.beat()
        while not self.stop.wait(self.interval):
            self.beat()

    def beat(self) -> None:
        """Write one status row now; a failure is counted and logged, and the next beat retries."""
        snapshot = self._counters()
        snapshot.merge(self.counters)
        status = AgentStatus(
            pid=os.getpid(),
            started=self.started,
            updated=time.time(),
            last_event_ts=None,  # filled in from the store on the writer thread
            queue_depth=self._queue_depth(),
            counters=dict(snapshot.snapshot()),
            node=self.node or "",
        )
        engine = self.store.engine
        try:
            self.store.writer().call(lambda: write_status(engine, status), WRITE_TIMEOUT)
            self.counters.add("heartbeat.written")
        except (StoreError, SQLAlchemyError, FutureTimeout) as err:
            self.counters.add("heartbeat.errors")
            log.warning("cannot write the agent status: %s", err)
