"""An index from socket inode to the pids holding it, built from /proc/*/fd and kept warm.

A full scan at start; on a miss, new pids, young pids and pids whose fd count changed are
re-read, and a full rescan is rate-limited so a flood of unknown sockets cannot pin a CPU.
"""

import os
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

_SOCKET_PREFIX = "socket:["
_DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC
_YOUNG = 5.0  # seconds a process counts as just started


def _read_netns(pid_dir: int) -> int | None:
    try:
        return os.stat("ns/net", dir_fd=pid_dir).st_ino
    except OSError:
        return None


@dataclass(frozen=True, slots=True)
class PidEntry:
    """What the index knows about one process: owner uid, fd count at scan, socket inodes,
    and when it was first seen (monotonic)."""

    uid: int
    fd_count: int
    sockets: frozenset[int]
    netns: int | None
    first_seen: float


@dataclass(frozen=True, slots=True)
class OwnerLookup:
    """The pids holding a socket inode; `denied` when some /proc/PID/fd could not be read."""

    pids: tuple[int, ...]
    denied: bool


def _socket_inodes(fd_dir: int) -> frozenset[int]:
    found = set()
    for name in os.listdir(fd_dir):
        try:
            target = os.readlink(name, dir_fd=fd_dir)
        except OSError:
            continue  # closed between listdir and readlink
        if target.startswith(_SOCKET_PREFIX):
            found.add(int(target[len(_SOCKET_PREFIX) : -1]))
    return frozenset(found)


class SocketIndex:
    """inode -> pids over /proc/*/fd. Not thread-safe: one owner thread."""

    __slots__ = (
        "_by_inode",
        "_denied",
        "_full_interval",
        "_last_full",
        "_pids",
        "_proc",
        "_self_pid",
        "full_scans",
        "pid_scans",
    )

    def __init__(self, proc_root: Path = Path("/proc"), full_interval: float = 0.5) -> None:
        self._proc = proc_root
        self._full_interval = full_interval
        self._pids: dict[int, PidEntry] = {}
        self._by_inode: dict[int, set[int]] = {}
        self._denied: set[int] = set()
        self._last_full = float("-inf")
        self._self_pid = os.getpid()
        self.full_scans = 0
        self.pid_scans = 0

    def netns_members(self) -> dict[int, int]:
        """One live-at-last-scan member pid for each network-namespace inode seen."""
        members: dict[int, int] = {}
        for pid, entry in self._pids.items():
            if entry.netns is not None:
                members.setdefault(entry.netns, pid)
        return members

    def netns_of(self, pid: int) -> int | None:
        entry = self._pids.get(pid)
        return entry.netns if entry else None

    def full_scan(self) -> None:
        """Re-read every process's fd table."""
        live = self._live_pids()
        for pid in set(self._pids) - live:
            self._forget(pid)
        # processes running before the first scan are not "just started"
        born = time.monotonic() if self.full_scans else float("-inf")
        for pid in live:
            self._scan(pid, born)
        self._last_full = time.monotonic()
        self.full_scans += 1

    def owners(
        self, inode: int, uid: int | None = None, still_open: Callable[[], bool] | None = None
    ) -> OwnerLookup:
        """Pids holding socket `inode`, refreshing the index incrementally when it misses.

        `still_open` is asked before the costly steps (fd counts of every process, full scan):
        a socket that closed meanwhile is not worth them, and later packets wait behind them.
        """
        found = self._held(inode)
        for step in (self._scan_new, self._scan_young):
            if found is None:
                step(uid, inode)
                found = self._held(inode)
        if found is None and (still_open is None or still_open()):
            for step in (self._scan_changed, self._scan_all_rate_limited):
                if found is None:
                    step(uid, inode)
                    found = self._held(inode)
        return found or OwnerLookup((), bool(self._denied))

    def _held(self, inode: int) -> OwnerLookup | None:
        pids = self._by_inode.get(inode)
        return OwnerLookup(tuple(sorted(pids)), False) if pids else None

    def refresh_new(self) -> None:
        """Read processes started (and forget those gone) since the last look."""
        self._scan_new(None, None)

    def _scan_until(self, pids: list[int], inode: int | None) -> None:
        # newest first: a socket that is not indexed yet most likely belongs to a new process
        for pid in sorted(pids, reverse=True):
            self._scan(pid)
            if inode is not None and inode in self._by_inode:
                return

    def _live_pids(self) -> set[int]:
        self._self_pid = os.getpid()  # refreshed here: the index may outlive a fork
        return {int(name) for name in os.listdir(self._proc) if name.isdigit()}

    def _scan_new(self, uid: int | None, inode: int | None) -> None:
        live = self._live_pids()
        for pid in set(self._pids) - live:
            self._forget(pid)
        self._scan_until(list(live - set(self._pids)), inode)

    def _scan_young(self, uid: int | None, inode: int | None) -> None:
        # short-lived tools open their socket right after start, often with the fd count of
        # an earlier scan (a file closed, a socket opened): re-read the few young processes
        young_since = time.monotonic() - _YOUNG
        young = [
            pid
            for pid, entry in self._pids.items()
            if entry.first_seen >= young_since and (uid is None or entry.uid == uid)
        ]
        self._scan_until(young, inode)

    def _scan_changed(self, uid: int | None, inode: int | None) -> None:
        changed = []
        for pid, entry in list(self._pids.items()):
            if uid is not None and entry.uid != uid and pid not in self._denied:
                continue
            try:
                count = os.stat(f"{self._proc}/{pid}/fd").st_size
            except OSError:
                self._forget(pid)
                continue
            # st_size of /proc/PID/fd is the open-fd count (Linux >= 6.2); 0 means "unknown"
            if count != entry.fd_count or count == 0:
                changed.append(pid)
        self._scan_until(changed, inode)

    def _scan_all_rate_limited(self, uid: int | None, inode: int | None) -> None:
        if time.monotonic() - self._last_full >= self._full_interval:
            self.full_scan()

    def _scan(self, pid: int, born: float | None = None) -> None:
        # plain strings and dir fds: pathlib and repeated /proc path walks dominated the scan
        self.pid_scans += 1
        try:
            pid_dir = os.open(f"{self._proc}/{pid}", _DIR_FLAGS)
        except OSError:
            self._forget(pid)
            return
        try:
            self._scan_dir(pid, pid_dir, born)
        finally:
            os.close(pid_dir)

    def _scan_dir(self, pid: int, pid_dir: int, born: float | None) -> None:
        try:
            fd_dir = os.open("fd", _DIR_FLAGS, dir_fd=pid_dir)
        except PermissionError:
            self._denied.add(pid)
            return
        except OSError:
            self._forget(pid)
            return
        try:
            # fd/ is owned by the task's euid; stat of /proc/PID itself is far slower.
            # In our own process the two directory fds just opened must not count.
            st = os.fstat(fd_dir)
            uid, count = st.st_uid, st.st_size - 2 * (pid == self._self_pid)
            sockets = _socket_inodes(fd_dir)
        except OSError:
            sockets, uid, count = frozenset(), -1, 0
        finally:
            os.close(fd_dir)
        old = self._pids.get(pid)
        seen = old.first_seen if old is not None else (time.monotonic() if born is None else born)
        self._store(pid, PidEntry(uid, count, sockets, _read_netns(pid_dir), seen))

    def _store(self, pid: int, entry: PidEntry) -> None:
        old = self._pids.get(pid)
        if old is not None:
            for inode in old.sockets - entry.sockets:
                self._drop(inode, pid)
        self._pids[pid] = entry
        self._denied.discard(pid)
        for inode in entry.sockets:
            self._by_inode.setdefault(inode, set()).add(pid)

    def _forget(self, pid: int) -> None:
        entry = self._pids.pop(pid, None)
        self._denied.discard(pid)
        if entry is not None:
            for inode in entry.sockets:
                self._drop(inode, pid)

    def _drop(self, inode: int, pid: int) -> None:
        holders = self._by_inode.get(inode)
        if holders is not None:
            holders.discard(pid)
            if not holders:
                del self._by_inode[inode]
