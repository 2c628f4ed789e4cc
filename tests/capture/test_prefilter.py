"""The libpcap-filtered file reader: what it drops, what it keeps, and how it fails."""

import contextlib
import gzip
import re
import ssl
import struct
from pathlib import Path

import dns.message
import dns.rrset
import pytest

from egresswatch.capture.pcapfile import read_frames
from egresswatch.capture.prefilter import candidate_frames, read_filtered
from egresswatch.counters import Counters
from egresswatch.errors import CaptureError

CLIENT, SERVER, RESOLVER = b"\x0a\xc7\x00\x01", b"\x0a\xc7\x00\x02", b"\x0a\xc7\x00\x35"
_ETH_IPV4 = b"\x02\x00\x00\x00\x00\x01\x02\x00\x00\x00\x00\x02\x08\x00"


def _ipv4(src: bytes, dst: bytes, proto: int, l4: bytes) -> bytes:
    ip = struct.pack("!BBHHHBBH4s4s", 0x45, 0, 20 + len(l4), 0, 0x4000, 64, proto, 0, src, dst)
    return _ETH_IPV4 + ip + l4


def tcp_frame(
    src: bytes, dst: bytes, sport: int, dport: int, seq: int, flags: int, payload: bytes
) -> bytes:
    tcp = struct.pack("!HHIIBBHHH", sport, dport, seq, 1, 5 << 4, flags, 65535, 0, 0)
    return _ipv4(src, dst, 6, tcp + payload)


def udp_frame(src: bytes, dst: bytes, sport: int, dport: int, payload: bytes) -> bytes:
    return _ipv4(src, dst, 17, struct.pack("!HHHH", sport, dport, 8 + len(payload), 0) + payload)


def client_hello(server_name: str) -> bytes:
    """The first bytes of Python's real TLS client."""
    incoming, outgoing = ssl.MemoryBIO(), ssl.MemoryBIO()
    conn = ssl.create_default_context().wrap_bio(incoming, outgoing, server_hostname=server_name)
    with contextlib.suppress(ssl.SSLWantReadError):
        conn.do_handshake()
    return outgoing.read()


def dns_pair(name: str, qid: int) -> tuple[bytes, bytes]:
    query = dns.message.make_query(name, "A", id=qid)
    response = dns.message.make_response(query)
    response.answer.append(dns.rrset.from_text(name + ".", 300, "IN", "A", "10.199.0.2"))
    return query.to_wire(), response.to_wire()


def _frames() -> tuple[list[bytes], list[bytes]]:
    """(frames that can matter, bulk frames that cannot)."""
    query, response = dns_pair("kept.example.test", 7)
    wanted = [
        udp_frame(CLIENT, RESOLVER, 40000, 53, query),
        udp_frame(RESOLVER, CLIENT, 53, 40000, response),
        tcp_frame(CLIENT, SERVER, 40001, 443, 1000, 0x02, b""),  # SYN
        tcp_frame(CLIENT, SERVER, 40001, 443, 1001, 0x18, client_hello("kept.example.test")),
        udp_frame(CLIENT, SERVER, 40002, 443, b"\xc0\x00\x00\x00\x01" + b"\x00" * 1200),
    ]
    bulk = [
        tcp_frame(SERVER, CLIENT, 443, 40001, 5000, 0x10, b"\x17" + b"\xaa" * 1447),
        tcp_frame(CLIENT, SERVER, 40001, 443, 2000, 0x10, b""),  # a pure ACK
        udp_frame(SERVER, CLIENT, 443, 40002, b"\x41" + b"\xbb" * 1200),  # QUIC short header
    ]
    return wanted, bulk


def _pcap(frames: list[bytes], nano: bool = False) -> bytes:
    magic = 0xA1B23C4D if nano else 0xA1B2C3D4
    out = [struct.pack("<IHHiIII", magic, 2, 4, 0, 0, 262144, 1)]
    for i, frame in enumerate(frames):
        out.append(struct.pack("<IIII", 1_700_000_000 + i, 123456 + i, len(frame), len(frame)))
        out.append(frame)
    return b"".join(out)


def _interleaved() -> tuple[list[bytes], list[bytes]]:
    wanted, bulk = _frames()
    return wanted, [f for pair in zip(wanted, bulk * 2, strict=False) for f in pair]


@pytest.mark.parametrize("nano", [False, True], ids=["usec", "nsec"])
def test_keeps_what_can_matter_with_the_full_readers_timestamps(tmp_path: Path, nano: bool) -> None:
    wanted, everything = _interleaved()
    path = tmp_path / "mix.pcap"
    path.write_bytes(_pcap(everything, nano))
    counters = Counters()
    filtered = read_filtered(path, counters)
    assert filtered is not None
    kept = list(filtered)
    full = {f.data: f for f in read_frames(path)}
    assert [f.data for f in kept] == wanted
    assert kept == [full[f.data] for f in kept]  # same timestamps, link type, interface ""
    assert counters.get("capture.prefiltered-files") == 1


def test_gzip_takes_the_full_reader(tmp_path: Path) -> None:
    _wanted, everything = _interleaved()
    path = tmp_path / "mix.pcap.gz"
    path.write_bytes(gzip.compress(_pcap(everything)))
    assert read_filtered(path, Counters()) is None
    assert [f.data for f in candidate_frames(path, Counters())] == everything


def test_truncated_last_record_is_counted(tmp_path: Path) -> None:
    wanted, _bulk = _frames()
    path = tmp_path / "cut.pcap"
    path.write_bytes(_pcap(wanted)[:-10])
    counters = Counters()
    assert [f.data for f in candidate_frames(path, counters)] == wanted[:-1]
    assert counters.get("capture.truncated-record") == 1


def test_corrupt_record_header_names_the_file(tmp_path: Path) -> None:
    wanted, _bulk = _frames()
    path = tmp_path / "corrupt.pcap"
    path.write_bytes(_pcap(wanted) + struct.pack("<IIII", 1, 0, 1 << 30, 1 << 30) + b"x" * 64)
    with pytest.raises(CaptureError, match=f"^{re.escape(str(path))}: corrupt pcap record"):
        list(candidate_frames(path, Counters()))
