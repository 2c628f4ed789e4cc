"""Read a classic pcap file through libpcap with the live path's BPF filter, so the bulk frames that
cannot matter are dropped in compiled code and never reach Python (replay's fast path).

The file filter is the live kernel filter (`bpf.FILTER_EXPRESSION`) widened by the frames that
program cannot judge but the decoder can (non-IP link headers such as VLAN or MPLS, fragments,
IPv6 extension headers, tunnels), so replay finds what a full decode finds. Files libpcap cannot
take as they are (gzip, pcapng, other link types, libpcap missing) return None: read them in full.
"""

import ctypes
import ctypes.util
from collections.abc import Iterator
from pathlib import Path

from egresswatch.capture.bpf import CONTINUATION_MAX, EPHEMERAL_MIN, FILTER_EXPRESSION
from egresswatch.capture.frame import Frame
from egresswatch.capture.pcapfile import read_frames
from egresswatch.counters import Counters
from egresswatch.errors import CaptureError

_LEN4 = "(ip[2:2] - ((ip[0] & 0xf) << 2) - ((tcp[12] & 0xf0) >> 2))"
_LEN6 = "(ip6[4:2] - ((ip6[52] & 0xf0) >> 2))"
_CLIENT4 = f"ip and tcp and tcp dst portrange 1-{EPHEMERAL_MIN - 1}"
_CLIENT6 = f"ip6 and ip6[6] = 6 and ip6[42:2] < {EPHEMERAL_MIN}"

# What the live program cannot look into, passed on to the decoder whole.
UNJUDGED = " or ".join(
    (
        # A ClientHello continuation whose first bytes happen to be 0x17 0x03, which the live
        # program takes for an application data record.
        f"({_CLIENT4} and {_LEN4} > 0 and {_LEN4} <= {CONTINUATION_MAX})",
        f"({_CLIENT6} and {_LEN6} > 0 and {_LEN6} <= {CONTINUATION_MAX})",
        "not (ip or ip6)",  # VLAN, MPLS, PPPoE and other link headers before IP
        "(ip and ip[6:2] & 0x3fff != 0)",  # IPv4 fragments
        "(ip6 and not ip6[6] = 6 and not ip6[6] = 17)",  # IPv6 extension headers, tunnels
        "(ip and (ip proto 4 or ip proto 41 or ip proto 47))",  # IP-in-IP and GRE
        "(udp and (port 4789 or port 2152))",  # VXLAN and GTP-U
    )
)
FILE_FILTER = f"{FILTER_EXPRESSION} or {UNJUDGED}"

# Link types whose IP header libpcap's "ip"/"ip6"/"tcp" primitives find (Ethernet, raw IP, SLL).
FILTERED_LINKTYPES = frozenset({1, 101, 113, 228, 229, 276})
_MICRO_MAGIC = (b"\xd4\xc3\xb2\xa1", b"\xa1\xb2\xc3\xd4")
_NANO_MAGIC = (b"\x4d\x3c\xb2\xa1", b"\xa1\xb2\x3c\x4d")
_PRECISION_MICRO, _PRECISION_NANO = 0, 1
_ERRBUF_SIZE = 256
LIBPCAP_NAMES = ("libpcap.so.1", "libpcap.so.0.8", "libpcap.so")
_IOFBF = 0  # setvbuf: fully buffered
STDIO_BUFFER = 1 << 20
_NEXT_OK, _NEXT_EOF = 1, -2


class _Timeval(ctypes.Structure):
    _fields_ = (("tv_sec", ctypes.c_long), ("tv_usec", ctypes.c_long))


class _PacketHeader(ctypes.Structure):
    _fields_ = (("ts", _Timeval), ("caplen", ctypes.c_uint32), ("len", ctypes.c_uint32))


class _Program(ctypes.Structure):
    _fields_ = (("bf_len", ctypes.c_uint), ("bf_insns", ctypes.c_void_p))


def read_filtered(path: Path, counters: Counters) -> Iterator[Frame] | None:
    """Frames of the classic pcap at `path` that pass FILE_FILTER, or None when libpcap cannot
    read this file that way (the caller then reads every frame itself).

    The iterator raises CaptureError (naming the file) on a corrupt record; a truncated last
    record ends it and is counted "capture.truncated-record".
    """
    shape = _file_shape(path)
    lib = _libpcap()
    if shape is None or lib is None:
        return None
    buffer = ctypes.create_string_buffer(STDIO_BUFFER)
    handle = _open(lib, path, shape[1], buffer)
    if handle is None:
        return None
    counters.add("capture.prefiltered-files")
    return _frames(lib, (handle, buffer), path, shape, counters)


def _file_shape(path: Path) -> tuple[int, bool, float] | None:
    """(link type, nanosecond timestamps, seconds per unit) of a plain pcap libpcap may filter."""
    try:
        with path.open("rb") as raw:
            head = raw.read(24)
    except OSError:
        return None  # the full reader reports it
    if len(head) < 24 or head[:4] not in _MICRO_MAGIC + _NANO_MAGIC:
        return None
    little = head[:4] in (_MICRO_MAGIC[0], _NANO_MAGIC[0])
    linktype = int.from_bytes(head[20:24], "little" if little else "big")
    if linktype not in FILTERED_LINKTYPES:
        return None  # includes FCS bits in the upper half: those take the full path
    nano = head[:4] in _NANO_MAGIC
    return linktype, nano, 1e-9 if nano else 1e-6


def _libpcap() -> ctypes.CDLL | None:
    lib = _load_libpcap()
    if lib is None:
        return None
    lib.pcap_fopen_offline_with_tstamp_precision.restype = ctypes.c_void_p
    lib.pcap_fopen_offline_with_tstamp_precision.argtypes = (
        ctypes.c_void_p, ctypes.c_uint, ctypes.c_char_p,
    )  # fmt: skip
    lib.pcap_compile.argtypes = (
        ctypes.c_void_p, ctypes.POINTER(_Program), ctypes.c_char_p, ctypes.c_int, ctypes.c_uint32,
    )  # fmt: skip
    lib.pcap_setfilter.argtypes = (ctypes.c_void_p, ctypes.POINTER(_Program))
    lib.pcap_freecode.argtypes = (ctypes.POINTER(_Program),)
    lib.pcap_next_ex.argtypes = (
        ctypes.c_void_p,
        ctypes.POINTER(ctypes.POINTER(_PacketHeader)),
        ctypes.POINTER(ctypes.c_void_p),
    )
    lib.pcap_geterr.restype = ctypes.c_char_p
    lib.pcap_geterr.argtypes = (ctypes.c_void_p,)
    lib.pcap_close.argtypes = (ctypes.c_void_p,)
    return lib


def _load_libpcap() -> ctypes.CDLL | None:
    # The usual sonames first: find_library runs `ldconfig -p`, which costs ~10 ms per replay.
    for name in LIBPCAP_NAMES:
        try:
            return ctypes.CDLL(name)
        except OSError:
            continue
    found = ctypes.util.find_library("pcap")
    try:
        return ctypes.CDLL(found) if found else None
    except OSError:
        return None


def _libc() -> ctypes.CDLL:
    libc = ctypes.CDLL(None)
    libc.fopen.restype = ctypes.c_void_p
    libc.fopen.argtypes = (ctypes.c_char_p, ctypes.c_char_p)
    libc.setvbuf.argtypes = (ctypes.c_void_p, ctypes.c_void_p, ctypes.c_int, ctypes.c_size_t)
    libc.fclose.argtypes = (ctypes.c_void_p,)
    return libc


def _open(
    lib: ctypes.CDLL, path: Path, nano: bool, buffer: ctypes.Array[ctypes.c_char]
) -> int | None:
    """A libpcap handle on `path` with FILE_FILTER set, or None (the full reader takes over).

    `buffer` becomes the stream's stdio buffer: keep it alive until the handle is closed.
    """
    libc = _libc()
    stream = libc.fopen(bytes(path), b"rb")
    if not stream:
        return None
    # libpcap reads record by record through stdio: a large buffer turns 4 KiB reads into 1 MiB
    libc.setvbuf(stream, buffer, _IOFBF, len(buffer))
    errbuf = ctypes.create_string_buffer(_ERRBUF_SIZE)
    precision = _PRECISION_NANO if nano else _PRECISION_MICRO
    handle = lib.pcap_fopen_offline_with_tstamp_precision(stream, precision, errbuf)
    if not handle:
        libc.fclose(stream)
        return None
    if not _set_filter(lib, handle):
        lib.pcap_close(handle)  # closes the stream too
        return None
    return int(handle)


def _set_filter(lib: ctypes.CDLL, handle: int) -> bool:
    program = _Program()
    if lib.pcap_compile(handle, ctypes.byref(program), FILE_FILTER.encode(), 1, 0) != 0:
        return False
    status = lib.pcap_setfilter(handle, ctypes.byref(program))
    lib.pcap_freecode(ctypes.byref(program))
    return bool(status == 0)


def _frames(
    lib: ctypes.CDLL,
    opened: tuple[int, ctypes.Array[ctypes.c_char]],
    path: Path,
    shape: tuple[int, bool, float],
    counters: Counters,
) -> Iterator[Frame]:
    """The filtered frames of the handle (held with its stdio buffer, alive until closed)."""
    handle, _buffer = opened
    linktype, _nano, scale = shape
    header = ctypes.POINTER(_PacketHeader)()
    data = ctypes.c_void_p()
    next_ex, string_at, new = lib.pcap_next_ex, ctypes.string_at, tuple.__new__
    header_ref, data_ref = ctypes.byref(header), ctypes.byref(data)
    try:
        while (status := next_ex(handle, header_ref, data_ref)) == _NEXT_OK:
            head = header.contents
            ts = head.ts.tv_sec + head.ts.tv_usec * scale
            yield new(Frame, (ts, linktype, string_at(data, head.caplen), ""))
        if status != _NEXT_EOF:
            _record_error(lib.pcap_geterr(handle), path, counters)
    finally:
        lib.pcap_close(handle)


def _record_error(message: bytes | None, path: Path, counters: Counters) -> None:
    text = (message or b"unknown libpcap error").decode("utf-8", "replace")
    if text.startswith("truncated dump file"):
        counters.add("capture.truncated-record")
        return
    raise CaptureError(f"{path}: corrupt pcap record: {text}")


def candidate_frames(path: Path, counters: Counters) -> Iterator[Frame]:
    """The frames replay must decode: libpcap-filtered where it can be, else every frame."""
    return read_filtered(path, counters) or read_frames(path, counters)
