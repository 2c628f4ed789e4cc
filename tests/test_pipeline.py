"""The decode stage's own decisions: skipping judged bulk flows, 4-tuple reuse, flow starts."""

import sys
from pathlib import Path

from hypothesis import given, settings
from hypothesis import strategies as st
from scapy.layers.inet import IP, TCP, UDP
from scapy.layers.inet6 import IPv6
from scapy.layers.l2 import Dot1Q, Ether

from egresswatch.decode.dns import dns_proto_for_ports
from egresswatch.decode.fastpath import udp_of_no_interest
from egresswatch.decode.packet import PacketDecoder
from egresswatch.decode.quic import looks_like_quic_initial
from egresswatch.model import Observation
from egresswatch.pipeline import ObservationDecoder

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "bench"))
from capture_builder import client_hello, dns_pair

ETHERNET = 1


def _tcp(ip: IP | IPv6, flags: str, seq: int, payload: bytes = b"", vlan: bool = False) -> bytes:
    frame = Ether() / Dot1Q(vlan=7) if vlan else Ether()
    return bytes(frame / ip / TCP(sport=40000, dport=443, flags=flags, seq=seq) / payload)


def _feed(decoder: ObservationDecoder, frames: list[bytes]) -> list[Observation]:
    out: list[Observation] = []
    for i, frame in enumerate(frames):
        out.extend(decoder.decode_frame(1000.0 + i, ETHERNET, frame))
    return out


def _connection(ip: IP | IPv6, name: str, isn: int, vlan: bool = False) -> list[bytes]:
    hello = client_hello(name)
    data = [_tcp(ip, "A", isn + 1 + len(hello) + i * 1000, b"\x17" * 1000, vlan) for i in range(5)]
    return [_tcp(ip, "S", isn, vlan=vlan), _tcp(ip, "PA", isn + 1, hello, vlan), *data]


def test_reused_four_tuple_after_bulk_is_decoded_again() -> None:
    for ip in (IP(src="10.199.0.1", dst="10.199.0.2"), IPv6(src="fd00:199::1", dst="fd00:199::2")):
        decoder = ObservationDecoder()
        frames = _connection(ip, "first.test", 1000) + _connection(ip, "second.test", 900_000)
        names = [o.hello.sni for o in _feed(decoder, frames) if o.hello]
        assert names == ["first.test", "second.test"]
        assert decoder.bulk_skipped == 10  # the hello judged each flow: all 5 data frames skip


def test_vlan_frames_take_the_full_path_and_still_decode() -> None:
    decoder = ObservationDecoder()
    ip = IP(src="10.199.0.1", dst="10.199.0.2")
    observations = _feed(decoder, _connection(ip, "tagged.test", 5, vlan=True))
    assert [o.hello.sni for o in observations if o.hello] == ["tagged.test"]
    assert decoder.bulk_skipped == 0


def test_non_tls_flow_is_judged_once_then_skipped() -> None:
    decoder = ObservationDecoder()
    ip = IP(src="10.199.0.1", dst="10.199.0.2")
    frames = [
        _tcp(ip, "S", 1),
        *(_tcp(ip, "PA", 2 + i * 10, b"GET / HTTP/1.1\r\n") for i in range(4)),
    ]
    assert _feed(decoder, frames) == []
    assert decoder.bulk_skipped == 3


def test_flow_starts_are_emitted_once_per_connection_when_asked() -> None:
    decoder = ObservationDecoder(emit_flows=True)
    ip = IP(src="10.199.0.1", dst="10.199.0.2")
    query, response = dns_pair("model.test", 7)
    udp_out = bytes(Ether() / ip / UDP(sport=5000, dport=53) / query)
    udp_back = bytes(
        Ether() / IP(src="10.199.0.2", dst="10.199.0.1") / UDP(sport=53, dport=5000) / response
    )
    frames = [*_connection(ip, "flows.test", 77), udp_out, udp_back, udp_out]
    kinds = [(o.kind, o.flow.transport, o.flow.dport) for o in _feed(decoder, frames)]
    assert kinds == [
        ("flow", "tcp", 443),
        ("tls", "tcp", 443),
        ("flow", "udp", 53),
        ("dns", "udp", 53),
        ("dns", "udp", 5000),
        ("dns", "udp", 53),
    ]


def _udp(ip: IP | IPv6, sport: int, dport: int, payload: bytes) -> bytes:
    return bytes(Ether() / ip / UDP(sport=sport, dport=dport) / payload)


def test_udp_of_no_interest_is_skipped_before_decoding() -> None:
    v4, v6 = IP(src="10.199.0.2", dst="10.199.0.1"), IPv6(src="fd00:199::2", dst="fd00:199::1")
    short_header = b"\x41" + bytes(1200)  # QUIC 1-RTT
    skipped = [_udp(v4, 443, 40000, short_header), _udp(v6, 443, 40000, b""), _udp(v4, 9, 9, b"x")]
    decoded = [
        _udp(v4, 40000, 443, b"\xc3" + bytes(1200)),  # a long header: may be an Initial
        _udp(v4, 443, 53, short_header),  # a DNS port
        _udp(v6, 4789, 40000, short_header),  # a tunnel port
        bytes(Ether() / IP(src="10.199.0.2", dst="10.199.0.1", flags="MF") / UDP() / b"\x41"),
    ]
    decoder = ObservationDecoder()
    _feed(decoder, skipped + decoded)
    counters = decoder.all_counters()
    assert counters.get("skipped.udp-other") == len(skipped)
    assert counters.get("frames") == len(skipped) + len(decoded)
    flows = ObservationDecoder(emit_flows=True)  # the agent needs every flow start
    assert len(_feed(flows, skipped)) == len(skipped)


_SHORT_HEADER_FRAMES = [
    _udp(IP(src="10.199.0.2", dst="10.199.0.1"), 443, 40000, b"\x41" + bytes(40)),
    _udp(IPv6(src="fd00:199::2", dst="fd00:199::1"), 443, 40000, b"\x41" + bytes(40)),
]


@settings(max_examples=400, deadline=None)
@given(st.data())
def test_only_what_the_full_decode_ignores_is_skipped(data: st.DataObject) -> None:
    base = data.draw(st.sampled_from(_SHORT_HEADER_FRAMES))
    frame = bytearray(base)
    for _ in range(data.draw(st.integers(0, 3))):
        where = data.draw(st.integers(12, len(frame) - 1))
        frame[where] = data.draw(st.integers(0, 255))
    frame = frame[: data.draw(st.integers(0, len(frame)))]
    if not udp_of_no_interest(ETHERNET, bytes(frame)):
        return
    packets = PacketDecoder()
    seg = packets.decode(ETHERNET, bytes(frame), 1.0)
    assert seg is not None and seg.transport == "udp" and not seg.tunneled
    assert packets.counters.snapshot() == {}
    assert dns_proto_for_ports(seg.sport, seg.dport) is None
    assert not (seg.payload and looks_like_quic_initial(seg.payload))
