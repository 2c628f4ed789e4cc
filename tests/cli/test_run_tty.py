"""`egresswatch run` on a terminal (a real pseudo-terminal): the live status line, then the end
summary; loopback traffic only."""

import os
import pty
import select
import signal
import socket
import sys
import time
from pathlib import Path

import dns.message
import pytest

from tests.lab import lab_unavailable

pytestmark = [pytest.mark.lab, pytest.mark.flaky(reruns=2, reruns_delay=1)]


def _read_for(fd: int, seconds: float) -> bytes:
    out, end = b"", time.time() + seconds
    while time.time() < end:
        ready, _, _ = select.select([fd], [], [], 0.2)
        if ready:
            try:
                chunk = os.read(fd, 4096)
            except OSError:  # the child closed the terminal
                break
            if not chunk:
                break
            out += chunk
    return out


def test_status_line_on_a_terminal_then_summary(tmp_path: Path) -> None:
    reason = lab_unavailable()
    if reason:
        pytest.skip(reason)
    argv = [sys.executable, "-m", "egresswatch", "run", "--db", str(tmp_path / "e.db"), "-i", "lo"]
    pid, fd = pty.fork()
    if pid == 0:  # pragma: no cover - the child
        os.execv(argv[0], argv)
    try:
        out = _read_for(fd, 4.0)
        query = dns.message.make_query("tty-status.test", "A").to_wire()
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as udp:
            for _ in range(5):
                udp.sendto(query, ("127.0.0.1", 53))
                out += _read_for(fd, 0.5)
        out += _read_for(fd, 2.0)
    finally:
        os.kill(pid, signal.SIGINT)
        out += _read_for(fd, 15.0)
        _, status = os.waitpid(pid, 0)
    text = out.decode(errors="replace")
    assert os.waitstatus_to_exitcode(status) == 0, text
    assert "\r\x1b[K" in text and " events (" in text and " dropped" in text
    assert "egresswatch stopped after " in text and "\nLLM tools seen: " in text.replace("\r", "")
