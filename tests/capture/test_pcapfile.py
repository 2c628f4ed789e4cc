"""read_frames against the corpus (tshark's frame counts and timestamps) and handcrafted files."""

import gzip
import json
import re
import struct
from collections.abc import Iterable
from decimal import Decimal
from pathlib import Path

import pytest
from scapy.utils import RawPcapNgReader, RawPcapReader

from egresswatch.capture import pcapfile
from egresswatch.capture.frame import Frame
from egresswatch.capture.pcapfile import read_frames
from egresswatch.counters import Counters
from egresswatch.errors import CaptureError

CORPUS = Path(__file__).resolve().parents[2] / ".." / "shared" / "corpus"
RECORD_KINDS = ("dns", "tls_sni", "tls_no_sni", "quic_sni", "quic_no_sni")
# capinfos' short encapsulation names -> the link types that may stand behind them
LINKTYPES = {
    "ether": {1},
    "null": {0},
    "loop": {108},
    "rawip": {101, 12, 14},
    "rawip4": {228},
    "rawip6": {229},
    "linux-sll": {113},
    "linux-sll2": {276},
    "ppp": {9, 50},
    "nflog": {239},
}


def corpus_captures() -> list[Path]:
    pcaps = CORPUS / "pcaps"
    return sorted(pcaps.iterdir()) if pcaps.is_dir() else []


def expected_for(capture: Path) -> dict[str, object]:
    stem = capture.name.removesuffix(".pcapng").removesuffix(".pcap")
    data: dict[str, object] = json.loads((CORPUS / "expected" / f"{stem}.json").read_text())
    return data


# -- writers for handcrafted files ------------------------------------------------------------


def pcap_bytes(
    records: Iterable[tuple[int, int, bytes]],
    order: str = "<",
    nano: bool = False,
    linktype: int = 1,
    snaplen: int = 65535,
    orig_extra: int = 0,
) -> bytes:
    magic = 0xA1B23C4D if nano else 0xA1B2C3D4
    out = [struct.pack(order + "IHHiIII", magic, 2, 4, 0, 0, snaplen, linktype)]
    for sec, frac, data in records:
        out.append(struct.pack(order + "IIII", sec, frac, len(data), len(data) + orig_extra) + data)
    return b"".join(out)


def block(order: str, btype: int, body: bytes) -> bytes:
    body += b"\0" * (-len(body) % 4)
    length = len(body) + 12
    return struct.pack(order + "II", btype, length) + body + struct.pack(order + "I", length)


def option(order: str, code: int, value: bytes) -> bytes:
    return struct.pack(order + "HH", code, len(value)) + value + b"\0" * (-len(value) % 4)


def shb(order: str) -> bytes:
    return block(order, 0x0A0D0D0A, struct.pack(order + "IHHq", 0x1A2B3C4D, 1, 0, -1))


def idb(order: str, linktype: int, tsresol: int | None = None, tsoffset: int = 0) -> bytes:
    opts = b""
    if tsresol is not None:
        opts += option(order, 9, bytes([tsresol]))
    if tsoffset:
        opts += option(order, 14, struct.pack(order + "q", tsoffset))
    if opts:
        opts += option(order, 0, b"")
    return block(order, 1, struct.pack(order + "HHI", linktype, 0, 65535) + opts)


def epb(order: str, iface: int, units: int, data: bytes) -> bytes:
    head = struct.pack(order + "5I", iface, units >> 32, units & 0xFFFFFFFF, len(data), len(data))
    return block(order, 6, head + data)


def write(tmp_path: Path, name: str, content: bytes) -> Path:
    path = tmp_path / name
    path.write_bytes(content)
    return path


FRAMES = [bytes([i]) * (60 + i) for i in range(5)]


# -- corpus ----------------------------------------------------------------------------------


@pytest.mark.corpus
@pytest.mark.parametrize("capture", corpus_captures(), ids=lambda p: p.name)
def test_corpus_capture_reads_like_tshark(capture: Path) -> None:
    expected = expected_for(capture)
    meta = expected["meta"]
    assert isinstance(meta, dict)
    counters = Counters()
    frames = list(read_frames(capture, counters))
    assert len(frames) == meta["packets"]
    assert {f.linktype for f in frames} <= LINKTYPES[meta["link_type"]]
    records = [r for kind in RECORD_KINDS for r in expected.get(kind, [])]  # type: ignore[attr-defined]
    for record in records:
        got = Decimal(repr(frames[record["frame"] - 1].ts))
        assert abs(got - Decimal(record["ts"])) < Decimal("0.000001"), record


@pytest.mark.corpus
def test_corpus_present_or_skipped() -> None:
    if not corpus_captures():
        pytest.skip(f"corpus not found at {CORPUS} (shared/ must sit beside the repository)")
    assert len(corpus_captures()) >= 80


@pytest.mark.corpus
def test_corpus_frame_bytes_match_scapy() -> None:
    """Cross-check every frame's bytes and link type with scapy's independent readers."""
    captures = corpus_captures()
    if not captures:
        pytest.skip(f"corpus not found at {CORPUS}")
    for capture in captures:
        reader_class = RawPcapNgReader if capture.suffix == ".pcapng" else RawPcapReader
        with reader_class(str(capture)) as reader:
            theirs = [bytes(data) for data, _meta in reader]
        ours = [f.data for f in read_frames(capture)]
        assert ours == theirs, capture.name


@pytest.mark.corpus
def test_time_beyond_2106() -> None:
    capture = CORPUS / "pcaps" / "tcpdump__time_2107.pcapng"
    if not capture.exists():
        pytest.skip(f"corpus not found at {CORPUS}")
    (frame,) = read_frames(capture)
    assert frame.ts == 4323283200.0
    assert frame.linktype == 1


# -- classic pcap ----------------------------------------------------------------------------


@pytest.mark.parametrize("order", ["<", ">"])
def test_classic_pcap_both_byte_orders(tmp_path: Path, order: str) -> None:
    records = [(1_700_000_000 + i, 123_456 + i, data) for i, data in enumerate(FRAMES)]
    path = write(tmp_path, "x.pcap", pcap_bytes(records, order=order, linktype=113))
    frames = list(read_frames(path))
    assert [f.data for f in frames] == FRAMES
    assert {f.linktype for f in frames} == {113}
    assert frames[2].ts == pytest.approx(1_700_000_002.123458, abs=1e-7)
    assert isinstance(frames[0], Frame) and frames[0].data is frames[0][2]


@pytest.mark.parametrize("order", ["<", ">"])
def test_nanosecond_pcap(tmp_path: Path, order: str) -> None:
    path = write(tmp_path, "n.pcap", pcap_bytes([(1_700_000_000, 999_999_001, b"a")], order, True))
    (frame,) = read_frames(path)
    assert Decimal(repr(frame.ts)) == pytest.approx(
        Decimal("1700000000.999999001"), abs=Decimal("1e-6")
    )
    assert frame.ts > 1_700_000_000.999998


def test_snaplen_truncated_records_keep_the_captured_bytes(tmp_path: Path) -> None:
    records = [(1, 0, b"x" * 68), (2, 0, b"y" * 68)]
    path = write(tmp_path, "s.pcap", pcap_bytes(records, snaplen=68, orig_extra=1000))
    assert [f.data for f in read_frames(path)] == [b"x" * 68, b"y" * 68]


def test_truncated_last_record_stops_and_counts(tmp_path: Path) -> None:
    content = pcap_bytes([(1, 0, d) for d in FRAMES])
    path = write(tmp_path, "t.pcap", content[:-10])
    counters = Counters()
    assert [f.data for f in read_frames(path, counters)] == FRAMES[:-1]
    assert counters.get("capture.truncated-record") == 1


@pytest.mark.parametrize("compress", [False, True], ids=["mapped", "gzip-chunked"])
def test_records_across_chunk_boundaries_and_larger_than_a_chunk(
    tmp_path: Path, compress: bool
) -> None:
    frames = [bytes([i % 251]) * (1 + (i * 7919) % 9000) for i in range(600)]
    frames.insert(300, b"B" * (pcapfile.CHUNK + 12345))
    content = pcap_bytes([(i, 0, d) for i, d in enumerate(frames)])
    path = write(tmp_path, "big.pcap", gzip.compress(content, 1) if compress else content)
    counters = Counters()
    assert [f.data for f in read_frames(path, counters)] == frames
    assert counters.snapshot() == {}


def test_gzip_compressed_capture(tmp_path: Path) -> None:
    content = pcap_bytes([(1, 0, d) for d in FRAMES], order=">")
    path = write(tmp_path, "z.pcap.gz", gzip.compress(content))
    assert [f.data for f in read_frames(path)] == FRAMES


def test_corrupt_gzip_raises_capture_error(tmp_path: Path) -> None:
    content = gzip.compress(pcap_bytes([(1, 0, d) for d in FRAMES]))
    path = write(tmp_path, "bad.pcap.gz", content[:40] + b"\xff" * 40)
    with pytest.raises(CaptureError):
        list(read_frames(path))


@pytest.mark.parametrize(
    "content",
    [
        b"",
        b"hello, this is not a capture file at all",
        b"\xd4\xc3\xb2\xa1\x02\x00",  # pcap header cut short
        b"\x0a\x0d\x0d\x0a\x1c\x00",  # pcapng section header cut short
        b"\x0a\x0d\x0d\x0a\x1c\x00\x00\x00\x11\x22\x33\x44" + b"\0" * 16,  # bad byte-order magic
        shb("<")[:-4] + b"\0\0\0\0" + struct.pack("<II", 6, 7) + b"\0" * 20,  # block length 7
        pcap_bytes([]) + struct.pack("<IIII", 1, 0, 1 << 30, 1 << 30) + b"x" * 100,
    ],
    ids=["empty", "text", "short-pcap", "short-pcapng", "bad-bom", "bad-block", "huge-record"],
)
def test_garbage_raises_capture_error(tmp_path: Path, content: bytes) -> None:
    path = write(tmp_path, "garbage.bin", content)
    with pytest.raises(CaptureError, match=f"^{re.escape(str(path))}: "):
        list(read_frames(path))


def test_corrupt_deflate_data_raises_capture_error_naming_the_file(tmp_path: Path) -> None:
    content = bytearray(gzip.compress(pcap_bytes([(1, 0, d) for d in FRAMES * 50])))
    content[12:20] = bytes(b ^ 0xFF for b in content[12:20])  # inside the deflate stream
    path = write(tmp_path, "deflate.pcap.gz", bytes(content))
    with pytest.raises(CaptureError, match=f"^{re.escape(str(path))}: corrupt gzip data: "):
        list(read_frames(path))


def test_missing_file_raises_capture_error(tmp_path: Path) -> None:
    with pytest.raises(CaptureError, match="cannot read capture"):
        list(read_frames(tmp_path / "absent.pcap"))


# -- pcapng ----------------------------------------------------------------------------------


@pytest.mark.parametrize("order", ["<", ">"])
def test_pcapng_two_interfaces_with_own_linktype_and_resolution(tmp_path: Path, order: str) -> None:
    content = b"".join(
        [
            shb(order),
            idb(order, 1),  # default microseconds
            idb(order, 113, tsresol=9),  # nanoseconds
            idb(order, 101, tsresol=0x80 | 20, tsoffset=100),  # 2**-20 s, +100 s
            block(order, 4, b"name resolution block: skipped"),
            epb(order, 0, 1_700_000_000_250_000, FRAMES[0]),
            epb(order, 1, 1_700_000_000_123_456_789, FRAMES[1]),
            epb(order, 2, 3 << 19, FRAMES[2]),
            block(order, 0x40000BAD, b"custom block"),
        ]
    )
    frames = list(read_frames(write(tmp_path, "two.pcapng", content)))
    assert [f.linktype for f in frames] == [1, 113, 101]
    assert [f.data for f in frames] == FRAMES[:3]
    assert frames[0].ts == 1_700_000_000.25
    assert frames[1].ts == pytest.approx(1_700_000_000.123456789, abs=1e-6)
    assert frames[2].ts == 101.5


def test_pcapng_sections_switch_byte_order_and_reset_interfaces(tmp_path: Path) -> None:
    content = b"".join(
        [
            shb("<"),
            idb("<", 1),
            epb("<", 0, 1_000_000, FRAMES[0]),
            shb(">"),
            idb(">", 229),
            epb(">", 0, 2_000_000, FRAMES[1]),
            epb(">", 1, 2_000_000, FRAMES[2]),  # interface 1 only existed in no section: bad
        ]
    )
    counters = Counters()
    frames = list(read_frames(write(tmp_path, "s.pcapng", content), counters))
    assert [(f.ts, f.linktype, f.data) for f in frames] == [
        (1.0, 1, FRAMES[0]),
        (2.0, 229, FRAMES[1]),
    ]
    assert counters.get("capture.bad-block") == 1


def test_pcapng_simple_and_obsolete_packet_blocks(tmp_path: Path) -> None:
    order = "<"
    pb = struct.pack(order + "HH4I", 0, 0, 0, 5_000_000, len(FRAMES[3]), len(FRAMES[3]))
    content = b"".join(
        [
            shb(order),
            idb(order, 1),
            block(order, 3, struct.pack(order + "I", len(FRAMES[4])) + FRAMES[4]),
            block(order, 2, pb + FRAMES[3]),
        ]
    )
    frames = list(read_frames(write(tmp_path, "spb.pcapng", content)))
    assert [(f.ts, f.data) for f in frames] == [(0.0, FRAMES[4]), (5.0, FRAMES[3])]


def test_pcapng_truncated_last_block_stops_and_counts(tmp_path: Path) -> None:
    content = shb("<") + idb("<", 1) + epb("<", 0, 1, FRAMES[0]) + epb("<", 0, 2, FRAMES[1])
    counters = Counters()
    frames = list(read_frames(write(tmp_path, "t.pcapng", content[:-9]), counters))
    assert [f.data for f in frames] == FRAMES[:1]
    assert counters.get("capture.truncated-record") == 1


def test_gzip_pcapng_across_chunks_and_truncated(tmp_path: Path) -> None:
    frames = [bytes([i % 251]) * (1 + (i * 7919) % 9000) for i in range(400)]
    content = shb(">") + idb(">", 1) + b"".join(epb(">", 0, i, d) for i, d in enumerate(frames))
    counters = Counters()
    path = write(tmp_path, "g.pcapng.gz", gzip.compress(content[:-5], 1))
    assert [f.data for f in read_frames(path, counters)] == frames[:-1]
    assert counters.get("capture.truncated-record") == 1
