"""Listening TCP sockets of recognised LLM tools (psutil over /proc/net and sock_diag)."""

import contextlib
import ipaddress
import socket
import struct
import sys
from collections.abc import Callable, Iterator

import psutil

from egresswatch.alerts.rules import Listener
from egresswatch.classify.tools import recognise_tool
from egresswatch.model import FlowKey, ProcessRef

Recogniser = Callable[[int], tuple[str, str, str | None] | None]


def recognise_pid(pid: int) -> tuple[str, str, str | None] | None:
    """(tool, process name, exe) of `pid` when it is a recognised LLM tool."""
    try:
        proc = psutil.Process(pid)
        name, cmdline = proc.name(), proc.cmdline()
        exe = None
        with contextlib.suppress(psutil.AccessDenied, OSError):
            exe = proc.exe() or None
    except (psutil.NoSuchProcess, psutil.AccessDenied, psutil.ZombieProcess):
        return None
    match = recognise_tool(name, exe, cmdline)
    return None if match is None else (match.tool, name, exe)


def scan_listeners(recognise: Recogniser = recognise_pid) -> dict[int, list[Listener]]:
    """Port -> the LLM tools' listening sockets on it (all of them: v4 and v6, any address)."""
    found: dict[int, list[Listener]] = {}
    for address, port, pid in _listening():
        who = recognise(pid)
        if who is not None:
            found.setdefault(port, []).append(Listener(who[0], pid, who[1], who[2], address, port))
    return found


def _listening() -> Iterator[tuple[str, int, int]]:
    try:
        sockets = psutil.net_connections(kind="tcp")
    except (psutil.AccessDenied, OSError):
        return
    for conn in sockets:
        if conn.status == psutil.CONN_LISTEN and conn.pid and conn.laddr:
            yield conn.laddr.ip, conn.laddr.port, conn.pid


def client_of(flow: FlowKey) -> ProcessRef | None:
    """The local process whose socket is the client end of `flow`, if it is still open."""
    try:
        sockets = psutil.net_connections(kind="tcp")
    except (psutil.AccessDenied, OSError):
        return None
    for conn in sockets:
        if conn.pid and conn.laddr and (conn.laddr.ip, conn.laddr.port) == (flow.src, flow.sport):
            return _ref(conn.pid)
    return None


def _ref(pid: int) -> ProcessRef | None:
    try:
        proc = psutil.Process(pid)
        exe = None
        with contextlib.suppress(psutil.AccessDenied, OSError):
            exe = proc.exe() or None
        return ProcessRef(pid, proc.name(), exe)
    except (psutil.NoSuchProcess, psutil.AccessDenied, psutil.ZombieProcess):
        return None


NETLINK_SOCK_DIAG = 4
SOCK_DIAG_BY_FAMILY = 20
NLMSG_DONE = 3
NLM_F_REQUEST_DUMP = 0x1 | 0x300
TCP_LISTEN_STATE = 10
_NLMSG = struct.Struct("=IHHII")
_DIAG_REQ = struct.Struct("=BBBxI48x")  # inet_diag_req_v2 with a zero inet_diag_sockid
_MSG_SIZE = 72  # inet_diag_msg


def listening_sockets() -> frozenset[tuple[str, int, int]]:
    """(address, port, inode) of every listening TCP socket, from one sock_diag dump per family.

    A fraction of a millisecond, where mapping sockets to pids (psutil) scans every process's
    file descriptors; `ListenerScan` does that only when this set changes.
    """
    found: set[tuple[str, int, int]] = set()
    with socket.socket(socket.AF_NETLINK, socket.SOCK_RAW, NETLINK_SOCK_DIAG) as sock:
        sock.settimeout(1.0)
        for seq, family in enumerate((socket.AF_INET, socket.AF_INET6), start=1):
            body = _DIAG_REQ.pack(family, socket.IPPROTO_TCP, 0, 1 << TCP_LISTEN_STATE)
            header = _NLMSG.pack(
                _NLMSG.size + len(body), SOCK_DIAG_BY_FAMILY, NLM_F_REQUEST_DUMP, seq, 0
            )
            sock.send(header + body)
            found.update(_read_dump(sock, family))
    return frozenset(found)


def _read_dump(sock: socket.socket, family: int) -> Iterator[tuple[str, int, int]]:
    size = 4 if family == socket.AF_INET else 16
    while True:
        data = sock.recv(1 << 16)
        offset = 0
        while offset + _NLMSG.size <= len(data):
            length, kind = _NLMSG.unpack_from(data, offset)[:2]
            if kind == NLMSG_DONE or length < _NLMSG.size:
                return
            body = data[offset + _NLMSG.size : offset + length]
            if kind == SOCK_DIAG_BY_FAMILY and len(body) >= _MSG_SIZE:
                port = int.from_bytes(body[4:6], "big")
                address = str(ipaddress.ip_address(body[8 : 8 + size]))
                yield address, port, int.from_bytes(body[68:72], sys.byteorder)
            offset += (length + 3) & ~3


class ListenerScan:
    """`scan_listeners`, redone only when the set of listening sockets changed."""

    def __init__(self, recognise: Recogniser = recognise_pid) -> None:
        self._recognise = recognise
        self._last: frozenset[tuple[str, int, int]] | None = None
        self._found: dict[int, list[Listener]] = {}

    def __call__(self) -> dict[int, list[Listener]]:
        try:
            current = listening_sockets()
        except OSError:
            current = None  # no sock_diag here: always scan
        if current is None or current != self._last:
            self._found = scan_listeners(self._recognise)
            self._last = current
        return self._found
