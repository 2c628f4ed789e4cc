"""Bounded reassembly of the first bytes of many TCP streams (enough for a ClientHello or DNS).

Pure: timestamps are passed in. Overlapping data keeps the first copy seen (like Suricata's
default "bsd" policy); a differing later copy is counted as "tcp.overlap-mismatch".
"""

from dataclasses import dataclass, field

from egresswatch.counters import Counters
from egresswatch.lru import Lru
from egresswatch.model import FlowKey

SEQ_MASK = 0xFFFFFFFF
HALF_SEQ = 0x80000000
MAX_PENDING_SEGMENTS = 128  # out-of-order pieces held per stream
# All streams together: 8,000 flows each holding a 15 KB unfinished hello once reached 178 MB.
# 16 MiB still holds thousands of real hellos (1-2 KB) in flight at once.
MAX_TOTAL_BYTES = 16 << 20


def seq_offset(seq: int, base: int) -> int:
    """Signed distance from `base` to `seq` in 32-bit sequence space (RFC 1982 style)."""
    off = (seq - base) & SEQ_MASK
    return off - (1 << 32) if off >= HALF_SEQ else off


@dataclass(slots=True)
class _Stream:
    """One direction of one connection: `data` is contiguous from sequence number `base`."""

    start: int
    base: int
    last_seen: float
    data: bytes = b""
    # Out-of-order pieces as (offset from base, bytes), sorted and never overlapping.
    pending: list[tuple[int, bytes]] = field(default_factory=list)


class TcpReassembler:
    """Reassembles the first `max_stream_bytes` of up to `max_streams` TCP streams.

    Streams are keyed by directional FlowKey. `feed` hands back the contiguous bytes each
    time they grow; the caller `consume`s what it handled and `close`s what it is done with.
    Past `max_stream_bytes` a stream is closed ("tcp.overflow"); past `max_streams` the least
    recently used stream is dropped ("tcp.evicted"), and so are the least recently used streams
    while all of them together hold more than `max_total_bytes` ("tcp.evicted-bytes").
    """

    def __init__(
        self,
        *,
        max_stream_bytes: int = 65536,
        max_streams: int = 16384,
        max_total_bytes: int = MAX_TOTAL_BYTES,
        timeout: float = 60.0,
    ) -> None:
        self.max_stream_bytes = max_stream_bytes
        self.max_streams = max_streams
        self.max_total_bytes = max_total_bytes
        self.timeout = timeout
        self.counters = Counters()
        self._streams: Lru[FlowKey, _Stream] = Lru(max_streams)
        self._held = 0  # bytes held across all streams (kept up to date on every change)

    def __len__(self) -> int:
        return len(self._streams)

    def __contains__(self, key: object) -> bool:
        return key in self._streams

    def buffered(self) -> int:
        """Bytes held across all streams, contiguous and out of order (for health metrics)."""
        return self._held

    def open(self, key: FlowKey, isn: int, ts: float) -> None:
        """A SYN was seen: the stream's data starts at isn + 1. A repeated SYN is a no-op."""
        start = (isn + 1) & SEQ_MASK
        stream = self._streams.get(key)  # counts as use
        if stream is not None and stream.start == start:
            self._touch(key, stream, ts)
            return
        self._remove(key)  # a new ISN means a new connection on the same 5-tuple
        self._insert(key, _Stream(start, start, ts))

    def feed(self, key: FlowKey, seq: int, payload: bytes, ts: float) -> bytes | None:
        """Add one segment; return the contiguous bytes from the current base if they grew."""
        if not payload:
            return None
        stream = self._streams.get(key)  # counts as use
        if stream is None:
            stream = _Stream(seq & SEQ_MASK, seq & SEQ_MASK, ts)
            self._insert(key, stream)
        else:
            self._touch(key, stream, ts)
        before = _size(stream)
        grown = self._place(key, stream, seq, payload)
        if self._streams.peek(key) is stream:  # not overflowed
            self._held += _size(stream) - before
            self._keep_budget()
        return grown

    def _place(self, key: FlowKey, stream: _Stream, seq: int, payload: bytes) -> bytes | None:
        off = seq_offset(seq, stream.base)
        if off + len(payload) > self.max_stream_bytes:
            self._overflow(key)
            return None
        if off > len(stream.data):
            self._hold(key, stream, off, payload)
            return None
        return self._extend(stream, off, payload)

    def _keep_budget(self) -> None:
        """Drop least recently used streams while all together hold more than the budget."""
        while self._held > self.max_total_bytes and len(self._streams) > 1:
            oldest = self._streams.oldest()
            if oldest is None:
                break
            self._remove(oldest[0])
            self.counters.add("tcp.evicted-bytes")

    def consume(self, key: FlowKey, nbytes: int) -> None:
        """Drop the first `nbytes` of the contiguous data (the caller has handled them)."""
        stream = self._streams.peek(key)
        if stream is None or nbytes <= 0:
            return
        nbytes = min(nbytes, len(stream.data))
        self._held -= nbytes
        stream.data = stream.data[nbytes:]
        stream.base = (stream.base + nbytes) & SEQ_MASK
        stream.pending = [(off - nbytes, piece) for off, piece in stream.pending]

    def close(self, key: FlowKey) -> None:
        self._remove(key)

    def expire(self, now: float) -> int:
        """Drop streams idle for longer than `timeout`; returns how many were dropped."""
        dropped = 0
        # Streams are kept in last-use order, so the idle ones are at the front.
        while (oldest := self._streams.oldest()) is not None:
            key, stream = oldest
            if now - stream.last_seen <= self.timeout:
                break
            self._remove(key)
            dropped += 1
        if dropped:
            self.counters.add("tcp.expired", dropped)
        return dropped

    def _insert(self, key: FlowKey, stream: _Stream) -> None:
        evicted = self._streams.put(key, stream)
        if evicted is not None:
            self._held -= _size(evicted[1])
            self.counters.add("tcp.evicted")

    def _remove(self, key: FlowKey) -> None:
        stream = self._streams.pop(key)
        if stream is not None:
            self._held -= _size(stream)

    def _touch(self, key: FlowKey, stream: _Stream, ts: float) -> None:
        """`stream` (just looked up with `get`, which made it the most recent) was seen at `ts`."""
        stream.last_seen = max(stream.last_seen, ts)

    def _overflow(self, key: FlowKey) -> None:
        self.counters.add("tcp.overflow")
        self._remove(key)

    def _extend(self, stream: _Stream, off: int, payload: bytes) -> bytes | None:
        """Append the part of an in-window segment that lies past the contiguous data."""
        have = len(stream.data)
        end = off + len(payload)
        if off < have:
            self._check_overlap(stream.data, off, payload)
        if end <= have:
            self.counters.add("tcp.retransmission")
            return None
        tail = payload if off == have else payload[have - off :]
        # In-order common case: the first segment is kept as is, later ones cost one join.
        stream.data = stream.data + tail if stream.data else tail
        if stream.pending:
            self._drain(stream)
        return stream.data

    def _check_overlap(self, data: bytes, off: int, payload: bytes) -> None:
        lo = max(off, 0)
        hi = min(off + len(payload), len(data))
        if lo < hi and data[lo:hi] != payload[lo - off : hi - off]:
            self.counters.add("tcp.overlap-mismatch")
        elif off + len(payload) > len(data):
            self.counters.add("tcp.overlap")

    def _hold(self, key: FlowKey, stream: _Stream, off: int, payload: bytes) -> None:
        """Keep an out-of-order segment, minus the bytes already held (first copy wins)."""
        self.counters.add("tcp.out-of-order")
        pieces = _subtract(stream.pending, off, payload)
        if not pieces:
            self.counters.add("tcp.retransmission")
            return
        merged = sorted(stream.pending + pieces, key=lambda item: item[0])
        if len(merged) > MAX_PENDING_SEGMENTS:
            self._overflow(key)
            return
        stream.pending = merged

    def _drain(self, stream: _Stream) -> None:
        """Move held pieces that now touch the contiguous data onto it."""
        parts = [stream.data]
        have = len(stream.data)
        while stream.pending and stream.pending[0][0] <= have:
            off, piece = stream.pending.pop(0)
            if off + len(piece) > have:
                parts.append(piece[have - off :])
                have = off + len(piece)
        stream.data = b"".join(parts)


def _size(stream: _Stream) -> int:
    return len(stream.data) + sum(len(piece) for _, piece in stream.pending)


def _subtract(held: list[tuple[int, bytes]], off: int, payload: bytes) -> list[tuple[int, bytes]]:
    """The parts of payload (at offset `off`) not covered by the sorted, disjoint `held` pieces."""
    out: list[tuple[int, bytes]] = []
    cursor = off
    end = off + len(payload)
    for h_off, h_piece in held:
        h_end = h_off + len(h_piece)
        if h_end <= cursor or h_off >= end:
            continue
        if h_off > cursor:
            out.append((cursor, payload[cursor - off : h_off - off]))
        cursor = max(cursor, h_end)
    if cursor < end:
        out.append((cursor, payload[cursor - off :]))
    return out
