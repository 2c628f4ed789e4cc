"""DNS decoder against the shared corpus: every DNS record tshark found, plus bombs and speed.

Payloads are extracted with scapy (test-only) with a small IPv4/IPv6 fragment reassembly,
NFLOG unwrapping and in-order TCP stream rebuilding, so each tshark record meets its bytes.
"""

import contextlib
import ipaddress
import json
import logging
import re
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any

import dns.rcode
import dns.rdata
import dns.rdatatype
import pytest
import scapy.layers.all  # noqa: F401  (binds PPPoE, VXLAN, GRE, ... so frames dissect fully)
from scapy.layers.inet import IP, TCP, UDP
from scapy.layers.inet6 import IPv6, IPv6ExtHdrFragment
from scapy.packet import Packet, Padding
from scapy.utils import rdpcap

from egresswatch.decode.dns import dns_proto_for_ports, parse_dns, split_tcp_dns
from egresswatch.errors import DecodeError
from egresswatch.model import DnsAnswer, DnsMessage

CORPUS = Path(__file__).resolve().parents[2] / ".." / "shared" / "corpus"
DNS_PORTS = frozenset({53, 5353, 5355})
_NFLOG_LINKTYPE_PAYLOAD = 9
Record = dict[str, Any]


@dataclass
class Capture:
    """One corpus capture: its expected DNS records and its frames (index 0 = frame 1)."""

    name: str
    records: list[Record]
    frames: list[Packet]


def corpus_available() -> bool:
    return (CORPUS / "expected").is_dir() and (CORPUS / "pcaps").is_dir()


@cache
def dns_captures() -> tuple[Capture, ...]:
    """Every corpus capture that tshark found DNS in, read once per test session."""
    logging.getLogger("scapy").setLevel(logging.ERROR)  # "evil packet" chatter from scapy
    out = []
    for path in sorted((CORPUS / "expected").glob("*.json")):
        expected = json.loads(path.read_text())
        if expected["dns"]:
            frames = list(rdpcap(str(CORPUS / "pcaps" / expected["meta"]["file"])))
            for frame in frames:
                # we read payloads from scapy's rebuilt bytes: make sure they are the wire's
                assert bytes(frame) == frame.original
            out.append(Capture(expected["meta"]["file"], expected["dns"], frames))
    return tuple(out)


def hostile_captures() -> tuple[Capture, ...]:
    """The compression-bomb captures, for which tshark reports no DNS records at all."""
    names = ("tcpdump__dns-zlip-1.pcap", "zeek__max-compression-depth.pcap")
    return tuple(Capture(n, [], list(rdpcap(str(CORPUS / "pcaps" / n)))) for n in names)


def innermost_ip(frame: Packet) -> Packet | None:
    """The innermost IP/IPv6 header (tunnels: the inner one), unwrapping NFLOG by hand."""
    ips = [layer for layer in frame.iterpayloads() if isinstance(layer, IP | IPv6)]
    if ips:
        return ips[-1]
    raw = bytes(frame)
    if len(raw) > 4 and raw[1] == 0:  # NFLOG: family, version 0, resource id, then TLVs
        return _nflog_ip(raw)
    return None


def _nflog_ip(raw: bytes) -> Packet | None:
    offset = 4
    while offset + 4 <= len(raw):
        length = int.from_bytes(raw[offset : offset + 2], "little")
        kind = int.from_bytes(raw[offset + 2 : offset + 4], "little")
        if length < 4:
            return None
        if kind == _NFLOG_LINKTYPE_PAYLOAD:
            body = raw[offset + 4 : offset + length]
            return IP(body) if raw[0] == 2 else IPv6(body)
        offset += (length + 3) & ~3
    return None


def udp_payload(capture: Capture, frame_no: int) -> bytes | None:
    """The UDP payload of a frame, reassembling IP fragments that end in this frame."""
    ip = innermost_ip(capture.frames[frame_no - 1])
    if ip is None:
        return None
    if ip.haslayer(UDP):
        udp = ip[UDP]
        return bytes(udp.payload)[: max(udp.len - 8, 0)]
    datagram = _reassemble(capture, frame_no)
    return datagram[8:] if datagram is not None else None


def _fragment(ip: Packet) -> tuple[tuple[Any, ...], int, bool, bytes] | None:
    if isinstance(ip, IP) and (ip.frag or ip.flags.MF):
        key = ("4", ip.src, ip.dst, ip.id)
        return key, ip.frag * 8, bool(ip.flags.MF), bytes(ip.payload)[: ip.len - ip.ihl * 4]
    if isinstance(ip, IPv6) and ip.haslayer(IPv6ExtHdrFragment):
        frag = ip[IPv6ExtHdrFragment]
        return ("6", ip.src, ip.dst, frag.id), frag.offset * 8, bool(frag.m), bytes(frag.payload)
    return None


def _reassemble(capture: Capture, frame_no: int) -> bytes | None:
    """Join the fragments of the datagram whose last fragment is `frame_no`."""
    last = _fragment(innermost_ip(capture.frames[frame_no - 1]))  # type: ignore[arg-type]
    if last is None:
        return None
    pieces: dict[int, bytes] = {}
    for frame in capture.frames[:frame_no]:
        ip = innermost_ip(frame)
        frag = _fragment(ip) if ip is not None else None
        if frag is not None and frag[0] == last[0]:
            pieces[frag[1]] = frag[3]
    data = b""
    for offset in sorted(pieces):
        if offset != len(data):
            return None
        data += pieces[offset]
    return data


FlowId = tuple[str, int, str, int]


def tcp_messages(capture: Capture, flow: FlowId) -> Iterator[tuple[int, bytes]]:
    """(frame, message) for each DNS message of one TCP direction, at the completing frame.

    In-order concatenation; segments that start before the next expected sequence
    number (retransmissions) are dropped, as tshark does not report those again.
    """
    buffer = b""
    next_seq: int | None = None
    for number, frame in enumerate(capture.frames, start=1):
        ip = innermost_ip(frame)
        if ip is None or not ip.haslayer(TCP):
            continue
        tcp = ip[TCP]
        if (ip.src, tcp.sport, ip.dst, tcp.dport) != flow:
            continue
        data = bytes(tcp.payload)
        if tcp.haslayer(Padding):  # Ethernet trailer bytes, not TCP data
            data = data[: len(data) - len(bytes(tcp[Padding]))]
        if tcp.flags.S:
            next_seq = tcp.seq + 1
        if not data or (next_seq is not None and tcp.seq < next_seq):
            continue
        next_seq = tcp.seq + len(data)
        messages, used = split_tcp_dns(buffer + data)
        buffer = (buffer + data)[used:]
        for message in messages:
            yield number, message


needs_corpus = pytest.mark.skipif(
    not corpus_available(),
    reason=f"shared corpus not found at {CORPUS} (clone shared/ beside the repo)",
)

# Corpus records we reject, with the reason we give. tshark's output for malformed captures
# is a best effort and ours must only be a subset of it (see the corpus README).
MALFORMED_REJECTED = {
    # A fuzzed QUIC datagram to UDP 443 that tshark's *heuristic* DNS dissector claimed:
    # its question name holds label byte 0x61 (reserved "extended" label type 01xxxxxx),
    # which tshark shows as "<Unknown extended label>". Not a DNS port for us either.
    ("zeek__vector-max-size-crash.pcap", 1): "dns.bad-name",
}


# ---------------------------------------------------------------- normalising tshark vs us

_OURS_ESCAPE = re.compile(rb"\\(\d{3}|.)", re.DOTALL)
_TSHARK_ESCAPE = re.compile(rb"\\([0-7]{1,3}|[abfnrtv\\])")
_C_ESCAPES = {b"a": 7, b"b": 8, b"f": 12, b"n": 10, b"r": 13, b"t": 9, b"v": 11, b"\\": 92}


def ours_bytes(text: str) -> bytes:
    """Our presentation form (RFC 1035 \\DDD decimal and \\c escapes) back to raw bytes."""

    def unescape(match: re.Match[bytes]) -> bytes:
        token = match.group(1)
        return bytes([int(token)]) if token.isdigit() else token

    return _OURS_ESCAPE.sub(unescape, text.encode("ascii"))


def tshark_bytes(text: str) -> bytes:
    """tshark's display form (UTF-8 kept, C-style and octal escapes) back to raw bytes."""

    def unescape(match: re.Match[bytes]) -> bytes:
        token = match.group(1)
        return bytes([_C_ESCAPES.get(token, 0) or int(token, 8)])

    return _TSHARK_ESCAPE.sub(unescape, text.encode("utf-8"))


def same_name(ours: str | None, tshark: str | None) -> bool:
    if ours is None or tshark is None:
        return ours is tshark
    return ours_bytes(ours).lower() == tshark_bytes(tshark).lower()


def same_data(answer: DnsAnswer, expected: Record) -> bool:
    """Compare `data` where tshark gives one, by type; tshark's null means "no opinion"."""
    want = expected["data"]
    if want is None:
        return expected["rdata_hex"] != "" or answer.data is None
    if answer.data is None:
        return False
    if want == "<Name too long>":  # tshark's placeholder; ours: the RFC 3597 generic form
        return answer.data.startswith(f"\\# {len(expected['rdata_hex']) // 2} ")
    kind = expected["type"]
    if kind in (2, 5, 12, 39):  # a single name, which may contain spaces in tshark's form
        return same_name(answer.data, want)
    if kind in (1, 28):
        return same_address(answer.data, want)
    if kind in (16, 99):
        return ours_bytes(answer.data) == tshark_bytes(want)
    if kind in (64, 65):  # tshark prints "priority target" only; we add the params
        raw = bytes.fromhex(expected["rdata_hex"])
        rdata = dns.rdata.from_wire("IN", dns.rdatatype.to_text(kind), raw, 0, len(raw))
        params = rdata.to_text().split(" ", 2)[2:]
        ours = answer.data.split(" ", 2)
        return same_fields(" ".join(ours[:2]), want) and ours[2:] == params
    return same_fields(answer.data, want)


def same_address(ours: str, tshark: str) -> bool:
    try:
        return ipaddress.ip_address(ours) == ipaddress.ip_address(tshark)
    except ValueError:
        return False


def same_fields(ours: str, tshark: str) -> bool:
    mine, theirs = ours.split(" "), tshark.split(" ")
    return len(mine) == len(theirs) and all(map(same_name, mine, theirs))


def rcode_value(text: str) -> int:
    return int(text[5:]) if text.startswith("RCODE") else int(dns.rcode.from_text(text))


def differences(message: DnsMessage, expected: Record) -> list[str]:
    """Every field where our parse disagrees with tshark's record (empty when they agree)."""
    out = []
    if (message.id, message.is_response, message.opcode) != (
        expected["id"],
        expected["is_response"],
        expected["opcode"],
    ):
        out.append("header")
    if not same_name(message.qname, expected["qname"]):
        out.append(f"qname {message.qname!r} != {expected['qname']!r}")
    qtype = None if message.qtype is None else dns.rdatatype.from_text(message.qtype)
    if qtype != expected["qtype"]:
        out.append(f"qtype {message.qtype} != {expected['qtype_name']}")
    if message.truncated != expected["tc"]:
        out.append("tc")
    out += rcode_differences(message, expected)
    out += answer_differences(message.answers, expected["answers"])
    return out


def rcode_differences(message: DnsMessage, expected: Record) -> list[str]:
    if message.rcode is None or expected["rcode"] is None:
        return [] if message.rcode is expected["rcode"] else ["rcode presence"]
    # tshark shows the 4 header bits; ours may carry the EDNS extension above them
    if rcode_value(message.rcode) & 0xF != expected["rcode"]:
        return [f"rcode {message.rcode} != {expected['rcode_name']}"]
    return []


def answer_differences(answers: tuple[DnsAnswer, ...], expected: list[Record]) -> list[str]:
    if len(answers) != len(expected):
        return [f"{len(answers)} answers != {len(expected)}"]
    out = []
    for answer, want in zip(answers, expected, strict=True):
        if not same_name(answer.name, want["name"]):
            out.append(f"answer name {answer.name!r} != {want['name']!r}")
        if dns.rdatatype.from_text(answer.type) != want["type"] or answer.ttl != want["ttl"]:
            out.append(f"answer type/ttl {answer.type}/{answer.ttl} != {want}")
        if not same_data(answer, want):
            out.append(f"answer data {answer.data!r} != {want['data']!r}")
    return out


# ---------------------------------------------------------------- corpus extraction


Pair = tuple[Capture, Record, bytes | None]


def corpus_pairs() -> list[Pair]:
    """(capture, tshark record, our payload or None when not extractable) for every record."""
    pairs: list[Pair] = []
    for capture in dns_captures():
        udp = [r for r in capture.records if r["transport"] == "udp"]
        pairs += [(capture, r, udp_payload(capture, r["frame"])) for r in udp]
        pairs += tcp_pairs(capture, [r for r in capture.records if r["transport"] == "tcp"])
    return pairs


def tcp_pairs(capture: Capture, records: list[Record]) -> list[Pair]:
    flows: dict[FlowId, list[Record]] = {}
    for record in records:
        flow = (record["src"], record["sport"], record["dst"], record["dport"])
        flows.setdefault(flow, []).append(record)
    pairs: list[Pair] = []
    for flow, expected in flows.items():
        ours = list(tcp_messages(capture, flow))
        assert [frame for frame, _ in ours] == [r["frame"] for r in expected], (capture.name, flow)
        pairs += [(capture, r, message) for r, (_, message) in zip(expected, ours, strict=True)]
    return pairs


# ---------------------------------------------------------------- corpus tests


@needs_corpus
@pytest.mark.corpus
def test_every_corpus_record_agrees_with_tshark() -> None:
    mismatches, missing, rejected = {}, [], {}
    checked = 0
    pairs = corpus_pairs()
    for capture, record, payload in pairs:
        key = (capture.name, record["frame"])
        if payload is None:
            missing.append(key)
            continue
        try:
            message = parse_dns(payload)
        except DecodeError as exc:
            rejected[key] = exc.reason
            continue
        checked += 1
        if diff := differences(message, record):
            mismatches[key] = diff
    assert missing == [], "payload not extracted"
    assert rejected == MALFORMED_REJECTED
    assert mismatches == {}
    assert checked == len(pairs) - len(MALFORMED_REJECTED) > 500


@needs_corpus
@pytest.mark.corpus
def test_proto_by_port_matches_tshark() -> None:
    for capture in dns_captures():
        for record in capture.records:
            proto = dns_proto_for_ports(record["sport"], record["dport"])
            if (capture.name, record["frame"]) not in MALFORMED_REJECTED:
                assert proto == record["proto"], (capture.name, record["frame"])


@needs_corpus
@pytest.mark.corpus
def test_invalid_label_bytes_are_decimal_escaped() -> None:
    capture = next(c for c in dns_captures() if c.name == "ndpi__dns-invalid-chars.pcap")
    query = parse_dns(udp_payload(capture, 1) or b"")
    assert query.qname == "www.allyourba\\004\\005\\006arebelongto.cn"
    answer = parse_dns(udp_payload(capture, 2) or b"")
    assert answer.answers == (
        DnsAnswer("www.allyourbasesare\\001\\002\\003ongto.cn", "A", "19.185.141.241", 60),
    )


@needs_corpus
@pytest.mark.corpus
def test_https_answer_shows_address_hints() -> None:
    capture = next(c for c in dns_captures() if c.name == "zeek__dns-https.pcap")
    message = parse_dns(udp_payload(capture, 2) or b"")
    assert message.qtype == "HTTPS"
    assert message.answers[0].data == (
        '1 . alpn="h3,h3-29,h3-28,h3-27,h2" ipv4hint="104.16.132.229,104.16.133.229"'
        ' ipv6hint="2606:4700::6810:84e5,2606:4700::6810:85e5"'
    )


def corpus_payloads() -> list[bytes]:
    if not corpus_available():
        return []
    return [payload for _, _, payload in corpus_pairs() if payload is not None]


@needs_corpus
@pytest.mark.corpus
def test_compression_bombs() -> None:
    zlip, depth = hostile_captures()
    ip = innermost_ip(zlip.frames[0])
    assert ip is not None
    # The UDP length field says 0 bytes (so tshark shows no DNS); the bomb follows anyway:
    # a question name that is a pointer to itself, then a chain of pointers.
    bomb = bytes(ip[UDP])[8:]
    assert bomb[12:14] == b"\xc0\x0c"
    started = time.perf_counter()
    with pytest.raises(DecodeError) as info:
        parse_dns(bomb)
    assert info.value.reason == "dns.bad-pointer"
    # max-compression-depth: deep but legal (backwards) pointers, which tshark accepts too
    message = parse_dns(udp_payload(depth, 1) or b"")
    assert (message.qname, len(message.answers)) == ("a", 7)
    assert time.perf_counter() - started < 0.5


# ---------------------------------------------------------------- speed


@needs_corpus
@pytest.mark.corpus
def test_parse_speed_on_corpus(record_property: Callable[[str, object], None]) -> None:
    payloads = corpus_payloads()
    started = time.perf_counter()
    rounds = 0
    while time.perf_counter() - started < 1.0:
        for payload in payloads:
            with contextlib.suppress(DecodeError):
                parse_dns(payload)
        rounds += 1
    rate = rounds * len(payloads) / (time.perf_counter() - started)
    record_property("parse_dns_messages_per_second", round(rate))  # not into the progress dots
    assert rate > 2000
