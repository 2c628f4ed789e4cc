"""The dashboard's HTML carries the overview's API answers: the same JSON the API gives, in one
inert block that no stored name can end, under the same CSP; `?preload=0` leaves it out."""

import json
import re
import time
from collections.abc import Iterator
from typing import Any

import pytest

from egresswatch.api.guard import CSP
from egresswatch.api.preload import script_json
from tests.api.server import (
    WebServer,
    sample_events,
    web_server,
    write_events,
    write_sessions_and_alerts,
)
from tests.store.factory import process, tls_hello

BREAKOUTS = ("</script><script>alert(1)</script>.evil.example", "<!--<script>.evil.example")
BLOCK = re.compile(r'<script type="application/json" id="preload">(.*?)</script>', re.S)


@pytest.fixture(scope="module")
def preload_web(tmp_path_factory: pytest.TempPathFactory) -> Iterator[WebServer]:
    db = tmp_path_factory.mktemp("preload") / "events.db"
    now = time.time()
    extra = [tls_hello(now - 60 + i, name, process(31337, "ollama")) for i, name in
             enumerate(BREAKOUTS)]  # fmt: skip
    write_events(db, sample_events(now) + extra)
    write_sessions_and_alerts(db, now)
    with web_server(db) as server:
        yield server


def preloaded(html: str) -> dict[str, Any]:
    blocks = BLOCK.findall(html)
    assert len(blocks) == 1
    assert "<" not in blocks[0] and ">" not in blocks[0]
    found: dict[str, Any] = json.loads(blocks[0])
    return found


def test_the_page_carries_what_the_api_answers(preload_web: WebServer) -> None:
    with preload_web.client() as client:
        page = client.get("/")
        data = preloaded(page.text)
        api = {
            "destinations": client.get("/api/destinations", params={"order": "count", "limit": 10}),
            "events": client.get("/api/events", params={"limit": 10}),
            "alerts": client.get("/api/alerts", params={"open": "true", "limit": 50}),
            "sessions": client.get("/api/sessions", params={"since": "30d"}),
            "timeline": client.get("/api/timeline", params={"group": "tool"}),
        }
    assert page.headers["content-security-policy"] == CSP
    assert page.headers["cache-control"] == "no-store"
    assert set(data) == {"timeline", "destinations", "events", "alerts", "sessions", "health"}
    for key in ("destinations", "events", "alerts", "sessions"):
        assert data[key] == api[key].json(), key
    timeline = api["timeline"].json()  # `since` and `until` moved on with the clock
    assert (data["timeline"]["groups"], data["timeline"]["points"]) == (
        timeline["groups"],
        timeline["points"],
    )
    assert data["health"]["revision"] and data["health"]["status"] == "no-agent"
    hosts = {e["host"] for e in data["events"]["events"]}
    assert set(BREAKOUTS) <= hosts  # stored exactly, escaped only inside the block


def test_without_preload_the_page_has_no_block(preload_web: WebServer) -> None:
    with preload_web.client() as client:
        page = client.get("/", params={"preload": "0"})
    assert page.status_code == 200 and BLOCK.search(page.text) is None
    assert "<!--preload-->" not in page.text


def test_script_json_round_trips_every_character() -> None:
    data = {"x": "</script>&<!--\u2028\u0000é\U0001f600", "n": [1, None, 2.5]}
    text = script_json(data)
    assert not set("<>&") & set(text)
    assert json.loads(text) == data
