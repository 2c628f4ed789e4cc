"""`egresswatch session start|stop` and `alerts ack` ask the running agent when it listens, and
write directly when it does not."""

from egresswatch.store.alerts import AlertFilter, list_alerts
from egresswatch.store.sessions import get_session
from tests.api.server import egresswatch
from tests.control.agent import Agent


def test_session_commands_go_through_the_agent(agent: Agent) -> None:
    before = agent.jobs_done()
    sid = int(egresswatch("session", "start", "--label", "cli", "--db", str(agent.db)).stdout)
    stopped = egresswatch("session", "stop", "--db", str(agent.db)).stdout
    again = egresswatch("session", "stop", str(sid), "--db", str(agent.db), check=False)
    session = get_session(agent.store.engine, sid)
    assert stopped.strip() == f"session {sid}: clean"
    assert again.returncode == 1 and f"session {sid} is not open" in again.stderr
    assert session is not None and session.label == "cli" and session.end is not None
    assert agent.jobs_done() == before + 3


def test_alerts_ack_goes_through_the_agent(agent: Agent) -> None:
    alert_id = list_alerts(agent.store.engine, AlertFilter(only_open=True))[0].id
    before = agent.jobs_done()
    done = egresswatch("alerts", "ack", str(alert_id), "999999", "--db", str(agent.db), check=False)
    assert done.stdout == f"acknowledged {alert_id}\n"
    assert done.returncode == 1 and "no such alert: 999999" in done.stderr
    assert agent.jobs_done() == before + 1


def test_without_an_agent_they_write_directly(agent: Agent) -> None:
    agent.control.close()
    before = agent.jobs_done()
    sid = int(egresswatch("session", "start", "--db", str(agent.db)).stdout)
    assert egresswatch("session", "stop", str(sid), "--db", str(agent.db)).stdout.strip() == (
        f"session {sid}: clean"
    )
    assert agent.jobs_done() == before
