"""QUIC wire structures an observer can read without keys: variable-length integers, long
headers of coalesced packets (RFC 9000 17.2) and the frames of a decrypted Initial payload.
"""

import re
from dataclasses import dataclass

from egresswatch.decode.quic_crypto import VersionRules
from egresswatch.errors import DecodeError

MAX_CID_LENGTH = 20  # RFC 9000 17.2, for every version we can decrypt
_NON_ZERO = re.compile(rb"[^\x00]")


def read_varint(buf: bytes, pos: int) -> tuple[int, int]:
    """Read a QUIC variable-length integer (RFC 9000 16) at `pos`; returns (value, next pos)."""
    if pos >= len(buf):
        raise DecodeError("quic.truncated", f"varint at {pos}")
    first = buf[pos]
    size = 1 << (first >> 6)
    if pos + size > len(buf):
        raise DecodeError("quic.truncated", f"{size}-byte varint at {pos}")
    value = first & 0x3F
    for b in buf[pos + 1 : pos + size]:
        value = (value << 8) | b
    return value, pos + size


def _take(buf: bytes, pos: int, n: int) -> tuple[bytes, int]:
    if pos + n > len(buf):
        raise DecodeError("quic.truncated", f"{n} bytes at {pos} of {len(buf)}")
    return buf[pos : pos + n], pos + n


@dataclass(frozen=True, slots=True)
class LongHeader:
    """The cleartext part of one long-header packet inside a datagram.

    `kind` is "initial", "0rtt", "handshake" or "retry"; `pn_offset` and `end` are offsets in
    the datagram (`end` is where the next coalesced packet starts).
    """

    version: int
    kind: str
    dcid: bytes
    scid: bytes
    token: bytes
    start: int
    pn_offset: int
    end: int


def read_version(datagram: bytes, pos: int) -> int:
    """The version field of the long-header packet at `pos`."""
    raw, _ = _take(datagram, pos + 1, 4)
    return int.from_bytes(raw, "big")


def parse_long_header(datagram: bytes, pos: int, rules: VersionRules) -> LongHeader:
    """Parse the long header at `pos` of a version whose type numbering `rules` gives.

    Raises:
        DecodeError: "quic.truncated" or "quic.bad-cid-length".
    """
    version = read_version(datagram, pos)
    kind = rules.types[(datagram[pos] >> 4) & 0x03]
    cur = pos + 5
    dcid, cur = _connection_id(datagram, cur)
    scid, cur = _connection_id(datagram, cur)
    token = b""
    if kind == "retry":
        return LongHeader(version, kind, dcid, scid, token, pos, len(datagram), len(datagram))
    if kind == "initial":
        token_length, cur = read_varint(datagram, cur)
        token, cur = _take(datagram, cur, token_length)
    length, cur = read_varint(datagram, cur)
    if cur + length > len(datagram):
        raise DecodeError("quic.truncated", f"{length}-byte packet at {cur} of {len(datagram)}")
    return LongHeader(version, kind, dcid, scid, token, pos, cur, cur + length)


def _connection_id(buf: bytes, pos: int) -> tuple[bytes, int]:
    length, pos = _take(buf, pos, 1)
    if length[0] > MAX_CID_LENGTH:
        raise DecodeError("quic.bad-cid-length", f"{length[0]}-byte connection ID")
    return _take(buf, pos, length[0])


@dataclass(frozen=True, slots=True)
class InitialFrames:
    """What a decrypted Initial payload carried: its CRYPTO fragments in packet order, and the
    counter reason that stopped the walk early (None when every frame was understood)."""

    crypto: tuple[tuple[int, bytes], ...]
    stopped: str | None


def parse_initial_frames(payload: bytes, google: bool = False) -> InitialFrames:
    """Walk the frames of an Initial payload (RFC 9000 12.4, 19) and collect its CRYPTO data.

    Frames that may not appear in an Initial, or that we do not know, stop the walk: their
    length cannot be known, and the fragments already read are kept. Never raises.
    """
    crypto: list[tuple[int, bytes]] = []
    walk = _walk_google if google else _walk_ietf
    try:
        walk(payload, crypto)
    except DecodeError as exc:
        reason = "quic.bad-frame" if exc.reason == "quic.truncated" else exc.reason
        return InitialFrames(tuple(crypto), reason)
    return InitialFrames(tuple(crypto), None)


def _walk_ietf(payload: bytes, crypto: list[tuple[int, bytes]]) -> None:
    pos = 0
    while pos < len(payload):
        kind = payload[pos]
        if kind == 0x00:
            pos = _skip_padding(payload, pos)
        elif kind == 0x01:
            pos += 1
        elif kind in (0x02, 0x03):
            pos = _skip_ack(payload, pos + 1, ecn=kind == 0x03)
        elif kind == 0x06:
            pos = _read_crypto(payload, pos + 1, crypto)
        elif kind in (0x1C, 0x1D):
            pos = _skip_close(payload, pos + 1, transport=kind == 0x1C)
        else:
            raise DecodeError("quic.unknown-frame", f"frame type {kind:#x} at {pos}")


def _walk_google(payload: bytes, crypto: list[tuple[int, bytes]]) -> None:
    """gQUIC T05x numbering: PADDING 0x00, PING 0x07, CRYPTO 0x08 (IETF-style varints)."""
    pos = 0
    while pos < len(payload):
        kind = payload[pos]
        if kind == 0x00:
            pos = _skip_padding(payload, pos)
        elif kind == 0x07:
            pos += 1
        elif kind == 0x08:
            pos = _read_crypto(payload, pos + 1, crypto)
        else:
            raise DecodeError("quic.unknown-frame", f"gQUIC frame type {kind:#x} at {pos}")


def _skip_padding(payload: bytes, pos: int) -> int:
    found = _NON_ZERO.search(payload, pos)
    return found.start() if found else len(payload)


def _skip_ack(payload: bytes, pos: int, ecn: bool) -> int:
    _largest, pos = read_varint(payload, pos)
    _delay, pos = read_varint(payload, pos)
    ranges, pos = read_varint(payload, pos)
    _first, pos = read_varint(payload, pos)
    if ranges > len(payload) - pos:  # each range takes at least two bytes
        raise DecodeError("quic.bad-frame", f"ACK with {ranges} ranges")
    for _ in range(ranges * 2 + (3 if ecn else 0)):
        _value, pos = read_varint(payload, pos)
    return pos


def _read_crypto(payload: bytes, pos: int, crypto: list[tuple[int, bytes]]) -> int:
    offset, pos = read_varint(payload, pos)
    length, pos = read_varint(payload, pos)
    data, pos = _take(payload, pos, length)
    crypto.append((offset, data))
    return pos


def _skip_close(payload: bytes, pos: int, transport: bool) -> int:
    _code, pos = read_varint(payload, pos)
    if transport:
        _frame_type, pos = read_varint(payload, pos)
    length, pos = read_varint(payload, pos)
    _reason, pos = _take(payload, pos, length)
    return pos
