"""Listening TCP sockets of recognised LLM tools (psutil over /proc/net and sock_diag)."""

import contextlib
from collections.abc import Callable, Iterator

import psutil

from egresswatch.alerts.rules import Listener
from egresswatch.classify.tools import recognise_tool
from egresswatch.model import FlowKey, ProcessRef

Recogniser = Callable[[int], tuple[str, str, str | None] | None]


def recognise_pid(pid: int) -> tuple[str, str, str | None] | None:
    """(tool, process name, exe) of `pid` when it is a recognised LLM tool."""
    try:
        proc = psutil.Process(pid)
        name, cmdline = proc.name(), proc.cmdline()
        exe = None
        with contextlib.suppress(psutil.AccessDenied, OSError):
            exe = proc.exe() or None
    except (psutil.NoSuchProcess, psutil.AccessDenied, psutil.ZombieProcess):
        return None
    match = recognise_tool(name, exe, cmdline)
    return None if match is None else (match.tool, name, exe)


def scan_listeners(recognise: Recogniser = recognise_pid) -> dict[int, list[Listener]]:
    """Port -> the LLM tools' listening sockets on it (all of them: v4 and v6, any address)."""
    found: dict[int, list[Listener]] = {}
    for address, port, pid in _listening():
        who = recognise(pid)
        if who is not None:
            found.setdefault(port, []).append(Listener(who[0], pid, who[1], who[2], address, port))
    return found


def _listening() -> Iterator[tuple[str, int, int]]:
    try:
        sockets = psutil.net_connections(kind="tcp")
    except (psutil.AccessDenied, OSError):
        return
    for conn in sockets:
        if conn.status == psutil.CONN_LISTEN and conn.pid and conn.laddr:
            yield conn.laddr.ip, conn.laddr.port, conn.pid


def client_of(flow: FlowKey) -> ProcessRef | None:
    """The local process whose socket is the client end of `flow`, if it is still open."""
    try:
        sockets = psutil.net_connections(kind="tcp")
    except (psutil.AccessDenied, OSError):
        return None
    for conn in sockets:
        if conn.pid and conn.laddr and (conn.laddr.ip, conn.laddr.port) == (flow.src, flow.sport):
            return _ref(conn.pid)
    return None


def _ref(pid: int) -> ProcessRef | None:
    try:
        proc = psutil.Process(pid)
        exe = None
        with contextlib.suppress(psutil.AccessDenied, OSError):
            exe = proc.exe() or None
        return ProcessRef(pid, proc.name(), exe)
    except (psutil.NoSuchProcess, psutil.AccessDenied, psutil.ZombieProcess):
        return None
