"""DNS decoder on hand-built messages, hostile input (hypothesis) and TCP framing.

Corpus agreement with tshark, the compression bombs and speed are in test_dns_corpus.py.
"""

import struct
from typing import Any

import dns.message
import dns.name
import dns.rcode
import dns.rdata
import dns.rdatatype
import dns.rrset
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from egresswatch.decode.dns import (
    MAX_ANSWERS,
    MAX_QUESTIONS,
    dns_proto_for_ports,
    parse_dns,
    split_tcp_dns,
)
from egresswatch.errors import DecodeError
from egresswatch.model import DnsAnswer, DnsMessage
from tests.decode.test_dns_corpus import corpus_payloads, ours_bytes


def test_proto_precedence_is_lower_port_first() -> None:
    assert dns_proto_for_ports(5353, 53) == "dns"
    assert dns_proto_for_ports(5355, 5353) == "mdns"
    assert dns_proto_for_ports(40000, 5355) == "llmnr"
    assert dns_proto_for_ports(443, 40000) is None


# ---------------------------------------------------------------- hand-built messages


def wire(text: str) -> bytes:
    """A real DNS message built by dnspython from zone-file style text."""
    return dns.message.from_text(text).to_wire()


def test_query_without_question_and_response_rcode() -> None:
    message = parse_dns(struct.pack("!6H", 7, 0x8403, 0, 0, 0, 0))
    assert message == DnsMessage(7, True, 0, None, None, "NXDOMAIN", False, ())


def test_extended_rcode_from_opt() -> None:
    response = dns.message.make_response(dns.message.make_query("example.com", "A"))
    response.use_edns(0)
    response.set_rcode(dns.rcode.BADVERS)
    assert parse_dns(response.to_wire()).rcode == "BADVERS"


def test_answer_text_forms() -> None:
    response = dns.message.make_response(dns.message.make_query("Example.COM", "ANY"))
    records = [
        "Example.COM. 60 IN MX 10 Mail.Example.com.",
        'Example.COM. 60 IN TXT "a\\\\b" "c\\255"',
        "_sip._tcp.example.com. 60 IN SRV 1 2 5060 sip.example.com.",
        "example.com. 60 IN SOA ns.example.com. h.example.com. 1 2 3 4 5",
        "example.com. 60 IN TYPE65280 \\# 2 abcd",
        'example.com. 60 IN CAA 0 issue "ca.example"',
        "www.example.com. 4294967295 IN CNAME a\\.b.example.com.",
    ]
    for line in records:
        response.answer.append(dns.rrset.from_text(*_split_rr(line)))
    message = parse_dns(response.to_wire())
    assert message.qname == "example.com" and message.qtype == "ANY"
    assert [(a.type, a.data, a.ttl) for a in message.answers] == [
        ("MX", "10 mail.example.com", 60),
        ("TXT", "a\\\\bc\\255", 60),
        ("SRV", "1 2 5060 sip.example.com", 60),
        ("SOA", "ns.example.com h.example.com 1 2 3 4 5", 60),
        ("TYPE65280", "\\# 2 abcd", 60),
        ("CAA", '0 issue "ca.example"', 60),
        ("CNAME", "a\\.b.example.com", 4294967295),
    ]


def _split_rr(line: str) -> tuple[Any, ...]:
    name, ttl, klass, kind, rdata = line.split(" ", 4)
    return name, int(ttl), klass, kind, rdata


def test_bad_rdata_falls_back_to_generic_form() -> None:
    query = wire("id 1\nflags QR\n;QUESTION\nx. IN A\n")
    # one A answer whose RDATA is 3 bytes instead of 4
    answer = b"\xc0\x0c" + struct.pack("!HHIH", 1, 1, 5, 3) + b"\x01\x02\x03"
    payload = query[:6] + b"\x00\x01" + query[8:] + answer
    assert parse_dns(payload).answers == (DnsAnswer("x", "A", "\\# 3 010203", 5),)


def test_root_and_mdns_cache_flush_class() -> None:
    header = struct.pack("!6H", 0, 0x8400, 1, 1, 0, 0)
    question = b"\x00" + struct.pack("!HH", 1, 0x8001)
    answer = b"\x00" + struct.pack("!HHIH", 1, 0x8001, 120, 4) + bytes([10, 0, 0, 1])
    message = parse_dns(header + question + answer)
    assert (message.qname, message.answers) == (".", (DnsAnswer(".", "A", "10.0.0.1", 120),))


def test_broken_additional_section_is_ignored() -> None:
    payload = wire(
        "id 2\nflags QR RD RA\n;QUESTION\na.example. IN A\n;ANSWER\na.example. 5 IN A 192.0.2.1\n"
    )
    header = bytearray(payload[:12])
    header[11] = 3  # claim three additional records, then append garbage
    message = parse_dns(bytes(header) + payload[12:] + b"\xff\xff\x07")
    assert message.answers == (DnsAnswer("a.example", "A", "192.0.2.1", 5),)
    assert message.rcode == "NOERROR"


@pytest.mark.parametrize(
    ("payload", "reason"),
    [
        (b"\x00" * 11, "dns.truncated"),
        (struct.pack("!6H", 1, 0, 1, 0, 0, 0) + b"\x03ab", "dns.truncated"),
        (struct.pack("!6H", 1, 0, 1, 0, 0, 0) + b"\xc0\x0c\x00\x01\x00\x01", "dns.bad-pointer"),
        (struct.pack("!6H", 1, 0, 1, 0, 0, 0) + b"\x80abc\x00\x00\x01\x00\x01", "dns.bad-name"),
        (struct.pack("!6H", 1, 0, MAX_QUESTIONS + 1, 0, 0, 0), "dns.too-many-questions"),
        (struct.pack("!6H", 1, 0, 0, 0, 0, 0) + bytes(65536), "dns.too-long"),
        (
            struct.pack("!6H", 1, 0, 1, 0, 0, 0)
            + b"\x3f"
            + b"a" * 63
            + b"\x3f"
            + b"a" * 63
            + b"\x3f"
            + b"a" * 63
            + b"\x3f"
            + b"a" * 63
            + b"\x00\x00\x01\x00\x01",
            "dns.bad-name",
        ),
    ],
)
def test_malformed_reasons(payload: bytes, reason: str) -> None:
    with pytest.raises(DecodeError) as info:
        parse_dns(payload)
    assert info.value.reason == reason


def chained_pointer_message(depth: int) -> bytes:
    """A response whose second answer's owner is a chain of `depth` compression pointers.

    The chain lives in the RDATA of a first (NULL) answer: name "a", then pointers each
    to the one before, so every pointer points strictly backwards as RFC 1035 requires.
    """
    chain_start = 12 + 1 + 10  # header, root owner, fixed fields of the NULL answer
    chain, offsets = b"\x01a\x00", [chain_start]
    for _ in range(depth - 1):
        offsets.append(chain_start + len(chain))
        chain += struct.pack("!H", 0xC000 | offsets[-2])
    header = struct.pack("!6H", 1, 0x8000, 0, 2, 0, 0)
    first = b"\x00" + struct.pack("!HHIH", 10, 1, 0, len(chain)) + chain
    second = struct.pack("!H", 0xC000 | offsets[-1]) + struct.pack("!HHIH", 1, 1, 0, 4)
    return header + first + second + bytes([192, 0, 2, 1])


def test_pointer_chain_depth_is_bounded() -> None:
    assert parse_dns(chained_pointer_message(16)).answers[1] == DnsAnswer("a", "A", "192.0.2.1", 0)
    with pytest.raises(DecodeError) as info:
        parse_dns(chained_pointer_message(17))
    assert info.value.reason == "dns.compression-depth"


def test_answer_cap() -> None:
    query = dns.message.make_query("many.example", "A")
    response = dns.message.make_response(query)
    rrset = dns.rrset.from_text_list(
        "many.example.", 5, "IN", "A", [f"10.0.{i // 256}.{i % 256}" for i in range(300)]
    )
    response.answer.append(rrset)
    message = parse_dns(response.to_wire())
    assert len(message.answers) == MAX_ANSWERS


# ---------------------------------------------------------------- TCP framing


def test_split_tcp_keeps_partial_tail() -> None:
    one, two = wire("id 1\n;QUESTION\na. IN A\n"), wire("id 2\n;QUESTION\nb. IN AAAA\n")
    stream = struct.pack("!H", len(one)) + one + struct.pack("!H", len(two)) + two
    assert split_tcp_dns(stream[:-1]) == ([one], 2 + len(one))
    assert split_tcp_dns(stream) == ([one, two], len(stream))
    assert split_tcp_dns(b"\x00") == ([], 0)
    assert split_tcp_dns(b"\x00\x00\x00\x0c") == ([b""], 2)


# ---------------------------------------------------------------- properties

_CORPUS_PAYLOADS: list[bytes] = []


def real_payloads() -> list[bytes]:
    if not _CORPUS_PAYLOADS:
        _CORPUS_PAYLOADS.extend(corpus_payloads() or [wire("id 9\n;QUESTION\nexample.com. IN A\n")])
    return _CORPUS_PAYLOADS


def parse_or_reason(payload: bytes) -> DnsMessage | str:
    try:
        return parse_dns(payload)
    except DecodeError as exc:
        assert exc.reason.startswith("dns.")
        return exc.reason


@settings(max_examples=400, deadline=None)
@given(st.binary(max_size=600))
def test_arbitrary_bytes_only_raise_decode_error(payload: bytes) -> None:
    parse_or_reason(payload)


@settings(max_examples=300, deadline=None)
@given(st.binary(min_size=12, max_size=300))
def test_arbitrary_bodies_after_plausible_header(body: bytes) -> None:
    parse_or_reason(struct.pack("!6H", 1, 0x8180, 1, 3, 1, 2) + body)


_LABEL = st.binary(min_size=1, max_size=63)


@settings(max_examples=300, deadline=None)
@given(st.lists(_LABEL, max_size=6).filter(lambda ls: sum(len(x) + 1 for x in ls) < 255))
def test_names_match_dnspython_presentation_form(labels: list[bytes]) -> None:
    qname = b"".join(bytes([len(label)]) + label for label in labels) + b"\x00"
    message = parse_dns(struct.pack("!6H", 1, 0, 1, 0, 0, 0) + qname + b"\x00\x01\x00\x01")
    expected = dns.name.Name([*labels, b""]).to_text(omit_final_dot=True).lower()
    assert message.qname == expected
    assert ours_bytes(expected) == b".".join(labels).lower() or not labels


@settings(max_examples=200, deadline=None)
@given(st.lists(st.binary(max_size=40), min_size=1, max_size=4))
def test_txt_strings_round_trip(strings: list[bytes]) -> None:
    rdata = b"".join(bytes([len(part)]) + part for part in strings)
    header = struct.pack("!6H", 1, 0x8000, 0, 1, 0, 0)
    answer = b"\x00" + struct.pack("!HHIH", 16, 1, 1, len(rdata)) + rdata
    (txt,) = parse_dns(header + answer).answers
    assert txt.data is not None and txt.data.isprintable()
    assert ours_bytes(txt.data) == b"".join(strings)


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.data())
def test_mutated_real_messages_only_raise_decode_error(data: st.DataObject) -> None:
    payloads = real_payloads()
    payload = bytearray(data.draw(st.sampled_from(payloads)))
    for _ in range(data.draw(st.integers(0, 4))):
        where = data.draw(st.integers(0, len(payload) - 1))
        payload[where] ^= 1 << data.draw(st.integers(0, 7))
    cut = data.draw(st.integers(0, len(payload)))
    parse_or_reason(bytes(payload[:cut]))
    parse_or_reason(bytes(payload))


@settings(max_examples=200, deadline=None)
@given(st.data())
def test_split_tcp_any_chunking_gives_the_same_messages(data: st.DataObject) -> None:
    payloads = real_payloads()
    messages = data.draw(st.lists(st.sampled_from(payloads), min_size=1, max_size=6))
    stream = b"".join(struct.pack("!H", len(m)) + m for m in messages)
    cuts = sorted(data.draw(st.lists(st.integers(0, len(stream)), max_size=8)))
    got: list[bytes] = []
    buffer = b""
    for start, end in zip([0, *cuts], [*cuts, len(stream)], strict=True):
        buffer += stream[start:end]
        framed, used = split_tcp_dns(buffer)
        got += framed
        buffer = buffer[used:]
    assert got == messages and buffer == b""
