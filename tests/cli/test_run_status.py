"""What `run` tells its user: the status line and end summary from real events, and the follow-up
command, which must work as printed."""

import shlex
import subprocess
import sys
import time
from pathlib import Path

import pytest

from egresswatch.cli import run_status
from egresswatch.cli.run_status import Tally, end_summary, follow_up_command, status_line
from egresswatch.model import Event
from tests.cli.session import HOSTILE_PROCESS, lookup_and_connect, proc, session


def _tally() -> tuple[Tally, list[Event]]:
    seen: list[Event] = []
    tally = Tally(seen.append)
    events = [
        *lookup_and_connect(0.0, "registry.ollama.ai", "10.199.7.20", proc("ollama", 8, "Ollama"),
                            41000, "model-registry"),
        *lookup_and_connect(1.0, "example.org", "10.199.7.21", proc(HOSTILE_PROCESS, 9), 41010,
                            "other"),
    ]  # fmt: skip
    for event in events:
        tally(event)
    return tally, seen


def test_tally_passes_every_event_on_and_counts() -> None:
    tally, seen = _tally()
    assert len(seen) == 12 == tally.events
    assert tally.flows == 2 and tally.pids == {8, 9}
    assert tally.hosts == {"registry.ollama.ai", "example.org"}
    assert tally.tools == {"Ollama": 6}


def test_status_line_and_summary_read_as_sentences() -> None:
    tally, _ = _tally()
    counters = {"capture.dropped.kernel": 2, "store.dropped.queue_full": 1, "capture.packets": 99}
    line = status_line(tally, counters, 3.0)
    assert line == "12 events (3.0/s) | 2 flows | 2 processes | LLM tools: Ollama | 3 dropped"
    summary = end_summary(tally, counters, 125.0)
    assert summary.splitlines()[0] == (
        "egresswatch stopped after 2m05s: 12 events from 2 processes, 2 flows to 2 hosts."
    )
    assert "LLM tools seen: Ollama." in summary and "Dropped: 3" in summary
    assert "capture.packets" not in summary  # raw counters only with --verbose


def test_hostile_tool_names_are_escaped() -> None:
    tally = Tally(lambda event: None)
    (event, *_) = lookup_and_connect(0.0, "x.example", "10.199.7.2", proc("x", 1, "\x1b[2J"),
                                     41000, "other")  # fmt: skip
    tally(event)
    assert "\x1b" not in status_line(tally, {}, 0.0) and "\\x1b[2J" in status_line(tally, {}, 0.0)


def test_follow_up_command_includes_db_and_runs_as_printed(tmp_path: Path) -> None:
    db = session(tmp_path / "odd name's.db", time.time())
    command = follow_up_command(db)
    argv = shlex.split(command)
    assert argv[-2:] == ["--db", db]
    result = subprocess.run(argv, capture_output=True, text=True, check=False, cwd="/")
    assert result.returncode == 0, result.stderr
    assert "registry.ollama.ai" in result.stdout


def test_follow_up_command_names_the_program_that_was_run(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    script = Path(sys.executable).parent / "egresswatch"
    monkeypatch.setattr(sys, "argv", [str(script), "run"])
    monkeypatch.setenv("PATH", "/usr/bin:/bin")  # the venv is not on PATH
    assert shlex.split(follow_up_command(None))[0] == str(script)
    link_dir = tmp_path / "bin"
    link_dir.mkdir()
    (link_dir / "egresswatch").symlink_to(script)
    monkeypatch.setenv("PATH", f"{link_dir}:/usr/bin:/bin")  # what the set-up's link gives
    assert follow_up_command(None) == "egresswatch events --since 10m"
    monkeypatch.setattr(sys, "argv", ["/x/egresswatch/__main__.py"])
    assert shlex.split(follow_up_command(None))[:3] == [sys.executable, "-m", "egresswatch"]


def test_drops_are_everything_lost() -> None:
    assert run_status.dropped({"capture.dropped.queue_full": 4, "recorder.dropped": 1,
                               "store.dropped.invalid": 2, "capture.packets": 10}) == 7  # fmt: skip
