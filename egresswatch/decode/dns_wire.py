"""In-place readers for DNS names in wire format: the hot path of DNS decoding.

`read_name` accepts and rejects exactly what dnspython's `dns.name.from_wire_parser` does (pointers
strictly backwards, at most 16 of them, no overlap with the name itself, 255 octets), raising
DecodeError with the reasons `parse_dns` documents, about five times faster; dnspython stays
in charge of RDATA other than addresses.
"""

import re
from collections.abc import Sequence

from egresswatch.errors import DecodeError

MAX_POINTER_HOPS = 16  # dnspython's MAX_COMPRESSION_POINTER_CHAIN
MAX_NAME_OCTETS = 255  # RFC 1035 2.3.4, counting each length byte and the root
# bytes that dnspython's Name.to_text escapes, but for the dot (counted separately)
_JOINED_ESCAPES = re.compile(rb'[^\x21-\x7e]|["();\\@$]')


def read_name(wire: bytes, offset: int) -> tuple[list[bytes], int]:
    """The labels (root label left out) of the possibly compressed name at `offset`, and the
    offset just past it in the record.

    Raises DecodeError: "dns.truncated" (runs off the end, or into itself after a pointer),
    "dns.bad-pointer", "dns.compression-depth" or "dns.bad-name".
    """
    labels: list[bytes] = []
    limit, start, after, hops = len(wire), offset, -1, 0
    pos, octets = offset, 1  # the root label's length byte
    while True:
        if pos >= limit:
            raise DecodeError("dns.truncated", "name runs past the end")
        count = wire[pos]
        if count == 0:
            break
        if count < 0x40:
            pos += 1 + count
            if pos > limit:
                raise DecodeError("dns.truncated", "label runs past the end")
            labels.append(wire[pos - count : pos])
            octets += 1 + count
            continue
        if count < 0xC0 or pos + 2 > limit:
            raise DecodeError("dns.bad-name" if count < 0xC0 else "dns.truncated")
        hops += 1
        start, limit, pos, after = _follow(wire, pos, start, hops, after)
    if octets > MAX_NAME_OCTETS:
        raise DecodeError("dns.bad-name", "name longer than 255 octets")
    return labels, after if after >= 0 else pos + 1


def _follow(wire: bytes, pos: int, start: int, hops: int, after: int) -> tuple[int, int, int, int]:
    """Jump through the pointer at `pos`: (new segment start, read limit, position, resume)."""
    target = (wire[pos] & 0x3F) << 8 | wire[pos + 1]
    if target >= start:
        raise DecodeError("dns.bad-pointer", "compression pointer not strictly backwards")
    if hops > MAX_POINTER_HOPS:
        raise DecodeError("dns.compression-depth")
    # The target may not overlap what was read of this name: reading stops where it began.
    return target, start, target, after if after >= 0 else pos + 2


def skip_name(wire: bytes, offset: int) -> int:
    """Offset just past the (possibly compressed) name at `offset`, without following pointers.

    Raises DecodeError "dns.truncated" when it runs off the end, "dns.bad-name" on a reserved
    label type.
    """
    end = len(wire)
    while offset < end:
        length = wire[offset]
        if length == 0:
            return offset + 1
        if length >= 0xC0:
            break  # a pointer: two bytes, and the name ends there
        if length >= 0x40:  # extended/reserved label types: the length is unknowable
            raise DecodeError("dns.bad-name", "reserved label type")
        offset += 1 + length
    if offset + 2 > end:
        raise DecodeError("dns.truncated", "name runs past the end")
    return offset + 2


def labels_text(labels: Sequence[bytes]) -> str:
    """A name's presentation form (decode/dns.py's docstring): escaped, lower-cased, no root dot."""
    if not labels:
        return "."
    joined = b".".join(labels)
    # the usual case, at C speed: nothing to escape, and no dot inside a label
    if not _JOINED_ESCAPES.search(joined) and joined.count(b".") == len(labels) - 1:
        return joined.decode("ascii").lower()
    # latin-1 maps each byte to the code point of the same value, which the table escapes
    return ".".join(label.decode("latin-1").translate(_LABEL_TEXT) for label in labels)


def _label_byte_text(byte: int) -> str:
    """The text of one label byte: dnspython's Name.to_text escapes, ASCII lower-cased."""
    if byte in b'"().;\\@$':
        return "\\" + chr(byte)
    return chr(byte).lower() if 0x20 < byte < 0x7F else f"\\{byte:03d}"


_LABEL_TEXT = {byte: _label_byte_text(byte) for byte in range(256)}
