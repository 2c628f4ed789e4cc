"""Process facts cached at exec time from the proc connector (netlink), so a process that lives
1 ms is still known after it exits: its socket's owner record names the pid, this names the rest.

Only the process's own facts are read at exec (exe, cmdline, uid, cwd, netns, cgroup: ~0.2 ms);
its ancestry and tool are added when an event needs them (`ProcessFacts.complete`).
"""

import contextlib
import dataclasses
import errno
import os
import socket
import struct
import threading
import time
from pathlib import Path

import psutil

from egresswatch.attribute.process import ExeHasher, ProcessFacts
from egresswatch.counters import Counters
from egresswatch.lru import Lru
from egresswatch.model import ProcessInfo

NETLINK_CONNECTOR = 11
CN_IDX_PROC = 1
CN_VAL_PROC = 1
PROC_CN_MCAST_LISTEN = 1
PROC_CN_MCAST_IGNORE = 2
PROC_EVENT_FORK = 1
PROC_EVENT_EXEC = 2
NLMSG_DONE = 3
MAX_PROCESSES = 8192
PER_PID = 2  # a pid reused (or exec'd twice) keeps its previous image's facts too
START_SLACK = 0.05  # /proc start times have clock-tick resolution
WATCHER_NICE = -10
_NLMSG = struct.Struct("=IHHII")
_CN_MSG = struct.Struct("=IIIIHH")
_EVENT_HEAD = struct.Struct("=IIQ")
_EXEC = struct.Struct("=ii")
_FORK = struct.Struct("=iiii")  # parent pid, parent tgid, child pid, child tgid
_RCVBUF = 4 << 20
SO_RCVBUFFORCE = 33


def listen_message(op: int = PROC_CN_MCAST_LISTEN) -> bytes:
    """The netlink message that subscribes to (or leaves) process events."""
    payload = struct.pack("=I", op)
    cn = _CN_MSG.pack(CN_IDX_PROC, CN_VAL_PROC, 0, 0, len(payload), 0) + payload
    return _NLMSG.pack(_NLMSG.size + len(cn), NLMSG_DONE, 0, 0, os.getpid()) + cn


def process_events(datagram: bytes) -> list[tuple[int, int, int, int]]:
    """(event, pid, parent, CLOCK_MONOTONIC ns) of each exec (parent 0) and each fork of a new
    process (not a thread) in one netlink datagram; pure."""
    events: list[tuple[int, int, int, int]] = []
    offset = 0
    while offset + _NLMSG.size <= len(datagram):
        length = _NLMSG.unpack_from(datagram, offset)[0]
        if length < _NLMSG.size or offset + length > len(datagram):
            break
        body = offset + _NLMSG.size + _CN_MSG.size + _EVENT_HEAD.size
        end = offset + length
        what, _cpu, stamp = (
            _EVENT_HEAD.unpack_from(datagram, body - _EVENT_HEAD.size) if body <= end else (0, 0, 0)
        )
        if what == PROC_EVENT_EXEC and body + _EXEC.size <= end:
            events.append((what, _EXEC.unpack_from(datagram, body)[1], 0, stamp))
        elif what == PROC_EVENT_FORK and body + _FORK.size <= end:
            _ppid, parent, child, child_tgid = _FORK.unpack_from(datagram, body)
            if child == child_tgid:
                events.append((what, child, parent, stamp))
        offset += (length + 3) & ~3
    return events


def exec_pids(datagram: bytes) -> list[int]:
    """The process (tgid) of each exec event in one netlink datagram; pure."""
    return [pid for what, pid, _parent, _ns in process_events(datagram) if what == PROC_EVENT_EXEC]


class ExecWatcher:
    """Reads every exec on a daemon thread; keeps the new image's facts (bounded, thread-safe)."""

    def __init__(self, sock: socket.socket, proc_root: Path = Path("/proc")) -> None:
        self._sock = sock
        self._hasher = ExeHasher()
        self._facts = ProcessFacts(proc_root, self._hasher)
        self._cache: Lru[int, list[tuple[ProcessInfo, str | None]]] = Lru(MAX_PROCESSES)
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None
        self._closed = False
        self.counters = Counters()

    @classmethod
    def open(cls, proc_root: Path = Path("/proc")) -> "ExecWatcher":
        """Subscribes to process events; OSError when not allowed (needs CAP_NET_ADMIN)."""
        sock = socket.socket(socket.AF_NETLINK, socket.SOCK_DGRAM, NETLINK_CONNECTOR)
        try:
            with contextlib.suppress(OSError):
                sock.setsockopt(socket.SOL_SOCKET, SO_RCVBUFFORCE, _RCVBUF)
            sock.bind((0, CN_IDX_PROC))
            sock.send(listen_message())
        except OSError:
            sock.close()
            raise
        return cls(sock, proc_root)

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="egresswatch-exec", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        # A process that lives 1 ms must be read before it exits: run ahead of the processes
        # being watched when allowed (CAP_SYS_NICE; only this thread).
        with contextlib.suppress(OSError):
            os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), WATCHER_NICE)
        while not self._closed:
            try:
                datagram = self._sock.recv(65536)
            except OSError as err:
                if self._closed:
                    return
                self.counters.add(f"exec.errors.{err.errno}")
                if err.errno == errno.ENOBUFS:
                    continue  # events were lost while we were busy: go on with the next
                return  # anything else will not get better; lookups go on without the cache
            try:
                self._handle(datagram)
            except Exception as err:  # the thread's containment point: count, keep reading
                self.counters.add(f"exec.errors.{type(err).__name__}")

    def _handle(self, datagram: bytes) -> None:
        for what, pid, parent, stamp in process_events(datagram):
            if what == PROC_EVENT_EXEC:
                self._remember(pid)
            else:
                self._inherit(pid, parent, time.time() - time.monotonic() + stamp / 1e9)

    def _remember(self, pid: int) -> None:
        try:
            snapshot = self._facts.snapshot(pid)
        except psutil.Error:
            self.counters.add("exec.missed")  # gone before we could read it
            return
        self._store(pid, snapshot)
        self.counters.add("exec.cached")

    def _store(self, pid: int, snapshot: tuple[ProcessInfo, str | None]) -> None:
        with self._lock:
            infos = self._cache.get(pid) or []
            infos.append(snapshot)
            del infos[:-PER_PID]
            self._cache.put(pid, infos)

    def _inherit(self, child: int, parent: int, forked: float) -> None:
        """A forked child runs its parent's image until it execs: it starts with those facts."""
        with self._lock:
            known = self._cache.get(parent)
            if not known:
                return
            info, cwd = known[-1]
            copy = dataclasses.replace(info, pid=child, ppid=parent, start_time=forked)
        self._store(child, (copy, cwd))
        self.counters.add("exec.forked")

    def facts(self, pid: int, at: float) -> tuple[ProcessInfo, str | None] | None:
        """Own facts and cwd of the newest image `pid` ran that had started by `at` (epoch s)."""
        with self._lock:
            infos = list(self._cache.get(pid) or ())
        started = [i for i in infos if (i[0].start_time or 0.0) <= at + START_SLACK]
        return started[-1] if started else None

    def close(self) -> None:
        self._closed = True
        with contextlib.suppress(OSError):
            self._sock.send(listen_message(PROC_CN_MCAST_IGNORE))
        with contextlib.suppress(OSError):
            self._sock.shutdown(socket.SHUT_RDWR)
        self._sock.close()
        if self._thread is not None:
            self._thread.join(1.0)
        self._hasher.close()
