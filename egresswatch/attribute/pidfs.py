"""Cheap facts of one process read straight from /proc/PID through a pinned directory descriptor.

A few syscalls each, instead of psutil's path walks; failures raise psutil's exception types.
"""

import os
from dataclasses import dataclass

import psutil

DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC
_READ_LIMIT = 1 << 16  # cmdline beyond 64 KiB is cut: bounded memory per lookup
_DELETED = " (deleted)"


@dataclass(frozen=True, slots=True)
class PidStat:
    """The fields of /proc/PID/stat the facts need; `start_ticks` is since boot, in clock ticks."""

    comm: str
    ppid: int
    start_ticks: int


def open_pid(proc: str, pid: int) -> int:
    """An O_DIRECTORY descriptor on `proc`/`pid`: later reads see this process or fail, never
    a successor that reused the pid. Raises psutil.NoSuchProcess / psutil.AccessDenied."""
    try:
        return os.open(f"{proc}/{pid}", DIR_FLAGS)
    except PermissionError as err:
        raise psutil.AccessDenied(pid) from err
    except OSError as err:
        raise psutil.NoSuchProcess(pid) from err


def read_at(pid_dir: int, name: str, pid: int, limit: int = _READ_LIMIT) -> bytes:
    """Up to `limit` bytes of the file `name` under the pinned directory."""
    try:
        fd = os.open(name, os.O_RDONLY | os.O_CLOEXEC, dir_fd=pid_dir)
    except PermissionError as err:
        raise psutil.AccessDenied(pid) from err
    except OSError as err:
        raise psutil.NoSuchProcess(pid) from err
    try:
        chunks: list[bytes] = []
        size = 0
        while size < limit:
            chunk = os.read(fd, limit - size)
            if not chunk:
                break
            chunks.append(chunk)
            size += len(chunk)
        return b"".join(chunks)
    except OSError as err:  # ESRCH: the process exited while we read
        raise psutil.NoSuchProcess(pid) from err
    finally:
        os.close(fd)


def read_stat(pid_dir: int, pid: int) -> PidStat:
    """comm, ppid and start time; comm may hold any bytes, including ')'."""
    data = read_at(pid_dir, "stat", pid)
    head, _sep, rest = data.rpartition(b")")
    fields = rest.split()
    try:
        return PidStat(os.fsdecode(head.partition(b"(")[2]), int(fields[1]), int(fields[19]))
    except (IndexError, ValueError) as err:  # empty for a reaped process
        raise psutil.NoSuchProcess(pid) from err


def read_uid(pid_dir: int, pid: int) -> int:
    """The real uid (first field of the status file's Uid: line)."""
    for line in read_at(pid_dir, "status", pid).splitlines():
        if line.startswith(b"Uid:"):
            return int(line.split()[1])
    raise psutil.NoSuchProcess(pid)


def read_cmdline(pid_dir: int, pid: int) -> tuple[str, ...]:
    """argv as psutil reports it (NUL-separated, or space-separated when a process rewrote it);
    () for a zombie or when it cannot be read."""
    try:
        text = os.fsdecode(read_at(pid_dir, "cmdline", pid))
    except psutil.Error:
        return ()
    if not text:
        return ()
    sep = "\0" if text.endswith("\0") else " "
    parts = text.removesuffix(sep).split(sep)
    if sep == "\0" and len(parts) == 1 and " " in parts[0]:
        parts = parts[0].split(" ")
    return tuple(parts)


def read_link(pid_dir: int, name: str) -> str | None:
    """Target of a link such as exe or cwd; None when gone, unreadable or a kernel thread."""
    try:
        target = os.readlink(name, dir_fd=pid_dir)
    except OSError:
        return None
    target = target.split("\0", 1)[0]
    if target.endswith(_DELETED) and not os.path.exists(target):
        target = target.removesuffix(_DELETED)
    return target or None


def full_name(comm: str, cmdline: tuple[str, ...]) -> str:
    """comm, or argv[0]'s basename when comm is the kernel's 15-byte cut of it (as psutil does)."""
    if len(comm) >= 15 and cmdline:
        extended = os.path.basename(cmdline[0])
        if extended.startswith(comm):
            return extended
    return comm
