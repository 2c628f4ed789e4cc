"""Test support: the agent's side of the control channel, real — a store with sessions and
alerts, its single writer, and the control server `egresswatch run` builds (`for_agent`).
"""

import contextlib
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from egresswatch.control.server import ControlServer, for_agent
from egresswatch.store import open_store
from egresswatch.store.database import Store
from egresswatch.webproc import WebProcess, start_web
from tests.api.server import (
    START_TIMEOUT,
    free_port,
    sample_events,
    write_events,
    write_sessions_and_alerts,
)


@dataclass
class Agent:
    db: Path
    store: Store
    control: ControlServer

    def jobs_done(self) -> int:
        return self.store.writer().counters().get("store.jobs.done", 0)

    def send(self, data: bytes, *, shut: bool = False) -> bytes:
        """Raw bytes to the socket; the answer line (b"" if none)."""
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
            sock.settimeout(10)
            sock.connect(str(self.control.path))
            with contextlib.suppress(BrokenPipeError):  # the agent may answer and close early
                sock.sendall(data)
            if shut:
                sock.shutdown(socket.SHUT_WR)
            return sock.makefile("rb").readline()


@contextmanager
def shared_dir(prefix: str) -> Iterator[Path]:
    """Not under pytest's 0700 tmp root: the unprivileged web user must reach the store."""
    made = Path(tempfile.mkdtemp(prefix=prefix, dir="/tmp"))
    made.chmod(0o755)
    try:
        yield made
    finally:
        shutil.rmtree(made, ignore_errors=True)


@contextmanager
def running_agent(directory: Path) -> Iterator[Agent]:
    """A filled store at directory/events.db and its agent's control server, listening."""
    db = directory / "events.db"
    now = time.time()
    write_events(db, sample_events(now))
    write_sessions_and_alerts(db, now)
    store = open_store(str(db))
    control = for_agent(store.url, store.writer(batch_interval=0.02), store.engine)
    control.open()
    control.start()
    try:
        yield Agent(db, store, control)
    finally:
        control.close()
        store.close()


@contextmanager
def dashboard_of(agent: Agent, python: str) -> Iterator[WebProcess]:
    """The dashboard as `egresswatch run` starts it (webproc: as nobody, store read-only),
    run by `python` (one the unprivileged user can execute); ready when its health answers.
    """
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(sys, "executable", python)  # what webproc starts
        web = start_web(agent.store.url, "127.0.0.1", free_port())
    agent.control.pin_web(web.process)  # as `egresswatch run` does
    try:
        _wait_ready(web)
        yield web
    finally:
        web.stop()


def _wait_ready(web: WebProcess) -> None:
    deadline = time.monotonic() + START_TIMEOUT
    while time.monotonic() < deadline:
        assert web.process.poll() is None, "the web process exited"
        try:
            httpx.get(web.url + "api/health", timeout=1)
            return
        except httpx.TransportError:
            time.sleep(0.1)
    raise AssertionError("the web process did not start")


# A second process asking for a session start on the socket argv[1]; prints the answer line.
_ASK = (
    "import socket, sys, contextlib\n"
    "s = socket.socket(socket.AF_UNIX)\n"
    "s.connect(sys.argv[1])\n"
    "with contextlib.suppress(BrokenPipeError):\n"
    '    s.sendall(b\'{"cmd": "session_start"}\\n\')\n'
    "print(s.makefile().readline())\n"
)


def ask_as(socket_path: Path, *ids: str) -> subprocess.CompletedProcess[str]:
    """A session start asked by another real process, run as `setpriv IDS` (e.g. --reuid=N)."""
    return subprocess.run(
        ["setpriv", *ids, "--clear-groups", "/usr/bin/python3", "-c", _ASK, str(socket_path)],
        capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
