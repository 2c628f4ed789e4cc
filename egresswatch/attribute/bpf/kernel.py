"""The kernel attribution source: links the programs to the root cgroup v2 and keeps what they say.

`KernelOwners.open()` loads the programs and links them with BPF_LINK_CREATE (closing the
descriptors, or the agent dying, detaches them: nothing is left behind). A poll thread drains
the ring buffer every 20 ms without wake-ups; lookups drain it too, so a record the kernel
wrote before the packet was captured is always there when that packet is looked up.
"""

import contextlib
import os
import threading
import time
from pathlib import Path
from typing import Generic, Protocol, TypeVar

from egresswatch.attribute.bpf import programs, syscall
from egresswatch.attribute.bpf.records import (
    FirstPacket,
    SocketOwner,
    TupleKey,
    parse_owner,
    parse_packet,
    record_kind,
)
from egresswatch.attribute.bpf.ringbuf import RingReader
from egresswatch.counters import Counters
from egresswatch.lru import Lru

CGROUP_ROOT = Path("/sys/fs/cgroup/unified")  # hybrid hierarchies; pure v2: /sys/fs/cgroup
RING_BYTES = 8 << 20
POLL_INTERVAL = 0.02
MAX_SOCKETS = 65536
HISTORY = 4  # owners kept per socket (a socket shared after fork), tuples per key
# A packet's capture time follows the egress hook's by microseconds; a record stamped later
# than the packet by more than this belongs to a newer socket that reused the 5-tuple.
CLOCK_SLACK = 0.001
_HOOKS = (
    (programs.KIND_CONNECT4, syscall.ATTACH_CGROUP_INET4_CONNECT, "ew_connect4"),
    (programs.KIND_CONNECT6, syscall.ATTACH_CGROUP_INET6_CONNECT, "ew_connect6"),
    (programs.KIND_SENDMSG4, syscall.ATTACH_CGROUP_UDP4_SENDMSG, "ew_sendmsg4"),
    (programs.KIND_SENDMSG6, syscall.ATTACH_CGROUP_UDP6_SENDMSG, "ew_sendmsg6"),
)
K = TypeVar("K")
V = TypeVar("V")


class _Timed(Protocol):
    @property
    def time(self) -> float: ...


T = TypeVar("T", bound=_Timed)


class _History(Generic[K, V]):
    """Up to HISTORY values per key, newest last; at most `limit` keys (least recent go)."""

    def __init__(self, limit: int) -> None:
        self._items: Lru[K, list[V]] = Lru(limit)

    def add(self, key: K, value: V) -> None:
        values = self._items.get(key) or []
        values.append(value)
        del values[:-HISTORY]
        self._items.put(key, values)

    def get(self, key: K) -> list[V]:
        return self._items.get(key) or []


def cgroup2_root(mounts: Path = Path("/proc/self/mounts")) -> Path | None:
    """Where the cgroup v2 hierarchy is mounted (hybrid: .../unified), or None (v1 only)."""
    found = []
    for line in mounts.read_text().splitlines():
        fields = line.split()
        if len(fields) > 2 and fields[2] == "cgroup2":
            found.append(Path(fields[1]))
    if CGROUP_ROOT in found:
        return CGROUP_ROOT
    return found[0] if found else None


def tai_offset() -> float:
    """CLOCK_TAI minus CLOCK_REALTIME in whole seconds (the kernel's TAI offset)."""
    tai = time.clock_gettime_ns(time.CLOCK_TAI)
    real = time.time_ns()
    return float(round((tai - real) / 1e9))


class KernelOwners:
    """Socket owners reported by the cgroup programs, joined to 5-tuples by socket cookie.

    Thread-safe: the poll thread and the agent's lookups share it under one lock.
    """

    def __init__(self, descriptors: list[int], maps: programs.Maps, ring: RingReader) -> None:
        self._fds = descriptors
        self._maps = maps
        self._ring = ring
        self._lock = threading.Lock()
        self._offset = tai_offset()
        self._owners: _History[int, SocketOwner] = _History(MAX_SOCKETS)
        self._tuples: _History[TupleKey, FirstPacket] = _History(MAX_SOCKETS)
        self._locals: _History[tuple[str, str, int], FirstPacket] = _History(MAX_SOCKETS)
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.counters = Counters()

    @classmethod
    def open(cls, cgroup: Path = CGROUP_ROOT, ring_bytes: int = RING_BYTES) -> "KernelOwners":
        # (cgroup: the hierarchy's root, so every process on the box, in any namespace, is seen)
        """Loads and links the programs; raises BpfError/OSError saying why it cannot."""
        fds: list[int] = []
        try:
            maps = programs.Maps(
                ring=_keep(fds, syscall.create_map(syscall.MAP_TYPE_RINGBUF, 0, 0, ring_bytes)),
                lost=_keep(fds, syscall.create_map(syscall.MAP_TYPE_ARRAY, 4, 8, 1)),
                seen=_keep(fds, syscall.create_map(syscall.MAP_TYPE_LRU_HASH, 8, 8, MAX_SOCKETS)),
                reported=_keep(
                    fds, syscall.create_map(syscall.MAP_TYPE_LRU_HASH, 8, 16, MAX_SOCKETS)
                ),
            )
            ring = RingReader(maps.ring, ring_bytes)
            _link_all(fds, maps, cgroup)
        except BaseException:
            for fd in fds:
                os.close(fd)
            raise
        return cls(fds, maps, ring)

    def start(self) -> None:
        """Drains the ring every POLL_INTERVAL on a daemon thread until `close()`."""
        self._thread = threading.Thread(target=self._poll, name="egresswatch-bpf", daemon=True)
        self._thread.start()

    def _poll(self) -> None:
        while not self._stop.wait(POLL_INTERVAL):
            try:
                self.drain()
            except Exception as err:  # the thread's containment point: count, keep polling
                self.counters.add(f"bpf.errors.{type(err).__name__}")

    def drain(self) -> int:
        """Reads every record the kernel has committed; how many."""
        with self._lock:
            count = 0
            for record in self._ring.records():
                self._keep_record(record)
                count += 1
            return count

    def _keep_record(self, record: bytes) -> None:
        if record_kind(record) == programs.KIND_PACKET:
            packet = parse_packet(record, self._offset)
            if packet is None:
                self.counters.add("bpf.records.other")  # ICMP, a kernel reset...
                return
            self._tuples.add(packet.key, packet)
            self._locals.add(packet.key[:3], packet)
            self.counters.add("bpf.records.packet")
            return
        owner = parse_owner(record, self._offset)
        if owner is None:
            self.counters.add("bpf.records.skipped")
            return
        self._owners.add(owner.cookie, owner)
        self.counters.add("bpf.records.owner")

    def owner(self, key: TupleKey, ts: float) -> SocketOwner | None:
        """Who owned the local socket `key` (local end first) when a packet of it was seen at `ts`.

        UDP falls back to the local address and port alone (an unconnected socket sends anywhere).
        """
        self.drain()
        with self._lock:
            packet = _newest(self._tuples.get(key), ts)
            if packet is None and key[0] == "udp":
                packet = _newest(self._locals.get(key[:3]), ts)
            if packet is None:
                return None
            owners = self._owners.get(packet.cookie)
            peer = [o for o in owners if (o.dst, o.dport) == key[3:]]
            return _newest(peer, ts) or _newest(owners, ts)

    def owners_of(self, cookie: int) -> list[SocketOwner]:
        """The owner records kept for socket `cookie`, oldest first (at most HISTORY)."""
        self.drain()
        with self._lock:
            return list(self._owners.get(cookie))

    def lost(self) -> int:
        """Records the kernel could not write because the ring was full."""
        value = syscall.lookup(self._maps.lost, b"\0\0\0\0", 8)
        return int.from_bytes(value, "little") if value else 0

    def close(self) -> None:
        """Stops polling and detaches every program (closing the links)."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(1.0)
        with self._lock:
            self._ring.close()
            for fd in self._fds:
                with contextlib.suppress(OSError):
                    os.close(fd)
            self._fds.clear()


def _newest(items: list[T], ts: float) -> T | None:
    """The newest item stamped no later than `ts` (give or take CLOCK_SLACK)."""
    candidates = [item for item in items if item.time <= ts + CLOCK_SLACK]
    return candidates[-1] if candidates else None


def _keep(fds: list[int], fd: int) -> int:
    fds.append(fd)
    return fd


def _link_all(fds: list[int], maps: programs.Maps, cgroup: Path) -> None:
    cgroup_fd = os.open(cgroup, os.O_RDONLY | os.O_DIRECTORY)
    try:
        for kind, attach, name in _HOOKS:
            code = programs.sock_addr_program(maps, kind)
            prog_type = syscall.PROG_TYPE_CGROUP_SOCK_ADDR
            prog = _keep(fds, syscall.load_program(prog_type, attach, code, name))
            _keep(fds, syscall.link_cgroup(prog, cgroup_fd, attach))
        egress = syscall.ATTACH_CGROUP_INET_EGRESS
        code = programs.egress_program(maps)
        prog_type = syscall.PROG_TYPE_CGROUP_SKB
        prog = _keep(fds, syscall.load_program(prog_type, egress, code, "ew_egress"))
        _keep(fds, syscall.link_cgroup(prog, cgroup_fd, egress))
    finally:
        os.close(cgroup_fd)
