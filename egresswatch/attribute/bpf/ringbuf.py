"""Reads a BPF ring buffer map from user space through its mmapped pages, without wake-ups.

Layout (kernel/bpf/ringbuf.c): page 0 holds the consumer position (ours to write), page 1 the
producer position, then the data area mapped twice so a record never wraps. Each record has an
8-byte header: length with a busy bit (still being written) and a discard bit.
"""

import mmap
import struct
from collections.abc import Iterator

_POS = struct.Struct("=Q")
_HEADER = struct.Struct("=II")
_BUSY = 1 << 31
_DISCARD = 1 << 30
_LENGTH = ~(_BUSY | _DISCARD) & 0xFFFFFFFF


class RingReader:
    """The consumer end of one ring buffer map of `size` bytes (a power of two of pages)."""

    def __init__(self, map_fd: int, size: int) -> None:
        page = mmap.PAGESIZE
        self._size = size
        self._consumer = mmap.mmap(map_fd, page, mmap.MAP_SHARED, mmap.PROT_READ | mmap.PROT_WRITE)
        self._data = mmap.mmap(
            map_fd, page + 2 * size, mmap.MAP_SHARED, mmap.PROT_READ, offset=page
        )
        self._page = page

    def records(self, limit: int = 1 << 20) -> Iterator[bytes]:
        """Committed records not read yet, oldest first (at most `limit`); frees each one read."""
        consumer = _POS.unpack_from(self._consumer, 0)[0]
        producer = _POS.unpack_from(self._data, 0)[0]
        for _ in range(limit):
            if consumer >= producer:
                producer = _POS.unpack_from(self._data, 0)[0]
                if consumer >= producer:
                    break
            offset = self._page + (consumer & (self._size - 1))
            length, _pgoff = _HEADER.unpack_from(self._data, offset)
            if length & _BUSY:
                break
            size = length & _LENGTH
            if not length & _DISCARD:
                yield self._data[offset + 8 : offset + 8 + size]
            consumer += (size + 8 + 7) & ~7
            _POS.pack_into(self._consumer, 0, consumer)

    def pending_bytes(self) -> int:
        return int(_POS.unpack_from(self._data, 0)[0] - _POS.unpack_from(self._consumer, 0)[0])

    def close(self) -> None:
        self._consumer.close()
        self._data.close()
