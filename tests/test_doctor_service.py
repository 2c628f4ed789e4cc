"""`egresswatch doctor`'s service checks against real things: a real store with a real status row,
a real HTTP server on loopback, the agent's own sock_diag client, setns with and without
CAP_SYS_ADMIN."""

import http.server
import os
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from egresswatch.doctor_service import (
    check_own_sock_diag,
    check_setns,
    check_store,
    check_units,
    check_web,
)
from egresswatch.store.database import open_store
from egresswatch.store.status import AgentStatus, write_status

ROOT = os.geteuid() == 0


def test_units_say_when_systemd_is_not_running() -> None:
    if Path("/run/systemd/system").is_dir():
        pytest.skip("systemd runs here")
    checks = check_units()
    assert [c.detail for c in checks] == ["systemd not running"] * 2
    assert not any(c.ok for c in checks)


def test_store_reports_the_agent_heartbeat(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    db = tmp_path / "events.db"
    monkeypatch.setenv("EGRESSWATCH_DB", f"sqlite:///{db}")
    monkeypatch.setenv("EGRESSWATCH_CONFIG", str(tmp_path / "none.toml"))
    (tmp_path / "none.toml").write_text("")
    assert not check_store().ok  # no store yet
    store = open_store(f"sqlite:///{db}")
    assert check_store().detail == "readable, at schema head"
    for age, fresh in ((2.0, True), (300.0, False)):
        status = AgentStatus(1234, time.time() - 600, time.time() - age, None, 0, {})
        write_status(store.engine, status)
        found = check_store()
        assert found.ok is fresh and "pid 1234" in found.detail
    store.close()


@pytest.fixture
def web_root(tmp_path: Path) -> Iterator[str]:
    (tmp_path / "api").mkdir()
    (tmp_path / "api" / "health").write_text("{}")

    class Quiet(http.server.SimpleHTTPRequestHandler):
        def log_message(self, *_args: object) -> None:
            pass

    handler = lambda *a: Quiet(*a, directory=str(tmp_path))  # noqa: E731
    with http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler) as server:
        thread = threading.Thread(target=server.serve_forever, daemon=True)
        thread.start()
        yield f"http://127.0.0.1:{server.server_address[1]}"
        server.shutdown()


def test_web_endpoint(web_root: str) -> None:
    assert check_web(f"{web_root}/api/health").ok
    missing = check_web(f"{web_root}/nope")
    assert not missing.ok and "HTTP 404" in missing.detail


def test_web_endpoint_down() -> None:
    with socket.create_server(("127.0.0.1", 0)) as sock:
        port = sock.getsockname()[1]
    assert not check_web(f"http://127.0.0.1:{port}/api/health").ok


def test_own_sock_diag_client_finds_a_real_connection() -> None:
    found = check_own_sock_diag()
    assert found.ok, found


@pytest.mark.skipif(not ROOT, reason="needs root to have CAP_SYS_ADMIN to drop")
def test_setns_needs_cap_sys_admin() -> None:
    assert check_setns().ok
    code = (
        "from egresswatch.doctor_service import check_setns\n"
        "c = check_setns()\nprint(c.ok, c.detail)"
    )
    drop = ["setpriv", "--bounding-set=-sys_admin", "--inh-caps=-sys_admin"]
    done = subprocess.run(
        [*drop, sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=60
    )
    assert done.stdout.strip() == "False Operation not permitted"
