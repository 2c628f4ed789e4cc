"""The eBPF assembler's encodings and the ring-buffer record parsers (pure; no kernel needed)."""

import socket
import struct
from pathlib import Path

from hypothesis import given, settings
from hypothesis import strategies as st

from egresswatch.attribute.bpf import asm, programs
from egresswatch.attribute.bpf.kernel import cgroup2_root
from egresswatch.attribute.bpf.records import parse_owner, parse_packet, record_kind
from egresswatch.attribute.exec_events import (
    PROC_EVENT_EXEC,
    PROC_EVENT_FORK,
    exec_pids,
    listen_message,
    process_events,
)


def test_instruction_encodings_match_the_kernel_abi() -> None:
    assert asm.mov_imm(asm.R0, 1) + asm.exit_insn() == bytes.fromhex(
        "b7000000010000009500000000000000"
    )
    assert asm.load(4, asm.R1, asm.R6, 36) == bytes.fromhex("6161240000000000")
    assert asm.store_reg(8, asm.R10, -8, asm.R0) == bytes.fromhex("7b0af8ff00000000")
    assert asm.ld_map_fd(asm.R1, 5) == bytes.fromhex("18110000050000000000000000000000")
    assert asm.jump_imm("==", asm.R0, 0, 3) == bytes.fromhex("1500030000000000")
    assert asm.atomic_add64(asm.R0, 0, asm.R1) == bytes.fromhex("db10000000000000")


def test_programs_are_whole_instructions_and_end_by_letting_the_call_through() -> None:
    maps = programs.Maps(ring=3, lost=4, seen=5, reported=6)
    for code in (
        programs.sock_addr_program(maps, programs.KIND_CONNECT4),
        programs.sock_addr_program(maps, programs.KIND_SENDMSG6),
        programs.egress_program(maps),
    ):
        assert len(code) % 8 == 0
        assert code.endswith(asm.mov_imm(asm.R0, 1) + asm.exit_insn())


def owner_record(family: int, address: bytes, port: int = 53) -> bytes:
    return programs.OWNER.pack(
        programs.KIND_SENDMSG4,
        socket.IPPROTO_UDP,
        77,
        (1234 << 32) | 1240,
        (1000 << 32) | 1000,
        9,
        3,
        5_000_000_000,
        socket.htons(port),
        family,
        address.ljust(16, b"\0"),
        b"dig\0".ljust(16, b"\0"),
        40001,
    )


def test_owner_records_name_process_thread_and_destination() -> None:
    owner = parse_owner(owner_record(socket.AF_INET, bytes([10, 199, 1, 2])), tai_offset=1.0)
    assert owner is not None
    assert (owner.pid, owner.tid, owner.uid, owner.comm) == (1234, 1240, 1000, "dig")
    assert (owner.cookie, owner.cgroup_id, owner.netns_cookie) == (77, 9, 3)
    assert (owner.transport, owner.dst, owner.dport, owner.src_port) == (
        "udp",
        "10.199.1.2",
        53,
        40001,
    )
    assert owner.time == 4.0
    mapped = socket.inet_pton(socket.AF_INET6, "::ffff:10.199.1.2")
    v6 = parse_owner(owner_record(socket.AF_INET6, mapped), 0.0)
    assert v6 is not None and v6.dst == "10.199.1.2"
    assert parse_owner(b"\x01" * 20, 0.0) is None


def packet_record(ethertype: int, header: bytes) -> bytes:
    return programs.PACKET.pack(
        programs.KIND_PACKET, ethertype, 42, 7_000_000_000, len(header), header.ljust(64, b"\0")
    )


def test_packet_records_give_the_five_tuple_of_ipv4_and_ipv6() -> None:
    ip4 = bytes.fromhex("4500001c000040004011") + b"\0\0" + bytes([10, 199, 1, 3, 10, 199, 1, 2])
    udp = struct.pack(">HHHH", 40001, 53, 8, 0)
    got = parse_packet(packet_record(socket.htons(0x0800), ip4 + udp), 0.0)
    assert got is not None and got.cookie == 42 and got.time == 7.0
    assert got.key == ("udp", "10.199.1.3", 40001, "10.199.1.2", 53)
    src = socket.inet_pton(socket.AF_INET6, "fd00:199::3")
    dst = socket.inet_pton(socket.AF_INET6, "fd00:199::2")
    ip6 = bytes.fromhex("6000000000140640") + src + dst
    tcp = struct.pack(">HH", 50000, 443) + b"\0" * 16
    six = parse_packet(packet_record(socket.htons(0x86DD), ip6 + tcp), 0.0)
    assert six is not None and six.key == ("tcp", "fd00:199::3", 50000, "fd00:199::2", 443)


def test_odd_packets_are_not_tuples() -> None:
    icmp = bytes.fromhex("4500001c00004000400100000a0000010a000002") + b"\0" * 8
    assert parse_packet(packet_record(socket.htons(0x0800), icmp), 0.0) is None
    assert parse_packet(packet_record(socket.htons(0x0806), b"\0" * 28), 0.0) is None
    assert parse_packet(packet_record(socket.htons(0x0800), b"\x45"), 0.0) is None
    assert parse_packet(b"", 0.0) is None and record_kind(b"") == 0


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=200), st.integers(0, 0xFFFF))
def test_parsers_never_raise(data: bytes, ethertype: int) -> None:
    parse_owner(data, 0.0)
    parse_packet(data, 0.0)
    parse_packet(packet_record(ethertype, data[:64]), 0.0)
    exec_pids(data)


def test_proc_connector_messages() -> None:
    assert len(listen_message()) == 16 + 20 + 4
    nl = struct.Struct("=IHHII")
    event = struct.pack("=IIIIHH", 1, 1, 0, 0, 24, 0) + struct.pack(
        "=IIQii", PROC_EVENT_EXEC, 0, 0, 41, 42
    )
    other = struct.pack("=IIIIHH", 1, 1, 0, 0, 24, 0) + struct.pack("=IIQii", 1, 0, 0, 7, 7)
    datagram = b"".join(nl.pack(nl.size + len(body), 3, 0, 0, 0) + body for body in (event, other))
    assert exec_pids(datagram) == [42]


def test_the_cgroup2_mount_is_found(tmp_path: Path) -> None:
    mounts = tmp_path / "mounts"
    mounts.write_text("cgroup2 /sys/fs/cgroup cgroup2 rw,nosuid 0 0\nproc /proc proc rw 0 0\n")
    assert cgroup2_root(mounts) == Path("/sys/fs/cgroup")
    hybrid = "cgroup /sys/fs/cgroup/cpu cgroup rw,cpu 0 0\n"
    mounts.write_text(hybrid + "cgroup2 /sys/fs/cgroup/unified cgroup2 rw 0 0\n")
    assert cgroup2_root(mounts) == Path("/sys/fs/cgroup/unified")
    mounts.write_text("cgroup /sys/fs/cgroup/cpu cgroup rw,cpu 0 0\n")
    assert cgroup2_root(mounts) is None


def test_fork_events_of_processes_not_threads() -> None:
    nl = struct.Struct("=IHHII")
    cn = struct.pack("=IIIIHH", 1, 1, 0, 0, 32, 0)
    fork = cn + struct.pack("=IIQiiii", PROC_EVENT_FORK, 0, 123, 10, 10, 11, 11)
    thread = cn + struct.pack("=IIQiiii", PROC_EVENT_FORK, 0, 124, 10, 10, 12, 10)
    datagram = b"".join(nl.pack(nl.size + len(body), 3, 0, 0, 0) + body for body in (fork, thread))
    assert process_events(datagram) == [(PROC_EVENT_FORK, 11, 10, 123)]
    assert exec_pids(datagram) == []
