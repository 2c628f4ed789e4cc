"""Offset-based reassembly of one QUIC CRYPTO stream (out of order, overlapping), bounded."""

from egresswatch.errors import DecodeError

MAX_PIECES = 256  # disjoint fragments held at once; Chromium's shuffled hellos need < 40


class CryptoStream:
    """The CRYPTO bytes of one connection's Initial space, kept as disjoint sorted pieces.

    Memory is bounded by what was received and by `max_bytes` (no byte at or past that
    offset is kept). Where fragments overlap, the bytes received first win, as a receiver's
    stream buffer does.
    """

    __slots__ = ("_max_bytes", "_pieces")

    def __init__(self, max_bytes: int) -> None:
        self._max_bytes = max_bytes
        self._pieces: list[tuple[int, bytes]] = []

    def add(self, offset: int, data: bytes) -> None:
        """Insert `data` at stream `offset`.

        Raises:
            DecodeError("quic.crypto-over-limit"): data at or past `max_bytes`.
            DecodeError("quic.crypto-too-fragmented"): more than MAX_PIECES disjoint pieces.
        """
        end = offset + len(data)
        if end > self._max_bytes:
            raise DecodeError("quic.crypto-over-limit", f"bytes up to {end}")
        if not data:
            return
        touching = [(s, b) for s, b in self._pieces if s <= end and s + len(b) >= offset]
        if not touching:
            if len(self._pieces) >= MAX_PIECES:
                raise DecodeError("quic.crypto-too-fragmented", f"{MAX_PIECES} pieces")
            self._pieces.append((offset, data))
        else:
            self._pieces = [p for p in self._pieces if p not in touching]
            self._pieces.append(_merge(offset, data, touching))
        self._pieces.sort(key=lambda piece: piece[0])

    def prefix(self) -> bytes:
        """The contiguous bytes from offset 0 received so far."""
        if self._pieces and self._pieces[0][0] == 0:
            return self._pieces[0][1]
        return b""

    def held(self) -> int:
        """Bytes held, for tests and memory accounting."""
        return sum(len(b) for _, b in self._pieces)


def _merge(offset: int, data: bytes, touching: list[tuple[int, bytes]]) -> tuple[int, bytes]:
    start = min(offset, *(s for s, _ in touching))
    stop = max(offset + len(data), *(s + len(b) for s, b in touching))
    buf = bytearray(stop - start)
    buf[offset - start : offset - start + len(data)] = data
    for s, b in touching:  # written last, so earlier bytes win where they overlap
        buf[s - start : s - start + len(b)] = b
    return start, bytes(buf)
