"""Listening sockets from a real sock_diag dump; the pid scan reruns only when they change."""

import os
import socket

from egresswatch.alerts.listeners import ListenerScan, listening_sockets


def test_a_new_listener_is_in_the_dump_with_its_inode() -> None:
    with socket.socket() as server:
        server.bind(("127.0.0.1", 0))
        server.listen()
        port, inode = server.getsockname()[1], os.fstat(server.fileno()).st_ino
        assert ("127.0.0.1", port, inode) in listening_sockets()
    assert all(p != port for _, p, _ in listening_sockets())


def test_the_pid_scan_runs_again_only_when_listeners_change() -> None:
    calls: list[int] = []

    def recognise(pid: int) -> tuple[str, str, str | None] | None:
        calls.append(pid)
        return ("Ollama", "ollama", None) if pid == os.getpid() else None

    scan = ListenerScan(recognise)
    with socket.socket() as server:
        server.bind(("127.0.0.1", 0))
        server.listen()
        port = server.getsockname()[1]
        found = scan()
        assert [(x.port, x.pid, x.tool) for x in found[port]] == [(port, os.getpid(), "Ollama")]
        before = len(calls)
        assert scan()[port] == found[port]
        assert len(calls) == before  # nothing changed: no scan
    assert port not in scan()
