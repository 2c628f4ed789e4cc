"""The client process of an inference request: the eBPF owner record of the client's socket
(kept after it closes, so a client that lived a few ms is named), else its open socket."""

import contextlib
import ipaddress
from collections.abc import Callable
from typing import Protocol

import psutil

from egresswatch.attribute.bpf.records import SocketOwner, TupleKey
from egresswatch.model import FlowKey, ProcessRef

START_SLACK = 0.05  # /proc start times have clock-tick resolution
Fallback = Callable[[FlowKey], ProcessRef | None]


class OwnerRecords(Protocol):
    """egresswatch.attribute.bpf.kernel.KernelOwners (thread-safe)."""

    def owner(self, key: TupleKey, ts: float) -> SocketOwner | None: ...


def _plain(address: str) -> str:
    ip = ipaddress.ip_address(address)
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        return str(ip.ipv4_mapped)
    return str(ip)


def _named(owner: SocketOwner) -> ProcessRef:
    """The owner with its executable while the same process still runs; else the kernel's comm."""
    with contextlib.suppress(psutil.Error, OSError):
        proc = psutil.Process(owner.pid)
        if proc.create_time() <= owner.time + START_SLACK:
            exe = None
            with contextlib.suppress(psutil.AccessDenied, OSError):
                exe = proc.exe() or None
            return ProcessRef(owner.pid, proc.name(), exe)
    return ProcessRef(owner.pid, owner.comm, None)


class ClientNamer:
    """`namer(flow, ts)`: who sent the client -> server `flow` (seen at `ts`), or None."""

    def __init__(self, kernel: OwnerRecords | None, fallback: Fallback) -> None:
        self._kernel, self._fallback = kernel, fallback

    def __call__(self, flow: FlowKey, ts: float) -> ProcessRef | None:
        if self._kernel is not None:
            key: TupleKey = (
                flow.transport,
                _plain(flow.src),
                flow.sport,
                _plain(flow.dst),
                flow.dport,
            )
            owner = self._kernel.owner(key, ts)
            if owner is not None:
                return _named(owner)
        return self._fallback(flow)
