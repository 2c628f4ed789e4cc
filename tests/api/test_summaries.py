"""/api/timeline, /api/destinations, /api/tools and the process drill-down on real stores."""

import pytest

from tests.api.server import HOSTILE_NAMES, WebServer


def test_timeline_counts_add_up_to_the_events_in_the_window(sample_web: WebServer) -> None:
    with sample_web.client() as client:
        line = client.get("/api/timeline", params={"since": "2h", "group": "tool"}).json()
        events = client.get(
            "/api/events",
            params={"since": str(line["since"]), "until": str(line["until"]), "limit": 1000},
        )
    assert line["bucket"] == "minute" and line["width"] == 60
    assert sum(p["count"] for p in line["points"]) == len(events.json()["events"]) > 0
    by_group: dict[str | None, int] = {}
    for p in line["points"]:
        by_group[p["group"]] = by_group.get(p["group"], 0) + p["count"]
        assert p["start"] % 60 == 0
    assert by_group["ollama"] == 2 and by_group["llama.cpp"] == 1  # fmt: skip
    assert set(line["groups"]) == set(by_group)


@pytest.mark.parametrize("group", ["tool", "category", "host", "process"])
def test_timeline_groups(sample_web: WebServer, group: str) -> None:
    with sample_web.client() as client:
        line = client.get("/api/timeline", params={"since": "1d", "group": group}).json()
    assert line["group"] == group and line["bucket"] == "hour"
    assert sum(p["count"] for p in line["points"]) == 3 + len(HOSTILE_NAMES)
    if group == "host":
        assert (
            len(line["groups"]) == 3 + len(set(HOSTILE_NAMES)) and "(other)" not in line["groups"]
        )


def test_timeline_refuses_a_backwards_or_oversized_range(sample_web: WebServer) -> None:
    with sample_web.client() as client:
        assert client.get("/api/timeline", params={"since": "1h", "until": "2h"}).status_code == 400
        tiny = client.get("/api/timeline", params={"since": "30d", "bucket": "minute"})
    assert tiny.status_code == 400 and tiny.json()["error"] == "bad_request"


@pytest.mark.parametrize(
    "params",
    [
        {"until": "1" + "0" * 20},
        {"until": "9" * 400},
        {"since": "0", "until": "1" + "0" * 19},
        {"since": "99999999999w"},
        {"until": "99999999999999999999d"},
    ],
)
def test_timeline_refuses_times_beyond_year_9999_with_400(
    sample_web: WebServer, params: dict[str, str]
) -> None:
    with sample_web.client() as client:
        answer = client.get("/api/timeline", params=params)
    assert answer.status_code == 400, answer.text
    assert answer.json()["error"] == "bad_request"


def test_destinations_have_category_tools_counts_and_catalog_citation(
    sample_web: WebServer,
) -> None:
    with sample_web.client() as client:
        page = client.get("/api/destinations", params={"limit": 3}).json()
        rest = client.get("/api/destinations", params={"cursor": page["next"]}).json()
        hf = client.get("/api/destinations/huggingface.co").json()
        missing = client.get("/api/destinations/nowhere.example")
    hosts = [d["host"] for d in page["destinations"] + rest["destinations"]]
    assert len(hosts) == len(set(hosts)) == 3 + len(set(HOSTILE_NAMES))
    seen = [d["last_seen"] for d in page["destinations"] + rest["destinations"]]
    assert seen == sorted(seen, reverse=True)
    assert hf["count"] == 1 and hf["tools"][0]["tool"] == "ollama"
    assert hf["catalog"]["pattern"] == "huggingface.co"
    assert all(role["source"] and role["purpose"] for role in hf["catalog"]["roles"])
    assert missing.status_code == 404 and missing.json()["error"] == "not_found"


def test_destination_filters(sample_web: WebServer) -> None:
    with sample_web.client() as client:
        by_tool = client.get("/api/destinations", params={"tool": "ollama"}).json()
        by_cat = client.get("/api/destinations", params={"category": "cloud-llm-api"}).json()
        by_host = client.get("/api/destinations", params={"host": "evil.example"}).json()
    assert {d["host"] for d in by_tool["destinations"]} == {"huggingface.co", "registry.ollama.ai"}
    assert [d["host"] for d in by_cat["destinations"]] == ["api.openai.com"]
    assert len(by_host["destinations"]) == 3


def test_tool_report_cards(sample_web: WebServer) -> None:
    with sample_web.client() as client:
        tools = {t["tool"]: t for t in client.get("/api/tools").json()["tools"]}
    assert set(tools) == {"ollama", "llama.cpp"}
    ollama = tools["ollama"]
    assert ollama["events"] == 2 and ollama["destinations"] == 2
    assert ollama["offsite"] == [] and ollama["executables"] == ["/usr/local/bin/ollama"]
    assert tools["llama.cpp"]["offsite"] == ["cloud-llm-api"]


def test_process_drill_down(sample_web: WebServer) -> None:
    with sample_web.client() as client:
        drill = client.get("/api/processes/9001").json()
        by_exe = client.get("/api/processes", params={"exe": "/usr/local/bin/ollama"}).json()
        missing = client.get("/api/processes/31337")
    proc = drill["processes"][0]
    assert proc["name"] == HOSTILE_NAMES[0] and proc["cmdline"][0] == HOSTILE_NAMES[1]
    assert proc["ancestry"][0]["name"] == "systemd" and proc["exe_sha256"] == "0f" * 32
    assert len(drill["events"]) == len(HOSTILE_NAMES)
    assert {p["pid"] for p in by_exe["processes"]} >= {4242, 9001}
    assert missing.status_code == 404


@pytest.mark.corpus
def test_corpus_timeline_by_day_matches_the_events(corpus_web: WebServer) -> None:
    with corpus_web.client() as client:
        first = client.get("/api/events", params={"limit": 1000}).json()["events"]
        since = min(e["ts"] for e in first)
        until = since + 1500 * 86400
        line = client.get(
            "/api/timeline",
            params={"since": str(since), "until": str(until), "bucket": "day", "group": "category"},
        ).json()
        too_many = client.get("/api/timeline", params={"since": "0", "bucket": "day"})
    expected = sum(1 for e in first if since <= e["ts"] < until)
    assert sum(p["count"] for p in line["points"]) == expected > 0
    assert too_many.status_code == 400 and "bucket" in too_many.json()["detail"]
