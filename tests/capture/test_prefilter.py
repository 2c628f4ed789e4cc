"""The libpcap-filtered file reader: what it drops, what it keeps, and how it fails."""

import gzip
import re
import struct
from pathlib import Path

import pytest

from bench.capture_builder import client_hello, dns_pair, tcp_frame, udp_frame
from egresswatch.capture.pcapfile import read_frames
from egresswatch.capture.prefilter import candidate_frames, read_filtered
from egresswatch.counters import Counters
from egresswatch.errors import CaptureError

CLIENT, SERVER, RESOLVER = b"\x0a\xc7\x00\x01", b"\x0a\xc7\x00\x02", b"\x0a\xc7\x00\x35"


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
