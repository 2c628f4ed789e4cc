"""`egresswatch run` starts the dashboard as a separate process that is neither root nor capable,
and a request made in the lab shows up through it (health from the heartbeat, the event itself)."""

import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.api.server import free_port
from tests.lab import Lab

pytestmark = [pytest.mark.lab, pytest.mark.flaky(reruns=2, reruns_delay=1)]


SHARED_PYTHON = "EGRESSWATCH_TEST_SHARED_PYTHON"


@pytest.fixture
def python() -> str:
    """An interpreter the unprivileged web user can run (a venv under /root is not one)."""
    for candidate in (sys.executable, os.environ.get(SHARED_PYTHON)):
        if candidate and _runs_as_nobody(candidate):
            return candidate
    pytest.skip(
        f"nobody cannot run {sys.executable}; set {SHARED_PYTHON} to a shared venv's python"
    )


def _runs_as_nobody(python: str) -> bool:
    try:
        done = subprocess.run([python, "-c", "import egresswatch"], user="nobody", group="nogroup",
                              capture_output=True, timeout=60, check=False)  # fmt: skip
    except (PermissionError, KeyError):
        return False
    return done.returncode == 0


@pytest.fixture
def store_dir() -> Iterator[Path]:
    # Not under pytest's 0700 tmp root: the unprivileged web user must reach the file.
    made = Path(tempfile.mkdtemp(prefix="egresswatch-web-lab-", dir="/tmp"))
    yield made
    shutil.rmtree(made, ignore_errors=True)


def _children(pid: int) -> list[int]:
    found = Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
    return [int(p) for p in found]


def _status(pid: int) -> dict[str, str]:
    lines = Path(f"/proc/{pid}/status").read_text().splitlines()
    return {k: v.strip() for k, _, v in (line.partition(":") for line in lines)}


def _wait_health(url: str, deadline: float) -> dict[str, object]:
    while time.monotonic() < deadline:
        try:
            health: dict[str, object] = httpx.get(url + "api/health", timeout=2).json()
            if health["status"] == "ok":
                return health
        except httpx.TransportError:
            pass
        time.sleep(0.2)
    raise AssertionError("the dashboard never reported a live agent")


def test_run_serves_the_dashboard_unprivileged(net: Lab, store_dir: Path, python: str) -> None:
    port = free_port()
    proc = subprocess.Popen(
        [python, "-m", "egresswatch", "run", "--db", str(store_dir / "events.db"),
         "--web-port", str(port)],
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "COLUMNS": "200"},
    )  # fmt: skip
    assert proc.stderr is not None
    try:
        lines: list[str] = []
        for _ in range(6):  # "recording to", its follow-up command, then the dashboard's URL
            lines.append(proc.stderr.readline())
            if "dashboard at" in lines[-1] or not lines[-1]:
                break
        assert any("recording to" in line for line in lines), lines
        assert f"dashboard at http://127.0.0.1:{port}/" in lines[-1], lines
        url = f"http://127.0.0.1:{port}/"
        health = _wait_health(url, time.monotonic() + 30)
        web = [
            pid
            for pid in _children(proc.pid)
            if b"web" in Path(f"/proc/{pid}/cmdline").read_bytes()
        ]
        assert len(web) == 1
        status = _status(web[0])
        assert status["Uid"].split()[1] != "0" and status["Gid"].split()[1] != "0"
        assert int(status["CapPrm"], 16) == int(status["CapEff"], 16) == 0
        assert int(status["CapAmb"], 16) == 0
        assert health["agent"] is not None
        script = net.tool_script("ollama")
        request = [str(script), "https", "registry.ollama.ai", "--connect", net.server_ip]
        subprocess.run([*request, "--linger", "0.5"], check=True, capture_output=True, timeout=60)
        deadline = time.monotonic() + 15
        hosts: set[str] = set()
        while time.monotonic() < deadline and "registry.ollama.ai" not in hosts:
            page = httpx.get(url + "api/events", params={"host": "registry.ollama.ai"}).json()
            hosts = {e["host"] for e in page["events"]}
            time.sleep(0.3)
        assert "registry.ollama.ai" in hosts
    finally:
        proc.send_signal(signal.SIGINT)
        proc.communicate(timeout=30)
