"""A real headless Chromium (Debian's) driven by Playwright, against a real `egresswatch web`."""

import shutil
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from playwright.sync_api import Browser, Page, sync_playwright

from egresswatch.store import open_store
from egresswatch.store.database import Store
from tests.api.server import (
    WebServer,
    sample_events,
    web_server,
    write_events,
    write_sessions_and_alerts,
)

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
    "--disable-component-update", "--disable-sync",
]  # fmt: skip
ARTIFACTS = Path(__file__).resolve().parents[2] / "build" / "test-artifacts" / "web"
# Records CSP violations from inside the page (they are not always console messages).
WATCH_CSP = """
window.__csp = [];
document.addEventListener("securitypolicyviolation",
  (e) => window.__csp.push(e.violatedDirective + " " + e.blockedURI));
"""


@pytest.fixture(scope="session")
def browser() -> Iterator[Browser]:
    if shutil.which(CHROMIUM) is None:
        pytest.skip("Debian's chromium is not installed (apt-get install chromium)")
    with sync_playwright() as pw:
        chromium = pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield chromium
        chromium.close()


@pytest.fixture(scope="module")
def live_store(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Path, Store]]:
    db = tmp_path_factory.mktemp("web") / "events.db"
    now = time.time()
    write_events(db, sample_events(now))
    write_sessions_and_alerts(db, now)
    store = open_store(str(db))
    store.writer(batch_interval=0.02)
    yield db, store
    store.close()


@pytest.fixture(scope="module")
def server(live_store: tuple[Path, Store]) -> Iterator[WebServer]:
    with web_server(live_store[0]) as running:
        yield running


@dataclass
class Tab:
    """A page plus everything it complained about."""

    page: Page
    console_errors: list[str] = field(default_factory=list)

    def csp_violations(self) -> list[str]:
        found: list[str] = self.page.evaluate("window.__csp || []")
        return found

    def shot(self, name: str) -> Path:
        ARTIFACTS.mkdir(parents=True, exist_ok=True)
        path = ARTIFACTS / f"{name}.png"
        self.page.screenshot(path=str(path), full_page=True)
        return path

    def assert_clean(self) -> None:
        assert self.console_errors == []
        assert self.csp_violations() == []


def open_tab(browser: Browser, **context: object) -> Tab:
    ctx = browser.new_context(**context)  # type: ignore[arg-type]
    page = ctx.new_page()
    page.add_init_script(WATCH_CSP)
    tab = Tab(page)
    page.on(
        "console", lambda msg: tab.console_errors.append(msg.text) if msg.type == "error" else None
    )
    page.on("pageerror", lambda err: tab.console_errors.append(str(err)))
    return tab


def _note_error(tab: Tab, kind: str, text: str) -> None:
    if kind == "error":
        tab.console_errors.append(text)


@pytest.fixture
def tab(browser: Browser) -> Iterator[Tab]:
    opened = open_tab(browser, viewport={"width": 1280, "height": 900})
    yield opened
    opened.page.context.close()
