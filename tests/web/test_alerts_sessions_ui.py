"""Alerts and sessions in the dashboard (real Chromium, real server, real store)."""

import httpx
from playwright.sync_api import expect

from tests.api.server import HOSTILE_NAMES, WebServer
from tests.web.conftest import Tab


def test_an_acknowledged_alert_leaves_the_open_list(tab: Tab, server: WebServer) -> None:
    tab.page.goto(server.url + "/")
    items = tab.page.locator("#open-alerts li")
    items.first.wait_for()
    before = items.count()
    assert before == 2
    assert HOSTILE_NAMES[0] in tab.page.locator("#open-alerts").inner_text()
    tab.shot("alerts-open")
    first_id = items.first.get_attribute("data-id")
    items.first.get_by_role("button", name="Acknowledge").click()
    expect(items).to_have_count(1)
    open_ids = {a["id"] for a in httpx.get(server.url + "/api/alerts?open=true").json()["alerts"]}
    assert first_id is not None and int(first_id) not in open_ids and len(open_ids) == 1
    tab.page.reload()
    tab.page.locator("#open-alerts li").first.wait_for()
    assert tab.page.locator("#open-alerts li").count() == 1
    tab.assert_clean()


def test_session_report_page_and_session_controls(tab: Tab, server: WebServer) -> None:
    tab.page.goto(server.url + "/#/sessions")
    tab.page.wait_for_selector("main table tbody tr")
    assert "[object" not in tab.page.locator("main").inner_text()
    verdicts = tab.page.locator(".verdict-badge").all_inner_texts()
    assert "egress" in verdicts and "open" in verdicts
    tab.page.get_by_role("button", name="Start a manual session").click()
    expect(tab.page.locator("main table tbody tr")).to_have_count(3)
    egress_link = tab.page.locator("tr", has=tab.page.locator(".verdict-badge.egress")).get_by_role(
        "link"
    )
    egress_link.first.click()
    tab.page.get_by_text("Evidence (").wait_for()
    text = tab.page.locator("main").inner_text()
    assert "\\u202egnp.evil.example" in text  # the hostile label, escaped
    assert "Unsigned: no egresswatch agent is running to sign it" in text  # no agent here
    assert tab.page.locator("main .alerts li").count() == 2
    assert tab.page.locator("main table tbody tr").count() == len(HOSTILE_NAMES)
    assert tab.page.title() == "egresswatch"
    tab.shot("session-report")
    tab.assert_clean()
