"""Acknowledge and Start session in the dashboard `egresswatch run` starts: an unprivileged,
read-only web process whose changes go through the agent's control channel (real Chromium,
real agent writer and control socket, real store)."""

from collections.abc import Iterator

import pytest
from playwright.sync_api import expect

from egresswatch.store.alerts import AlertFilter, list_alerts
from egresswatch.store.sessions import list_sessions
from egresswatch.webproc import WebProcess
from tests.control.agent import Agent, dashboard_of, running_agent, shared_dir
from tests.control.unprivileged import unprivileged_python
from tests.web.conftest import Tab


@pytest.fixture
def agent() -> Iterator[Agent]:
    with shared_dir("egresswatch-ctlui-") as directory, running_agent(directory) as running:
        yield running


@pytest.fixture
def dashboard(agent: Agent) -> Iterator[WebProcess]:
    with dashboard_of(agent, unprivileged_python()) as web:
        yield web


def test_acknowledge_in_the_run_dashboard(tab: Tab, agent: Agent, dashboard: WebProcess) -> None:
    before = agent.jobs_done()
    tab.page.goto(dashboard.url)
    items = tab.page.locator("#open-alerts li")
    items.first.wait_for()
    assert items.count() == 2
    first_id = items.first.get_attribute("data-id")
    items.first.get_by_role("button", name="Acknowledge").click()
    expect(items).to_have_count(1)
    open_ids = [a.id for a in list_alerts(agent.store.engine, AlertFilter(only_open=True))]
    assert first_id is not None and int(first_id) not in open_ids and len(open_ids) == 1
    assert agent.jobs_done() == before + 1  # made by the agent's single writer
    tab.shot("run-dashboard-ack")
    tab.assert_clean()


def test_start_session_in_the_run_dashboard(tab: Tab, agent: Agent, dashboard: WebProcess) -> None:
    before = agent.jobs_done()
    tab.page.goto(dashboard.url + "#/sessions")
    tab.page.wait_for_selector("main table tbody tr")
    tab.page.get_by_role("button", name="Start a manual session").click()
    expect(tab.page.locator("main table tbody tr")).to_have_count(3)
    manual = [s for s in list_sessions(agent.store.engine, None) if s.trigger == "manual"]
    assert [s.end for s in manual].count(None) == 1
    assert agent.jobs_done() == before + 1
    tab.shot("run-dashboard-session")
    tab.assert_clean()
