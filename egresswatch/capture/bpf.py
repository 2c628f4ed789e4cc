"""The kernel packet filter of live capture: which packets can matter, as a tcpdump expression
compiled to classic BPF (libpcap through scapy, or `tcpdump -ddd` where libpcap cannot be loaded).
"""

import ctypes
import socket
import struct
import subprocess
from collections.abc import Sequence
from dataclasses import dataclass

from egresswatch.errors import CaptureError

DLT_RAW = 12  # libpcap's DLT for "packet starts at the IP header" (what SOCK_DGRAM delivers)
SO_ATTACH_FILTER = 26
SNAPLEN = 65535
# A client's second TLS segment (a ClientHello split over two segments) starts with arbitrary
# bytes; pass client->server segments up to this size that do not start like an application
# data record (0x17 0x03: content type and major version). Testing the first byte alone dropped
# every continuation that happened to start with 0x17 (suricata's dump_mtu300 has one).
CONTINUATION_MAX = 1024
EPHEMERAL_MIN = 32768  # Linux ip_local_port_range start: servers listen below, clients above

_PAYLOAD4 = "tcp[((tcp[12] & 0xf0) >> 2):2]"
_PAYLOAD6 = "ip6[(40 + ((ip6[52] & 0xf0) >> 2)):2]"
_LEN4 = "(ip[2:2] - ((ip[0] & 0xf) << 2) - ((tcp[12] & 0xf0) >> 2))"
_LEN6 = "(ip6[4:2] - ((ip6[52] & 0xf0) >> 2))"
_FIFTH4 = "tcp[((tcp[12] & 0xf0) >> 2) + 4]"
_FIFTH6 = "ip6[(44 + ((ip6[52] & 0xf0) >> 2))]"
APPLICATION_DATA = 0x1703
_WORD4 = "tcp[((tcp[12] & 0xf0) >> 2):4]"
_WORD6 = "ip6[(40 + ((ip6[52] & 0xf0) >> 2)):4]"
# "POST ": the first segment of an HTTP request (an inference request to an LLM tool's API may be
# larger than CONTINUATION_MAX). No port test: a tool may serve on an ephemeral port (>= 32768),
# whose requests a port test dropped. Bulk data passes only if it starts with these five bytes.
# These clauses come last because their loads abort the program on short segments.
HTTP_POST = 0x504F5354
SPACE = 0x20

# libpcap cannot index tcp[]/udp[] over IPv6, so IPv6 clauses read ip6[] at the fixed 40-byte
# offset: packets with IPv6 extension headers before TCP/UDP are not matched (rare for egress).
# Cheap clauses come first: an out-of-bounds load aborts the program and rejects the packet.
FILTER_EXPRESSION = " or ".join(
    (
        "((tcp or udp) and (port 53 or port 5353 or port 5355))",
        "(ip and tcp and tcp[13] & 0x12 = 0x02)",
        "(ip6 and ip6[6] = 6 and ip6[53] & 0x12 = 0x02)",
        "(ip and udp and udp[8] & 0x80 != 0)",
        "(ip6 and ip6[6] = 17 and ip6[48] & 0x80 != 0)",
        f"(ip and tcp and {_PAYLOAD4} = 0x1603)",
        f"(ip6 and ip6[6] = 6 and {_PAYLOAD6} = 0x1603)",
        f"(ip and tcp and tcp dst portrange 1-{EPHEMERAL_MIN - 1} and {_LEN4} > 0"
        f" and {_LEN4} <= {CONTINUATION_MAX} and {_PAYLOAD4} != {APPLICATION_DATA:#x})",
        f"(ip6 and ip6[6] = 6 and ip6[42:2] < {EPHEMERAL_MIN} and {_LEN6} > 0"
        f" and {_LEN6} <= {CONTINUATION_MAX} and {_PAYLOAD6} != {APPLICATION_DATA:#x})",
        f"(ip and tcp and {_WORD4} = {HTTP_POST:#x} and {_FIFTH4} = {SPACE:#x})",
        f"(ip6 and ip6[6] = 6 and {_WORD6} = {HTTP_POST:#x} and {_FIFTH6} = {SPACE:#x})",
    )
)

Instruction = tuple[int, int, int, int]
SKF_AD_OFF = -0x1000  # classic BPF loads from here on read skb metadata, not packet bytes
SKF_AD_PKTTYPE = 4
SKF_AD_IFINDEX = 8
PACKET_OUTGOING = 4


@dataclass(frozen=True, slots=True)
class FilterProgram:
    """A compiled classic BPF program and how it was made ("libpcap" or "tcpdump")."""

    instructions: tuple[Instruction, ...]
    compiler: str

    def packed(self) -> bytes:
        """The `struct sock_filter` array the kernel expects."""
        return b"".join(struct.pack("HBBI", *ins) for ins in self.instructions)


def compile_filter(expression: str = FILTER_EXPRESSION) -> FilterProgram:
    """Compiles `expression` for packets that start at the IP header.

    Raises CaptureError when neither libpcap nor tcpdump can compile it.
    """
    try:
        return FilterProgram(_compile_libpcap(expression), "libpcap")
    except (ImportError, OSError, ValueError) as first:
        try:
            return FilterProgram(_compile_tcpdump(expression), "tcpdump")
        except (OSError, ValueError, subprocess.SubprocessError) as second:
            raise CaptureError(f"cannot compile the BPF filter: {first}; {second}") from second


def _compile_libpcap(expression: str) -> tuple[Instruction, ...]:
    # Imported here: importing scapy reads routes and interfaces, too slow for import time.
    from scapy.arch.common import compile_filter as scapy_compile  # noqa: PLC0415
    from scapy.error import Scapy_Exception  # noqa: PLC0415

    try:
        program = scapy_compile(expression, linktype=DLT_RAW)
    except Scapy_Exception as err:
        raise ValueError(str(err)) from err
    insns = program.bf_insns
    rows = (insns[i] for i in range(program.bf_len))
    return tuple(_capped((row.code, row.jt, row.jf, row.k)) for row in rows)


def _compile_tcpdump(expression: str) -> tuple[Instruction, ...]:
    done = subprocess.run(
        ["tcpdump", "-ddd", "-y", "RAW", expression],
        capture_output=True,
        text=True,
        timeout=10,
        check=False,
    )
    if done.returncode != 0:
        raise ValueError(done.stderr.strip() or "tcpdump -ddd failed")
    return parse_ddd(done.stdout)


def parse_ddd(text: str) -> tuple[Instruction, ...]:
    """Parses `tcpdump -ddd` output: a count line, then "code jt jf k" per instruction."""
    lines = text.split("\n")
    count = int(lines[0])
    rows = [line.split() for line in lines[1 : count + 1]]
    if len(rows) != count or any(len(row) != 4 for row in rows):
        raise ValueError("malformed tcpdump -ddd output")
    return tuple(_capped((int(a), int(b), int(c), int(d))) for a, b, c, d in rows)


def _capped(ins: Instruction) -> Instruction:
    """A "ret #k" accepting k > SNAPLEN bytes is capped, so the kernel copies at most SNAPLEN."""
    code, jt, jf, k = ins
    if code == 0x06 and k > SNAPLEN:  # BPF_RET | BPF_K
        return (code, jt, jf, SNAPLEN)
    return ins


def skipping_loopback_echo(program: FilterProgram, lo_index: int) -> FilterProgram:
    """`program` behind a check that drops, in the kernel, the outgoing copy of a loopback packet
    (lo delivers each packet twice; the incoming copy is kept). Reads the kernel's ancillary
    packet type and interface index, which libpcap expressions cannot name.
    """
    prefix: tuple[Instruction, ...] = (
        (0x20, 0, 0, (SKF_AD_OFF + SKF_AD_PKTTYPE) & 0xFFFFFFFF),  # ld pkttype
        (0x15, 0, 3, PACKET_OUTGOING),  # outgoing? else jump to the program
        (0x20, 0, 0, (SKF_AD_OFF + SKF_AD_IFINDEX) & 0xFFFFFFFF),  # ld ifindex
        (0x15, 0, 1, lo_index),  # on lo? else jump to the program
        (0x06, 0, 0, 0),  # ret #0: drop
    )
    return FilterProgram(prefix + program.instructions, program.compiler)


def attach(sock: socket.socket, program: FilterProgram) -> None:
    """Attaches `program` to `sock` (SO_ATTACH_FILTER); the kernel copies it during the call."""
    raw = program.packed()
    buf = ctypes.create_string_buffer(raw, len(raw))
    fprog = struct.pack("HL", len(program.instructions), ctypes.addressof(buf))
    sock.setsockopt(socket.SOL_SOCKET, SO_ATTACH_FILTER, fprog)


def instructions_text(instructions: Sequence[Instruction]) -> str:
    """The program as `tcpdump -ddd` prints it (for doctor and debugging)."""
    body = "\n".join(" ".join(str(v) for v in ins) for ins in instructions)
    return f"{len(instructions)}\n{body}"
