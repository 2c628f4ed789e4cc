"""The dashboard on a fleet store, in real Chromium: the events table names each event's node
(as text, "unknown" before nodes existed) and filters by it from the form or a node link."""

import time
from collections.abc import Iterator

import pytest
from playwright.sync_api import expect

from tests.api.server import WebServer, web_server
from tests.api.test_nodes import HOSTILE_NODE, fleet_db
from tests.web.conftest import Tab

NODE_COLUMN = "#events tbody tr td:nth-child(8)"


@pytest.fixture(scope="module")
def fleet_web(tmp_path_factory: pytest.TempPathFactory) -> Iterator[WebServer]:
    db = tmp_path_factory.mktemp("fleet") / "events.db"
    fleet_db(db, time.time())
    with web_server(db) as server:
        yield server


def test_events_show_and_filter_by_node(tab: Tab, fleet_web: WebServer) -> None:
    page = tab.page
    page.goto(fleet_web.url + "/#/events")
    page.wait_for_selector("#events tbody tr")
    assert page.locator("#events thead th").last.inner_text() == "Node"
    nodes = page.locator(NODE_COLUMN).all_inner_texts()
    assert nodes == ["unknown", HOSTILE_NODE, "box-a", "box-b", "box-a"]
    assert page.locator("main img").count() == 0  # the hostile node is text, not markup
    page.fill("input[name=node]", "box-b")
    page.click("form.filters button[type=submit]")
    expect(page.locator("#events tbody tr")).to_have_count(1)
    assert page.locator(NODE_COLUMN).all_inner_texts() == ["box-b"]
    page.goto(fleet_web.url + "/#/events")
    page.wait_for_selector("#events tbody tr:nth-child(5)")
    page.locator(NODE_COLUMN).get_by_role("link", name="box-a").first.click()
    expect(page.locator("#events tbody tr")).to_have_count(2)
    assert page.locator(NODE_COLUMN).all_inner_texts() == ["box-a", "box-a"]
    tab.shot("nodes")
    tab.assert_clean()
