"""Builds large synthetic captures for the benchmarks: bulk TCP download plus real handshakes.

The handshakes are made by real client code run in memory (no network): DNS messages by dnspython,
TLS ClientHellos by Python's ssl module, QUIC Initials by aioquic.
"""

import contextlib
import random
import ssl
import struct
from pathlib import Path

import dns.message
import dns.rrset
from aioquic.quic.configuration import QuicConfiguration
from aioquic.quic.connection import QuicConnection

from egresswatch.capture.pcapwrite import PcapWriter

_ETH_IPV4 = b"\x02\x00\x00\x00\x00\x01\x02\x00\x00\x00\x00\x02\x08\x00"


def _checksum_free_ipv4(src: bytes, dst: bytes, proto: int, l4: bytes) -> bytes:
    total = 20 + len(l4)
    return struct.pack("!BBHHHBBH4s4s", 0x45, 0, total, 0, 0x4000, 64, proto, 0, src, dst) + l4


def tcp_frame(
    src: bytes, dst: bytes, sport: int, dport: int, seq: int, flags: int, payload: bytes
) -> bytes:
    tcp = struct.pack("!HHIIBBHHH", sport, dport, seq, 1, 5 << 4, flags, 65535, 0, 0)
    return _ETH_IPV4 + _checksum_free_ipv4(src, dst, 6, tcp + payload)


def udp_frame(src: bytes, dst: bytes, sport: int, dport: int, payload: bytes) -> bytes:
    udp = struct.pack("!HHHH", sport, dport, 8 + len(payload), 0)
    return _ETH_IPV4 + _checksum_free_ipv4(src, dst, 17, udp + payload)


def client_hello(server_name: str) -> bytes:
    """The bytes Python's TLS client sends first (a real ClientHello)."""
    ctx = ssl.create_default_context()
    incoming, outgoing = ssl.MemoryBIO(), ssl.MemoryBIO()
    conn = ctx.wrap_bio(incoming, outgoing, server_hostname=server_name)
    with contextlib.suppress(ssl.SSLWantReadError):
        conn.do_handshake()
    return outgoing.read()


def quic_initials(server_name: str) -> list[bytes]:
    """The first datagrams of a real QUIC client (aioquic), padded Initials."""
    config = QuicConfiguration(is_client=True, alpn_protocols=["h3"], server_name=server_name)
    conn = QuicConnection(configuration=config)
    conn.connect(("10.199.0.2", 443), now=0.0)
    return [data for data, _addr in conn.datagrams_to_send(now=0.0)]


def dns_pair(name: str, qid: int) -> tuple[bytes, bytes]:
    query = dns.message.make_query(name, "A", id=qid)
    response = dns.message.make_response(query)
    response.answer.append(dns.rrset.from_text(name + ".", 300, "IN", "A", "10.199.0.2"))
    return query.to_wire(), response.to_wire()


_TEMPLATES = 64


def _handshake_frames(
    i: int, rng: random.Random, cache: dict[int, tuple[bytes, ...]], fresh_quic: bool = False
) -> list[bytes]:
    """Client i's DNS lookup, TCP SYN + TLS ClientHello and QUIC Initials, on ports of its own.

    The message bytes come from 64 real clients made once and reused (making each is slow);
    with `fresh_quic` each client makes its own QUIC Initials (a connection ID of its own, as
    on a real network: a decoder cannot reuse one connection's keys for the next)."""
    slot = i % _TEMPLATES
    if slot not in cache:
        name = f"host{slot}.example.test"
        cache[slot] = (*dns_pair(name, slot), client_hello(name), *quic_initials(name))
    query, response, hello, *initials = cache[slot]
    if fresh_quic:
        initials = quic_initials(f"host{slot}.example.test")
    client, server, resolver = b"\x0a\xc7\x00\x01", b"\x0a\xc7\x00\x02", b"\x0a\xc7\x00\x35"
    sport = 10000 + (2 * i) % 50000
    isn = rng.getrandbits(32)
    return [
        udp_frame(client, resolver, sport, 53, query),
        udp_frame(resolver, client, 53, sport, response),
        tcp_frame(client, server, sport, 443, isn, 0x02, b""),
        tcp_frame(client, server, sport, 443, isn + 1, 0x18, hello),
        *(udp_frame(client, server, sport + 1, 443, d) for d in initials),
    ]


def build_capture(path: Path, total_bytes: int, bulk_share: float = 0.98, seed: int = 7) -> int:
    """Writes a pcap of about `total_bytes`; returns the number of frames."""
    rng = random.Random(seed)
    payload = rng.randbytes(1448)
    src, dst = b"\x0a\xc7\x00\x02", b"\x0a\xc7\x00\x01"
    frames, handshake_bytes, seq, i = 0, 0, 1, 0
    cache: dict[int, tuple[bytes, ...]] = {}
    ts = 1_700_000_000.0
    with PcapWriter(path) as out:
        while out.bytes_written < total_bytes:
            if handshake_bytes < (1 - bulk_share) * out.bytes_written:
                before = out.bytes_written
                for frame in _handshake_frames(i, rng, cache):
                    ts += 0.00001
                    out.write(ts, frame)
                    frames += 1
                handshake_bytes += out.bytes_written - before
                i += 1
            else:
                ts += 0.00001
                out.write(ts, tcp_frame(src, dst, 443, 50000, seq, 0x10, payload))
                seq = (seq + len(payload)) & 0xFFFFFFFF
                frames += 1
    return frames


def _quic_short(dcid: bytes, rng: random.Random) -> bytes:
    """A QUIC 1-RTT (short header) datagram: fixed bit, key phase bits, DCID, protected bytes."""
    return bytes([0x40 | rng.getrandbits(5)]) + dcid + rng.randbytes(1200)


def _connection_traffic(i: int, rng: random.Random, frames: int) -> list[bytes]:
    """`frames` frames of client i's connections after their handshakes: the TLS download
    (server data, a client ACK every second segment) and QUIC 1-RTT datagrams both ways."""
    client, server = b"\x0a\xc7\x00\x01", b"\x0a\xc7\x00\x02"
    sport = 10000 + (2 * i) % 50000
    dcid = rng.randbytes(8)
    payload = rng.randbytes(1448)
    seq = rng.getrandbits(32)
    out: list[bytes] = []
    for n in range(frames):
        if n % 3 == 2:
            out.append(udp_frame(server, client, 443, sport + 1, _quic_short(dcid, rng)))
        elif n % 3 == 1 and n % 2:
            out.append(tcp_frame(client, server, sport, 443, 1, 0x10, b""))
        else:
            out.append(tcp_frame(server, client, 443, sport, seq, 0x18, payload))
            seq = (seq + len(payload)) & 0xFFFFFFFF
    return out


def build_handshake_mix(
    path: Path, total_bytes: int, handshake_share: float = 0.02, seed: int = 7
) -> int:
    """Writes a pcap where `handshake_share` of the frames are DNS, TLS and QUIC handshakes and
    the rest is the traffic of those connections (a third of all frames QUIC 1-RTT datagrams);
    returns the number of frames."""
    rng = random.Random(seed)
    cache: dict[int, tuple[bytes, ...]] = {}
    frames, i = 0, 0
    ts = 1_700_000_000.0
    with PcapWriter(path) as out:
        while out.bytes_written < total_bytes:
            handshake = _handshake_frames(i, rng, cache, fresh_quic=True)
            rest = round(len(handshake) * (1 - handshake_share) / handshake_share)
            for frame in handshake + _connection_traffic(i, rng, rest):
                ts += 0.00001
                out.write(ts, frame)
                frames += 1
            i += 1
    return frames
