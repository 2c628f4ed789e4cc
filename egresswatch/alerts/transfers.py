"""Bytes received per TCP connection, from the kernel's sock_diag broadcast of destroyed TCP
sockets (each message carries the socket's tcp_info, whose tcpi_bytes_received counts what it
received). Needs CAP_NET_ADMIN; without it the watch reports why and untrusted-model-source
stays silent.
"""

import ipaddress
import logging
import socket
import struct
import threading
from collections.abc import Callable, Iterator

from egresswatch.model import FlowKey

log = logging.getLogger(__name__)
NETLINK_SOCK_DIAG = 4
SOL_NETLINK = 270
NETLINK_ADD_MEMBERSHIP = 1
SKNLGRP_INET_TCP_DESTROY = 1
SKNLGRP_INET6_TCP_DESTROY = 3
SOCK_DIAG_BY_FAMILY = 20
INET_DIAG_INFO = 2
_NLMSG = struct.Struct("=IHHII")
_PORTS = struct.Struct(">HH")
_MSG_SIZE = 72  # inet_diag_msg
_RTA = struct.Struct("=HH")
TCPI_BYTES_RECEIVED = 128  # offset of the u64 in struct tcp_info (linux/tcp.h, since 4.1)
Closed = Callable[[FlowKey, int], None]


def parse_destroyed(data: bytes) -> Iterator[tuple[FlowKey, int]]:
    """(flow as seen from the local socket, bytes received) for each message in `data`."""
    offset = 0
    while offset + _NLMSG.size <= len(data):
        length, kind = _NLMSG.unpack_from(data, offset)[:2]
        if length < _NLMSG.size or offset + length > len(data):
            return
        if kind == SOCK_DIAG_BY_FAMILY and length >= _NLMSG.size + _MSG_SIZE:
            found = _one(data[offset + _NLMSG.size : offset + length])
            if found is not None:
                yield found
        offset += (length + 3) & ~3


def _one(body: bytes) -> tuple[FlowKey, int] | None:
    family = body[0]
    sport, dport = _PORTS.unpack_from(body, 4)
    size = 4 if family == socket.AF_INET else 16
    src = str(ipaddress.ip_address(body[8 : 8 + size]))
    dst = str(ipaddress.ip_address(body[24 : 24 + size]))
    received = _bytes_received(body[_MSG_SIZE:])
    if received is None:
        return None
    return FlowKey("tcp", src, sport, dst, dport), received


def _bytes_received(attrs: bytes) -> int | None:
    offset = 0
    while offset + _RTA.size <= len(attrs):
        length, kind = _RTA.unpack_from(attrs, offset)
        if length < _RTA.size:
            return None
        if kind == INET_DIAG_INFO and length - _RTA.size >= TCPI_BYTES_RECEIVED + 8:
            start = offset + _RTA.size + TCPI_BYTES_RECEIVED
            return int(struct.unpack_from("=Q", attrs, start)[0])
        offset += (length + 3) & ~3
    return None


class TcpCloseWatch(threading.Thread):
    """Calls `on_close(flow, bytes_received)` for every TCP socket the kernel destroys."""

    def __init__(self, on_close: Closed, stop: threading.Event) -> None:
        super().__init__(name="egresswatch-tcp-close", daemon=True)
        self.on_close, self.stop = on_close, stop
        self.error: str | None = None
        self._sock: socket.socket | None = None

    def open(self) -> bool:
        """Join the broadcast groups; False (and `error` says why) when the kernel refuses."""
        try:
            sock = socket.socket(socket.AF_NETLINK, socket.SOCK_RAW, NETLINK_SOCK_DIAG)
            sock.bind((0, 0))
            for group in (SKNLGRP_INET_TCP_DESTROY, SKNLGRP_INET6_TCP_DESTROY):
                sock.setsockopt(SOL_NETLINK, NETLINK_ADD_MEMBERSHIP, group)
            sock.settimeout(0.5)
        except OSError as err:
            self.error = f"no sock_diag destroy broadcast: {err.strerror or err}"
            return False
        self._sock = sock
        return True

    def run(self) -> None:
        sock = self._sock
        if sock is None:
            return
        with sock:
            while not self.stop.is_set():
                try:
                    data = sock.recv(1 << 16)
                except TimeoutError:
                    continue
                except OSError as err:  # ENOBUFS: the kernel dropped messages; keep reading
                    log.debug("tcp close watch: %s", err)
                    continue
                for flow, received in parse_destroyed(data):
                    self.on_close(flow, received)
