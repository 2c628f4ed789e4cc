"""Exact socket lookups over NETLINK_SOCK_DIAG, and a netns's local addresses over rtnetlink.

One `SockDiag` talks to the kernel tables of the network namespace it was created in.
"""

import ipaddress
import itertools
import socket
import struct
from dataclasses import dataclass

from egresswatch.model import Transport

NETLINK_SOCK_DIAG = 4
SOCK_DIAG_BY_FAMILY = 20
RTM_NEWADDR = 20
RTM_GETADDR = 22
NLMSG_ERROR = 2
NLMSG_DONE = 3
NLM_F_REQUEST = 0x1
NLM_F_DUMP = 0x300
IFA_ADDRESS = 1
IFA_LOCAL = 2
TCP_LISTEN = 10
TCP_TIME_WAIT = 6
TCP_CLOSE = 7
_NOCOOKIE = 0xFFFFFFFF
_NLMSG = struct.Struct("=IHHII")
# inet_diag_req_v2 is family, protocol, ext, pad, states, then inet_diag_sockid: ports are
# big-endian, interface and cookie host order, so the record is packed in three parts.
_REQ_HEAD = struct.Struct("=BBBxI")
_SOCKID = struct.Struct(">HH16s16s")
_SOCKID_TAIL = struct.Struct("=III")
# inet_diag_msg: family, state, timer, retrans, sockid, then expires, rqueue, wqueue, uid, inode
_MSG_SIZE = 4 + _SOCKID.size + _SOCKID_TAIL.size + 20
_MSG_TAIL = struct.Struct("=IIIII")
_RTA = struct.Struct("=HH")
_PROTO = {"tcp": socket.IPPROTO_TCP, "udp": socket.IPPROTO_UDP}
_RECV_SIZE = 65536
_MAX_DUMP_BYTES = 4 << 20  # an address dump larger than this is not a real host


@dataclass(frozen=True, slots=True)
class SocketHit:
    """One kernel socket answering an exact lookup.

    `inode` is 0 for sockets no longer held by any file (orphaned, TIME_WAIT, request socks);
    `wildcard` is True when the match came from a listener or an unconnected socket bound to
    0.0.0.0/::, which matches any address, so the caller must check the address is local.
    """

    inode: int
    uid: int
    state: int
    wildcard: bool


def pack_address(addr: str) -> tuple[int, bytes]:
    """Return (family, 16-byte padded address); IPv4-mapped IPv6 is treated as IPv4.

    Raises ValueError for text that is not an IP address.
    """
    ip = ipaddress.ip_address(addr)
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    family = socket.AF_INET if ip.version == 4 else socket.AF_INET6
    return family, ip.packed.ljust(16, b"\0")


def _nl_socket(protocol: int) -> socket.socket:
    sock = socket.socket(socket.AF_NETLINK, socket.SOCK_RAW | socket.SOCK_CLOEXEC, protocol)
    sock.settimeout(1.0)
    sock.bind((0, 0))
    return sock


class SockDiag:
    """Exact 5-tuple lookups in one network namespace's TCP and UDP tables.

    Not thread-safe: one owner thread per instance.
    """

    __slots__ = ("_seq", "_sock")

    def __init__(self) -> None:
        self._sock = _nl_socket(NETLINK_SOCK_DIAG)
        self._seq = itertools.count(1)

    def lookup(
        self,
        transport: Transport,
        local: tuple[str, int],
        remote: tuple[str, int],
        ifindex: int = 0,
    ) -> SocketHit | None:
        """The socket that owns `local` talking to `remote`, or None when there is none.

        Raises ValueError for bad addresses or mixed families and OSError when netlink fails.
        """
        lfam, laddr = pack_address(local[0])
        rfam, raddr = pack_address(remote[0])
        if lfam != rfam:
            raise ValueError("address families differ")
        if transport == "tcp":
            ids = (local[1], remote[1], laddr, raddr)
        else:  # the kernel's udp_dump_one swaps src and dst ("for historical reasons")
            ids = (remote[1], local[1], raddr, laddr)
        return self._query(lfam, _PROTO[transport], ids, ifindex)

    def _query(
        self, family: int, proto: int, ids: tuple[int, int, bytes, bytes], ifindex: int
    ) -> SocketHit | None:
        seq = next(self._seq)
        body = (
            _REQ_HEAD.pack(family, proto, 0, 0xFFFFFFFF)
            + _SOCKID.pack(*ids)
            + _SOCKID_TAIL.pack(ifindex, _NOCOOKIE, _NOCOOKIE)
        )
        header = _NLMSG.pack(_NLMSG.size + len(body), SOCK_DIAG_BY_FAMILY, NLM_F_REQUEST, seq, 0)
        self._sock.send(header + body)
        while True:
            data = self._sock.recv(_RECV_SIZE)
            if len(data) < _NLMSG.size:
                raise OSError("short netlink reply")
            _length, kind, _flags, rseq, _pid = _NLMSG.unpack_from(data)
            if rseq == seq:  # older replies (after a timeout) are skipped
                return _parse_diag(kind, data, ids[2] if proto == socket.IPPROTO_TCP else ids[3])
            continue

    def close(self) -> None:
        self._sock.close()


def _parse_diag(kind: int, data: bytes, local_packed: bytes) -> SocketHit | None:
    if kind == NLMSG_ERROR:
        (errno,) = struct.unpack_from("=i", data, _NLMSG.size)
        if errno in (0, -2):  # ENOENT: no such socket
            return None
        raise OSError(-errno, "sock_diag lookup failed")
    if kind != SOCK_DIAG_BY_FAMILY or len(data) < _NLMSG.size + _MSG_SIZE:
        raise OSError("unexpected sock_diag reply")
    base = _NLMSG.size
    state = data[base + 1]
    _sport, _dport, src, dst = _SOCKID.unpack_from(data, base + 4)
    uid, inode = _MSG_TAIL.unpack_from(data, base + 4 + _SOCKID.size + _SOCKID_TAIL.size)[3:]
    # an unconnected socket bound to the wildcard answers for any address
    unbound = dst == bytes(16) and src != local_packed
    return SocketHit(inode=inode, uid=uid, state=state, wildcard=state == TCP_LISTEN or unbound)


class AddressTable:
    """Reads the local addresses of the network namespace it was created in."""

    __slots__ = ("_sock",)

    def __init__(self) -> None:
        self._sock = _nl_socket(socket.NETLINK_ROUTE)

    def addresses(self) -> frozenset[str]:
        """Every address assigned to an interface, as compressed text.

        Raises OSError when netlink fails.
        """
        body = struct.pack("=BBBBI", socket.AF_UNSPEC, 0, 0, 0, 0)
        header = _NLMSG.pack(_NLMSG.size + len(body), RTM_GETADDR, NLM_F_REQUEST | NLM_F_DUMP, 1, 0)
        self._sock.send(header + body)
        found: set[str] = set()
        received = 0
        while received < _MAX_DUMP_BYTES:
            data = self._sock.recv(_RECV_SIZE)
            received += len(data)
            if _parse_addr_batch(data, found):
                return frozenset(found)
        raise OSError("address dump too large")

    def close(self) -> None:
        self._sock.close()


def _parse_addr_batch(data: bytes, found: set[str]) -> bool:
    """Add the addresses in one recv() of RTM_NEWADDR messages; True at NLMSG_DONE."""
    offset = 0
    while offset + _NLMSG.size <= len(data):
        length, kind, _flags, _seq, _pid = _NLMSG.unpack_from(data, offset)
        if length < _NLMSG.size:
            raise OSError("bad netlink length")
        if kind == NLMSG_DONE:
            return True
        if kind == NLMSG_ERROR:
            raise OSError("address dump failed")
        if kind == RTM_NEWADDR:
            found.update(_ifaddr_addresses(data[offset + _NLMSG.size : offset + length]))
        offset += (length + 3) & ~3
    return False


def _ifaddr_addresses(msg: bytes) -> list[str]:
    if len(msg) < 8:  # shorter than struct ifaddrmsg
        return []
    family = msg[0]
    size = 4 if family == socket.AF_INET else 16
    out = []
    offset = 8
    while offset + _RTA.size <= len(msg):
        rta_len, rta_type = _RTA.unpack_from(msg, offset)
        if rta_len < _RTA.size:
            break
        if rta_type in (IFA_ADDRESS, IFA_LOCAL) and rta_len - _RTA.size == size:
            raw = msg[offset + _RTA.size : offset + rta_len]
            out.append(str(ipaddress.ip_address(raw)))
        offset += (rta_len + 3) & ~3
    return out
