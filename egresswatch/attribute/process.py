"""Facts about a local process (psutil + /proc): ProcessInfo with ancestry, netns and container.

Executable hashes are cached by (st_dev, st_ino, st_mtime_ns, size) and computed on a worker
thread from a descriptor opened while the process is alive, so a big binary never stalls lookups.
"""

import dataclasses
import hashlib
import os
import pwd
import re
import time
from collections import OrderedDict
from concurrent.futures import Future, ThreadPoolExecutor
from concurrent.futures import TimeoutError as FutureTimeout
from pathlib import Path

import psutil

from egresswatch.classify.tools import ToolRules, default_tool_rules
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
    """sha256 of executables, keyed by the file's identity so a replaced binary is re-hashed."""

    __slots__ = (
        "_cache",
        "_max_entries",
        "_pool",
        "_tools",
        "_wait",
        "hashes_computed",
    )

    def __init__(self, wait: float = 0.05, max_entries: int = 4096) -> None:
        self._cache: OrderedDict[HashKey, Future[str | None]] = OrderedDict()
        self._pool: ThreadPoolExecutor | None = None
        self._wait = wait
        self._max_entries = max_entries
        self.hashes_computed = 0

    def sha256(self, exe_link: Path) -> str | None:
        """Hash of the file behind `exe_link` (e.g. /proc/PID/exe); None if not (yet) known."""
        try:
            fd = os.open(exe_link, os.O_RDONLY | os.O_CLOEXEC)
        except OSError:
            return None
        st = os.fstat(fd)
        key = (st.st_dev, st.st_ino, st.st_mtime_ns, st.st_size)
        future = self._cache.get(key)
        if future is None:
            future = self._submit(key, fd)
        else:
            os.close(fd)
            self._cache.move_to_end(key)
        try:
            return future.result(timeout=self._wait)
        except FutureTimeout:
            return None  # a later lookup gets it from the cache

    def _submit(self, key: HashKey, fd: int) -> "Future[str | None]":
        if self._pool is None:
            self._pool = ThreadPoolExecutor(1, thread_name_prefix="egresswatch-sha256")
        future = self._pool.submit(self._hash_fd, fd)
        self._cache[key] = future
        while len(self._cache) > self._max_entries:
            self._cache.popitem(last=False)
        return future

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

    Raises psutil.NoSuchProcess / psutil.AccessDenied from `info()` (callers map them to reasons).
    """

    __slots__ = (
        "_ancestries",
        "_cache",
        "_hasher",
        "_max_entries",
        "_proc",
        "_refs",
        "_tools",
        "_ttl",
        "_users",
    )

    def __init__(
        self, proc_root: Path, hasher: ExeHasher, ttl: float = 2.0, tools: ToolRules | None = None
    ) -> None:
        self._proc = proc_root
        self._tools = tools
        self._hasher = hasher
        self._ttl = ttl
        self._cache: OrderedDict[tuple[int, float], tuple[float, ProcessInfo]] = OrderedDict()
        self._refs: dict[tuple[int, float], ProcessRef] = {}
        # ppid -> (when, chain): siblings (50 curls from one shell) share one walk up the tree
        self._ancestries: dict[int, tuple[float, tuple[ProcessRef, ...]]] = {}
        self._users: dict[int, str | None] = {}
        self._max_entries = 4096

    def info(self, pid: int, netns: int | None = None) -> ProcessInfo:
        proc = psutil.Process(pid)
        key = (pid, proc.create_time())
        now = time.monotonic()
        cached = self._cache.get(key)
        if cached is not None and now - cached[0] < self._ttl:
            return cached[1]
        info = self._build(proc, key[1], netns)
        self._cache[key] = (now, info)
        self._cache.move_to_end(key)
        while len(self._cache) > self._max_entries:
            self._cache.popitem(last=False)
        return info

    def _build(self, proc: psutil.Process, start: float, netns: int | None) -> ProcessInfo:
        base = self._proc / str(proc.pid)
        with proc.oneshot():
            name, ppid, uid = proc.name(), proc.ppid(), proc.uids().real
            exe = self._exe(proc)
            cmdline = self._cmdline(proc)
        info = ProcessInfo(
            pid=proc.pid,
            name=name,
            exe=exe,
            exe_sha256=self._hasher.sha256(base / "exe") if exe else None,
            cmdline=cmdline,
            user=_user(uid, self._users),
            ppid=ppid or None,
            start_time=start,
            ancestry=self._ancestry(ppid),
            netns=netns if netns is not None else self._netns(base),
            container=self._container(base),
        )
        return self._with_tool(info, proc)

    def _with_tool(self, info: ProcessInfo, proc: psutil.Process) -> ProcessInfo:
        """Names the LLM tool, from the process itself or its nearest recognised ancestor.

        Read while the process is alive: its working directory tells `python main.py` apart.
        """
        tools = self._tools if self._tools is not None else default_tool_rules()
        try:
            cwd: str | None = proc.cwd()
        except psutil.Error:
            cwd = None
        match = tools.recognise_process(info, cwd=cwd)
        return dataclasses.replace(info, tool=match.tool) if match is not None else info

    @staticmethod
    def _exe(proc: psutil.Process) -> str | None:
        try:
            return str(proc.exe()) or None
        except (psutil.AccessDenied, psutil.ZombieProcess):
            return None

    @staticmethod
    def _cmdline(proc: psutil.Process) -> tuple[str, ...]:
        try:
            return tuple(proc.cmdline())
        except (psutil.AccessDenied, psutil.ZombieProcess):
            return ()  # an exited, not yet reaped process still has its name and pid

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
                parent = psutil.Process(ppid)
                ref = self._ref(parent)
                ppid = parent.ppid()
            except psutil.Error:
                break
            chain.append(ref)
        return tuple(chain)

    def _ref(self, proc: psutil.Process) -> ProcessRef:
        key = (proc.pid, proc.create_time())
        ref = self._refs.get(key)
        if ref is None:
            if len(self._refs) >= self._max_entries:
                self._refs.clear()
            ref = ProcessRef(proc.pid, proc.name(), self._exe(proc))
            self._refs[key] = ref
        return ref

    @staticmethod
    def _netns(base: Path) -> int | None:
        try:
            return os.stat(base / "ns" / "net").st_ino
        except OSError:
            return None

    @staticmethod
    def _container(base: Path) -> str | None:
        try:
            with open(base / "cgroup", encoding="utf-8", errors="replace") as handle:
                return container_from_cgroup(handle.read(_CGROUP_READ_LIMIT))
        except OSError:
            return None
