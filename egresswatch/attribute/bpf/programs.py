"""The attribution programs, as raw eBPF instructions, and the records they write.

`sock_addr_program` runs at connect() (TCP and UDP) and at sendmsg() of unconnected UDP, in
the calling process: it writes who (pid, tid, uid, comm, cgroup, netns) asked for which
destination, keyed by the socket cookie. `egress_program` runs on each outgoing packet and
writes the first packet's header of every new socket cookie, which gives the 5-tuple the
connect hook cannot know yet (the source port is chosen after it).
"""

import struct
from dataclasses import dataclass

from egresswatch.attribute.bpf import asm
from egresswatch.attribute.bpf.asm import R0, R1, R2, R3, R4, R6, R10

HELPER_MAP_LOOKUP = 1
HELPER_MAP_UPDATE = 2
HELPER_PID_TGID = 14
HELPER_UID_GID = 15
HELPER_COMM = 16
HELPER_SKB_LOAD_BYTES = 26
HELPER_SOCKET_COOKIE = 46
HELPER_CGROUP_ID = 80
HELPER_NETNS_COOKIE = 122
HELPER_RINGBUF_OUTPUT = 130
HELPER_KTIME_TAI = 208

KIND_CONNECT4, KIND_CONNECT6, KIND_SENDMSG4, KIND_SENDMSG6, KIND_PACKET = 1, 2, 3, 4, 10
# struct owner record, written by sock_addr_program (104 bytes):
# kind u32, protocol u32, cookie u64, pid_tgid u64, uid_gid u64, cgroup u64, netns u64,
# tai_ns u64, port u32 (network order), family u32, address 16s, comm 16s, src_port u32, pad
OWNER = struct.Struct("=IIQQQQQQII16s16sI4x")
# struct packet record, written by egress_program (96 bytes):
# kind u32, ethertype u32 (network order), cookie u64, tai_ns u64, length u32, pad, header 64s
PACKET = struct.Struct("=IIQQI4x64s")
HEADER_BYTES = 64

# struct bpf_sock_addr and struct bpf_sock offsets (include/uapi/linux/bpf.h)
_SA_USER_FAMILY, _SA_USER_IP4, _SA_USER_IP6, _SA_USER_PORT, _SA_PROTOCOL, _SA_SK = (
    0,
    4,
    8,
    24,
    36,
    64,
)
_SK_SRC_PORT = 44
# struct __sk_buff offsets
_SKB_LEN, _SKB_PROTOCOL, _SKB_GSO_SEGS = 0, 16, 164


@dataclass(frozen=True, slots=True)
class Maps:
    """Descriptors of the maps the programs use: the ring, the loss counter, the cookies whose
    first packet was reported (`seen`), and the owner last reported per cookie (`reported`)."""

    ring: int
    lost: int
    seen: int
    reported: int


def _zero(base: int, size: int) -> bytes:
    return b"".join(asm.store_imm(8, R10, base + off, 0) for off in range(0, size, 8))


def _call_store(helper: int, off: int, ctx_arg: bool = False) -> bytes:
    setup = asm.mov_reg(R1, R6) if ctx_arg else b""
    return setup + asm.call(helper) + asm.store_reg(8, R10, off, R0)


def _copy32(src_off: int, dst_off: int) -> bytes:
    return asm.load(4, R1, R6, src_off) + asm.store_reg(4, R10, dst_off, R1)


def _ringbuf_output(maps: "Maps", base: int, size: int) -> bytes:
    """Outputs the record at r10+base; when the ring is full, counts the loss in `maps.lost`."""
    count_loss = b"".join(
        (
            asm.store_imm(4, R10, base, 0),
            asm.ld_map_fd(R1, maps.lost),
            asm.mov_reg(R2, R10),
            asm.add_imm(R2, base),
            asm.call(HELPER_MAP_LOOKUP),
            asm.jump_imm("==", R0, 0, 2),
            asm.mov_imm(R1, 1),
            asm.atomic_add64(R0, 0, R1),
        )
    )
    return b"".join(
        (
            asm.ld_map_fd(R1, maps.ring),
            asm.mov_reg(R2, R10),
            asm.add_imm(R2, base),
            asm.mov_imm(R3, size),
            asm.mov_imm(R4, 0),
            asm.call(HELPER_RINGBUF_OUTPUT),
            asm.jump_imm("==", R0, 0, len(count_loss) // 8),
            count_loss,
        )
    )


def _allow() -> bytes:
    return asm.mov_imm(R0, 1) + asm.exit_insn()


def sock_addr_program(maps: Maps, kind: int) -> bytes:
    """Writes an OWNER record for each hooked connect()/sendmsg() that says something new (another
    process or destination than the socket's last record); always lets the call through.
    """
    key, value = -(OWNER.size + 8), -(OWNER.size + 24)
    base = -OWNER.size
    ipv6 = kind in (KIND_CONNECT6, KIND_SENDMSG6)
    address = (
        b"".join(_copy32(_SA_USER_IP6 + 4 * i, base + 64 + 4 * i) for i in range(4))
        if ipv6
        else _copy32(_SA_USER_IP4, base + 64)
    )
    return b"".join(
        (
            asm.mov_reg(R6, R1),
            _zero(base, OWNER.size),
            asm.store_imm(4, R10, base, kind),
            _copy32(_SA_PROTOCOL, base + 4),
            _call_store(HELPER_SOCKET_COOKIE, base + 8, ctx_arg=True),
            _call_store(HELPER_PID_TGID, base + 16),
            _call_store(HELPER_UID_GID, base + 24),
            _call_store(HELPER_CGROUP_ID, base + 32),
            _call_store(HELPER_NETNS_COOKIE, base + 40, ctx_arg=True),
            _call_store(HELPER_KTIME_TAI, base + 48),
            _copy32(_SA_USER_PORT, base + 56),
            _copy32(_SA_USER_FAMILY, base + 60),
            address,
            asm.mov_reg(R1, R10),
            asm.add_imm(R1, base + 80),
            asm.mov_imm(R2, 16),
            asm.call(HELPER_COMM),
            asm.load(8, R1, R6, _SA_SK),
            asm.load(4, R1, R1, _SK_SRC_PORT),
            asm.store_reg(4, R10, base + 96, R1),
            _only_if_new(maps, base, key, value, _ringbuf_output(maps, base, OWNER.size)),
            _allow(),
        )
    )


def _only_if_new(maps: Maps, base: int, key: int, value: int, report: bytes) -> bytes:
    """Runs `report` unless this socket's last record had the same pid/tid and destination.

    A sender of many datagrams from one socket (a flood, a busy resolver) then costs one record,
    not one per sendmsg(). The destination is compared by a 64-bit fold: two destinations that
    fold alike only hide a record naming the same process.
    """
    fingerprint = b"".join(
        (
            asm.load(8, R1, R10, base + 8),
            asm.store_reg(8, R10, key, R1),
            asm.load(8, R1, R10, base + 16),
            asm.store_reg(8, R10, value, R1),
            asm.load(8, R1, R10, base + 56),
            asm.load(8, R2, R10, base + 64),
            asm.xor_reg(R1, R2),
            asm.load(8, R2, R10, base + 72),
            asm.xor_reg(R1, R2),
            asm.store_reg(8, R10, value + 8, R1),
        )
    )
    remember = b"".join(
        (
            asm.ld_map_fd(R1, maps.reported),
            asm.mov_reg(R2, R10),
            asm.add_imm(R2, key),
            asm.mov_reg(R3, R10),
            asm.add_imm(R3, value),
            asm.mov_imm(R4, 0),
            asm.call(HELPER_MAP_UPDATE),
            report,
        )
    )
    compare = b"".join(
        (
            asm.load(8, R1, R0, 0),
            asm.load(8, R2, R10, value),
            asm.jump_reg("!=", R1, R2, 4),
            asm.load(8, R1, R0, 8),
            asm.load(8, R2, R10, value + 8),
            asm.jump_reg("!=", R1, R2, 1),
            asm.jump(len(remember) // 8),
        )
    )
    return b"".join(
        (
            fingerprint,
            asm.ld_map_fd(R1, maps.reported),
            asm.mov_reg(R2, R10),
            asm.add_imm(R2, key),
            asm.call(HELPER_MAP_LOOKUP),
            asm.jump_imm("==", R0, 0, len(compare) // 8),
            compare,
            remember,
        )
    )


def egress_program(maps: Maps) -> bytes:
    """Writes a PACKET record for the first outgoing packet of each socket; lets all through.

    `maps.seen` is an LRU hash of socket cookies already reported (u64 -> u64): a packet of a
    known socket costs one map lookup, a GSO super-segment (most of a bulk transfer) none.
    """
    base = -(PACKET.size + 16)  # the cookie key and its value sit above the record
    key, value = -8, -16
    report = b"".join(
        (
            asm.ld_map_fd(R1, maps.seen),
            asm.mov_reg(R2, R10),
            asm.add_imm(R2, key),
            asm.mov_reg(R3, R10),
            asm.add_imm(R3, value),
            asm.mov_imm(R4, 0),
            asm.call(HELPER_MAP_UPDATE),
            asm.load(4, R1, R6, _SKB_PROTOCOL),
            asm.store_reg(4, R10, base + 4, R1),
            _call_store(HELPER_KTIME_TAI, base + 16),
            asm.load(4, R4, R6, _SKB_LEN),
            asm.store_reg(4, R10, base + 24, R4),
            asm.jump_imm(">", R4, HEADER_BYTES, 1),
            asm.jump_imm("!=", R4, 0, 1),
            asm.mov_imm(R4, HEADER_BYTES),  # 0 or more than fits: copy what fits
            asm.mov_reg(R1, R6),
            asm.mov_imm(R2, 0),
            asm.mov_reg(R3, R10),
            asm.add_imm(R3, base + 32),
            asm.call(HELPER_SKB_LOAD_BYTES),
            _ringbuf_output(maps, base, PACKET.size),
        )
    )
    unseen = b"".join(
        (
            asm.ld_map_fd(R1, maps.seen),
            asm.mov_reg(R2, R10),
            asm.add_imm(R2, key),
            asm.call(HELPER_MAP_LOOKUP),
            asm.jump_imm("!=", R0, 0, len(report) // 8),
        )
    )
    first = b"".join((asm.store_reg(8, R10, base + 8, R0), unseen, report))
    new_socket = b"".join(
        (
            _zero(base, PACKET.size + 16),
            asm.store_imm(4, R10, base, KIND_PACKET),
            _call_store(HELPER_SOCKET_COOKIE, key, ctx_arg=True),
            asm.jump_imm("==", R0, 0, len(first) // 8),
            first,
        )
    )
    return b"".join(
        (
            asm.mov_reg(R6, R1),
            # A GSO super-segment (bulk TCP) is never a socket's first packet: let it through
            # at the cost of one load, before any helper or map lookup.
            asm.load(4, R1, R6, _SKB_GSO_SEGS),
            asm.jump_imm(">", R1, 1, len(new_socket) // 8),
            new_socket,
            _allow(),
        )
    )
