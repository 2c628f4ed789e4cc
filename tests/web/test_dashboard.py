"""The dashboard in real headless Chromium: pages render real data, live tail, hostile names inert,
phone width, dark theme, keyboard; no console errors, no CSP violations. Screenshots are kept in
build/test-artifacts/web/.
"""

import time
from pathlib import Path
from urllib.parse import urlsplit

from playwright.sync_api import Browser

from egresswatch.store.database import Store
from tests.api.server import HOSTILE_NAMES, WebServer
from tests.store.factory import process, tls_hello
from tests.web.conftest import Tab, open_tab


def test_overview_draws_the_timeline_destinations_and_latest_events(
    tab: Tab, server: WebServer
) -> None:
    start = time.monotonic()
    tab.page.goto(server.url + "/")
    tab.page.wait_for_selector("svg.chart rect.bar")
    drawn = time.monotonic() - start
    assert tab.page.locator("svg.chart rect.bar").count() >= 3
    legend = tab.page.locator(".legend").inner_text()
    assert "ollama" in legend and "llama.cpp" in legend
    assert tab.page.get_by_role("link", name="huggingface.co").first.is_visible()
    assert tab.page.locator("#latest tbody tr").count() == 10
    assert drawn < 5  # the bench measures it properly; this only catches a broken page
    tab.shot("overview")
    tab.assert_clean()


PRELOADED = {"/api/timeline", "/api/destinations", "/api/events", "/api/alerts", "/api/sessions"}


def drawn(tab: Tab) -> None:
    """Wait for the page's own sign that every part of the overview has drawn its answer."""
    tab.page.wait_for_selector("main[data-drawn=overview] svg.chart rect.bar")


def test_the_overview_draws_from_its_preloaded_answers_without_asking_again(
    tab: Tab, server: WebServer
) -> None:
    asked: list[str] = []
    tab.page.on("request", lambda r: asked.append(urlsplit(r.url).path))
    tab.page.goto(server.url + "/")
    drawn(tab)  # not a timer: every part has drawn, from whichever source
    assert tab.page.locator("#latest tbody tr").count() == 10
    assert tab.page.locator("#open-alerts li").count() >= 1
    assert PRELOADED.isdisjoint(asked), asked
    assert tab.page.locator("#preload").count() == 0  # taken, then removed
    # Later pages ask the API: a preloaded answer is used once, while the first page renders.
    with tab.page.expect_request(lambda r: urlsplit(r.url).path == "/api/events"):
        tab.page.evaluate("location.hash = '#/events'")
    tab.page.wait_for_selector("#events tbody tr")
    with tab.page.expect_request(lambda r: urlsplit(r.url).path == "/api/timeline"):
        tab.page.evaluate("location.hash = '#/'")
    tab.page.wait_for_selector("svg.chart rect.bar")
    tab.assert_clean()


def test_without_preload_the_overview_asks_the_api(tab: Tab, server: WebServer) -> None:
    asked: list[str] = []
    tab.page.on("request", lambda r: asked.append(urlsplit(r.url).path))
    tab.page.goto(server.url + "/?preload=0")
    drawn(tab)
    assert tab.page.locator("#latest tbody tr").count() == 10
    assert set(asked) >= PRELOADED
    tab.assert_clean()


def test_a_live_event_appears_within_a_second(
    tab: Tab, server: WebServer, live_store: tuple[Path, Store]
) -> None:
    tab.page.goto(server.url + "/")
    tab.page.wait_for_selector("#latest tbody tr")
    tab.page.wait_for_timeout(300)  # the EventSource connects after the first render
    writer = live_store[1].writer()
    assert writer.submit(tls_hello(time.time(), "live-tail.example.org", process(555, "ollama")))
    assert writer.flush(10)
    stored = time.monotonic()
    tab.page.locator("#latest").get_by_text("live-tail.example.org").wait_for(timeout=5000)
    assert time.monotonic() - stored < 1.0
    tab.shot("live-tail")
    tab.assert_clean()


def test_events_table_drills_into_process_and_destination(tab: Tab, server: WebServer) -> None:
    tab.page.goto(server.url + "/#/events?tool=ollama")
    tab.page.wait_for_selector("#events tbody tr")
    assert set(tab.page.locator("#events tbody tr td:nth-child(6)").all_inner_texts()) == {"ollama"}
    tab.page.locator("#events").get_by_role("link", name="huggingface.co").first.click()
    tab.page.get_by_text("Matched catalog entry").wait_for()
    assert "Source:" in tab.page.locator("main").inner_text()
    tab.shot("destination")
    tab.page.goto(server.url + "/#/process/4242")
    tab.page.wait_for_selector(".ancestry li")
    text = tab.page.locator("main").inner_text()
    assert "/usr/local/bin/ollama serve" in text and "0f" * 32 in text and "systemd" in text
    tab.shot("process")
    tab.assert_clean()


def test_hostile_names_render_as_inert_text(tab: Tab, server: WebServer) -> None:
    tab.page.goto(server.url + "/#/events?process=" + "%3Cimg")  # no match: then the real one
    tab.page.goto(server.url + "/#/process/9001")
    tab.page.wait_for_selector(".ancestry li")
    tab.page.goto(server.url + "/#/events")
    tab.page.wait_for_selector("#events tbody tr")
    main = tab.page.locator("main")
    text = main.inner_text()
    assert HOSTILE_NAMES[0] in text and HOSTILE_NAMES[1] in text
    assert "\\u202egnp.evil.example" in text  # the override is shown, not obeyed
    assert "\u202e" not in text
    assert main.locator("img").count() == 0
    handlers = tab.page.evaluate(
        "[...document.querySelectorAll('*')].filter(e => [...e.attributes]"
        ".some(a => a.name.startsWith('on'))).length"
    )
    assert handlers == 0
    assert tab.page.title() == "egresswatch"
    long_cell = main.get_by_text(HOSTILE_NAMES[3][:40]).first
    box = long_cell.bounding_box()
    assert box is not None and box["width"] <= 1280
    tab.page.locator("#events").get_by_role("link").filter(has_text="onmouseover").first.hover()
    assert tab.page.title() == "egresswatch"
    tab.shot("hostile-names")
    tab.assert_clean()


def test_tools_page_shows_report_cards(tab: Tab, server: WebServer) -> None:
    tab.page.goto(server.url + "/#/tools")
    tab.page.wait_for_selector(".card.tool")
    cards = tab.page.locator(".card.tool")
    assert cards.count() == 2
    text = tab.page.locator("main").inner_text()
    assert "Went beyond model downloads: cloud-llm-api" in text
    assert "Only model downloads and package registries" in text
    tab.shot("tools")
    tab.assert_clean()


def test_phone_width_has_no_page_level_horizontal_scroll(
    browser: Browser, server: WebServer
) -> None:
    tab = open_tab(browser, viewport={"width": 390, "height": 844}, is_mobile=True)
    try:
        for route, ready in (("/", "svg.chart rect.bar"), ("/#/events", "#events tbody tr"),
                             ("/#/process/9001", ".ancestry li")):  # fmt: skip
            tab.page.goto(server.url + route)
            tab.page.wait_for_selector(ready)
            overflow = tab.page.evaluate(
                "document.documentElement.scrollWidth - document.documentElement.clientWidth"
            )
            assert overflow <= 0, route
            tab.shot("phone" + route.replace("/", "-").replace("#", ""))
        tab.assert_clean()
    finally:
        tab.page.context.close()


def test_dark_theme_follows_the_system_and_the_toggle(browser: Browser, server: WebServer) -> None:
    tab = open_tab(browser, color_scheme="dark", viewport={"width": 1280, "height": 900})
    background = "getComputedStyle(document.body).backgroundColor"
    try:
        tab.page.goto(server.url + "/")
        tab.page.wait_for_selector("svg.chart rect.bar")
        assert tab.page.evaluate(background) == "rgb(18, 19, 22)"
        tab.shot("overview-dark")
        tab.page.get_by_role("button", name="Switch light or dark theme").click()
        assert tab.page.evaluate(background) == "rgb(247, 247, 245)"
        tab.assert_clean()
    finally:
        tab.page.context.close()


def test_keyboard_only_navigation(tab: Tab, server: WebServer) -> None:
    tab.page.goto(server.url + "/")
    tab.page.wait_for_selector("svg.chart rect.bar")
    tab.page.keyboard.press("e")
    tab.page.wait_for_selector("#events tbody tr")
    tab.page.keyboard.press("/")
    assert tab.page.evaluate("document.activeElement.name") == "since"
    tab.page.keyboard.press("Tab")
    assert tab.page.evaluate("document.activeElement.name") == "kind"
    tab.page.keyboard.type("tls")
    tab.page.keyboard.press("Enter")
    tab.page.wait_for_url("**/#/events?*kind=tls*")
    tab.page.wait_for_selector("#events tbody tr")
    kinds = set(tab.page.locator("#events tbody tr td:nth-child(2)").all_inner_texts())
    assert kinds == {"tls"}
    tab.assert_clean()


def test_dragging_across_the_chart_zooms_into_that_range(tab: Tab, server: WebServer) -> None:
    tab.page.goto(server.url + "/")
    tab.page.wait_for_selector("svg.chart rect.bar")
    box = tab.page.locator("svg.chart").bounding_box()
    assert box is not None
    y = box["y"] + box["height"] / 2
    tab.page.mouse.move(box["x"] + box["width"] * 0.5, y)
    tab.page.mouse.down()
    tab.page.mouse.move(box["x"] + box["width"] * 0.99, y, steps=5)
    tab.page.mouse.up()
    tab.page.wait_for_url("**/#/?*since=*until=*", wait_until="commit")
    tab.page.wait_for_selector("svg.chart rect.bar")
    assert tab.page.get_by_role("link", name="Reset zoom").is_visible()
    tab.assert_clean()
