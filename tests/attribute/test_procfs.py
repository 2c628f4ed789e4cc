"""The /proc/*/fd socket index: full scan, incremental refresh, forgetting exited processes."""

import os
import socket
import subprocess
import sys
from pathlib import Path

from egresswatch.attribute.procfs import SocketIndex
from tests.attribute._support import start_client, tcp_listener


def test_full_scan_finds_own_sockets() -> None:
    index = SocketIndex(Path("/proc"))
    with socket.socket() as sock:
        index.full_scan()
        assert index.owners(os.fstat(sock.fileno()).st_ino).pids == (os.getpid(),)
    assert index.full_scans == 1
    assert index.netns_of(os.getpid()) == os.stat("/proc/self/ns/net").st_ino


def test_new_process_found_incrementally_then_forgotten() -> None:
    index = SocketIndex(Path("/proc"), full_interval=3600.0)
    index.full_scan()
    with tcp_listener() as listener:
        client = start_client("tcp", "127.0.0.1", listener.getsockname()[1])
        inode = _client_inode(client.proc.pid)
        scans_before = index.pid_scans
        found = index.owners(inode)
        assert found.pids == (client.proc.pid,) and not found.denied
        # only the processes started since the full scan were read, not every pid again
        assert index.pid_scans - scans_before < len(os.listdir("/proc")) // 2
        assert index.full_scans == 1
        client.finish()
    index.refresh_new()
    assert index.owners(inode).pids == ()
    assert client.proc.pid not in index.netns_members().values()


def test_socket_opened_later_by_a_known_process_is_found() -> None:
    index = SocketIndex(Path("/proc"), full_interval=3600.0)
    index.full_scan()
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as late:
        # this process was indexed already: its fd count changed, so it is re-read
        assert index.owners(os.fstat(late.fileno()).st_ino).pids == (os.getpid(),)
    assert index.full_scans == 1


def test_unknown_inode_triggers_at_most_one_full_scan_per_interval() -> None:
    index = SocketIndex(Path("/proc"), full_interval=3600.0)
    index.full_scan()
    for bogus in range(10):
        assert index.owners(2**40 + bogus).pids == ()
    assert index.full_scans == 1


def _client_inode(pid: int) -> int:
    fd_dir = Path(f"/proc/{pid}/fd")
    for entry in fd_dir.iterdir():
        target = os.readlink(entry)
        if target.startswith("socket:["):
            return int(target[8:-1])
    raise AssertionError("client holds no socket")


SWAP = r"""
import os, socket, sys
held = open(os.devnull)
print("ready", flush=True)
sys.stdin.readline()
held.close()  # same fd count after the socket below: only the young-process rule finds it
sock = socket.socket()
print(os.fstat(sock.fileno()).st_ino, flush=True)
sys.stdin.readline()
"""


def test_young_process_with_unchanged_fd_count_found_without_full_scan() -> None:
    index = SocketIndex(Path("/proc"), full_interval=3600.0)
    index.full_scan()
    child = subprocess.Popen(
        [sys.executable, "-c", SWAP], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
    )
    assert child.stdin is not None and child.stdout is not None
    try:
        assert child.stdout.readline().strip() == "ready"
        index.refresh_new()  # the child is indexed now, holding no socket
        child.stdin.write("go\n")
        child.stdin.flush()
        inode = int(child.stdout.readline())
        assert index.owners(inode).pids == (child.pid,)
        assert index.full_scans == 1
    finally:
        child.stdin.close()
        child.wait(timeout=10)
        child.stdout.close()


def test_a_socket_closed_meanwhile_skips_the_costly_steps() -> None:
    index = SocketIndex(Path("/proc"), full_interval=0.0)
    index.full_scan()
    with socket.socket() as sock:
        inode = os.fstat(sock.fileno()).st_ino
    asked: list[bool] = []

    def closed() -> bool:
        asked.append(True)
        return False

    assert index.owners(inode, os.getuid(), still_open=closed).pids == ()
    assert asked == [True] and index.full_scans == 1  # no fd-count sweep, no full rescan
    assert index.owners(inode, os.getuid()).pids == ()
    assert index.full_scans == 2  # without the hint the rate-limited full scan runs
