"""`egresswatch run` end to end: its unprivileged dashboard starts and stops a session through
the agent's control socket, which exists while the agent runs and is gone after it stops."""

import os
import signal
import stat
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.api.server import egresswatch, free_port
from tests.control.agent import shared_dir
from tests.control.unprivileged import unprivileged_python
from tests.lab import Lab, lab, lab_unavailable

pytestmark = [pytest.mark.lab, pytest.mark.flaky(reruns=2, reruns_delay=1)]


@pytest.fixture
def net() -> Iterator[Lab]:
    reason = lab_unavailable()
    if reason:
        pytest.skip(reason)
    with lab() as made:
        yield made


def _wait_for(path: Path, deadline: float) -> None:
    while not path.is_socket():
        assert time.monotonic() < deadline, f"{path} never appeared"
        time.sleep(0.1)


def _wait_web(url: str, deadline: float) -> None:
    while True:
        try:
            httpx.get(url + "api/health", timeout=2)
            return
        except httpx.TransportError:
            assert time.monotonic() < deadline, "the dashboard never answered"
            time.sleep(0.2)


def test_run_dashboard_changes_the_store_through_the_agent(net: Lab) -> None:
    python = unprivileged_python()
    with shared_dir("egresswatch-ctlrun-") as directory:
        db, port = directory / "events.db", free_port()
        control = directory / "events.db.control"
        proc = subprocess.Popen(
            [python, "-m", "egresswatch", "run", "--db", str(db), "--web-port", str(port)],
            stderr=subprocess.PIPE, text=True, env={**os.environ, "COLUMNS": "200"},
        )  # fmt: skip
        url = f"http://127.0.0.1:{port}/"
        try:
            _wait_for(control, time.monotonic() + 30)
            _wait_web(url, time.monotonic() + 30)
            st = control.stat()
            started = httpx.post(url + "api/sessions", json={"label": "lab"}, timeout=15)
            sid = started.json()["id"]
            stopped = egresswatch("session", "stop", str(sid), "--db", str(db))
        finally:
            proc.send_signal(signal.SIGINT)
            proc.communicate(timeout=30)
        assert stat.S_IMODE(st.st_mode) == 0o660 and st.st_gid == 65534
        assert started.status_code == 201 and started.json()["label"] == "lab"
        assert stopped.stdout.strip() == f"session {sid}: clean"
        assert not control.exists()
