"""Signed session reports on a real store: rendered, verified, and failing verification after
one changed byte or one deleted evidence row; hostile names escaped in Markdown and HTML."""

import json
import os
import stat
import subprocess
import sys
import threading
import time
from collections.abc import Iterator, Sequence
from pathlib import Path

import pytest
from sqlalchemy import delete

from egresswatch.model import Alert, Event
from egresswatch.report.document import build_report
from egresswatch.report.signed import signed_report, verify_report
from egresswatch.report.signing import machine_key
from egresswatch.store import Store, open_store
from egresswatch.store.alerts import record_alert
from egresswatch.store.schema import SessionEventRow
from egresswatch.store.sessions import (
    NewSession,
    add_evidence,
    close_session,
    open_session,
    writing,
)
from egresswatch.store.toolcards import tool_cards
from tests.store.factory import process, tls_hello

HOSTILE = "<script>alert(1)</script>\x1b[2J\u202e*evil*.example"
OLLAMA = process(812, tool="Ollama", name="ollama", exe="/usr/bin/ollama")


@pytest.fixture
def session_store(tmp_path: Path) -> Iterator[tuple[Store, int]]:
    store = open_store(str(tmp_path / "events.db"))
    start = time.time() - 100
    sid = writing(store.engine, lambda c: open_session(c, NewSession(start, "manual", label="run")))
    events = [
        tls_hello(start + 1, "api.openai.com", OLLAMA, category="cloud-llm-api"),
        tls_hello(start + 2, HOSTILE, OLLAMA, category="unknown"),
    ]
    ids = write_events(store, events)
    writing(store.engine, lambda c: add_evidence(c, sid, ids, start + 3))
    finding = Alert(
        "egress-during-session",
        "critical",
        start + 2,
        f"ollama contacted {HOSTILE}",
        session=sid,
        tool="Ollama",
        pid=812,
        process="ollama",
        host=HOSTILE,
        event_id=ids[1],
    )
    writing(store.engine, lambda c: record_alert(c, finding))
    writing(store.engine, lambda c: close_session(c, sid, start + 50))
    yield store, sid
    store.close()


def write_events(store: Store, events: Sequence[Event]) -> list[int]:
    writer = store.writer()
    got: list[int] = []
    done = threading.Event()

    def hook(pairs: Sequence[tuple[int, Event]]) -> None:
        got.extend(i for i, _ in pairs)
        if len(got) >= len(events):
            done.set()

    writer.on_written(hook)
    for event in events:
        writer.submit(event)
    assert writer.flush() and done.wait(5)
    return got


@pytest.mark.parametrize("fmt", ["md", "html", "json"])
def test_a_signed_report_verifies_and_one_changed_byte_fails(
    session_store: tuple[Store, int], tmp_path: Path, fmt: str
) -> None:
    store, sid = session_store
    key = machine_key(tmp_path / "key.pem")
    data = signed_report(build_report(store.engine, sid), fmt, key)
    verdict = verify_report(data, store.engine)
    assert verdict.ok, verdict.problems
    assert verdict.session == sid
    at = data.index(b"api.openai.com")
    tampered = data[:at] + b"b" + data[at + 1 :]
    assert not verify_report(tampered, store.engine).ok


def test_a_deleted_evidence_row_fails_verification(
    session_store: tuple[Store, int], tmp_path: Path
) -> None:
    store, sid = session_store
    data = signed_report(build_report(store.engine, sid), "md", machine_key(tmp_path / "key.pem"))
    with store.engine.begin() as conn:
        first = conn.execute(SessionEventRow.__table__.select().limit(1)).first()
        assert first is not None
        conn.execute(delete(SessionEventRow).where(SessionEventRow.event_id == first.event_id))
    verdict = verify_report(data, store.engine)
    assert not verdict.ok and "no longer matches" in verdict.problems[0]


def test_report_content_verdict_and_escaping(
    session_store: tuple[Store, int], tmp_path: Path
) -> None:
    store, sid = session_store
    doc = build_report(store.engine, sid)
    assert doc["summary"].startswith(
        f"2 in-scope egress events left this machine during session {sid}"
    )
    assert [g["category"] for g in doc["groups"]] == ["cloud-llm-api", "unknown"]
    assert any(
        s["setting"].startswith("OLLAMA_NO_CLOUD") and s["stops_what_was_seen"]
        for s in doc["remediation"]["switches"]
    )
    assert "0.0.0.0 api.openai.com" in doc["remediation"]["paste"]["hosts"]
    assert "script" not in doc["remediation"]["paste"]["hosts"]  # hostile names never pasted
    key = machine_key(tmp_path / "key.pem")
    md = signed_report(doc, "md", key).decode()
    page = signed_report(doc, "html", key).decode()
    for text in (md, page):
        assert "\x1b" not in text and "\u202e" not in text and "<script>" not in text
    assert "&lt;script&gt;" in page and "\\*evil\\*" in md


def test_the_report_key_is_created_once_with_mode_0600(tmp_path: Path) -> None:
    path = tmp_path / "keys" / "report-key.pem"
    first = machine_key(path)
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    assert (
        machine_key(path).public_key().public_bytes_raw() == first.public_key().public_bytes_raw()
    )


def test_report_and_verify_commands(session_store: tuple[Store, int], tmp_path: Path) -> None:
    store, sid = session_store
    env = {**os.environ, "EGRESSWATCH_REPORT_KEY": str(tmp_path / "key.pem")}
    out = tmp_path / "report.json"
    db = str(store.url)
    cmd = [sys.executable, "-m", "egresswatch", "report"]
    made = subprocess.run(
        [*cmd, str(sid), "--format", "json", "--output", str(out), "--db", db],
        env=env,
        check=False,
        capture_output=True,
        text=True,
    )
    assert made.returncode == 0, made.stderr
    assert json.loads(out.read_text())["report"]["session"]["id"] == sid
    ok = subprocess.run(
        [*cmd, "verify", str(out), "--db", db], env=env, capture_output=True, text=True, check=False
    )
    assert ok.returncode == 0 and ok.stdout.startswith("OK"), ok.stderr
    out.write_text(out.read_text().replace('"label": "run"', '"label": "ran"'))
    bad = subprocess.run(
        [*cmd, "verify", str(out), "--db", db], env=env, capture_output=True, text=True, check=False
    )
    assert bad.returncode == 1 and "FAILED" in bad.stderr
    missing = subprocess.run(
        [*cmd, "999", "--db", db], env=env, capture_output=True, text=True, check=False
    )
    assert (
        missing.returncode == 1
        and "no session 999" in missing.stderr
        and "Traceback" not in missing.stderr
    )


def test_tool_cards(session_store: tuple[Store, int]) -> None:
    store, _sid = session_store
    (card,) = tool_cards(store.engine)
    assert card["tool"] == "Ollama" and card["alerts"] == 1
    assert card["sessions"] == 0  # the manual session named no tools
    assert card["executables"] == [{"path": "/usr/bin/ollama", "sha256": "0f" * 32}]
    assert card["destinations"]["ever"]["cloud-llm-api"] == ["api.openai.com"]
    result = subprocess.run(
        [sys.executable, "-m", "egresswatch", "tools", "--db", str(store.url)],
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0 and result.stdout.startswith("Ollama:")
    assert "\x1b" not in result.stdout and "\u202e" not in result.stdout
