"""The pipeline watchdog pings only while the agent loop turns (a real datagram socket)."""

import socket
import threading
import time
from pathlib import Path

from egresswatch.sdnotify import Notifier
from egresswatch.watchdog import STALL_LIMIT, PipelineWatchdog


def test_ping_withheld_when_the_loop_stalls(tmp_path: Path) -> None:
    path = str(tmp_path / "notify")
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
        sock.bind(path)
        sock.settimeout(1)
        turn = [time.monotonic()]
        notifier = Notifier({"NOTIFY_SOCKET": path})
        dog = PipelineWatchdog(notifier, lambda: turn[0], threading.Event(), 1)
        assert dog.check()
        assert sock.recv(64) == b"WATCHDOG=1"
        turn[0] -= STALL_LIMIT + 1
        assert not dog.check()
        sock.setblocking(False)
        assert _nothing_waiting(sock)
        assert (dog.pings, dog.withheld) == (1, 1)


def _nothing_waiting(sock: socket.socket) -> bool:
    try:
        sock.recv(64)
    except BlockingIOError:
        return True
    return False
