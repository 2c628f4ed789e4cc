"""PacketDecoder against every record of the corpus, handcrafted scapy packets and fuzzing."""

import json
import struct
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scapy.contrib.gtp import GTP_U_Header
from scapy.layers.dns import DNS, DNSQR
from scapy.layers.inet import ICMP, IP, TCP, UDP, fragment
from scapy.layers.inet6 import (
    IPv6,
    IPv6ExtHdrDestOpt,
    IPv6ExtHdrFragment,
    IPv6ExtHdrHopByHop,
    IPv6ExtHdrRouting,
    fragment6,
)
from scapy.layers.l2 import GRE, LLC, CookedLinux, CookedLinuxV2, Dot1AD, Dot1Q, Dot3, Ether
from scapy.layers.ppp import PPP, PPPoE
from scapy.layers.vxlan import VXLAN
from scapy.packet import Raw

from egresswatch.capture.pcapfile import read_frames
from egresswatch.counters import Counters
from egresswatch.decode.fragments import Reassembler
from egresswatch.decode.packet import PacketDecoder, Segment

CORPUS = Path(__file__).resolve().parents[2] / ".." / "shared" / "corpus"
RECORD_KINDS = ("dns", "tls_sni", "tls_no_sni", "quic_sni", "quic_no_sni")
LINKTYPES = [0, 1, 9, 12, 14, 50, 101, 108, 113, 228, 229, 239, 276]

A4, B4 = "10.199.0.1", "10.199.0.2"
A6, B6 = "fd00:199::1", "fd00:199::2"
DNS_QUERY = DNS(id=7, qd=DNSQR(qname="example.org"))


def corpus_captures() -> list[Path]:
    pcaps = CORPUS / "pcaps"
    return sorted(pcaps.iterdir()) if pcaps.is_dir() else []


def decode(linktype: int, pkt: Any, decoder: PacketDecoder | None = None) -> Segment | None:
    decoder = decoder if decoder is not None else PacketDecoder()
    return decoder.decode(linktype, bytes(pkt), 1.0)


def udp4(sport: int = 5353, dport: int = 53) -> Any:
    return IP(src=A4, dst=B4) / UDP(sport=sport, dport=dport) / DNS_QUERY


def udp6() -> Any:
    return IPv6(src=A6, dst=B6) / UDP(sport=40000, dport=53) / DNS_QUERY


def assert_dns4(seg: Segment | None, tunneled: bool = False) -> None:
    assert seg is not None
    assert (seg.transport, seg.src, seg.sport, seg.dst, seg.dport) == ("udp", A4, 5353, B4, 53)
    assert seg.payload == bytes(DNS_QUERY)
    assert (seg.seq, seg.flags, seg.tunneled) == (0, 0, tunneled)


def assert_dns6(seg: Segment | None, tunneled: bool = False) -> None:
    assert seg is not None
    assert (seg.src, seg.sport, seg.dst, seg.dport, seg.tunneled) == (A6, 40000, B6, 53, tunneled)
    assert seg.payload == bytes(DNS_QUERY)


# -- corpus ----------------------------------------------------------------------------------


@pytest.mark.corpus
@pytest.mark.parametrize("capture", corpus_captures(), ids=lambda p: p.name)
def test_every_corpus_record_has_its_segment(capture: Path) -> None:
    stem = capture.name.removesuffix(".pcapng").removesuffix(".pcap")
    expected = json.loads((CORPUS / "expected" / f"{stem}.json").read_text())
    decoder = PacketDecoder()
    segments = [decoder.decode(f.linktype, f.data, f.ts) for f in read_frames(capture)]
    for kind in RECORD_KINDS:
        for record in expected.get(kind, []):
            seg = segments[record["frame"] - 1]
            assert seg is not None, (kind, record["frame"], decoder.counters.snapshot())
            got = (seg.src, seg.sport, seg.dst, seg.dport, seg.tunneled)
            want = (record["src"], record["sport"], record["dst"], record["dport"])
            assert got == (*want, record.get("tunneled", False)), (kind, record["frame"])
            transport = record.get("transport", "udp" if kind.startswith("quic") else "tcp")
            assert seg.transport == transport


@pytest.mark.corpus
def test_corpus_tunnels_and_fragments_are_all_found() -> None:
    if not corpus_captures():
        pytest.skip(f"corpus not found at {CORPUS} (shared/ must sit beside the repository)")
    tunneled = reassembled = 0
    for capture in corpus_captures():
        decoder = PacketDecoder()
        for f in read_frames(capture):
            seg = decoder.decode(f.linktype, f.data, f.ts)
            tunneled += seg is not None and seg.tunneled
        reassembled += decoder.counters.get("ip.reassembled")
    assert reassembled >= 12  # ndpi__dns_fragmented, zeek__ipv6-fragmented-dns, dns-edns-ecs
    assert tunneled >= 13


# -- link layers -----------------------------------------------------------------------------


def test_ethernet_ipv4_udp_and_padding_trimmed() -> None:
    small = Ether() / IP(src=A4, dst=B4) / UDP(sport=5353, dport=53) / b"hi"
    seg = decode(1, bytes(small) + b"\0" * 30)  # Ethernet pads to 60 bytes
    assert seg is not None and seg.payload == b"hi"
    assert_dns4(decode(1, Ether() / udp4()))


@pytest.mark.parametrize(
    "frame",
    [
        Ether() / Dot1Q(vlan=5) / udp4(),
        Ether() / Dot1AD(vlan=5) / Dot1Q(vlan=7) / udp4(),
        Ether(type=0x9100) / Dot1Q(vlan=5) / Dot1Q(vlan=6) / udp4(),
        Ether() / PPPoE(sessionid=9) / PPP(proto=0x0021) / udp4(),
        Ether() / Dot1AD(vlan=1) / Dot1Q(vlan=2) / PPPoE() / PPP(proto=0x0021) / udp4(),
    ],
    ids=["vlan", "qinq", "9100", "pppoe", "qinq-pppoe"],
)
def test_ethernet_tags_and_pppoe(frame: Any) -> None:
    assert_dns4(decode(1, frame))


def test_pppoe_ipv6_and_vlan_ipv6() -> None:
    assert_dns6(decode(1, Ether() / PPPoE() / PPP(proto=0x0057) / udp6()))
    assert_dns6(decode(1, Ether() / Dot1Q() / udp6()))


def test_llc_and_non_ip_frames_are_counted() -> None:
    decoder = PacketDecoder()
    assert decode(1, Dot3() / LLC() / Raw(b"x" * 40), decoder) is None
    assert decode(1, Ether(type=0x0806) / Raw(b"x" * 28), decoder) is None
    assert decoder.counters.snapshot() == {"link.llc": 1, "link.non-ip": 1}


@pytest.mark.parametrize("linktype", [101, 12, 14])
def test_raw_ip(linktype: int) -> None:
    assert_dns4(decode(linktype, udp4()))
    assert_dns6(decode(linktype, udp6()))


def test_ipv4_and_ipv6_only_link_types() -> None:
    assert_dns4(decode(228, udp4()))
    assert_dns6(decode(229, udp6()))
    assert decode(228, udp6()) is None


@pytest.mark.parametrize("family", [24, 28, 30])
@pytest.mark.parametrize("order", ["<", ">"])
def test_bsd_loopback_either_byte_order(family: int, order: str) -> None:
    for linktype in (0, 108):
        assert_dns4(decode(linktype, struct.pack(order + "I", 2) + bytes(udp4())))
        assert_dns6(decode(linktype, struct.pack(order + "I", family) + bytes(udp6())))


def test_linux_cooked_captures() -> None:
    assert_dns4(decode(113, CookedLinux(proto=0x0800) / udp4()))
    assert_dns6(decode(113, CookedLinux(proto=0x86DD) / udp6()))
    assert_dns4(decode(276, CookedLinuxV2(proto=0x0800) / udp4()))
    assert_dns6(decode(276, CookedLinuxV2(proto=0x86DD) / udp6()))


@pytest.mark.parametrize("linktype", [9, 50])
def test_ppp_with_and_without_address_control_and_compressed_protocol(linktype: int) -> None:
    assert_dns4(decode(linktype, b"\xff\x03\x00\x21" + bytes(udp4())))
    assert_dns4(decode(linktype, b"\x00\x21" + bytes(udp4())))
    assert_dns4(decode(linktype, b"\x21" + bytes(udp4())))
    assert_dns6(decode(linktype, b"\xff\x03\x00\x57" + bytes(udp6())))


def nflog(order: str, family: int, packet: bytes) -> bytes:
    def tlv(kind: int, value: bytes) -> bytes:
        head = struct.pack(order + "HH", len(value) + 4, kind)
        return head + value + b"\0" * (-len(value) % 4)

    return (
        bytes([family, 0, 0, 5])
        + tlv(10, b"prefix\0")
        + tlv(1, b"\x08\x00\x03\x00")
        + tlv(9, packet)
    )


@pytest.mark.parametrize("order", ["<", ">"])
def test_nflog_payload_tlv(order: str) -> None:
    assert_dns4(decode(239, nflog(order, 2, bytes(udp4()))))
    assert_dns6(decode(239, nflog(order, 10, bytes(udp6()))))


def test_unsupported_link_type_is_counted_once() -> None:
    decoder = PacketDecoder()
    assert decoder.decode(147, bytes(Ether() / udp4()), 1.0) is None
    assert decoder.decode(70000, b"x", 1.0) is None
    assert decoder.counters.snapshot() == {"link.unsupported:147": 1, "link.unsupported:other": 1}


# -- IP and transport ------------------------------------------------------------------------


def test_tcp_fields_options_and_payload() -> None:
    tcp = TCP(
        sport=44321, dport=443, seq=123456789, flags="PA", options=[("MSS", 1460), ("NOP", None)]
    )
    seg = decode(1, Ether() / IP(src=A4, dst=B4, options=[b"\x01" * 4]) / tcp / b"hello")
    assert seg == Segment("tcp", A4, 44321, B4, 443, b"hello", 123456789, 0x18, False)


def test_ipv6_extension_headers() -> None:
    exts = IPv6ExtHdrHopByHop() / IPv6ExtHdrRouting() / IPv6ExtHdrDestOpt()
    assert_dns6(
        decode(1, Ether() / IPv6(src=A6, dst=B6) / exts / UDP(sport=40000, dport=53) / DNS_QUERY)
    )
    # AH (51): next header, length in 4-byte units minus 2, then SPI, sequence and a 12-byte ICV
    ah = bytes([17, 4, 0, 0]) + b"\0" * 20
    ip6 = IPv6(src=A6, dst=B6, nh=51) / Raw(ah + bytes(UDP(sport=40000, dport=53) / DNS_QUERY))
    assert_dns6(decode(229, ip6))


def test_ipv6_address_text_is_rfc5952() -> None:
    pkt = IPv6(src="2001:db8:0:0:1:0:0:1", dst="fd00:199:0:0:0:0:0:2") / UDP() / b"x"
    seg = decode(229, pkt)
    assert seg is not None and (seg.src, seg.dst) == ("2001:db8::1:0:0:1", "fd00:199::2")


def test_other_protocols_and_esp_are_counted() -> None:
    decoder = PacketDecoder()
    assert decode(228, IP(src=A4, dst=B4) / ICMP(), decoder) is None
    assert decode(228, IP(src=A4, dst=B4, proto=132) / Raw(b"x" * 12), decoder) is None
    assert decode(229, IPv6(src=A6, dst=B6, nh=50) / Raw(b"x" * 16), decoder) is None
    assert decoder.counters.snapshot() == {"ip.esp": 1, "ip.proto:132": 1, "ip.proto:icmp": 1}


@pytest.mark.parametrize(
    ("raw", "reason"),
    [
        (bytes(udp4())[:15], "ip.truncated"),
        (b"\x44" + bytes(udp4())[1:], "ip.bad-ihl"),
        (bytes(udp4())[:2] + b"\x00\x05" + bytes(udp4())[4:], "ip.bad-length"),
        (bytes(IP(src=A4, dst=B4) / TCP(dataofs=15)), "tcp.bad-offset"),
        (bytes(IP(src=A4, dst=B4) / UDP(len=3)), "udp.bad-length"),
        (bytes(IP(src=A4, dst=B4, proto=17)) + b"abc", "udp.truncated"),
    ],
)
def test_malformed_ip_is_counted_by_reason(raw: bytes, reason: str) -> None:
    decoder = PacketDecoder()
    assert decoder.decode(101, raw, 1.0) is None
    assert decoder.counters.snapshot() == {reason: 1}


# -- tunnels ---------------------------------------------------------------------------------


OUTER = IP(src="10.199.9.1", dst="10.199.9.2")


@pytest.mark.parametrize(
    "frame",
    [
        OUTER / GRE() / udp4(),
        OUTER
        / GRE(chksum_present=1, key_present=1, key=77, seqnum_present=1, sequence_number=3)
        / udp4(),
        OUTER / GRE(proto=0x6558) / Ether() / Dot1Q() / udp4(),
        OUTER / UDP(sport=5000, dport=4789) / VXLAN(vni=42) / Ether() / udp4(),
        OUTER / UDP(sport=2152, dport=2152) / GTP_U_Header(teid=1) / udp4(),
        OUTER / udp4(),  # IP-in-IP (4)
        OUTER / GRE() / IP(src="10.199.8.1", dst="10.199.8.2") / GRE() / udp4(),
    ],
    ids=["gre", "gre-options", "gre-ether", "vxlan", "gtpu", "ipip", "gre-in-gre"],
)
def test_tunnels_yield_the_inner_segment(frame: Any) -> None:
    assert_dns4(decode(1, Ether() / frame), tunneled=True)


def test_ipv6_tunnels() -> None:
    assert_dns6(decode(228, OUTER / udp6()), tunneled=True)  # 6in4 (41)
    assert_dns6(decode(228, OUTER / GRE() / udp6()), tunneled=True)
    assert_dns4(decode(229, IPv6(src=A6, dst=B6) / udp4()), tunneled=True)


def test_gtpu_with_optional_fields_and_extension_headers() -> None:
    inner = bytes(udp4())
    # flags: version 1, PT=1, E=1, S=1; sequence, N-PDU, next extension 0x85 (PDU session)
    options = b"\x00\x07\x00\x85"
    extension = b"\x01\x10\x05\x00"  # one 4-byte extension, next type 0: end
    gtp = bytes([0x36, 0xFF]) + struct.pack("!HI", 8 + len(inner), 1) + options + extension
    frame = OUTER / UDP(sport=2152, dport=2152) / Raw(gtp + inner)
    assert_dns4(decode(228, frame), tunneled=True)


def test_not_a_tunnel_header_on_a_tunnel_port_is_plain_udp() -> None:
    seg = decode(228, OUTER / UDP(sport=2152, dport=40000) / Raw(b"\x00" * 20))
    assert seg is not None and (seg.dport, seg.tunneled) == (40000, False)


def test_tunnel_nesting_is_bounded() -> None:
    pkt: Any = udp4()
    for _ in range(6):
        pkt = IP(src="10.199.1.1", dst="10.199.1.2") / pkt
    decoder = PacketDecoder()
    assert decode(228, pkt, decoder) is None
    assert decoder.counters.snapshot() == {"tunnel.too-deep": 1}


# -- fragments -------------------------------------------------------------------------------


def frags(pkt: Any, fragsize: int) -> list[Any]:
    return list(fragment(pkt, fragsize=fragsize))  # type: ignore[no-untyped-call]


def frags6(pkt: Any, size: int) -> list[Any]:
    return list(fragment6(pkt, size))  # type: ignore[no-untyped-call]


def big_dns_response(sport: int = 53, dport: int = 40000) -> Any:
    answer = Raw(b"\x07" * 2500)
    return IP(src=B4, dst=A4, id=4242) / UDP(sport=sport, dport=dport) / answer


def test_ipv4_fragments_in_any_order_complete_on_the_last() -> None:
    decoder = PacketDecoder()
    pieces = frags(big_dns_response(), fragsize=800)
    assert len(pieces) == 4
    order = [2, 0, 3, 1, 1]  # includes a duplicate
    results = [decoder.decode(101, bytes(pieces[i]), 10.0 + n) for n, i in enumerate(order)]
    assert results[:3] == [None, None, None] and results[4] is None
    seg = results[3]
    assert seg is not None and (seg.src, seg.sport, seg.dport) == (B4, 53, 40000)
    assert seg.payload == b"\x07" * 2500
    counters = decoder.counters.snapshot()
    assert counters["ip.fragment"] == 5 and counters["ip.reassembled"] == 1


def test_ipv6_fragments_reassemble() -> None:
    pkt = (
        IPv6(src=B6, dst=A6)
        / IPv6ExtHdrFragment(id=99)
        / UDP(sport=53, dport=40000)
        / (b"z" * 3000)
    )
    decoder = PacketDecoder()
    results = [decoder.decode(229, bytes(p), 1.0) for p in frags6(pkt, 1280)]
    assert results[:-1] == [None] * (len(results) - 1)
    last = results[-1]
    assert last is not None and last.payload == b"z" * 3000 and last.src == B6


def test_fragments_of_uninteresting_udp_cost_nothing() -> None:
    reassembler = Reassembler(Counters())
    decoder = PacketDecoder(reassembler=reassembler)
    pieces = frags(big_dns_response(sport=9999, dport=5000), fragsize=800)
    for piece in pieces[1:]:  # tail first: held until the first fragment shows the ports
        assert decoder.decode(101, bytes(piece), 1.0) is None
    assert reassembler.buffered_bytes > 0
    assert decoder.decode(101, bytes(pieces[0]), 1.0) is None
    assert reassembler.buffered_bytes == 0
    assert decoder.decode(101, bytes(pieces[1]), 1.0) is None  # a late copy: dropped at once
    assert reassembler.buffered_bytes == 0
    icmp = frags(IP(src=A4, dst=B4) / ICMP() / (b"p" * 3000), fragsize=800)
    assert all(decoder.decode(101, bytes(p), 1.0) is None for p in icmp)
    assert reassembler.buffered_bytes == 0


def test_overlapping_fragments_drop_the_datagram() -> None:
    decoder = PacketDecoder()
    first, second, *rest = frags(big_dns_response(), fragsize=800)
    evil = second.copy()
    evil.frag -= 1  # starts 8 bytes inside the first fragment
    for piece in [first, evil, second, *rest]:
        assert decoder.decode(101, bytes(piece), 1.0) is None
    assert decoder.counters.get("ip.fragment-overlap") == 1
    assert decoder.counters.get("ip.reassembled") == 0


def test_fragment_timeout_and_byte_cap() -> None:
    counters = Counters()
    decoder = PacketDecoder(counters, Reassembler(counters, max_bytes=3000, timeout=30.0))
    pieces = frags(big_dns_response(), fragsize=800)
    decoder.decode(101, bytes(pieces[0]), 100.0)
    assert decoder.decode(101, bytes(pieces[1]), 131.0) is None  # first one expired by then
    assert counters.get("ip.fragment-dropped") == 1
    for n in range(10):  # other datagrams push past the 3000-byte cap
        other = frags(IP(src=B4, dst=A4, id=n) / UDP(sport=53) / (b"q" * 2000), fragsize=800)
        decoder.decode(101, bytes(other[0]), 131.0)
    assert decoder._frags.buffered_bytes <= 3000
    assert counters.get("ip.fragment-dropped") >= 8


# -- robustness ------------------------------------------------------------------------------


@settings(max_examples=300, deadline=None)
@given(linktype=st.sampled_from([*LINKTYPES, 147]), data=st.binary(max_size=200))
def test_arbitrary_bytes_never_raise(linktype: int, data: bytes) -> None:
    seg = PacketDecoder().decode(linktype, data, 0.0)
    assert seg is None or isinstance(seg, Segment)


VALID = [
    (1, bytes(Ether() / Dot1Q() / udp4())),
    (1, bytes(Ether() / PPPoE() / PPP(proto=0x57) / udp6())),
    (1, bytes(Ether() / OUTER / GRE(key_present=1, key=1) / udp4())),
    (228, bytes(OUTER / UDP(dport=4789) / VXLAN() / Ether() / udp4())),
    (228, bytes(OUTER / UDP(dport=2152) / GTP_U_Header() / udp4())),
    (
        229,
        bytes(
            IPv6() / IPv6ExtHdrHopByHop() / IPv6ExtHdrFragment(m=1) / UDP(dport=53) / (b"x" * 64)
        ),
    ),
    (239, nflog("<", 2, bytes(udp4()))),
    (276, bytes(CookedLinuxV2(proto=0x0800) / IP() / TCP() / b"x")),
]


@settings(max_examples=400, deadline=None)
@given(
    case=st.sampled_from(VALID),
    edits=st.lists(st.tuples(st.integers(0, 300), st.integers(0, 255)), max_size=4),
    cut=st.integers(0, 300),
)
def test_mutated_valid_packets_never_raise(
    case: tuple[int, bytes], edits: list[tuple[int, int]], cut: int
) -> None:
    linktype, raw = case
    data = bytearray(raw)
    for pos, value in edits:
        if pos < len(data):
            data[pos] = value
    decoder = PacketDecoder()
    seg = decoder.decode(linktype, bytes(data[: max(cut, 1)]), 0.0)
    assert seg is None or isinstance(seg, Segment)
    assert "packet.malformed" not in decoder.counters.snapshot()


def test_one_growing_datagram_cannot_pass_the_byte_cap() -> None:
    counters = Counters()
    reassembler = Reassembler(counters, max_bytes=1500)
    decoder = PacketDecoder(counters, reassembler)
    for piece in frags(big_dns_response(), 800)[:3]:
        assert decoder.decode(101, bytes(piece), 1.0) is None
        assert reassembler.buffered_bytes <= 1500
    assert counters.get("ip.fragment-dropped") >= 1


def test_zero_total_length_uses_the_captured_length_like_tshark() -> None:
    raw = bytearray(bytes(udp4()))
    raw[2:4] = b"\x00\x00"  # what TSO/GSO packets captured on the sender carry
    decoder = PacketDecoder()
    assert_dns4(decoder.decode(101, bytes(raw), 1.0))
    assert decoder.counters.snapshot() == {"ip.zero-length": 1}


# What tshark 4.0 printed for these source addresses (ipv6.src): IPv4-mapped and -compatible
# addresses end in dotted quads, NAT64 and others stay hexadecimal.
TSHARK_IPV6_TEXT = {
    "::ffff:1.2.3.4": "::ffff:1.2.3.4",
    "::1.2.3.4": "::1.2.3.4",
    "64:ff9b::1.2.3.4": "64:ff9b::102:304",
    "::ffff:0:1.2.3.4": "::ffff:0:102:304",
    "::0.0.0.1": "::1",
    "::1:0:0:0": "::1:0:0:0",
    "::ffff:0.0.0.0": "::ffff:0.0.0.0",
}


@pytest.mark.parametrize("address", sorted(TSHARK_IPV6_TEXT))
def test_ipv6_addresses_read_like_tsharks(address: str) -> None:
    seg = decode(101, IPv6(src=address, dst=B6) / UDP(sport=40000, dport=53) / DNS_QUERY)
    assert seg is not None
    assert seg.src == TSHARK_IPV6_TEXT[address]
