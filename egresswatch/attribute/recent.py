"""A few seconds' memory of which process owned a socket, for packets whose socket already closed.

Keys are (transport, local addr, local port, remote addr, remote port); remote "" stands for an
unconnected UDP socket, which answers for any remote. Bounded: the oldest entries go first.
Each entry keeps the socket's inode, so a socket still open under another inode (the 5-tuple
reused by a new socket) is never answered with the earlier owner.
"""

from egresswatch.lru import Lru
from egresswatch.model import ProcessInfo, Transport

SocketKey = tuple[Transport, str, int, str, int]


class RecentSockets:
    """Time-bounded, size-bounded map from socket key to the ProcessInfo last seen owning it."""

    __slots__ = ("_entries", "_ttl")

    def __init__(self, ttl: float = 5.0, max_entries: int = 65536) -> None:
        self._ttl = ttl
        self._entries: Lru[SocketKey, tuple[float, ProcessInfo, int]] = Lru(max_entries)

    def __len__(self) -> int:
        return len(self._entries)

    def remember(self, key: SocketKey, info: ProcessInfo, ts: float, inode: int = 0) -> None:
        self._entries.put(key, (ts, info, inode))

    def recall(self, key: SocketKey, ts: float, inode: int = 0) -> ProcessInfo | None:
        """The owner of `key` if it was seen within the last `ttl` seconds before `ts`.

        `inode` is the socket open under `key` now (0: none): an entry for another is stale.
        """
        self._expire(ts)
        entry = self._entries.peek(key)
        if entry is None or abs(ts - entry[0]) > self._ttl:
            return None
        if inode and entry[2] and inode != entry[2]:
            return None
        return entry[1]

    def forget(self, key: SocketKey) -> None:
        """Drops `key`: a new connection on it has started, the old owner no longer applies."""
        self._entries.pop(key)

    def _expire(self, ts: float) -> None:
        # insertion order is time order, except for out-of-order timestamps: those just live longer
        while (oldest := self._entries.oldest()) is not None and ts - oldest[1][0] > self._ttl:
            self._entries.pop(oldest[0])
