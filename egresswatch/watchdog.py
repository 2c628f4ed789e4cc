"""The systemd watchdog: WATCHDOG=1 only while the agent loop keeps turning, so a stuck pipeline
(not just a live process) gets the service restarted; READY=1 once capture and store are up.
"""

import threading
import time
from collections.abc import Callable

from egresswatch.sdnotify import Notifier

STALL_LIMIT = 5.0  # the agent loop turns at least every 0.2 s; 5 s without a turn is a hang


class PipelineWatchdog(threading.Thread):
    """Pings systemd every `interval` seconds while `last_turn()` is recent."""

    def __init__(
        self,
        notifier: Notifier,
        last_turn: Callable[[], float],
        stop: threading.Event,
        interval: float,
    ) -> None:
        super().__init__(name="egresswatch-watchdog", daemon=True)
        self.notifier, self.last_turn = notifier, last_turn
        self.stop, self.interval = stop, interval
        self.pings = self.withheld = 0

    def run(self) -> None:
        while not self.stop.wait(self.interval):
            self.check()

    def check(self) -> bool:
        """One watchdog decision: ping if the loop turned within STALL_LIMIT."""
        if time.monotonic() - self.last_turn() > STALL_LIMIT:
            self.withheld += 1
            return False
        self.pings += self.notifier.watchdog()
        return True


def announce_ready(
    last_turn: Callable[[], float], stop: threading.Event, status: str
) -> tuple[Notifier, PipelineWatchdog | None]:
    """READY=1 now (capture is live, the store open) and the watchdog thread if one is asked."""
    notifier = Notifier()
    notifier.ready(status)
    interval = notifier.heartbeat_interval()
    if interval is None:
        return notifier, None
    watchdog = PipelineWatchdog(notifier, last_turn, stop, interval)
    watchdog.start()
    return notifier, watchdog
