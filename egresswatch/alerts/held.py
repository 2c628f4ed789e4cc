"""Findings about a TCP connection seen before it had a name (a SYN to a bare address) are held
briefly: the connection's ClientHello names it, and the hello's findings replace them, so one
HTTPS request is one alert. Findings of connections that never say a name are raised late."""

from collections import OrderedDict
from collections.abc import Sequence

from egresswatch.model import Alert, FlowKey

HOLD_SECONDS = 2.0
LIMIT = 10_000


class HeldFindings:
    """flow -> (release time, findings), oldest first; bounded (the oldest are released)."""

    def __init__(self, hold_seconds: float = HOLD_SECONDS, limit: int = LIMIT) -> None:
        self._hold, self._limit = hold_seconds, limit
        self._held: OrderedDict[FlowKey, tuple[float, list[Alert]]] = OrderedDict()

    def hold(self, flow: FlowKey, findings: Sequence[Alert], now: float) -> list[Alert]:
        """Hold `findings`; returns any released early because the bound was reached."""
        if findings:
            self._held[flow] = (now + self._hold, list(findings))
        released: list[Alert] = []
        while len(self._held) > self._limit:
            released += self._held.popitem(last=False)[1][1]
        return released

    def named(self, flow: FlowKey) -> None:
        """The connection said its name: its own findings stand for it."""
        self._held.pop(flow, None)

    def release(self, flow: FlowKey) -> list[Alert]:
        """The connection's held findings, now (its hello found nothing of its own)."""
        held = self._held.pop(flow, None)
        return [] if held is None else held[1]

    def due(self, now: float) -> list[Alert]:
        released: list[Alert] = []
        while self._held:
            flow, (when, findings) = next(iter(self._held.items()))
            if when > now:
                break
            del self._held[flow]
            released += findings
        return released
