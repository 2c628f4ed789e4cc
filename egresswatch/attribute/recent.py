"""A few seconds' memory of which process owned a socket, for packets whose socket already closed.

Keys are (transport, local addr, local port, remote addr, remote port); remote "" stands for an
unconnected UDP socket, which answers for any remote. Bounded: the oldest entries go first.
"""

from collections import OrderedDict

from egresswatch.model import ProcessInfo, Transport

SocketKey = tuple[Transport, str, int, str, int]


class RecentSockets:
    """Time-bounded, size-bounded map from socket key to the ProcessInfo last seen owning it."""

    __slots__ = ("_entries", "_max_entries", "_ttl")

    def __init__(self, ttl: float = 5.0, max_entries: int = 65536) -> None:
        self._ttl = ttl
        self._max_entries = max_entries
        self._entries: OrderedDict[SocketKey, tuple[float, ProcessInfo]] = OrderedDict()

    def __len__(self) -> int:
        return len(self._entries)

    def remember(self, key: SocketKey, info: ProcessInfo, ts: float) -> None:
        self._entries[key] = (ts, info)
        self._entries.move_to_end(key)
        while len(self._entries) > self._max_entries:
            self._entries.popitem(last=False)

    def recall(self, key: SocketKey, ts: float) -> ProcessInfo | None:
        """The owner of `key` if it was seen within the last `ttl` seconds before `ts`."""
        self._expire(ts)
        entry = self._entries.get(key)
        if entry is None or abs(ts - entry[0]) > self._ttl:
            return None
        return entry[1]

    def _expire(self, ts: float) -> None:
        # insertion order is time order, except for out-of-order timestamps: those just live longer
        while self._entries:
            key, (seen, _info) = next(iter(self._entries.items()))
            if ts - seen <= self._ttl:
                break
            del self._entries[key]
