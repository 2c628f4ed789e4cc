"""Process facts for a socket owner the kernel named: live /proc, the exec-time cache, or the
kernel's own record (pid, comm, uid) when the process is already gone.
"""

import pwd
from typing import Protocol

import psutil

from egresswatch.attribute.bpf.records import SocketOwner
from egresswatch.attribute.process import ProcessFacts
from egresswatch.model import ProcessInfo

# /proc start times have clock-tick (10 ms) resolution; a process that started later than the
# socket's owner record by more than this is a successor that reused the pid.
START_SLACK = 0.05


class ExecCache(Protocol):
    """Facts read when a process exec'd (egresswatch.attribute.exec_events.ExecWatcher)."""

    def facts(self, pid: int, at: float) -> tuple[ProcessInfo, str | None] | None: ...

    def close(self) -> None: ...


def owner_info(
    owner: SocketOwner, facts: ProcessFacts, execs: ExecCache | None, netns: int | None
) -> ProcessInfo:
    """The fullest facts available for `owner`; never those of a process that reused its pid."""
    try:
        info = facts.info(owner.pid, netns)
    except psutil.Error:
        info = None
    if info is not None and (info.start_time or 0.0) <= owner.time + START_SLACK:
        return info
    cached = execs.facts(owner.pid, owner.time) if execs is not None else None
    if cached is None:
        return from_kernel(owner)
    return facts.complete(*cached)  # parents and tool as they are now


def from_kernel(owner: SocketOwner) -> ProcessInfo:
    """What the kernel's record alone says: pid, comm and uid."""
    return ProcessInfo(
        pid=owner.pid,
        name=owner.comm,
        exe=None,
        exe_sha256=None,
        cmdline=(),
        user=user_name(owner.uid),
        ppid=None,
        start_time=None,
        ancestry=(),
        netns=None,
        container=None,
    )


def user_name(uid: int) -> str:
    try:
        return pwd.getpwuid(uid).pw_name
    except KeyError:
        return str(uid)
