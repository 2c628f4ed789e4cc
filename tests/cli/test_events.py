"""`events` and `summary` on a real SQLite store, as a user runs them: COLUMNS=80, not a TTY,
hostile process names; rolled-up rows, --raw, truncation notice, bad filters, tool aliases."""

import json
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.cli.session import (
    HOSTILE_PROCESS,
    egresswatch,
    lookup_and_connect,
    proc,
    session,
    store_events,
)

TIME = re.compile(r"^\d\d:\d\d:\d\d ")


@pytest.fixture
def db(tmp_path: Path) -> str:
    return session(tmp_path / "events.db")


def test_rows_read_as_answers(db: str) -> None:
    result = egresswatch("events", "--db", db, columns=200)
    assert result.returncode == 0, result.stderr
    rows = [line for line in result.stdout.splitlines() if TIME.match(line)]
    # 18 stored events: per curl one lookup row (A+AAAA, both responses) and one connection row
    assert len(rows) == 6
    lookup, connection = rows[0], rows[1]
    assert "ollama[812]" in lookup and "registry.ollama.ai" in lookup
    assert "A,AAAA -> 10.199.7.20" in result.stdout
    assert "10.199.7.20:443 tls" in connection and "model-registry" in connection
    # the machine's own address is never shown as where a lookup went
    assert "10.199.7.3" not in result.stdout


def test_raw_shows_every_stored_event(db: str) -> None:
    result = egresswatch("events", "--db", db, "--raw", "--limit", "1000")
    assert result.returncode == 0, result.stderr
    assert len([line for line in result.stdout.splitlines() if TIME.match(line)]) == 18


def test_fits_80_columns_without_cutting_hosts_or_processes(db: str) -> None:
    result = egresswatch("events", "--db", db)
    lines = result.stdout.splitlines()
    assert max(len(line) for line in lines) <= 80
    assert "…" not in result.stdout
    for whole in ("registry.ollama.ai", "huggingface.co", "api.openai.com", "hf[913]"):
        assert whole in result.stdout
    assert lines[0].split()[:5] == ["time", "process", "host", "category", "detail"]


def test_hostile_process_name_is_escaped(db: str) -> None:
    result = egresswatch("events", "--db", db, columns=200)
    assert "\x1b" not in result.stdout and "\u202e" not in result.stdout
    assert "\\x1b[31mevil[/]\\u202e[1014]" in result.stdout


def test_says_when_rows_were_left_out(db: str) -> None:
    result = egresswatch("events", "--db", db, "--limit", "2")
    assert result.returncode == 0
    assert len([line for line in result.stdout.splitlines() if TIME.match(line)]) == 2
    assert "showing the newest 2 rows" in result.stderr
    complete = egresswatch("events", "--db", db)
    assert "showing the newest" not in complete.stderr


def test_unknown_category_is_named_with_the_known_ones(db: str) -> None:
    result = egresswatch("events", "--db", db, "--category", "bogus")
    assert result.returncode == 2
    assert result.stdout == ""
    (line,) = result.stderr.splitlines()
    assert "--category" in line and "no events match" in line
    assert "model-registry" in line and "cloud-llm-api" in line


def test_no_match_says_so_and_exits_1(db: str) -> None:
    result = egresswatch("events", "--db", db, "--host", "nothing.example")
    assert result.returncode == 1
    assert "no events match" in result.stderr


@pytest.mark.parametrize(
    ("alias", "host"),
    [
        ("huggingface_hub", "huggingface.co"),
        ("HF", "huggingface.co"),
        ("transformers", "huggingface.co"),
        ("ollama", "registry.ollama.ai"),
        ("open-webui", "api.openai.com"),
    ],
)
def test_tool_matches_by_name_or_alias(db: str, alias: str, host: str) -> None:
    result = egresswatch("events", "--db", db, "--json", "--tool", alias)
    assert result.returncode == 0, result.stderr
    assert {json.loads(line)["host"] for line in result.stdout.splitlines()} == {host}


def test_json_is_the_event_record(db: str) -> None:
    result = egresswatch("events", "--db", db, "--json", "--limit", "1000")
    records = [json.loads(line) for line in result.stdout.splitlines()]
    assert len(records) == 18 and result.stdout.isascii()
    assert {"event_id", "kind", "host", "process", "pid", "answers"} <= set(records[0])


def test_since_names_the_option(db: str) -> None:
    result = egresswatch("events", "--db", db, "--since", "banana")
    assert result.returncode == 2
    (line,) = result.stderr.splitlines()
    assert "--since" in line and "banana" in line and "Traceback" not in line


@pytest.mark.parametrize(
    ("by", "key", "peer"),
    [
        ("tool", "Ollama", "registry.ollama.ai"),
        ("process", "hf", "huggingface.co"),
        ("destination", "api.openai.com", "\\x1b[31mevil[/]\\u202e"),
        ("category", "cloud-llm-api", "api.openai.com"),
    ],
)
def test_summary_groups(db: str, by: str, key: str, peer: str) -> None:
    result = egresswatch("summary", "--db", db, "--by", by)
    assert result.returncode == 0, result.stderr
    assert key in result.stdout and peer in result.stdout
    assert max(len(line) for line in result.stdout.splitlines()) <= 80
    as_json = egresswatch("summary", "--db", db, "--by", by, "--json")
    groups = {g["key"]: g for g in map(json.loads, as_json.stdout.splitlines())}
    assert groups[key]["lookups"] == 1 and groups[key]["connections"] == 1
    assert groups[key]["first"] <= groups[key]["last"]


def test_summary_window(tmp_path: Path) -> None:
    now = time.time()
    old = lookup_and_connect(now - 3 * 86400, "old.example", "10.199.7.30", proc(), 42000, "other")
    db = store_events(tmp_path / "e.db", old)
    assert egresswatch("summary", "--db", db).returncode == 1  # default --since 1d: nothing
    result = egresswatch("summary", "--db", db, "--since", "7d", "--json")
    assert [json.loads(line)["key"] for line in result.stdout.splitlines()] == ["old.example"]


def test_follow_shows_events_stored_after_it_started(tmp_path: Path) -> None:
    db = session(tmp_path / "events.db")
    follower = subprocess.Popen(
        [sys.executable, "-m", "egresswatch", "events", "--db", db, "--follow"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={"COLUMNS": "80", "PATH": "/usr/bin:/bin"},
    )
    assert follower.stdout is not None
    try:
        assert follower.stdout.readline().startswith("time")  # it has shown what was stored
        later = lookup_and_connect(
            time.time(), "late.example", "10.199.7.40", proc(), 43000, "other"
        )
        store_events(Path(db), later)
        deadline = time.time() + 20
        seen = ""
        while time.time() < deadline and "late.example" not in seen:
            seen += follower.stdout.readline()
    finally:
        follower.send_signal(signal.SIGINT)
        follower.communicate(timeout=10)
    assert "late.example" in seen
    assert follower.returncode == 0


def test_empty_store_points_to_run_and_demo(tmp_path: Path) -> None:
    db = store_events(tmp_path / "empty.db", [])
    result = egresswatch("events", "--db", db)
    assert result.returncode == 1
    assert "egresswatch run" in result.stderr and "egresswatch demo" in result.stderr


def test_hostile_name_constant_is_hostile() -> None:
    assert "\x1b" in HOSTILE_PROCESS and "\u202e" in HOSTILE_PROCESS
