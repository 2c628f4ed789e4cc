"""Test support: the agent's side of the control channel, real — a store with sessions and
alerts, its single writer, and the control server `egresswatch run` builds (`for_agent`).
"""

import shutil
import socket
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from egresswatch.control.server import ControlServer, for_agent
from egresswatch.store import open_store
from egresswatch.store.database import Store
from tests.api.server import sample_events, write_events, write_sessions_and_alerts


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
    control = for_agent(store.url, store.writer(batch_interval=0.02))
    control.open()
    control.start()
    try:
        yield Agent(db, store, control)
    finally:
        control.close()
        store.close()
