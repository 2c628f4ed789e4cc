"""Ring-buffer records of the attribution programs, parsed: who owned a socket, and its 5-tuple.

Pure functions of the bytes (the kernel wrote them, but a short or odd record is still counted
and skipped, never trusted blindly).
"""

import ipaddress
import socket
from dataclasses import dataclass

from egresswatch.attribute.bpf.programs import KIND_PACKET, OWNER, PACKET
from egresswatch.model import Transport

ETH_P_IP = socket.htons(0x0800)
ETH_P_IPV6 = socket.htons(0x86DD)
_TRANSPORTS: dict[int, Transport] = {socket.IPPROTO_TCP: "tcp", socket.IPPROTO_UDP: "udp"}
TupleKey = tuple[Transport, str, int, str, int]


@dataclass(frozen=True, slots=True)
class SocketOwner:
    """The process that called connect()/sendmsg() on socket `cookie`, as the kernel saw it.

    `time` is epoch seconds (from CLOCK_TAI); `dst`/`dport` the address it asked for.
    """

    cookie: int
    pid: int
    tid: int
    uid: int
    comm: str
    cgroup_id: int
    netns_cookie: int
    transport: Transport | None
    dst: str | None
    dport: int
    src_port: int
    time: float


@dataclass(frozen=True, slots=True)
class FirstPacket:
    """The 5-tuple of the first packet socket `cookie` sent (src is the local end)."""

    cookie: int
    key: TupleKey
    time: float


def record_kind(record: bytes) -> int:
    return int.from_bytes(record[:4], "little") if len(record) >= 4 else 0


def parse_owner(record: bytes, tai_offset: float) -> SocketOwner | None:
    """The OWNER record as a SocketOwner; None when it is not one."""
    if len(record) < OWNER.size:
        return None
    _kind, proto, cookie, pid_tgid, uid_gid, cgroup, netns, tai, port, family, addr, comm, src = (
        OWNER.unpack_from(record)
    )
    dst: str | None = None
    if family == socket.AF_INET:
        dst = str(ipaddress.IPv4Address(addr[:4]))
    elif family == socket.AF_INET6:
        dst = _unmapped(ipaddress.IPv6Address(addr))
    return SocketOwner(
        cookie=cookie,
        pid=pid_tgid >> 32,
        tid=pid_tgid & 0xFFFFFFFF,
        uid=uid_gid & 0xFFFFFFFF,
        comm=comm.split(b"\0", 1)[0].decode("utf-8", errors="replace"),
        cgroup_id=cgroup,
        netns_cookie=netns,
        transport=_TRANSPORTS.get(proto),
        dst=dst,
        dport=socket.ntohs(port & 0xFFFF),
        src_port=src,
        time=tai / 1e9 - tai_offset,
    )


def parse_packet(record: bytes, tai_offset: float) -> FirstPacket | None:
    """The PACKET record's 5-tuple; None for what is not TCP/UDP over IPv4/IPv6 or too short."""
    if len(record) < PACKET.size or record_kind(record) != KIND_PACKET:
        return None
    _kind, ethertype, cookie, tai, length, header = PACKET.unpack_from(record)
    header = header[: min(length, len(header))]
    key = _ipv4_key(header) if ethertype == ETH_P_IP else None
    if ethertype == ETH_P_IPV6:
        key = _ipv6_key(header)
    if key is None:
        return None
    return FirstPacket(cookie, key, tai / 1e9 - tai_offset)


def _ipv4_key(header: bytes) -> TupleKey | None:
    if len(header) < 20 or header[0] >> 4 != 4:
        return None
    ihl = (header[0] & 0x0F) * 4
    transport = _TRANSPORTS.get(header[9])
    if transport is None or len(header) < ihl + 4:
        return None
    return _key(
        transport,
        str(ipaddress.IPv4Address(header[12:16])),
        str(ipaddress.IPv4Address(header[16:20])),
        header[ihl : ihl + 4],
    )


def _ipv6_key(header: bytes) -> TupleKey | None:
    if len(header) < 44 or header[0] >> 4 != 6:
        return None
    transport = _TRANSPORTS.get(header[6])  # extension headers: not followed (rare on egress)
    if transport is None:
        return None
    src = _unmapped(ipaddress.IPv6Address(header[8:24]))
    return _key(transport, src, _unmapped(ipaddress.IPv6Address(header[24:40])), header[40:44])


def _key(transport: Transport, src: str, dst: str, ports: bytes) -> TupleKey:
    sport, dport = int.from_bytes(ports[:2], "big"), int.from_bytes(ports[2:4], "big")
    return (transport, src, sport, dst, dport)


def _unmapped(ip: ipaddress.IPv6Address) -> str:
    return str(ip.ipv4_mapped) if ip.ipv4_mapped is not None else str(ip)
