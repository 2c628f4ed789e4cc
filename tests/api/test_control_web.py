"""The dashboard process `egresswatch run` starts (webproc: unprivileged, store read-only)
changes the store through the agent's control channel, and says why it cannot without one."""

import json
import pwd
import re
import subprocess
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from egresswatch.control import server
from egresswatch.store.alerts import AlertFilter, list_alerts
from egresswatch.store.sessions import get_session
from egresswatch.webproc import WebProcess
from tests.api.server import HOSTILE_NAMES
from tests.cli.session import egresswatch
from tests.control.agent import Agent, ask_as, dashboard_of, running_agent, shared_dir
from tests.control.unprivileged import unprivileged_python


@pytest.fixture
def agent() -> Iterator[Agent]:
    with shared_dir("egresswatch-ctlweb-") as directory, running_agent(directory) as running:
        yield running


@pytest.fixture
def web(agent: Agent) -> Iterator[WebProcess]:
    with dashboard_of(agent, unprivileged_python()) as started:
        yield started


def uid_of(pid: int) -> int:
    line = next(
        x for x in Path(f"/proc/{pid}/status").read_text().splitlines() if x.startswith("Uid:")
    )
    return int(line.split()[1])


def test_unprivileged_dashboard_acks_and_runs_sessions_via_the_agent(
    agent: Agent, web: WebProcess
) -> None:
    alert_id = list_alerts(agent.store.engine, AlertFilter(only_open=True))[0].id
    before = agent.jobs_done()
    with httpx.Client(base_url=web.url, timeout=15) as client:
        acked = client.post(f"api/alerts/{alert_id}/ack")
        started = client.post("api/sessions", json={"label": "from the web", "tools": ["ollama"]})
        sid = started.json()["id"]
        stopped = client.post(f"api/sessions/{sid}/stop")
        again = client.post(f"api/sessions/{sid}/stop")
    assert uid_of(web.process.pid) == 65534 and web.user == "nobody"
    assert acked.status_code == 200 and acked.json() == {"acknowledged": [alert_id]}
    assert started.status_code == 201 and started.json()["verdict"] == "open"
    assert stopped.status_code == 200 and stopped.json()["verdict"] == "clean"
    assert again.status_code == 409
    session = get_session(agent.store.engine, sid)
    assert session is not None and session.label == "from the web"
    assert list_alerts(agent.store.engine, AlertFilter(only_open=True))[0].id != alert_id
    assert agent.jobs_done() == before + 4  # each one by the agent's single writer


def test_without_the_agent_the_dashboard_says_why(agent: Agent, web: WebProcess) -> None:
    agent.control.close()
    with httpx.Client(base_url=web.url, timeout=15) as client:
        refused = client.post("api/sessions", json={})
    assert refused.status_code == 503
    assert "read-only for this user" in refused.json()["detail"]
    assert "no agent answers on" in refused.json()["detail"]


def cli(*args: str, key: Path) -> subprocess.CompletedProcess[str]:
    return egresswatch(*args, env={"EGRESSWATCH_REPORT_KEY": str(key)})


def test_the_dashboard_serves_the_report_the_agent_signed(
    agent: Agent, web: WebProcess, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    key = tmp_path / "report-key.pem"  # the agent's (root's) key: the dashboard cannot read it
    monkeypatch.setenv("EGRESSWATCH_REPORT_KEY", str(key))
    with httpx.Client(base_url=web.url, timeout=30) as client:
        sid = client.get("api/sessions").json()["sessions"][1]["id"]
        files = {
            fmt: client.get(f"api/sessions/{sid}/report", params={"format": fmt})
            for fmt in ("json", "md", "html")
        }
    by_cli = cli("report", str(sid), "--format", "json", "--db", agent.store.url, key=key)
    assert by_cli.returncode == 0, by_cli.stderr
    ours, theirs = files["json"].json(), json.loads(by_cli.stdout)
    assert ours["report"]["evidence_sha256"] == theirs["report"]["evidence_sha256"]
    assert ours["report"]["evidence"] == theirs["report"]["evidence"]
    assert ours["signature"]["public_key"] == theirs["signature"]["public_key"]
    assert "unsigned" not in ours and key.stat().st_mode & 0o077 == 0
    for fmt, got in files.items():
        assert got.status_code == 200 and got.headers["x-egresswatch-signature"] == "ed25519"
        saved = tmp_path / f"web.{fmt}"
        saved.write_bytes(got.content)
        verified = cli("report", "verify", str(saved), "--db", agent.store.url, key=key)
        assert verified.returncode == 0 and verified.stdout.startswith("OK: signed"), fmt
    page, md = files["html"].text, files["md"].text
    assert "<img" not in page and "&lt;img src=x onerror=" in page
    assert HOSTILE_NAMES[0].startswith("<img") and "\\<img src=x onerror=" in md
    assert re.search(r"(?<!\\)<(?!!-- egresswatch-)", md) is None  # only the report's comments
    tampered = tmp_path / "tampered.md"
    tampered.write_bytes(files["md"].content.replace(b"egress", b"egresS", 1))
    refused = cli("report", "verify", str(tampered), "--db", agent.store.url, key=key)
    assert refused.returncode == 1 and "does not match" in refused.stderr


def test_another_nobody_process_is_refused_the_dashboard_is_not(
    agent: Agent, web: WebProcess
) -> None:
    assert web.user == "nobody" and agent.control.pinned_uid == 65534
    assert 65534 not in agent.control.allowed_uids  # nobody is trusted by pid only
    other = ask_as(agent.control.path, "--reuid=65534", "--regid=65534")
    assert other.returncode == 0, other.stderr  # it may connect (the socket's group)...
    refused = json.loads(other.stdout)
    assert refused["error"] == "forbidden" and "shared account" in refused["detail"]  # ...not ask
    with httpx.Client(base_url=web.url, timeout=15) as client:
        started = client.post("api/sessions", json={"label": "pinned"})
    assert started.status_code == 201  # the dashboard's own requests still go through
    assert agent.control.counters().snapshot()["control.refused.peer"] == 1
    assert Path(f"/proc/{web.process.pid}/mem").stat().st_uid == 0  # non-dumpable: no ptrace


def test_a_dedicated_web_user_is_trusted_by_uid(
    agent: Agent, monkeypatch: pytest.MonkeyPatch
) -> None:
    dedicated = pwd.struct_passwd(("egresswatch-web", "x", 64999, 64998, "", "/", "/bin/false"))
    monkeypatch.setattr(server, "web_user", lambda: dedicated)
    control = server.for_agent(agent.store.url, agent.store.writer())  # built, not opened
    assert 64999 in control.allowed_uids and control.pinned_uid is None
    assert control.group == 64998
