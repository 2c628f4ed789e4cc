"""Per-network-namespace kernel handles: a sock_diag socket and the local address set.

Netlink sockets answer for the namespace they were created in, so a handle for another
namespace is made by a short helper thread that setns()es into it before creating them.
"""

import ctypes
import os
import threading
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

from egresswatch.attribute.sockets import AddressTable, SockDiag

CLONE_NEWNET = 0x40000000
T = TypeVar("T")


def _setns(fd: int) -> None:
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.setns(fd, CLONE_NEWNET) != 0:
        errno = ctypes.get_errno()
        raise OSError(errno, os.strerror(errno))


def run_in_netns(ns_path: Path, factory: Callable[[], T]) -> T:
    """Call `factory` on a throw-away thread inside the namespace at `ns_path`.

    Only that thread changes namespace, so the caller's own sockets are never affected.
    Raises OSError (e.g. EPERM without CAP_SYS_ADMIN) when the namespace cannot be entered.
    """
    box: list[T] = []
    errors: list[OSError] = []

    def enter() -> None:
        try:
            fd = os.open(ns_path, os.O_RDONLY | os.O_CLOEXEC)
            try:
                _setns(fd)
            finally:
                os.close(fd)
            box.append(factory())
        except OSError as exc:
            errors.append(exc)

    thread = threading.Thread(target=enter, name="egresswatch-netns", daemon=True)
    thread.start()
    thread.join()
    if errors:
        raise errors[0]
    return box[0]


def is_loopback(addr: str) -> bool:
    """Whether `addr` (normalised text) is a loopback address."""
    return addr.startswith("127.") or addr in ("::1", "::ffff:127.0.0.1")


class NetnsHandle:
    """Sock_diag and address lookups for one network namespace, with a cached address set."""

    __slots__ = ("_addr_ttl", "_addrs", "_addrs_at", "_diag", "_table", "inode")

    def __init__(self, inode: int, diag: SockDiag, table: AddressTable, addr_ttl: float) -> None:
        self.inode = inode
        self._diag = diag
        self._table = table
        self._addr_ttl = addr_ttl
        self._addrs: frozenset[str] = frozenset()
        self._addrs_at = float("-inf")

    @classmethod
    def open(cls, inode: int, ns_path: Path | None, addr_ttl: float = 2.0) -> "NetnsHandle":
        """Open handles in the namespace at `ns_path`, or in the caller's own when None.

        Raises OSError when the namespace cannot be entered or netlink is unavailable.
        """
        if ns_path is None:
            return cls(inode, SockDiag(), AddressTable(), addr_ttl)
        diag, table = run_in_netns(ns_path, lambda: (SockDiag(), AddressTable()))
        return cls(inode, diag, table, addr_ttl)

    @property
    def diag(self) -> SockDiag:
        return self._diag

    def is_local(self, addr: str, now: float, refresh_on_miss: bool = True) -> bool:
        """Whether `addr` is assigned in this namespace (127/8 and ::1 always are).

        Raises OSError when the address table cannot be read.
        """
        if is_loopback(addr):
            return True
        stale = now - self._addrs_at > self._addr_ttl
        # a miss refreshes too (at most 20/s): an address added a moment ago is not foreign
        missed = refresh_on_miss and addr not in self._addrs and now - self._addrs_at > 0.05
        if stale or missed:
            self._addrs = self._table.addresses()
            self._addrs_at = now
        return addr in self._addrs

    def close(self) -> None:
        self._diag.close()
        self._table.close()
