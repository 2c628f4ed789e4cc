"""Bounded IPv4/IPv6 fragment reassembly for the few datagrams egresswatch can learn from.

What is kept: fragments of UDP datagrams whose first fragment shows a DNS, mDNS, LLMNR, VXLAN or
GTP-U port (53, 5353, 5355, 4789, 2152), of TCP (a fragmented TCP segment means a broken path
MTU; a ClientHello could be in it) and of GRE / IP-in-IP (the inner packet may be DNS). QUIC must
not be fragmented (RFC 9000 s14), so other UDP is not worth the memory. Everything else is counted
and dropped at once. Overlapping fragments drop the whole datagram (as Linux does since
FragmentSmack, and RFC 5722 for IPv6); an exact duplicate is ignored.
"""

from typing import Final

from egresswatch.counters import Counters

FragmentKey = tuple[bytes, int, int]  # source+destination address bytes, protocol, id

TCP: Final = 6
UDP: Final = 17
KEPT_PROTOCOLS: Final = frozenset({TCP, UDP, 47, 4, 41})
WANTED_UDP_PORTS: Final = frozenset({53, 5353, 5355, 4789, 2152})
MAX_DATAGRAM: Final = 65535
MAX_FRAGMENTS: Final = 64


class _Pending:
    __slots__ = ("first_ts", "parts", "size", "total")

    def __init__(self, ts: float) -> None:
        self.first_ts = ts
        self.parts: dict[int, bytes] = {}
        self.size = 0
        self.total = -1  # known once the last fragment (MF=0) arrives


class Reassembler:
    """Collects fragments per (src, dst, proto, id) under a byte cap, a datagram cap and a timeout.

    Time is the capture timestamp passed in, so replaying a pcap behaves like the live agent.
    """

    def __init__(
        self,
        counters: Counters,
        max_bytes: int = 4 << 20,
        max_datagrams: int = 512,
        timeout: float = 30.0,
    ) -> None:
        self.counters = counters
        self.max_bytes = max_bytes
        self.max_datagrams = max_datagrams
        self.timeout = timeout
        self._pending: dict[FragmentKey, _Pending] = {}
        self._ignored: dict[FragmentKey, float] = {}
        self._bytes = 0

    @property
    def buffered_bytes(self) -> int:
        return self._bytes

    def add(
        self, key: FragmentKey, offset: int, more: bool, data: bytes, ts: float
    ) -> bytes | None:
        """Store one fragment; return the whole upper-layer payload when this one completes it."""
        self._expire(ts)
        if key in self._ignored:
            self.counters.add("ip.fragment-ignored")
            return None
        if offset == 0 and not _worth_keeping(key[1], data):
            self._ignore(key, ts, "ip.fragment-ignored")
            return None
        entry = self._pending.get(key)
        if entry is None:
            entry = self._pending[key] = _Pending(ts)
        reason = self._insert(entry, offset, more, data)
        if reason:
            self._ignore(key, ts, reason)
            return None
        self._make_room()
        if entry.size != entry.total or key not in self._pending:
            return None
        self._forget(key)
        self.counters.add("ip.reassembled")
        return b"".join(entry.parts[o] for o in sorted(entry.parts))

    def _insert(self, entry: _Pending, offset: int, more: bool, data: bytes) -> str:
        """Add `data` to `entry`; return a drop reason, or "" when it was accepted."""
        end = offset + len(data)
        if end > MAX_DATAGRAM or (more and len(data) % 8) or not data:
            return "ip.fragment-bad"
        if entry.parts.get(offset) == data:
            self.counters.add("ip.fragment-duplicate")
            return ""
        if not more:
            if entry.total not in (-1, end):
                return "ip.fragment-bad"
            entry.total = end
        if any(o < end and offset < o + len(p) for o, p in entry.parts.items()):
            return "ip.fragment-overlap"
        if len(entry.parts) >= MAX_FRAGMENTS or (entry.total >= 0 and end > entry.total):
            return "ip.fragment-bad"
        entry.parts[offset] = data
        entry.size += len(data)
        self._bytes += len(data)
        return ""

    def _ignore(self, key: FragmentKey, ts: float, reason: str) -> None:
        """Drop what is held for `key` and drop its later fragments cheaply until it times out."""
        self._forget(key)
        self.counters.add(reason)
        if len(self._ignored) >= self.max_datagrams:
            del self._ignored[next(iter(self._ignored))]
        self._ignored[key] = ts

    def _forget(self, key: FragmentKey) -> None:
        entry = self._pending.pop(key, None)
        if entry is not None:
            self._bytes -= entry.size

    def _make_room(self) -> None:
        """Evict the oldest datagrams (possibly the one just added) until back under the caps."""
        while self._pending and (
            len(self._pending) > self.max_datagrams or self._bytes > self.max_bytes
        ):
            oldest = next(iter(self._pending))
            self.counters.add("ip.fragment-dropped", len(self._pending[oldest].parts) or 1)
            self._forget(oldest)

    def _expire(self, now: float) -> None:
        """Drop datagrams older than the timeout; insertion order is arrival order."""
        limit = now - self.timeout
        pending, ignored = self._pending, self._ignored
        while pending:
            key = next(iter(pending))
            if pending[key].first_ts >= limit:
                break
            self.counters.add("ip.fragment-dropped", len(pending[key].parts) or 1)
            self._forget(key)
        while ignored:
            key = next(iter(ignored))
            if ignored[key] >= limit:
                break
            del ignored[key]


def _worth_keeping(proto: int, first: bytes) -> bool:
    if proto != UDP:
        return proto in KEPT_PROTOCOLS
    if len(first) < 4:
        return False
    sport = (first[0] << 8) | first[1]
    dport = (first[2] << 8) | first[3]
    return sport in WANTED_UDP_PORTS or dport in WANTED_UDP_PORTS
