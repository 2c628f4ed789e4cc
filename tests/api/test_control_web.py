"""The dashboard process `egresswatch run` starts (webproc: unprivileged, store read-only)
changes the store through the agent's control channel, and says why it cannot without one."""

from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from egresswatch.store.alerts import AlertFilter, list_alerts
from egresswatch.store.sessions import get_session
from egresswatch.webproc import WebProcess
from tests.control.agent import Agent, dashboard_of, running_agent, shared_dir
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
