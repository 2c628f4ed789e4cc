"""Decode DNS, mDNS and LLMNR messages from UDP payloads and DNS-over-TCP streams.

Pure functions: bytes in, `DnsMessage` out, `DecodeError(reason)` for anything malformed.

Only the header, the question section and the answer section are parsed record by record
(with dnspython's name and rdata readers); the authority and additional sections are merely
walked to find the EDNS OPT record. So a message whose later sections are broken, as tshark
also accepts, still yields its question and answers. Trailing bytes after the counted
records are ignored for the same reason.

Text forms (what `DnsMessage`/`DnsAnswer` hold; docs/replay-jsonl.md repeats them):

* names (qname, answer owner, the names in the `data` forms below): presentation form without the
  trailing dot, ASCII lower-cased; the root is ".". Bytes outside 0x21-0x7e are written as
  RFC 1035 decimal escapes `\\DDD` (a space is `\\032`, UTF-8 is escaped byte by byte) and
  the characters `"().;\\@$` as `\\c`, so a dot inside a label is `\\.`.
* `qtype` / `DnsAnswer.type`: dnspython mnemonic ("A", "HTTPS"), "TYPE<n>" when unknown.
* `rcode`: None for queries; for responses the mnemonic of the full RFC 6891 rcode, i.e. the
  header's 4 bits extended by the upper 8 bits from the OPT record's TTL when an OPT record
  is present ("NOERROR", "NXDOMAIN", "BADVERS", "BADCOOKIE", ...), "RCODE<n>" when unnamed.
  (tshark reports only the 4 header bits; the two differ only when the OPT extension is
  non-zero.)
* `DnsAnswer.data`, by answer type:
  - A, AAAA: the address ("192.0.2.1", "2001:db8::1", RFC 5952 form)
  - CNAME, NS, PTR, DNAME: the target name
  - MX: "preference exchange"
  - TXT, SPF: the character-strings concatenated; bytes outside 0x20-0x7e as `\\DDD` and
    a backslash as `\\\\`
  - SRV: "priority weight port target"
  - SOA: "mname rname serial refresh retry expire minimum"
  - SVCB, HTTPS: "priority target" followed by the SvcParams in dnspython's text form, e.g.
    `1 . alpn="h3,h2" ipv4hint="192.0.2.1,192.0.2.2" ipv6hint="2001:db8::1"`
  - any other type: dnspython's `to_text()` (names there keep their trailing dot)
  - RDATA that does not parse as its type: RFC 3597 generic form `\\# <len> <hex>`
  - empty RDATA (length 0): None
  The class's top bit (mDNS cache-flush) is ignored when interpreting RDATA.

Reasons raised by `parse_dns` (each a counter key):

* ``dns.truncated``: shorter than the 12-byte header, or a question/answer record runs past
  the end of the payload
* ``dns.bad-pointer``: a compression pointer that does not point strictly backwards (this
  is what makes compression loops impossible); one landing inside its own name counts as
  ``dns.truncated``
* ``dns.compression-depth``: a name needing more than 16 compression pointers
* ``dns.bad-name``: a reserved label type, or a label/name longer than 63/255 octets
* ``dns.too-many-questions``: QDCOUNT above `MAX_QUESTIONS`
* ``dns.too-long``: a payload over 65535 bytes (no DNS transport can carry it)
* ``dns.malformed``: anything else dnspython rejects in the header/question/answer sections

Bounded work: at most `MAX_QUESTIONS` questions and the first `MAX_ANSWERS` answers are
parsed (later answers are neither parsed nor reported); names are capped at 16 pointer hops
and 255 octets by dnspython, so a message costs O(its length).
"""

import socket
import struct
from functools import lru_cache

import dns.rcode
import dns.rdatatype

from egresswatch.decode.dns_wire import labels_text, read_name, skip_name
from egresswatch.errors import DecodeError
from egresswatch.model import DnsAnswer, DnsMessage, DnsProto

MAX_QUESTIONS = 64
MAX_ANSWERS = 256
MAX_MESSAGE = 65535

_HEADER = struct.Struct("!6H")
_RR_FIXED = struct.Struct("!HHIH")
_Q_FIXED = struct.Struct("!HH")
_OPT = 41
_IN = 1
_ADDRESS_FAMILIES = {(1, 4): socket.AF_INET, (28, 16): socket.AF_INET6}
# tshark (and Wireshark's UDP/TCP dissectors) try the lower port first; 53 < 5353 < 5355,
# so sorting the two ports gives the same precedence.
_PORT_PROTOS: dict[int, DnsProto] = {53: "dns", 5353: "mdns", 5355: "llmnr"}


def dns_proto_for_ports(sport: int, dport: int) -> DnsProto | None:
    """Return which DNS flavour a UDP/TCP port pair carries, or None.

    When both ports are DNS ports the lower one wins, as in tshark (so 53 beats 5353 beats
    5355). Only these three ports are considered; tshark would give a lower port registered
    to another protocol precedence, which does not matter for a DNS decoder.
    """
    for port in sorted((sport, dport)):
        proto = _PORT_PROTOS.get(port)
        if proto is not None:
            return proto
    return None


def parse_dns(payload: bytes) -> DnsMessage:
    """Decode one DNS/mDNS/LLMNR message (a UDP payload, or one message framed from TCP).

    Returns the header fields, the first question and the answer section (text forms in the
    module docstring). Raises DecodeError with one of the reasons listed there, and nothing
    else, whatever the bytes.
    """
    if len(payload) < _HEADER.size:
        raise DecodeError("dns.truncated", "short header")
    if len(payload) > MAX_MESSAGE:
        raise DecodeError("dns.too-long")
    ident, flags, qdcount, ancount, nscount, arcount = _HEADER.unpack_from(payload)
    if qdcount > MAX_QUESTIONS:
        raise DecodeError("dns.too-many-questions", str(qdcount))
    question, offset = _read_question(payload, qdcount)
    answers, offset = _read_answers(payload, offset, min(ancount, MAX_ANSWERS))
    is_response = bool(flags & 0x8000)
    rcode = None
    if is_response:
        extended = (
            0 if ancount > MAX_ANSWERS else _opt_rcode_bits(payload, offset, nscount + arcount)
        )
        rcode = _rcode_text(extended << 4 | flags & 0xF)
    return DnsMessage(
        id=ident,
        is_response=is_response,
        opcode=flags >> 11 & 0xF,
        qname=question[0] if question else None,
        qtype=question[1] if question else None,
        rcode=rcode,
        truncated=bool(flags & 0x0200),
        answers=answers,
    )


def split_tcp_dns(buffer: bytes) -> tuple[list[bytes], int]:
    """Split DNS-over-TCP stream bytes (RFC 1035 4.2.2, RFC 7766) into whole messages.

    Returns the complete messages at the start of `buffer` and how many bytes they used;
    the caller keeps `buffer[used:]` for when more data arrives (a message is complete
    within 65537 bytes, so a caller's buffer never needs to grow beyond that).
    A zero length prefix frames an empty message: it is returned as b"" (which parse_dns
    rejects as dns.truncated, so it gets counted) and the framing stays in sync.
    """
    messages: list[bytes] = []
    used = 0
    while len(buffer) - used >= 2:
        (length,) = struct.unpack_from("!H", buffer, used)
        end = used + 2 + length
        if end > len(buffer):
            break
        messages.append(bytes(buffer[used + 2 : end]))
        used = end
    return messages, used


def _read_question(wire: bytes, count: int) -> tuple[tuple[str, str] | None, int]:
    """The first question as (qname, qtype), and the offset past the question section.

    Later questions are skipped in place, without decompressing their names, so a broken
    second question (as tshark also tolerates) does not hide the first one or the answers.
    """
    if count == 0:
        return None, _HEADER.size
    labels, offset = read_name(wire, _HEADER.size)
    if offset + _Q_FIXED.size > len(wire):
        raise DecodeError("dns.truncated", "question runs past the end")
    qtype = _Q_FIXED.unpack_from(wire, offset)[0]
    offset += _Q_FIXED.size
    for _ in range(count - 1):
        offset = skip_name(wire, offset) + _Q_FIXED.size
        if offset > len(wire):
            raise DecodeError("dns.truncated", "question runs past the end")
    return (labels_text(labels), _type_text(qtype)), offset


def _read_answers(wire: bytes, offset: int, count: int) -> tuple[tuple[DnsAnswer, ...], int]:
    answers = []
    for _ in range(count):
        labels, offset = read_name(wire, offset)
        start = offset + _RR_FIXED.size
        if start > len(wire):
            raise DecodeError("dns.truncated", "record runs past the end")
        rdtype, rdclass, ttl, rdlen = _RR_FIXED.unpack_from(wire, offset)
        offset = start + rdlen
        if offset > len(wire):
            raise DecodeError("dns.truncated", "RDATA runs past the end")
        data = _rdata_text(wire, start, rdlen, rdclass & 0x7FFF, rdtype)
        answers.append(DnsAnswer(labels_text(labels), _type_text(rdtype), data, ttl))
    return tuple(answers), offset


def _rdata_text(wire: bytes, start: int, rdlen: int, rdclass: int, rdtype: int) -> str | None:
    if rdlen == 0:
        return None
    # Fast path for the commonest answers (about half of them): same text as dnspython's.
    if rdclass == _IN and (rdtype, rdlen) in _ADDRESS_FAMILIES:
        family = _ADDRESS_FAMILIES[rdtype, rdlen]
        return socket.inet_ntop(family, wire[start : start + rdlen])
    # dnspython's RDATA machinery costs ~50 ms of start-up: loaded by the first answer needing it
    from egresswatch.decode import dns_rdata  # noqa: PLC0415

    return dns_rdata.rdata_text(wire, start, rdlen, rdclass, rdtype)


def _opt_rcode_bits(wire: bytes, offset: int, count: int) -> int:
    """The upper 8 rcode bits from the first OPT record, skipping the records before it.

    Best effort: a malformed authority/additional section just means no extension (0).
    """
    try:
        for _ in range(count):
            name_end = skip_name(wire, offset)
            if name_end + _RR_FIXED.size > len(wire):
                return 0
            rdtype, _rdclass, ttl, rdlen = _RR_FIXED.unpack_from(wire, name_end)
            if rdtype == _OPT:
                return int(ttl) >> 24
            offset = name_end + _RR_FIXED.size + rdlen
    except DecodeError:
        pass
    return 0


@lru_cache(maxsize=1024)
def _type_text(rdtype: int) -> str:
    return str(dns.rdatatype.to_text(dns.rdatatype.RdataType.make(rdtype)))


@lru_cache(maxsize=256)
def _rcode_text(value: int) -> str:
    text = str(dns.rcode.to_text(dns.rcode.Rcode.make(value)))
    return f"RCODE{value}" if text.isdigit() else text
