"""ClientHello decoding: crafted hellos, the corpus's real captures against tshark, and fuzzing."""

import functools
import json
import shutil
import subprocess
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from scapy.layers import all as _all_layers  # noqa: F401  binds PPPoE, SLL2, QinQ, ... (test-only)
from scapy.layers.inet import IP, TCP
from scapy.layers.inet6 import IPv6
from scapy.packet import Padding
from scapy.utils import PcapReader

from egresswatch.decode.tcp_stream import TcpReassembler
from egresswatch.decode.tls import (
    MAX_RECORDS,
    client_hello_from_stream,
    is_grease,
    looks_like_tls_client_hello,
    parse_client_hello,
)
from egresswatch.errors import DecodeError
from egresswatch.model import ClientHello, FlowKey

CORPUS = Path(__file__).resolve().parents[2] / ".." / "shared" / "corpus"
FUZZ = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])

Flow = tuple[str, int, str, int]  # src, sport, dst, dport as tshark prints them


# --- crafted hellos -------------------------------------------------------------------------


def u16(n: int) -> bytes:
    return n.to_bytes(2, "big")


def ext(ext_type: int, body: bytes) -> bytes:
    return u16(ext_type) + u16(len(body)) + body


def sni_ext(*names: tuple[int, bytes]) -> bytes:
    entries = b"".join(bytes([t]) + u16(len(n)) + n for t, n in names)
    return ext(0, u16(len(entries)) + entries)


def alpn_ext(*protocols: bytes) -> bytes:
    entries = b"".join(bytes([len(p)]) + p for p in protocols)
    return ext(16, u16(len(entries)) + entries)


def versions_ext(*versions: int) -> bytes:
    body = b"".join(u16(v) for v in versions)
    return ext(43, bytes([len(body)]) + body)


def hello(*extensions: bytes, version: int = 0x0303, with_ext_block: bool = True) -> bytes:
    body = (
        u16(version) + bytes(32) + b"\x20" + bytes(32) + u16(4) + b"\x13\x01\x00\x2f" + b"\x01\x00"
    )
    if with_ext_block:
        exts = b"".join(extensions)
        body += u16(len(exts)) + exts
    return b"\x01" + len(body).to_bytes(3, "big") + body


def records(handshake: bytes, size: int, version: bytes = b"\x03\x01") -> bytes:
    """Wrap a handshake message in TLS handshake records of at most `size` bytes each."""
    out = b""
    for i in range(0, len(handshake), size):
        chunk = handshake[i : i + size]
        out += b"\x16" + version + u16(len(chunk)) + chunk
    return out


def test_fields_of_a_tls13_hello() -> None:
    ch = parse_client_hello(
        hello(
            sni_ext((0, b"Example.COM")),
            alpn_ext(b"h2", b"http/1.1"),
            versions_ext(0x3A3A, 0x0304, 0x0303),
            ext(0xFE0D, b"\x00\x01"),
        )
    )
    assert ch == ClientHello("Example.COM", ("h2", "http/1.1"), 0x0303, (0x0304, 0x0303), True)


def test_memoryview_input_and_trailing_bytes_are_accepted() -> None:
    msg = hello(sni_ext((0, b"a.example")))
    assert parse_client_hello(memoryview(msg + b"\x02\x00\x00\x00")).sni == "a.example"


def test_first_host_name_wins_and_other_name_types_are_skipped() -> None:
    ch = parse_client_hello(hello(sni_ext((7, b"odd"), (0, b"first.test"), (0, b"second.test"))))
    assert ch.sni == "first.test"
    assert parse_client_hello(hello(sni_ext((7, b"odd")))).sni is None


def test_repeated_extensions_keep_the_first() -> None:
    ch = parse_client_hello(hello(sni_ext((0, b"one.test")), sni_ext((0, b"two.test"))))
    assert ch.sni == "one.test"


def test_esni_and_draft_ech_set_ech() -> None:
    assert parse_client_hello(hello(ext(0xFFCE, b"\x00"))).ech
    assert parse_client_hello(hello(ext(0xFE0A, b""))).ech
    assert not parse_client_hello(hello(ext(0xFE00, b""))).ech


def test_hello_without_extension_block() -> None:
    ch = parse_client_hello(hello(with_ext_block=False, version=0x0300))
    assert ch == ClientHello(None, (), 0x0300, (), False)


@pytest.mark.parametrize(
    ("raw", "text"),
    [
        (b"caf\xc3\xa9.test", "café.test"),  # valid UTF-8 kept as is
        (b"bad\xff\xfe.test", "bad\\xff\\xfe.test"),  # invalid bytes escaped as \xHH
        (b"ctl\x00\x1b[31m.test", "ctl\x00\x1b[31m.test"),  # control characters kept
        (b"", ""),  # an empty host_name is reported as sent
    ],
)
def test_hostile_server_names_are_kept_faithfully(raw: bytes, text: str) -> None:
    assert parse_client_hello(hello(sni_ext((0, raw)))).sni == text


@pytest.mark.parametrize(
    ("msg", "reason"),
    [
        (b"", "tls.truncated"),
        (b"\x01\x00\x00", "tls.truncated"),
        (b"\x02\x00\x00\x00", "tls.not-client-hello"),
        (hello()[:-1], "tls.truncated"),
        (b"\x01\x00\x00\x10" + bytes(16), "tls.bad-length"),  # body shorter than random
        (hello(b"\x00\x00\x00\x09ab"), "tls.bad-length"),  # extension overruns its block
        (hello(ext(0, b"\x00\x09\x00\x00\x02ab")), "tls.bad-extension"),  # name list overruns
        (hello(ext(0, b"\x00\x00\xff")), "tls.bad-extension"),  # trailing bytes in server_name
        (hello(ext(43, b"\x03\x03\x04\x03")), "tls.bad-extension"),  # odd version list
        (hello(ext(16, b"\x00\x03\x05h2")), "tls.bad-length"),  # ALPN name overruns list
    ],
)
def test_malformed_hellos_raise_decode_error(msg: bytes, reason: str) -> None:
    with pytest.raises(DecodeError) as info:
        parse_client_hello(msg)
    assert info.value.reason == reason


def test_grease() -> None:
    greases = [v for v in range(0x10000) if is_grease(v)]
    assert greases == [0x0A0A + 0x1010 * i for i in range(16)]


@pytest.mark.parametrize(
    ("payload", "expected"),
    [
        (b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc", True),
        (b"\x16\x03\x04", True),  # too short to see the handshake type yet
        (b"\x16\x03\x01\x02\x00\x02", False),  # ServerHello
        (b"\x16\x03\x05\x02\x00\x01", False),
        (b"\x17\x03\x03\x00\x10\x01", False),
        (b"GET / HTTP/1.1\r\n", False),
        (b"\x16\x03", False),
        (b"", False),
    ],
)
def test_looks_like_tls_client_hello(payload: bytes, expected: bool) -> None:
    assert looks_like_tls_client_hello(payload) is expected


def test_stream_needs_every_byte_then_yields_the_hello() -> None:
    msg = hello(sni_ext((0, b"stream.test")), alpn_ext(b"h2"))
    stream = records(msg, 16384)
    for cut in range(len(stream)):
        assert client_hello_from_stream(stream[:cut]) is None
    assert client_hello_from_stream(stream + b"\x14\x03\x03") == parse_client_hello(msg)


@pytest.mark.parametrize("size", [1, 3, 7, 100])
def test_handshake_fragmented_over_records(size: int) -> None:
    msg = hello(sni_ext((0, b"frag.test")))
    assert client_hello_from_stream(records(msg, size)) == parse_client_hello(msg)


@pytest.mark.parametrize(
    ("stream", "reason"),
    [
        (b"GET / HTTP/1.1\r\n", "tls.not-tls"),
        (b"\x15\x03\x03\x00\x02\x02\x28", "tls.not-tls"),  # alert record
        (b"\x16\x02\x00", "tls.not-tls"),
        (b"\x16\x03\x03\x00\x00", "tls.bad-length"),  # empty handshake record
        (b"\x16\x03\x03\x48\x01", "tls.bad-length"),  # over 2^14 + 2048
        (records(b"\x02\x00\x00\x04" + bytes(4), 100), "tls.not-client-hello"),
        (b"\x16\x03\x01\x00\x04\x01\x01\x00\x00", "tls.too-large"),  # declares 64 KiB + 4
        (records(hello(sni_ext((0, b"x" * 63800))), 128), "tls.too-large"),  # headers push it over
        (records(hello(sni_ext((0, b"x" * 63800))), 128)[:-100], "tls.too-large"),
        (records(bytes([1, 0, 2, 0]) + bytes(600), 1), "tls.too-fragmented"),
        (records(hello(), 50)[:55] + b"\x14\x03\x03\x00\x01\x01", "tls.not-tls"),  # CCS inside
    ],
)
def test_streams_that_are_not_a_client_hello(stream: bytes, reason: str) -> None:
    with pytest.raises(DecodeError) as info:
        client_hello_from_stream(stream)
    assert info.value.reason == reason


def test_record_limit_is_generous_for_real_fragmentation() -> None:
    msg = hello(sni_ext((0, b"many.test")))
    size = -(-len(msg) // MAX_RECORDS)  # exactly MAX_RECORDS records
    assert client_hello_from_stream(records(msg, size)) == parse_client_hello(msg)


# --- the corpus ------------------------------------------------------------------------------


def corpus_dir() -> Path:
    if not (CORPUS / "expected").is_dir():
        pytest.skip(f"corpus not found at {CORPUS.resolve()}")
    return CORPUS


@dataclass
class Extraction:
    """What the reassembler + decoder made of one capture, per client->server flow."""

    hellos: dict[Flow, tuple[int, ClientHello]] = field(default_factory=dict)
    errors: dict[Flow, str] = field(default_factory=dict)
    counters: dict[str, int] = field(default_factory=dict)
    # The client's segments up to the hello, for the reassembly properties: flow -> (isn, segs)
    segments: dict[Flow, tuple[int | None, list[tuple[int, bytes]]]] = field(default_factory=dict)


@dataclass(frozen=True)
class Segment:
    frame: int
    ts: float
    flow: Flow
    syn: bool
    seq: int
    payload: bytes


def tcp_segments(pcap: Path) -> Iterator[Segment]:
    """Plain (untunnelled) TCP segments of a capture, decoded with scapy (test-only)."""
    with PcapReader(str(pcap)) as reader:
        for frame, pkt in enumerate(reader, 1):
            if TCP not in pkt or sum(c in (IP, IPv6) for c in pkt.layers()) != 1:
                continue
            tcp = pkt[TCP]
            ip = pkt[IP] if IP in pkt else pkt[IPv6]
            payload = bytes(tcp.payload)
            pad = tcp.getlayer(Padding)
            if pad is not None:
                payload = payload[: len(payload) - len(pad.load)]
            syn = bool(tcp.flags.S) and not tcp.flags.A
            flow = (ip.src, tcp.sport, ip.dst, tcp.dport)
            yield Segment(frame, float(pkt.time), flow, syn, tcp.seq, payload)


@functools.cache
def extract(pcap: Path) -> Extraction:
    """Follow every TCP flow the way the pipeline does: SYN opens, ClientHello or error closes."""
    out = Extraction()
    reasm = TcpReassembler()
    for seg in tcp_segments(pcap):
        key = FlowKey("tcp", *seg.flow)
        if seg.flow in out.hellos or seg.flow in out.errors:
            continue
        if seg.syn:
            reasm.open(key, seg.seq, seg.ts)
            out.segments[seg.flow] = (seg.seq, [])
            continue
        if not seg.payload or (key not in reasm and not looks_like_tls_client_hello(seg.payload)):
            continue
        out.segments.setdefault(seg.flow, (None, []))[1].append((seg.seq, seg.payload))
        buf = reasm.feed(key, seg.seq, seg.payload, seg.ts)
        if buf is not None:
            follow(out, reasm, key, seg, buf)
    out.counters = dict(reasm.counters.snapshot())
    return out


def follow(out: Extraction, reasm: TcpReassembler, key: FlowKey, seg: Segment, buf: bytes) -> None:
    try:
        ch = client_hello_from_stream(buf)
    except DecodeError as exc:
        out.errors[seg.flow] = exc.reason
        reasm.close(key)
        return
    if ch is not None:
        out.hellos[seg.flow] = (seg.frame, ch)
        reasm.close(key)


def expected(stem: str) -> dict[tuple[Flow, str | None], int]:
    """tshark's (flow, sni) -> frame for untunnelled ClientHellos; first frame per pair."""
    data = json.loads((corpus_dir() / "expected" / f"{stem}.json").read_text())
    out: dict[tuple[Flow, str | None], int] = {}
    for rec in data["tls_sni"] + data["tls_no_sni"]:
        if not rec.get("tunneled"):
            flow = (rec["src"], rec["sport"], rec["dst"], rec["dport"])
            out.setdefault((flow, rec.get("sni")), rec["frame"])
    return out


def pcap_of(stem: str) -> Path:
    data = json.loads((corpus_dir() / "expected" / f"{stem}.json").read_text())
    return corpus_dir() / "pcaps" / str(data["meta"]["file"])


def tls_stems() -> list[str]:
    if not (CORPUS / "expected").is_dir():
        return ["corpus-missing"]
    stems = []
    for path in sorted((CORPUS / "expected").glob("*.json")):
        data = json.loads(path.read_text())
        if data["tls_sni"] or data["tls_no_sni"] or "tls" in path.stem:
            stems.append(path.stem)
    return stems


# Where we knowingly differ from tshark: (stem, flow, sni) -> why.
KNOWN_MISSES = {
    ("ndpi__tls_invalid_reads", ("192.168.10.101", 3967, "206.33.61.113", 443), None): (
        "malformed hello: empty compression_methods then 1 stray byte; tshark reports it "
        "best-effort, we reject it as tls.bad-length"
    ),
}


@pytest.mark.corpus
@pytest.mark.parametrize("stem", tls_stems())
def test_corpus_hellos_match_tshark(stem: str) -> None:
    want = expected(stem)
    got = extract(pcap_of(stem))
    have = {(flow, ch.sni): frame for flow, (frame, ch) in got.hellos.items()}
    known = {(f, s) for (k, f, s) in KNOWN_MISSES if k == stem}
    assert set(want) - set(have) == known
    assert set(have) - set(want) == set()
    for flow, _sni in known:
        assert got.errors[flow] == "tls.bad-length"
    # Same frame as tshark (where reassembly completed), except for a repeated hello.
    differ = {k for k in have if k in want and have[k] != want[k]}
    assert differ <= {k for k in have if stem == "suricata__tls-duplicate-hello__input"}


def hello_of(stem: str, sport: int) -> ClientHello:
    hellos = extract(pcap_of(stem)).hellos
    return next(ch for (_, port, _, _), (_, ch) in hellos.items() if port == sport)


@pytest.mark.corpus
def test_corpus_details() -> None:
    ech = hello_of("zeek__tls13-ech", 51066)
    assert (ech.sni, ech.ech, ech.alpn) == ("cloudflare-ech.com", True, ("h2", "http/1.1"))
    esni = hello_of("ndpi__tls_esni_sni_both", 55500)
    assert esni.ech and esni.sni == "these-are-not-the-droids-youre-looking-for.com"
    esni_only = hello_of("ndpi__no_sni", 51612)
    assert esni_only.ech and esni_only.sni is None
    draft = hello_of("zeek__tls13draft23-chrome67.0.3368.0-canary", 63449)
    assert draft.supported_versions == (0x7F17, 0x0303, 0x0302, 0x0301)  # GREASE 0xdada dropped
    assert hello_of("zeek__tls-conn-with-extensions", 62045).legacy_version == 0x0301
    assert hello_of("ndpi__tls_port_80", 50541).sni is None
    assert extract(pcap_of("ndpi__tls_missing_ch_frag")).hellos == {}


@pytest.mark.corpus
@pytest.mark.parametrize(
    ("stem", "sport", "min_segments"),
    [
        ("suricata__dump_mtu300", 38576, 3),
        ("zeek__chrome-1250-tls-x25519-kyber", 13783, 1),
        ("ndpi__tls_with_huge_ch", 40640, 12),  # an 11 418-byte hello
    ],
)
def test_corpus_split_hellos_need_every_segment(stem: str, sport: int, min_segments: int) -> None:
    got = extract(pcap_of(stem))
    flow = next(f for f in got.hellos if f[1] == sport)
    _, segs = got.segments[flow]
    assert len(segs) >= min_segments
    stream = b"".join(payload for _, payload in segs)
    assert client_hello_from_stream(stream[: len(stream) - 1]) is None


def tshark_hellos(pcap: Path) -> dict[Flow, tuple[tuple[str, ...], tuple[int, ...]]]:
    """First ClientHello per flow as tshark reads it: ALPN and supported_versions."""
    tshark = shutil.which("tshark")
    if tshark is None:
        pytest.skip("tshark not installed")
    fields = ["ip.src", "ipv6.src", "tcp.srcport", "ip.dst", "ipv6.dst", "tcp.dstport"]
    fields += ["tls.handshake.extensions_alpn_str", "tls.handshake.extensions.supported_version"]
    cmd = [tshark, "-n", "-r", str(pcap), "-Y", "tcp && tls.handshake.type == 1"]
    cmd += ["-T", "fields"]
    cmd += ["-o", "tcp.desegment_tcp_streams:TRUE", "-o", "tls.desegment_ssl_records:TRUE"]
    cmd += ["-E", "separator=|", "-E", "aggregator=,", "-d", "tcp.port==80,tls"]
    for name in fields:
        cmd += ["-e", name]
    lines = subprocess.run(cmd, capture_output=True, text=True, check=True).stdout.splitlines()
    out: dict[Flow, tuple[tuple[str, ...], tuple[int, ...]]] = {}
    for line in lines:
        s4, s6, sport, d4, d6, dport, alpn, versions = line.split("|")
        if "," in s4 + s6 + sport:  # tunnelled: several IP/TCP headers
            continue
        flow = (s4 or s6, int(sport), d4 or d6, int(dport))
        vers = tuple(v for v in (int(x, 16) for x in versions.split(",") if x) if not is_grease(v))
        out.setdefault(flow, (tuple(a for a in alpn.split(",") if a), vers))
    return out


@pytest.mark.corpus
@pytest.mark.parametrize("stem", tls_stems())
def test_corpus_alpn_and_versions_match_tshark(stem: str) -> None:
    got = extract(pcap_of(stem))
    theirs = tshark_hellos(pcap_of(stem))
    for flow, (_, ch) in got.hellos.items():
        assert (ch.alpn, ch.supported_versions) == theirs[flow], flow


# --- properties ------------------------------------------------------------------------------


@functools.cache
def real_streams() -> tuple[bytes, ...]:
    """Client-to-server streams of some real hellos: split, fragmented, ECH, huge, TLS 1.0."""
    stems = [
        ("suricata__dump_mtu300", 38576),
        ("zeek__tls-fragmented-handshake", 61454),
        ("zeek__tls13-ech", 51066),
        ("ndpi__tls_esni_sni_both", 55500),
        ("zeek__pppoe-over-qinq", 20394),
        ("zeek__tls-conn-with-extensions", 62045),
        ("zeek__CVE-2015-3194", 52122),
    ]
    out = []
    for stem, sport in stems:
        got = extract(pcap_of(stem))
        flow = next(f for f in got.hellos if f[1] == sport)
        out.append(b"".join(payload for _, payload in got.segments[flow][1]))
    return tuple(out)


def real_handshake(stream: bytes) -> bytes:
    """The handshake message inside a stream's records (headers removed)."""
    body, pos = b"", 0
    while pos + 5 <= len(stream) and stream[pos] == 0x16:
        length = int.from_bytes(stream[pos + 3 : pos + 5], "big")
        body += stream[pos + 5 : pos + 5 + length]
        pos += 5 + length
    return body[: 4 + int.from_bytes(body[1:4], "big")]


def decode_or_reason(func: Callable[[bytes], object], data: bytes) -> object:
    try:
        return func(data)
    except DecodeError as exc:
        return exc.reason


@FUZZ
@given(st.binary(max_size=600))
def test_arbitrary_bytes_raise_only_decode_error(data: bytes) -> None:
    decode_or_reason(parse_client_hello, b"\x01" + data)
    decode_or_reason(client_hello_from_stream, b"\x16\x03\x01" + data)
    looks_like_tls_client_hello(data)


@pytest.mark.corpus
@FUZZ
@given(st.data())
def test_truncated_and_bit_flipped_real_hellos(data: st.DataObject) -> None:
    streams = real_streams()
    stream = data.draw(st.sampled_from(streams))
    flips = data.draw(st.lists(st.integers(0, len(stream) * 8 - 1), max_size=4))
    mutated = bytearray(stream)
    for bit in flips:
        mutated[bit // 8] ^= 1 << (bit % 8)
    cut = data.draw(st.integers(0, len(stream)))
    for candidate in (bytes(mutated), bytes(mutated[:cut]), stream[:cut]):
        decode_or_reason(client_hello_from_stream, candidate)
        decode_or_reason(parse_client_hello, real_handshake(candidate))
    assert client_hello_from_stream(stream[:cut]) is None or cut == len(stream)


@pytest.mark.corpus
@FUZZ
@given(st.data())
def test_any_order_or_duplication_of_real_segments_reassembles(data: st.DataObject) -> None:
    got = extract(pcap_of("suricata__dump_mtu300"))
    flow = next(f for f in got.hellos if f[1] == 38576)
    isn, segs = got.segments[flow]
    assert isn is not None
    dups = data.draw(st.lists(st.sampled_from(segs), max_size=6))
    shuffled = data.draw(st.permutations(segs + dups))
    reasm = TcpReassembler()
    key = FlowKey("tcp", *flow)
    reasm.open(key, isn, 0.0)
    found = None
    for seq, payload in shuffled:
        buf = reasm.feed(key, seq, payload, 0.0)
        if buf is not None and found is None:
            found = client_hello_from_stream(buf)
    assert found == got.hellos[flow][1]
