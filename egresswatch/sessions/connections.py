"""Which inference connections are still open: the kernel's TCP table (psutil), asked only
when a session would otherwise end while it still counts connections as open."""

from collections import OrderedDict
from collections.abc import Callable

import psutil

from egresswatch.model import FlowKey

Endpoints = tuple[str, int, str, int]
LiveCheck = Callable[[], set[Endpoints]]
_OVER = frozenset({psutil.CONN_TIME_WAIT, psutil.CONN_CLOSE, psutil.CONN_NONE})


def _plain(address: str) -> str:
    return address.removeprefix("::ffff:")


def live_tcp() -> set[Endpoints]:
    """(local address, port, remote address, port) of every TCP connection not yet closed."""
    try:
        sockets = psutil.net_connections(kind="tcp")
    except (psutil.AccessDenied, OSError):
        return set()
    return {
        (_plain(c.laddr.ip), c.laddr.port, _plain(c.raddr.ip), c.raddr.port)
        for c in sockets
        if c.laddr and c.raddr and c.status not in _OVER
    }


def is_open(flow: FlowKey, live: set[Endpoints]) -> bool:
    """Either end of the client -> server `flow` is among the `live` connections."""
    client = (_plain(flow.src), flow.sport, _plain(flow.dst), flow.dport)
    server = (client[2], client[3], client[0], client[1])
    return client in live or server in live


class OpenConnections:
    """The client connections of each automatic session that have not closed yet: opened by
    an inference request, closed by the kernel's TCP-destroy broadcast (either end), and, for a
    close the broadcast missed (no CAP_NET_ADMIN, dropped messages), checked against `live`."""

    def __init__(self, live: LiveCheck = live_tcp, remember: int = 10_000) -> None:
        self._live = live
        self._remember = remember
        self._seen: dict[int, dict[FlowKey, float]] = {}  # session -> flow -> last seen open
        self._owner: dict[FlowKey, int] = {}
        self._unmatched: OrderedDict[FlowKey, float] = OrderedDict()  # closes before requests

    def opened(self, session_id: int, flow: FlowKey, ts: float) -> float | None:
        """Count `flow` as open for the session; its close time when it already closed."""
        early = self._unmatched.pop(flow, None)
        if early is not None and early >= ts:  # an earlier close is an older connection's
            return early
        if flow not in self._owner:
            self._owner[flow] = session_id
            self._seen.setdefault(session_id, {})[flow] = ts
        return None

    def closed(self, flow: FlowKey, ts: float) -> int | None:
        """The session whose connection `flow` (seen from either end) closed at `ts`."""
        for key in (flow, flow.reversed()):
            session_id = self._owner.pop(key, None)
            if session_id is not None:
                self._seen.get(session_id, {}).pop(key, None)
                return session_id
        self._unmatched[flow.reversed()] = ts  # a server socket's view: store client -> server
        self._unmatched[flow] = ts
        while len(self._unmatched) > self._remember:
            self._unmatched.popitem(last=False)
        return None

    def counts_open(self, session_id: int) -> bool:
        return bool(self._seen.get(session_id))

    def verify(self, session_id: int, now: float) -> tuple[bool, float]:
        """Drop the session's connections the kernel no longer has: (any still open, the
        last time a dropped one was seen open)."""
        live = self._live()
        seen = self._seen.get(session_id, {})
        last = float("-inf")
        for flow, when in list(seen.items()):
            if is_open(flow, live):
                seen[flow] = now
            else:
                last = max(last, when)
                del seen[flow]
                self._owner.pop(flow, None)
        return bool(seen), last

    def forget(self, session_id: int) -> None:
        for flow in self._seen.pop(session_id, {}):
            self._owner.pop(flow, None)
