"""/api/events on real stores: the corpus replayed by `egresswatch replay --db`; a sample."""

import json
from pathlib import Path
from typing import Any

import pytest

from tests.api.server import HOSTILE_NAMES, WebServer, egresswatch

pytestmark = pytest.mark.corpus


def all_pages(server: WebServer, **params: object) -> list[dict[str, Any]]:
    events: list[dict[str, Any]] = []
    cursor = None
    with server.client() as client:
        while True:
            query = {**params, **({"cursor": cursor} if cursor else {})}
            page = client.get("/api/events", params=query).json()  # type: ignore[arg-type]
            events += page["events"]
            cursor = page["next"]
            if cursor is None:
                return events


def test_cursor_paging_returns_every_stored_event_once_newest_first(
    corpus_web: WebServer, corpus_db: Path
) -> None:
    exported = egresswatch("export", "--db", str(corpus_db), "--format", "jsonl").stdout
    expected = {json.loads(line)["event_id"] for line in exported.splitlines()}
    events = all_pages(corpus_web, limit=37)
    ids = [e["event_id"] for e in events]
    assert len(ids) == len(set(ids)) == len(expected) > 500
    assert set(ids) == expected
    keys = [(e["ts"], e["event_id"]) for e in events]
    assert keys == sorted(keys, reverse=True)


def test_replayed_events_are_offline_and_classified(corpus_web: WebServer) -> None:
    events = all_pages(corpus_web, limit=1000)
    assert {e["attribution"] for e in events} == {"unknown:offline"}
    named = [e for e in events if e["host"]]
    assert named and all(e["category"] for e in named)


@pytest.mark.parametrize("kind", ["dns", "tls", "quic"])
def test_kind_filter(corpus_web: WebServer, kind: str) -> None:
    events = all_pages(corpus_web, kind=kind, limit=500)
    assert events and {e["kind"] for e in events} == {kind}


def test_host_filter_matches_the_host_and_names_under_it(corpus_web: WebServer) -> None:
    events = all_pages(corpus_web, host="google.com")
    assert events
    for e in events:
        names = {e["host"], e.get("qname")}
        assert any(n == "google.com" or str(n).endswith(".google.com") for n in names)


def test_since_until_window(corpus_web: WebServer) -> None:
    events = all_pages(corpus_web, limit=1000)
    ts = sorted(e["ts"] for e in events)
    lo, hi = ts[len(ts) // 4], ts[len(ts) // 2]
    window = all_pages(corpus_web, since=str(lo), until=str(hi))
    assert window and all(lo <= e["ts"] < hi for e in window)
    assert len(window) == sum(1 for t in ts if lo <= t < hi)


def test_sample_filters_by_tool_category_pid_and_process(sample_web: WebServer) -> None:
    assert {e["tool"] for e in all_pages(sample_web, tool="ollama")} == {"ollama"}
    assert {e["host"] for e in all_pages(sample_web, category="cloud-llm-api")} == {
        "api.openai.com"
    }
    assert {e["pid"] for e in all_pages(sample_web, pid=777)} == {777}
    hostile = all_pages(sample_web, process=HOSTILE_NAMES[0])
    assert len(hostile) == len(HOSTILE_NAMES)


def test_hostile_names_come_back_verbatim_as_json_strings(sample_web: WebServer) -> None:
    hosts = {e["host"] for e in all_pages(sample_web)}
    for name in HOSTILE_NAMES[:4]:
        assert name in hosts


@pytest.mark.parametrize(
    ("params", "status"),
    [
        ({"cursor": "not-a-cursor"}, 400),
        ({"since": "yesterday-ish"}, 422),
        ({"since": "2026-13-45"}, 400),
        ({"limit": "0"}, 422),
        ({"limit": "5000"}, 422),
        ({"kind": "smtp"}, 422),
        ({"pid": "-1"}, 422),
        ({"bogus": "1"}, 422),
    ],
)
def test_bad_parameters_get_the_one_error_shape(
    sample_web: WebServer, params: dict[str, str], status: int
) -> None:
    with sample_web.client() as client:
        response = client.get("/api/events", params=params)
    assert response.status_code == status
    body = response.json()
    assert set(body) == {"error", "detail"} and body["detail"]
