"""QUIC Initial tracker: reassembly, once-per-connection reporting, bounds and hostile input.

Initials are protected by aioquic (an independent QUIC implementation), not by our own code.
"""

import functools
import itertools
import random

import pytest
from aioquic.quic.configuration import QuicConfiguration
from aioquic.quic.connection import QuicConnection
from aioquic.quic.crypto import CryptoPair
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from egresswatch.decode.quic import QuicInitialTracker, looks_like_quic_initial
from egresswatch.decode.quic_crypto import VERSION_1, VERSION_2, version_rules
from egresswatch.decode.quic_packet import parse_initial_frames, parse_long_header, read_varint
from egresswatch.decode.quic_stream import MAX_PIECES, CryptoStream
from egresswatch.decode.tls import parse_client_hello
from egresswatch.errors import DecodeError
from egresswatch.model import FlowKey
from tests.decode.test_quic_vectors import V1_CLIENT_PACKET, V2_CLIENT_PACKET

CLIENT = FlowKey("udp", "10.199.0.1", 50123, "10.199.0.2", 443)
SERVER_NAME = "llm.example.test"
FUZZ = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def varint(value: int) -> bytes:
    if value < 0x40:
        return bytes([value])
    if value < 0x4000:
        return (0x4000 | value).to_bytes(2, "big")
    return (0x80000000 | value).to_bytes(4, "big")


def crypto_frame(offset: int, data: bytes) -> bytes:
    return b"\x06" + varint(offset) + varint(len(data)) + data


def long_header(kind_bits: int, version: int, dcid: bytes, scid: bytes) -> bytes:
    return (
        bytes([0xC0 | kind_bits << 4])
        + version.to_bytes(4, "big")
        + (bytes([len(dcid)]) + dcid + bytes([len(scid)]) + scid)
    )


def build_initial(
    dcid: bytes,
    frames: bytes,
    *,
    scid: bytes = b"\x11" * 8,
    pn: int = 0,
    token: bytes = b"",
    version: int = VERSION_1,
) -> bytes:
    """A client Initial carrying `frames`, protected by aioquic's CryptoPair."""
    payload = frames + bytes(max(0, 24 - len(frames)))
    length = varint(2 + len(payload) + 16).rjust(2, b"\x40")  # always the 2-byte form
    head = bytearray(long_header(0x01 if version == VERSION_2 else 0x00, version, dcid, scid))
    head += varint(len(token)) + token + length
    head[0] |= 0x01  # two-byte packet number
    pair = CryptoPair()
    pair.setup_initial(cid=dcid, is_client=True, version=version)
    return pair.encrypt_packet(bytes(head) + pn.to_bytes(2, "big"), payload, pn)


def junk_packet(kind_bits: int, dcid: bytes, size: int = 60) -> bytes:
    """A Handshake or 0-RTT packet we cannot decrypt: only its length field matters."""
    return (
        long_header(kind_bits, VERSION_1, dcid, b"\x11" * 8)
        + varint(size).rjust(2, b"\x40")
        + (bytes(range(size)))
    )


@functools.cache
def aioquic_datagram() -> bytes:
    client = QuicConnection(
        configuration=QuicConfiguration(
            is_client=True, server_name=SERVER_NAME, alpn_protocols=["h3"]
        )
    )
    client.connect(("10.199.0.2", 443), now=0.0)
    [(datagram, _addr)] = client.datagrams_to_send(now=0.0)
    return bytes(datagram)


@functools.cache
def aioquic_hello() -> bytes:
    """The ClientHello aioquic sent, recovered with aioquic's own server-side keys."""
    datagram = aioquic_datagram()
    rules = version_rules(VERSION_1)
    assert rules is not None
    header = parse_long_header(datagram, 0, rules)
    pair = CryptoPair()
    pair.setup_initial(cid=header.dcid, is_client=False, version=VERSION_1)
    _plain, payload, _pn = pair.decrypt_packet(datagram[: header.end], header.pn_offset, 0)
    frames = parse_initial_frames(payload)
    return b"".join(data for _offset, data in sorted(frames.crypto))


def test_aioquic_initial_gives_its_hello_once() -> None:
    tracker = QuicInitialTracker()
    [(hello, version)] = tracker.feed(CLIENT, aioquic_datagram(), 1.0)
    assert (hello.sni, hello.alpn, version) == (SERVER_NAME, ("h3",), VERSION_1)
    assert tracker.feed(CLIENT, aioquic_datagram(), 1.5) == []  # a retransmission
    assert tracker.counters.get("quic.after-hello") == 1
    assert tracker.counters.get("quic.hellos") == 1


def test_hello_split_over_datagrams_is_reported_when_complete() -> None:
    hello, dcid = aioquic_hello(), b"\x22" * 8
    tracker = QuicInitialTracker()
    second = build_initial(dcid, crypto_frame(100, hello[100:]), pn=1)
    first = build_initial(dcid, crypto_frame(0, hello[:100]), pn=0)
    assert tracker.feed(CLIENT, second, 1.0) == []
    [(got, _version)] = tracker.feed(CLIENT, first, 1.1)
    assert got == parse_client_hello(hello)


def test_other_5_tuple_is_another_connection() -> None:
    hello, dcid = aioquic_hello(), b"\x23" * 8
    tracker = QuicInitialTracker()
    tracker.feed(CLIENT, build_initial(dcid, crypto_frame(0, hello[:100])), 1.0)
    other = FlowKey("udp", "10.199.0.1", 50999, "10.199.0.2", 443)
    assert tracker.feed(other, build_initial(dcid, crypto_frame(100, hello[100:]), pn=1), 1.1) == []
    assert len(tracker) == 2


def test_coalesced_packets_are_skipped_by_length() -> None:
    hello, dcid = aioquic_hello(), b"\x24" * 8
    datagram = (
        junk_packet(0x01, dcid)  # 0-RTT before the Initial: skipped, the Initial still read
        + build_initial(dcid, b"\x01" + crypto_frame(0, hello))
        + junk_packet(0x02, dcid)
        + bytes(40)  # trailing datagram padding
    )
    tracker = QuicInitialTracker()
    [(got, _version)] = tracker.feed(CLIENT, datagram, 1.0)
    assert got.sni == SERVER_NAME
    counts = tracker.counters
    assert (counts.get("quic.skipped-0rtt"), counts.get("quic.skipped-handshake")) == (1, 1)
    assert counts.get("quic.coalesced-short") == 1


def test_ack_ecn_and_close_frames_are_walked() -> None:
    ack_ecn = b"\x03" + varint(5) + varint(0) + varint(1) + varint(0) + varint(1) + varint(2)
    ack_ecn += varint(1) + varint(2) + varint(3)
    close = b"\x1c" + varint(0) + varint(6) + varint(3) + b"bye"
    hello = b"\x01\x00\x00\x02ab"
    frames = parse_initial_frames(ack_ecn + bytes(5) + crypto_frame(0, hello) + close + b"\x01")
    assert frames == type(frames)(((0, hello),), None)


def test_unknown_frame_stops_the_walk_but_keeps_earlier_crypto() -> None:
    frames = parse_initial_frames(crypto_frame(0, b"abc") + b"\x08" + crypto_frame(3, b"def"))
    assert frames.crypto == ((0, b"abc"),)
    assert frames.stopped == "quic.unknown-frame"


def test_truncated_frame_is_a_bad_frame() -> None:
    assert parse_initial_frames(b"\x06\x00\x10abc").stopped == "quic.bad-frame"
    assert parse_initial_frames(b"\x02\x00\x00\x3f\x00").stopped == "quic.bad-frame"


def test_retry_with_empty_client_cid_links_the_second_hello() -> None:
    """quic-go style: zero-length client SCID, Retry, then the hello again to the new CID."""
    hello, odcid, new_dcid = aioquic_hello(), b"\x31" * 8, b"\x32" * 8
    tracker = QuicInitialTracker()
    assert (
        len(tracker.feed(CLIENT, build_initial(odcid, crypto_frame(0, hello), scid=b""), 1.0)) == 1
    )
    retry = long_header(0x03, VERSION_1, b"", new_dcid) + b"token-bytes" + bytes(16)
    tracker.feed(CLIENT.reversed(), retry, 1.1)
    again = build_initial(new_dcid, crypto_frame(0, hello), scid=b"", pn=1, token=b"token-bytes")
    assert tracker.feed(CLIENT, again, 1.2) == []
    assert tracker.counters.get("quic.retry") == 1
    assert tracker.counters.get("quic.after-hello") == 1


def test_retry_before_the_hello_completes_switches_keys() -> None:
    hello, odcid, new_dcid = aioquic_hello(), b"\x33" * 8, b"\x34" * 8
    scid = b"\x35" * 8
    tracker = QuicInitialTracker()
    assert (
        tracker.feed(CLIENT, build_initial(odcid, crypto_frame(0, hello[:50]), scid=scid), 1.0)
        == []
    )
    tracker.feed(CLIENT.reversed(), long_header(0x03, VERSION_1, scid, new_dcid) + bytes(20), 1.1)
    again = build_initial(new_dcid, crypto_frame(0, hello), scid=scid, pn=1, token=b"t")
    assert [h.sni for h, _v in tracker.feed(CLIENT, again, 1.2)] == [SERVER_NAME]
    assert tracker.counters.get("quic.after-retry") == 1
    assert len(tracker) == 1


def test_client_initial_to_the_server_cid_is_recognised_by_its_scid() -> None:
    hello, scid = aioquic_hello(), b"\x36" * 8
    tracker = QuicInitialTracker()
    tracker.feed(CLIENT, build_initial(b"\x37" * 8, crypto_frame(0, hello), scid=scid), 1.0)
    later = build_initial(b"\x38" * 8, b"\x01", scid=scid, pn=1)  # an ACK-only style Initial
    assert tracker.feed(CLIENT, later, 1.1) == []
    assert tracker.counters.get("quic.after-hello") == 1
    assert tracker.counters.get("quic.decrypt-failed") == 0


def test_lru_evicts_and_counts() -> None:
    hello = aioquic_hello()
    tracker = QuicInitialTracker(max_connections=2)
    for n in range(3):
        initial = build_initial(bytes([n]) * 8, crypto_frame(0, hello[:80]), scid=bytes([n]) * 4)
        tracker.feed(CLIENT, initial, float(n))
    assert len(tracker) == 2
    assert tracker.counters.get("quic.evicted") == 1
    # The evicted connection lost its first 80 bytes: its tail alone cannot complete a hello.
    assert (
        tracker.feed(CLIENT, build_initial(b"\x00" * 8, crypto_frame(80, hello[80:]), pn=1), 3.0)
        == []
    )
    rest = build_initial(b"\x02" * 8, crypto_frame(80, hello[80:]), scid=b"\x02" * 4, pn=1)
    assert len(tracker.feed(CLIENT, rest, 3.1)) == 1


def test_crypto_bytes_per_connection_are_bounded() -> None:
    tracker = QuicInitialTracker(max_crypto_bytes=128)
    assert tracker.feed(CLIENT, aioquic_datagram(), 1.0) == []
    assert tracker.counters.get("quic.crypto-over-limit") == 1


def test_expire_forgets_idle_connections() -> None:
    tracker = QuicInitialTracker(timeout=60.0)
    tracker.feed(CLIENT, build_initial(b"\x41" * 8, crypto_frame(0, aioquic_hello()[:80])), 100.0)
    assert tracker.expire(159.0) == 0
    assert tracker.expire(161.0) == 1
    assert len(tracker) == 0
    assert tracker.counters.get("quic.expired") == 1


@pytest.mark.parametrize(
    ("version", "reason"),
    [
        (0x00000000, "quic.version-negotiation"),
        (0x51303530, "quic.gquic"),
        (0x1A2A3A4A, "quic.unsupported-version"),
    ],
)
def test_versions_we_cannot_read_are_counted(version: int, reason: str) -> None:
    tracker = QuicInitialTracker()
    packet = long_header(0, version, b"\x01" * 8, b"") + bytes(1200)
    assert tracker.feed(CLIENT, packet, 1.0) == []
    assert tracker.counters.get(reason) == 1


def test_looks_like_quic_initial() -> None:
    assert looks_like_quic_initial(V1_CLIENT_PACKET)
    assert looks_like_quic_initial(V2_CLIENT_PACKET)
    assert looks_like_quic_initial(aioquic_datagram())
    assert not looks_like_quic_initial(junk_packet(0x02, b"\x01" * 8))  # v1 Handshake
    assert not looks_like_quic_initial(long_header(0, VERSION_2, b"", b"") + bytes(20))  # v2 Retry
    assert not looks_like_quic_initial(long_header(0, 0, b"", b"") + bytes(20))  # VN
    assert not looks_like_quic_initial(bytes([0x40]) + bytes(30))  # short header
    assert not looks_like_quic_initial(bytes([0x80]) + V1_CLIENT_PACKET[1:])  # no fixed bit
    assert not looks_like_quic_initial(V1_CLIENT_PACKET[:6])


def test_read_varint_sizes_and_truncation() -> None:
    assert read_varint(bytes.fromhex("c2197c5eff14e88c"), 0) == (151288809941952652, 8)
    assert read_varint(bytes.fromhex("9d7f3e7d"), 0) == (494878333, 4)
    assert read_varint(bytes.fromhex("7bbd"), 0) == (15293, 2)
    assert read_varint(b"\x25", 0) == (37, 1)
    with pytest.raises(DecodeError) as caught:
        read_varint(b"\x7b", 0)
    assert caught.value.reason == "quic.truncated"


def test_crypto_stream_overlaps_keep_first_bytes() -> None:
    stream = CryptoStream(100)
    stream.add(4, b"EFGH")
    stream.add(2, b"cdXX")  # overlaps bytes 4-5: the earlier "EF" stays
    assert stream.prefix() == b""
    stream.add(0, b"ab")
    assert stream.prefix() == b"abcdEFGH"
    assert stream.held() == 8


def test_crypto_stream_limits() -> None:
    stream = CryptoStream(64)
    with pytest.raises(DecodeError) as caught:
        stream.add(60, b"12345")
    assert caught.value.reason == "quic.crypto-over-limit"
    wide = CryptoStream(10 * MAX_PIECES)
    for n in range(MAX_PIECES):
        wide.add(n * 3, b"x")
    with pytest.raises(DecodeError) as caught:
        wide.add(MAX_PIECES * 3, b"x")
    assert caught.value.reason == "quic.crypto-too-fragmented"


Delivery = list[tuple[list[tuple[int, bytes]], bytes]]


@st.composite
def shuffled_delivery(draw: st.DrawFn) -> Delivery:
    """The aioquic hello cut into pieces, re-sent in part, shuffled over up to 4 Initials;
    each Initial comes with the (offset, data) pieces it carries."""
    hello = aioquic_hello()
    cuts = sorted(draw(st.sets(st.integers(1, len(hello) - 1), max_size=12)))
    bounds = [0, *cuts, len(hello)]
    pieces = [(a, hello[a:b]) for a, b in itertools.pairwise(bounds)]
    for _ in range(draw(st.integers(0, 3))):  # overlapping retransmissions
        a = draw(st.integers(0, len(hello) - 1))
        b = draw(st.integers(a + 1, len(hello)))
        pieces.append((a, hello[a:b]))
    order = draw(st.permutations(pieces))
    packets = draw(st.integers(1, min(4, len(order))))
    frames = [b""] * packets
    carried: list[list[tuple[int, bytes]]] = [[] for _ in range(packets)]
    for n, (offset, data) in enumerate(order):
        filler = draw(st.sampled_from([b"", b"\x01", bytes(3)]))
        frames[n % packets] += filler + crypto_frame(offset, data)
        carried[n % packets].append((offset, data))
    return [
        (c, build_initial(b"\x51" * 8, f, pn=n))
        for n, (c, f) in enumerate(zip(carried, frames, strict=True))
    ]


def first_complete(delivery: Delivery, size: int) -> int:
    """Index of the datagram after which every byte of the hello has arrived."""
    covered: set[int] = set()
    for index, (pieces, _datagram) in enumerate(delivery):
        for offset, data in pieces:
            covered.update(range(offset, offset + len(data)))
        if len(covered) == size:
            return index
    raise AssertionError("the delivery never covers the hello")


@FUZZ
@given(shuffled_delivery(), st.randoms(use_true_random=False))
def test_shuffled_crypto_frames_reassemble_the_same_hello(
    delivery: Delivery, rnd: random.Random
) -> None:
    rnd.shuffle(delivery)
    tracker = QuicInitialTracker()
    reports = [tracker.feed(CLIENT, d, float(n)) for n, (_p, d) in enumerate(delivery)]
    assert [len(r) for r in reports].index(1) == first_complete(delivery, len(aioquic_hello()))
    assert sum(len(r) for r in reports) == 1
    assert [h for r in reports for h, _v in r] == [parse_client_hello(aioquic_hello())]


@FUZZ
@given(st.binary(max_size=1500))
def test_arbitrary_bytes_never_raise(payload: bytes) -> None:
    tracker = QuicInitialTracker()
    assert tracker.feed(CLIENT, payload, 1.0) == []
    assert tracker.feed(CLIENT, b"\xc0\x00\x00\x00\x01" + payload, 1.0) == []


REAL_INITIALS = [V1_CLIENT_PACKET, V2_CLIENT_PACKET]


@FUZZ
@given(st.sampled_from([0, 1, 2]), st.integers(0, 1200))
def test_truncated_real_initials_never_raise(which: int, cut: int) -> None:
    whole = [*REAL_INITIALS, aioquic_datagram()][which]
    packet_end = 525 if which == 2 else 1200  # aioquic pads after its packet, outside it
    tracker = QuicInitialTracker()
    assert len(tracker.feed(CLIENT, whole[:cut], 1.0)) == (1 if cut >= packet_end else 0)
    assert sum(tracker.counters.snapshot().values()) >= 2  # the datagram and what came of it


@FUZZ
@given(st.sampled_from([0, 1, 2]), st.lists(st.integers(0, 1200 * 8 - 1), min_size=1, max_size=4))
def test_bit_flipped_real_initials_never_raise(which: int, bits: list[int]) -> None:
    packet = bytearray([*REAL_INITIALS, aioquic_datagram()][which])
    for bit in bits:
        packet[bit // 8] ^= 1 << (bit % 8)
    packet_end = 525 if which == 2 else 1200
    flipped = {bit for bit in bits if bits.count(bit) % 2}
    tracker = QuicInitialTracker()
    reports = tracker.feed(CLIENT, bytes(packet), 1.0)
    # Every bit of a packet is covered by the AEAD (header as associated data), so any flip
    # inside it loses the hello; flips in aioquic's trailing padding do not.
    assert len(reports) == (0 if any(bit < packet_end * 8 for bit in flipped) else 1)


def test_a_failed_initial_does_not_hide_the_next_coalesced_one() -> None:
    hello, dcid = aioquic_hello(), b"\x61" * 8
    broken = bytearray(build_initial(b"\x62" * 8, crypto_frame(0, b"x" * 40), scid=b"\x63" * 8))
    broken[-1] ^= 0xFF
    tracker = QuicInitialTracker()
    [(got, _v)] = tracker.feed(
        CLIENT, bytes(broken) + build_initial(dcid, crypto_frame(0, hello)), 1.0
    )
    assert got.sni == SERVER_NAME
    assert tracker.counters.get("quic.decrypt-failed") == 1


def test_packets_per_datagram_are_bounded() -> None:
    tracker = QuicInitialTracker()
    tracker.feed(CLIENT, junk_packet(0x02, b"\x01" * 8, size=2) * 40, 1.0)
    assert tracker.counters.get("quic.skipped-handshake") == 16
    assert tracker.counters.get("quic.too-many-packets") == 1


@FUZZ
@given(st.binary(max_size=1100))
def test_arbitrary_plaintext_frames_never_raise(frames: bytes) -> None:
    """Hostile frames inside a packet that authenticates: the frame walker's attack surface."""
    assert parse_initial_frames(frames).stopped in {None, "quic.bad-frame", "quic.unknown-frame"}
    tracker = QuicInitialTracker()
    tracker.feed(CLIENT, build_initial(b"\x71" * 8, frames), 1.0)
    assert tracker.counters.get("quic.initials-decrypted") == 1


@st.composite
def hostile_traffic(draw: st.DrawFn) -> list[tuple[FlowKey, bytes]]:
    """Valid Initials of many connections, hello pieces and garbage, interleaved."""
    hello = aioquic_hello()
    events: list[tuple[FlowKey, bytes]] = []
    for _ in range(draw(st.integers(1, 25))):
        port = draw(st.integers(40000, 40007))
        flow = FlowKey("udp", "10.199.0.1", port, "10.199.0.2", 443)
        cid = bytes([draw(st.integers(0, 5))]) * 8
        kind = draw(st.sampled_from(["piece", "garbage", "server"]))
        if kind == "piece":
            a = draw(st.integers(0, len(hello) - 1))
            frame = crypto_frame(a, hello[a : draw(st.integers(a + 1, len(hello)))])
            events.append((flow, build_initial(cid, frame, scid=cid[:4], pn=len(events))))
        elif kind == "garbage":
            events.append((flow, b"\xc0\x00\x00\x00\x01\x08" + cid + draw(st.binary(max_size=64))))
        else:
            events.append((flow.reversed(), junk_packet(0x00, cid[:4])))
    return events


@FUZZ
@given(hostile_traffic())
def test_mixed_traffic_keeps_the_bounds(events: list[tuple[FlowKey, bytes]]) -> None:
    tracker = QuicInitialTracker(max_connections=4, max_crypto_bytes=4096)
    hellos = 0
    for n, (flow, datagram) in enumerate(events):
        for hello, _version in tracker.feed(flow, datagram, float(n)):
            assert hello.sni == SERVER_NAME
            hellos += 1
        assert len(tracker) <= 4
    assert hellos == tracker.counters.get("quic.hellos")
    assert hellos <= len(events)
    tracker.expire(float(len(events)) + 61.0)
    assert len(tracker) == 0
    assert not tracker._by_dcid and not tracker._by_scid  # no alias outlives its connection


def test_same_dcid_in_another_version_is_a_new_connection() -> None:
    """After Version Negotiation a client may retry the same DCID in another version."""
    hello, dcid = aioquic_hello(), b"\x81" * 8
    tracker = QuicInitialTracker()
    tracker.feed(CLIENT, build_initial(dcid, crypto_frame(0, hello[:60]), scid=b"\x82" * 8), 1.0)
    v2 = build_initial(dcid, crypto_frame(0, hello), scid=b"\x82" * 8, version=VERSION_2)
    [(got, version)] = tracker.feed(CLIENT, v2, 1.1)
    assert (got.sni, version) == (SERVER_NAME, VERSION_2)
    assert len(tracker) == 1
    tracker.expire(100.0)
    assert not tracker._by_dcid and not tracker._by_scid


def test_unfinished_hellos_of_all_connections_stay_within_the_byte_budget() -> None:
    hello = aioquic_hello()
    piece = 200
    tracker = QuicInitialTracker(max_total_bytes=1000)
    for n in range(30):
        dcid, scid = n.to_bytes(8, "big"), n.to_bytes(4, "big")
        tracker.feed(CLIENT, build_initial(dcid, crypto_frame(0, hello[:piece]), scid=scid), n)
        assert tracker.buffered() <= 1000
    assert tracker.buffered() == 5 * piece
    assert tracker.counters.get("quic.evicted-bytes") == 25
    # the newest connection completes its hello; the oldest was forgotten
    newest = build_initial((29).to_bytes(8, "big"), crypto_frame(piece, hello[piece:]), pn=1)
    assert len(tracker.feed(CLIENT, newest, 31.0)) == 1
    assert tracker.buffered() == 4 * piece  # a settled hello holds nothing any more
    oldest = build_initial((0).to_bytes(8, "big"), crypto_frame(piece, hello[piece:]), pn=1)
    assert tracker.feed(CLIENT, oldest, 32.0) == []
