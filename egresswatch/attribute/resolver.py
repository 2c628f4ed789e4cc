"""The ProcessResolver seam: a packet's 5-tuple -> the local process owning its socket, or why not.

Lookups go sock_diag (exact, at packet time) -> inode -> pid index -> /proc facts, across every
network namespace with a running process, with a short memory for sockets already closed.
"""

import ipaddress
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import psutil

from egresswatch.attribute.bpf.kernel import KernelOwners
from egresswatch.attribute.netns import NetnsHandle, is_loopback
from egresswatch.attribute.owners import ExecCache, owner_info
from egresswatch.attribute.process import ExeHasher, ProcessFacts
from egresswatch.attribute.procfs import SocketIndex
from egresswatch.attribute.recent import RecentSockets, SocketKey
from egresswatch.attribute.sockets import TCP_CLOSE, TCP_TIME_WAIT, SocketHit
from egresswatch.counters import Counters
from egresswatch.model import Attribution, FlowKey, ProcessInfo, Transport

LocalEnd = Literal["auto", "src", "dst"]
REASONS = (
    "closed-before-lookup",  # the sending socket is gone (closed, TIME_WAIT, orphaned)
    "no-socket",  # only the receiving end is local and nothing listens there
    "no-owner",  # the socket exists but no process holds it (kernel socket, fd in flight)
    "other-netns-unreadable",  # not local here, and some namespace could not be entered
    "no-permission",  # /proc/PID/fd or the process's facts are not readable
    "process-vanished",  # the owner exited between the socket lookup and reading its facts
    "not-local",  # neither address belongs to any known network namespace
    "lookup-error",  # netlink or /proc failed unexpectedly (counted as attribute.errors)
)
_NETNS_SYNC_INTERVAL = 0.01  # bounds /proc listing on foreign-source floods


@dataclass(frozen=True, slots=True)
class _End:
    """One end of the flow taken as the local socket."""

    transport: Transport
    addr: str
    port: int
    peer: str
    peer_port: int
    sender: bool

    def key(self, connected: bool = True) -> SocketKey:
        if connected:
            return (self.transport, self.addr, self.port, self.peer, self.peer_port)
        return (self.transport, self.addr, self.port, "", 0)


class _Miss(Exception):
    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


def _normalise(addr: str) -> str:
    ip = ipaddress.ip_address(addr)
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        return str(ip.ipv4_mapped)
    return str(ip)


class ProcessResolver:
    """Attributes packets to local processes. Not thread-safe: the agent's attribute thread owns it.

    For each packet the source is tried as the local end first, then the destination; when
    the source is a local address the answer is the source's (on loopback both ends are
    local, and the sender is the one to name). `local="dst"` names the receiver instead.
    """

    def __init__(
        self,
        *,
        proc_root: Path = Path("/proc"),
        recent_ttl: float = 5.0,
        facts_ttl: float = 2.0,
        full_scan_interval: float = 0.5,
        hash_wait: float = 0.0,
        kernel: KernelOwners | None = None,
        execs: ExecCache | None = None,
    ) -> None:
        self.counters = Counters()
        self._kernel = kernel  # the in-kernel source, asked first when the agent has one
        self._execs = execs
        self._proc = proc_root
        self._index = SocketIndex(proc_root, full_scan_interval)
        self._hasher = ExeHasher(wait=hash_wait)
        self._facts = ProcessFacts(proc_root, self._hasher, facts_ttl)
        self._recent = RecentSockets(recent_ttl)
        root_inode = os.stat(proc_root / "thread-self" / "ns" / "net").st_ino
        self._root = NetnsHandle.open(root_inode, None)
        self._others: dict[int, NetnsHandle] = {}
        self._unreadable: set[int] = set()
        self._last_sync = float("-inf")
        started = time.perf_counter()
        self._index.full_scan()
        elapsed_us = int((time.perf_counter() - started) * 1e6)
        self.counters.add("attribute.index_full_scan_us", elapsed_us)
        self._sync_netns()

    @property
    def kernel(self) -> KernelOwners | None:
        """The in-kernel source this resolver asks first, if any."""
        return self._kernel

    @property
    def root_netns(self) -> int:
        return self._root.inode

    def attribute(
        self,
        flow: FlowKey,
        ts: float,
        *,
        ifindex: int = 0,
        local: LocalEnd = "auto",
        new_connection: bool = False,
    ) -> Attribution:
        """Who owns the local socket of `flow` (seen at `ts`, epoch seconds). Never raises.

        `ifindex` is the capture interface in the agent's own namespace (needed for sockets
        bound to a device, e.g. a resolver's per-link upstream queries); 0 when unknown.
        `new_connection` marks a TCP SYN: whatever the memory holds for this 5-tuple belongs
        to an earlier connection and is forgotten, so a reused 5-tuple never names its old owner.
        """
        self.counters.add("attribute.lookups")
        try:
            if new_connection and flow.transport == "tcp":
                self._forget(flow)
            result = self._from_kernel(flow, ts, local) or self._attribute(flow, ts, ifindex, local)
        except _Miss as miss:
            result = Attribution(f"unknown:{miss.reason}")
        except Exception:  # the containment point: a packet must never stop the agent
            self.counters.add("attribute.errors")
            result = Attribution("unknown:lookup-error")
        if result.process is None:
            self.counters.add(f"attribute.miss.{result.status.removeprefix('unknown:')}")
        return result

    def all_counters(self) -> Counters:
        """Lookups by outcome, plus the kernel source's records and ring-buffer loss."""
        merged = Counters()
        merged.merge(self.counters)
        if self._kernel is not None:
            merged.merge(self._kernel.counters)
            merged.add("bpf.ring.lost", self._kernel.lost())
        exec_counters = getattr(self._execs, "counters", None)
        if isinstance(exec_counters, Counters):
            merged.merge(exec_counters)
        return merged

    def close(self) -> None:
        if self._execs is not None:
            self._execs.close()
        if self._kernel is not None:
            self._kernel.close()
        for handle in [self._root, *self._others.values()]:
            handle.close()
        self._others.clear()
        self._hasher.close()

    def _from_kernel(self, flow: FlowKey, ts: float, local: LocalEnd) -> Attribution | None:
        """The owner the cgroup hooks reported for the local socket, if they saw it."""
        if self._kernel is None:
            return None
        src, dst = _normalise(flow.src), _normalise(flow.dst)
        if local == "dst":
            key = (flow.transport, dst, flow.dport, src, flow.sport)
        else:  # the sender; a receiver that is not the sender is left to sock_diag
            key = (flow.transport, src, flow.sport, dst, flow.dport)
        owner = self._kernel.owner(key, ts)
        if owner is None:
            return None
        info = owner_info(owner, self._facts, self._execs, None)
        self.counters.add("attribute.hit.ebpf")
        return Attribution("exact", info, "ebpf")

    def _forget(self, flow: FlowKey) -> None:
        src, dst = _normalise(flow.src), _normalise(flow.dst)
        self._recent.forget(("tcp", src, flow.sport, dst, flow.dport))
        self._recent.forget(("tcp", dst, flow.dport, src, flow.sport))

    def _attribute(self, flow: FlowKey, ts: float, ifindex: int, local: LocalEnd) -> Attribution:
        src, dst = _normalise(flow.src), _normalise(flow.dst)
        ends = [
            _End(flow.transport, src, flow.sport, dst, flow.dport, sender=True),
            _End(flow.transport, dst, flow.dport, src, flow.sport, sender=False),
        ]
        if local != "auto":
            ends = [ends[0] if local == "src" else ends[1]]
        handles_by_end = [self._local_handles(end.addr) for end in ends]
        if not handles_by_end[0]:  # a sender in a namespace that appeared since the last look?
            handles_by_end = self._retry_with_new_netns(ends)
        for end, handles in zip(ends, handles_by_end, strict=True):
            if handles:
                return self._attribute_end(end, handles, ts, ifindex)
        reason = "other-netns-unreadable" if self._unreadable else "not-local"
        raise _Miss(reason)

    def _retry_with_new_netns(self, ends: list[_End]) -> list[list[NetnsHandle]]:
        if time.monotonic() - self._last_sync >= _NETNS_SYNC_INTERVAL:
            self._index.refresh_new()
            self._sync_netns()
        return [self._local_handles(end.addr) for end in ends]

    def _local_handles(self, addr: str) -> list[NetnsHandle]:
        if is_loopback(addr):
            # every namespace has a loopback, but only our own lo can be captured from here
            return [self._root]
        now = time.monotonic()  # not the packet's ts: replayed or reordered times must not matter
        handles = [self._root, *self._others.values()]
        # Known addresses first: re-reading every other namespace's table on each packet (their
        # "miss" refresh) cost ~1.5 ms per lookup with a few namespaces, more than a socket of a
        # short-lived client lives. Only an address no namespace knows triggers the re-reads.
        found = [h for h in handles if h.is_local(addr, now, refresh_on_miss=False)]
        return found or [h for h in handles if h.is_local(addr, now)]

    def _attribute_end(
        self, end: _End, handles: list[NetnsHandle], ts: float, ifindex: int
    ) -> Attribution:
        closed = False
        for handle in handles:
            hit = handle.diag.lookup(
                end.transport,
                (end.addr, end.port),
                (end.peer, end.peer_port),
                ifindex if handle is self._root else 0,
            )
            if hit is None:
                continue
            if hit.inode == 0 or hit.state == TCP_TIME_WAIT:
                closed = True
                continue
            return self._owner(end, hit, handle, ts, ifindex)
        reason = "closed-before-lookup" if closed or end.sender else "no-socket"
        return self._from_memory(end, ts, reason)

    def _owner(
        self, end: _End, hit: SocketHit, handle: NetnsHandle, ts: float, ifindex: int
    ) -> Attribution:
        scans = self._index.pid_scans
        found = self._index.owners(
            hit.inode, hit.uid, lambda: not self._gone(end, hit, handle, ifindex)
        )
        self.counters.add("attribute.index_pid_scans", self._index.pid_scans - scans)
        if not found.pids:
            reason = "no-permission" if found.denied else "no-owner"
            if reason == "no-owner" and self._gone(end, hit, handle, ifindex):
                reason = "closed-before-lookup"  # its process exited (and closed it) meanwhile
            return self._from_memory(end, ts, reason, hit.inode)
        try:
            info = self._youngest(found.pids, handle.inode)
        except psutil.AccessDenied:
            return self._from_memory(end, ts, "no-permission", hit.inode)
        except psutil.NoSuchProcess:
            return self._from_memory(end, ts, "process-vanished", hit.inode)
        self._recent.remember(end.key(), info, ts, hit.inode)
        if end.transport == "udp" and hit.state == TCP_CLOSE:  # unconnected: any peer
            self._recent.remember(end.key(connected=False), info, ts, hit.inode)
        self.counters.add("attribute.hit.live")
        return Attribution("exact", info, "sock-diag")

    def _gone(self, end: _End, hit: SocketHit, handle: NetnsHandle, ifindex: int) -> bool:
        """Whether the socket `hit` found a moment ago has closed since."""
        again = handle.diag.lookup(
            end.transport,
            (end.addr, end.port),
            (end.peer, end.peer_port),
            ifindex if handle is self._root else 0,
        )
        return again is None or again.inode != hit.inode or again.state == TCP_TIME_WAIT

    def _youngest(self, pids: tuple[int, ...], netns: int) -> ProcessInfo:
        """Facts of the most recently started holder: after fork, the child is the user."""
        if len(pids) > 1:
            starts = {pid: self._facts.start_time(pid) for pid in pids}
            alive = [pid for pid, start in starts.items() if start is not None]
            pids = tuple(sorted(alive, key=lambda p: starts[p] or 0.0, reverse=True)) or pids
        return self._facts.info(pids[0], self._index.netns_of(pids[0]) or netns)

    def _from_memory(self, end: _End, ts: float, reason: str, inode: int = 0) -> Attribution:
        info = self._recent.recall(end.key(), ts, inode)
        if info is None and end.transport == "udp":
            info = self._recent.recall(end.key(connected=False), ts, inode)
        if info is None:
            raise _Miss(reason)
        self.counters.add("attribute.hit.recent")
        return Attribution("exact", info, "recent")

    def _sync_netns(self) -> None:
        """Open handles for namespaces that gained processes; close those that lost them all."""
        self._last_sync = time.monotonic()
        members = self._index.netns_members()
        for inode in set(self._others) - set(members):
            self._others.pop(inode).close()
        self._unreadable &= set(members)
        for inode, pid in members.items():
            if inode == self._root.inode or inode in self._others or inode in self._unreadable:
                continue
            self._open_netns(inode, self._proc / str(pid) / "ns" / "net")

    def _open_netns(self, inode: int, path: Path) -> None:
        try:
            if os.stat(path).st_ino != inode:
                return  # the member exited and its pid was reused
            self._others[inode] = NetnsHandle.open(inode, path)
            self.counters.add("attribute.netns_opened")
        except PermissionError:
            self._unreadable.add(inode)
        except OSError:
            return
