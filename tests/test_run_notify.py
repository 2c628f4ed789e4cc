"""`egresswatch run` under a stand-in systemd: READY=1 once capture is live and the store open,
WATCHDOG=1 while the pipeline turns, STOPPING=1 on the way out (a real AF_UNIX datagram socket)."""

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest


def _messages(sock: socket.socket, until: bytes, deadline: float) -> list[bytes]:
    seen: list[bytes] = []
    while time.monotonic() < deadline and until not in seen:
        try:
            seen.append(sock.recv(4096))
        except TimeoutError:
            continue
    return seen


@pytest.mark.skipif(os.geteuid() != 0, reason="live capture needs CAP_NET_RAW")
def test_run_notifies_ready_watchdog_and_stopping(tmp_path: Path) -> None:
    path = str(tmp_path / "notify")
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
        sock.bind(path)
        sock.settimeout(0.5)
        env = {**os.environ, "NOTIFY_SOCKET": path, "WATCHDOG_USEC": "1000000"}
        argv = [sys.executable, "-m", "egresswatch", "run", "--no-web", "-i", "lo"]
        proc = subprocess.Popen(
            [*argv, "--db", str(tmp_path / "e.db")], env=env, stderr=subprocess.PIPE, text=True
        )
        try:
            seen = _messages(sock, b"WATCHDOG=1", time.monotonic() + 60)
            assert seen[0] == b"READY=1\nSTATUS=capture live, store open", seen
            assert seen.count(b"WATCHDOG=1") == 1
            assert (tmp_path / "e.db").exists()  # READY came after the store was opened
        finally:
            proc.send_signal(signal.SIGTERM)
            _out, err = proc.communicate(timeout=30)
        assert b"STOPPING=1" in _messages(sock, b"STOPPING=1", time.monotonic() + 5)
    assert proc.returncode == 0, err
