"""Facts about a local process (/proc): ProcessInfo with ancestry, netns and container.

Executable hashes are cached by (st_dev, st_ino, st_mtime_ns, size) and computed on a worker
thread from a descriptor opened while the process is alive; lookups never wait for them.
"""

import dataclasses
import hashlib
import os
import pwd
import re
import time
from concurrent.futures import Future, ThreadPoolExecutor
from concurrent.futures import TimeoutError as FutureTimeout
from pathlib import Path

import psutil

from egresswatch.attribute.evidence import identify_tool
from egresswatch.attribute.pidfs import (
    PidStat,
    full_name,
    open_pid,
    read_at,
    read_cmdline,
    read_link,
    read_stat,
    read_uid,
)
from egresswatch.classify.tools import ToolRules
from egresswatch.lru import Lru
from egresswatch.model import ProcessInfo, ProcessRef

_CONTAINER_RE = re.compile(
    r"(?P<runtime>docker|libpod|cri-containerd|containerd|crio|cri-o)[-/:](?P<id>[0-9a-f]{64})"
    r"|/(?P<bare>[0-9a-f]{64})(?:\.scope)?$"
)
_RUNTIME_RE = re.compile(r"docker|kubepods|lxc|machine")
_MAX_ANCESTRY = 64
_CGROUP_READ_LIMIT = 16384
HashKey = tuple[int, int, int, int]


def container_from_cgroup(text: str) -> str | None:
    """The container id ("docker:<64 hex>") or systemd unit path a /proc/PID/cgroup names.

    None for the root cgroup. Pure: `text` is the file's content.
    """
    unified = None
    for line in text.splitlines():
        _hier, _sep, path = line.partition(":")[2].partition(":")
        match = _CONTAINER_RE.search(path)
        if match and match.group("runtime"):
            return f"{match.group('runtime')}:{match.group('id')}"
        if match:  # a bare id under a runtime's tree, e.g. /docker/<id> (cgroup v1)
            runtime = _RUNTIME_RE.search(path)
            return f"{runtime.group(0) if runtime else 'container'}:{match.group('bare')}"
        if line.startswith("0::") or (unified is None and line.split(":")[1:2] == ["name=systemd"]):
            unified = path
    if unified in (None, "", "/"):
        return None
    return unified.lstrip("/")


class ExeHasher:
    """sha256 of executables, keyed by the file's identity so a replaced binary is re-hashed.

    `wait` bounds how long a caller blocks for a hash not yet known; the agent uses 0 (never
    wait on the packet path: the event carries None and later events get it from the cache).
    """

    __slots__ = (
        "_cache",
        "_pool",
        "_tools",
        "_wait",
        "hashes_computed",
    )

    def __init__(self, wait: float = 0.0, max_entries: int = 4096) -> None:
        self._cache: Lru[HashKey, Future[str | None]] = Lru(max_entries)
        self._pool: ThreadPoolExecutor | None = None
        self._wait = wait
        self.hashes_computed = 0

    def sha256(self, exe_link: Path) -> str | None:
        """Hash of the file behind `exe_link` (e.g. /proc/PID/exe); None if not (yet) known."""
        try:
            fd = os.open(exe_link, os.O_RDONLY | os.O_CLOEXEC)
        except OSError:
            return None
        return self.result(self._submit_fd(fd))

    def submit_at(self, pid_dir: int) -> HashKey | None:
        """Starts hashing the `exe` of a pinned /proc/PID (unless known); the key for `result`."""
        try:
            fd = os.open("exe", os.O_RDONLY | os.O_CLOEXEC, dir_fd=pid_dir)
        except OSError:
            return None
        return self._submit_fd(fd)

    def result(self, key: HashKey | None) -> str | None:
        """The hash for `key` if done (after waiting up to `wait`), else None."""
        future = self._cache.peek(key) if key is not None else None
        if future is None:
            return None
        try:
            return future.result(timeout=self._wait)
        except FutureTimeout:
            return None  # a later lookup gets it from the cache

    def _submit_fd(self, fd: int) -> HashKey | None:
        try:
            st = os.fstat(fd)
        except OSError:
            os.close(fd)
            return None
        key = (st.st_dev, st.st_ino, st.st_mtime_ns, st.st_size)
        if self._cache.get(key) is not None:  # counts as use
            os.close(fd)
            return key
        if self._pool is None:
            self._pool = ThreadPoolExecutor(1, thread_name_prefix="egresswatch-sha256")
        self._cache.put(key, self._pool.submit(self._hash_fd, fd))
        return key

    def _hash_fd(self, fd: int) -> str | None:
        try:
            with os.fdopen(fd, "rb") as handle:
                digest = hashlib.file_digest(handle, "sha256").hexdigest()
        except OSError:
            return None
        self.hashes_computed += 1
        return digest

    def close(self) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=True, cancel_futures=True)
            self._pool = None


def _user(uid: int, cache: dict[int, str | None]) -> str | None:
    if uid not in cache:
        try:
            cache[uid] = pwd.getpwuid(uid).pw_name
        except KeyError:
            cache[uid] = str(uid)
    return cache[uid]


class ProcessFacts:
    """Builds ProcessInfo for pids, caching per (pid, start time) for `ttl` seconds.

    Reads /proc/PID directly through one pinned directory descriptor (a few syscalls, ~0.1 ms),
    so a process that lives a few milliseconds is read whole or not at all.
    Raises psutil.NoSuchProcess / psutil.AccessDenied from `info()` (callers map them to reasons).
    """

    __slots__ = (
        "_ancestries",
        "_boot",
        "_cache",
        "_hasher",
        "_max_entries",
        "_proc",
        "_refs",
        "_tick",
        "_tools",
        "_ttl",
        "_users",
    )

    def __init__(
        self, proc_root: Path, hasher: ExeHasher, ttl: float = 2.0, tools: ToolRules | None = None
    ) -> None:
        self._proc = str(proc_root)
        self._tools = tools
        self._hasher = hasher
        self._ttl = ttl
        self._boot = float(psutil.boot_time())  # the same epoch psutil's create_time() uses
        self._tick = float(os.sysconf("SC_CLK_TCK"))
        self._max_entries = 4096
        self._cache: Lru[tuple[int, float], _Cached] = Lru(self._max_entries)
        self._refs: dict[tuple[int, float], ProcessRef] = {}
        # ppid -> (when, chain): siblings (50 curls from one shell) share one walk up the tree
        self._ancestries: dict[int, tuple[float, tuple[ProcessRef, ...]]] = {}
        self._users: dict[int, str | None] = {}

    def info(self, pid: int, netns: int | None = None) -> ProcessInfo:
        pid_dir = open_pid(self._proc, pid)
        try:
            stat = read_stat(pid_dir, pid)
            key = (pid, self._start(stat))
            now = time.monotonic()
            cached = self._cache.peek(key)  # a hit does not refresh: the ttl decides
            if cached is None or now - cached.when >= self._ttl:
                cached = _Cached(now, *self._build(pid_dir, pid, stat, key[1], netns))
                self._cache.put(key, cached)
            return self._with_hash(cached)
        finally:
            os.close(pid_dir)

    def start_time(self, pid: int) -> float | None:
        """Start time of `pid` (epoch seconds, as psutil's create_time), None if gone."""
        try:
            pid_dir = open_pid(self._proc, pid)
        except psutil.Error:
            return None
        try:
            return self._start(read_stat(pid_dir, pid))
        except psutil.Error:
            return None
        finally:
            os.close(pid_dir)

    def _start(self, stat: PidStat) -> float:
        return self._boot + stat.start_ticks / self._tick

    def _with_hash(self, cached: "_Cached") -> ProcessInfo:
        """The hash is never waited for on the hot path: a later event picks it up here."""
        if cached.info.exe_sha256 is None and cached.hash_key is not None:
            digest = self._hasher.result(cached.hash_key)
            if digest is not None:
                cached.info = dataclasses.replace(cached.info, exe_sha256=digest)
        return cached.info

    def _build(
        self, pid_dir: int, pid: int, stat: PidStat, start: float, netns: int | None
    ) -> tuple[ProcessInfo, HashKey | None]:
        # the short-lived process's own facts first; parents and hashes can wait
        cmdline = read_cmdline(pid_dir, pid)
        exe = read_link(pid_dir, "exe")
        uid = read_uid(pid_dir, pid)
        hash_key = self._hasher.submit_at(pid_dir) if exe else None
        cwd = read_link(pid_dir, "cwd")
        info = ProcessInfo(
            pid=pid,
            name=full_name(stat.comm, cmdline),
            exe=exe,
            exe_sha256=self._hasher.result(hash_key),
            cmdline=cmdline,
            user=_user(uid, self._users),
            ppid=stat.ppid or None,
            start_time=start,
            ancestry=self._ancestry(stat.ppid),
            netns=netns if netns is not None else _netns(pid_dir),
            container=_container(pid_dir, pid),
        )
        return self._with_tool(info, cwd, pid_dir), hash_key

    def _with_tool(self, info: ProcessInfo, cwd: str | None, pid_dir: int) -> ProcessInfo:
        """Names the LLM tool and why: its own rule, what it has loaded or open, or an ancestor.

        `cwd` is read while the process is alive: it tells `python main.py` apart.
        """
        return identify_tool(info, pid_dir, cwd, self._tools)

    def _ancestry(self, ppid: int) -> tuple[ProcessRef, ...]:
        now = time.monotonic()
        cached = self._ancestries.get(ppid)
        if cached is not None and now - cached[0] < self._ttl:
            return cached[1]
        chain = self._walk_up(ppid)
        if len(self._ancestries) >= self._max_entries:
            self._ancestries.clear()
        self._ancestries[ppid] = (now, chain)
        return chain

    def _walk_up(self, ppid: int) -> tuple[ProcessRef, ...]:
        chain: list[ProcessRef] = []
        while ppid > 0 and len(chain) < _MAX_ANCESTRY:
            try:
                ref, ppid = self._ref(ppid)
            except psutil.Error:
                break
            chain.append(ref)
        return tuple(chain)

    def snapshot(self, pid: int) -> tuple[ProcessInfo, str | None]:
        """The process's own facts and cwd, read at once (no ancestry, tool or hash: cheap
        enough to take at every exec); `complete()` adds the rest later. Raises psutil.Error.
        """
        pid_dir = open_pid(self._proc, pid)
        try:
            stat = read_stat(pid_dir, pid)
            cmdline = read_cmdline(pid_dir, pid)
            info = ProcessInfo(
                pid=pid,
                name=full_name(stat.comm, cmdline),
                exe=read_link(pid_dir, "exe"),
                exe_sha256=None,
                cmdline=cmdline,
                user=_user(read_uid(pid_dir, pid), self._users),
                ppid=stat.ppid or None,
                start_time=self._start(stat),
                ancestry=(),
                netns=_netns(pid_dir),
                container=_container(pid_dir, pid),
            )
            return info, read_link(pid_dir, "cwd")
        finally:
            os.close(pid_dir)

    def complete(self, info: ProcessInfo, cwd: str | None) -> ProcessInfo:
        """A `snapshot()` with its ancestry (the parents as they are now) and its tool."""
        with_parents = dataclasses.replace(info, ancestry=self._ancestry(info.ppid or 0))
        pid_dir = self._same_process(info)
        try:
            return self._with_tool(with_parents, cwd, pid_dir)
        finally:
            if pid_dir >= 0:
                os.close(pid_dir)

    def _same_process(self, info: ProcessInfo) -> int:
        """A pinned /proc directory of `info`'s process, or -1 when it has exited (or its pid
        was reused): then only its own rule and its ancestors can name its tool."""
        try:
            pid_dir = open_pid(self._proc, info.pid)
        except psutil.Error:
            return -1
        try:
            if self._start(read_stat(pid_dir, info.pid)) == info.start_time:
                return pid_dir
        except psutil.Error:
            pass
        os.close(pid_dir)
        return -1

    def _ref(self, pid: int) -> tuple[ProcessRef, int]:
        """The link for `pid` and its parent's pid."""
        pid_dir = open_pid(self._proc, pid)
        try:
            stat = read_stat(pid_dir, pid)
            key = (pid, self._start(stat))
            ref = self._refs.get(key)
            if ref is None:
                if len(self._refs) >= self._max_entries:
                    self._refs.clear()
                cmdline = read_cmdline(pid_dir, pid) if len(stat.comm) >= 15 else ()
                ref = ProcessRef(pid, full_name(stat.comm, cmdline), read_link(pid_dir, "exe"))
                self._refs[key] = ref
            return ref, stat.ppid
        finally:
            os.close(pid_dir)


class _Cached:
    """One cache entry; `info` gains its exe hash in place once the worker has it."""

    __slots__ = ("hash_key", "info", "when")

    def __init__(self, when: float, info: ProcessInfo, hash_key: HashKey | None) -> None:
        self.when = when
        self.info = info
        self.hash_key = hash_key


def _netns(pid_dir: int) -> int | None:
    try:
        return os.stat("ns/net", dir_fd=pid_dir).st_ino
    except OSError:
        return None


def _container(pid_dir: int, pid: int) -> str | None:
    try:
        text = read_at(pid_dir, "cgroup", pid, _CGROUP_READ_LIMIT)
    except psutil.Error:
        return None
    return container_from_cgroup(text.decode("utf-8", errors="replace"))
