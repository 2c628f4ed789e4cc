"""`db upgrade`, `db stats`, `events` and `export` on a real SQLite store, via typer's runner."""

import csv
import json
import time
from pathlib import Path

import pytest
import typer
from typer.testing import CliRunner

from egresswatch.cli import events_cmd, store_cmd
from egresswatch.cli.filters import parse_when
from egresswatch.output import printable
from egresswatch.store import open_store
from tests.store.factory import HOSTILE, dns_response, process, tls_hello

runner = CliRunner()


def make_app() -> typer.Typer:
    app = typer.Typer()

    @app.callback()
    def _root() -> None:
        """Test root, so the commands keep their names."""

    store_cmd.register(app)
    events_cmd.register(app)
    return app


@pytest.fixture
def db(tmp_path: Path) -> str:
    path = str(tmp_path / "events.db")
    store = open_store(path)
    writer = store.writer(batch_interval=0.01)
    now = time.time()
    hostile = HOSTILE[0] + HOSTILE[1] + HOSTILE[3] + HOSTILE[8]
    events = [
        tls_hello(now - 3 * 3600, "huggingface.co", process()),
        dns_response(now - 60, "registry.ollama.ai", process()),
        tls_hello(now - 30, hostile, process(pid=9, name=hostile, tool=None), category="unknown"),
    ]
    for event in events:
        assert writer.submit(event)
    assert writer.flush(10)
    store.close()
    return path


def run(*args: str) -> tuple[int, str, str]:
    # Wide, so rich neither wraps nor truncates the cells being checked.
    result = runner.invoke(make_app(), list(args), env={"COLUMNS": "500"})
    return result.exit_code, result.stdout, result.stderr


def test_db_upgrade_creates_and_reports(tmp_path: Path) -> None:
    code, out, _ = run("db", "upgrade", "--db", str(tmp_path / "new" / "e.db"))
    assert code == 0, out
    assert "schema at revision 0" in out
    assert (tmp_path / "new" / "e.db").exists()


def test_db_stats_shows_size_counts_and_range(db: str) -> None:
    code, out, _ = run("db", "stats", "--db", db, "--json")
    assert code == 0
    stats = json.loads(out)
    assert stats["counts"]["events"] == 3 and stats["counts"]["dns_answers"] == 3
    assert stats["size_bytes"] > 0 and stats["oldest"] < stats["newest"]
    code, out, _ = run("db", "stats", "--db", db)
    assert code == 0 and "events" in out and "MB" in out


def test_events_json_filters(db: str) -> None:
    code, out, _ = run("events", "--db", db, "--raw", "--json", "--since", "10m")
    assert code == 0
    records = [json.loads(line) for line in out.splitlines()]
    assert [r["kind"] for r in records] == ["dns", "tls"]
    code, out, _ = run("events", "--db", db, "--raw", "--json", "--tool", "ollama", "--limit", "1")
    assert [json.loads(line)["host"] for line in out.splitlines()] == ["registry.ollama.ai"]
    code, out, _ = run("events", "--db", db, "--raw", "--json", "--host", "HuggingFace.co")
    assert [json.loads(line)["host"] for line in out.splitlines()] == ["huggingface.co"]
    code, out, _ = run(
        "events", "--db", db, "--raw", "--json", "--category", "model-registry", "--until", "1h"
    )
    assert len(out.splitlines()) == 1


def test_events_table_escapes_hostile_strings(db: str) -> None:
    code, out, _ = run("events", "--db", db)
    assert code == 0
    assert "\x1b" not in out and "\u202e" not in out
    assert "\\x1b[31mred\\x1b[0m" in out
    assert "[bold" in out  # markup shown literally, not interpreted
    assert ":smile:" in out  # not turned into an emoji
    assert "\\u202e" in out


def test_export_csv_and_jsonl_to_files(db: str, tmp_path: Path) -> None:
    out_csv = tmp_path / "out.csv"
    code, _, err = run("export", "--db", db, "--format", "csv", "--output", str(out_csv))
    assert code == 0 and "exported 3 events" in err
    rows = list(csv.DictReader(out_csv.read_text().splitlines()))
    assert [r["kind"] for r in rows] == ["tls", "dns", "tls"]
    code, out, _ = run("export", "--db", db, "--host", "ollama.ai")
    assert code == 0
    assert json.loads(out)["qname"] == "registry.ollama.ai"


def test_errors_are_one_clear_line(tmp_path: Path) -> None:
    code, _, err = run("events", "--db", str(tmp_path / "missing.db"))
    assert code == 1 and err.startswith("error: no event store at")
    assert not (tmp_path / "missing.db").exists()
    code, _, err = run("events", "--db", str(tmp_path / "x.db"), "--since", "yesterday")
    assert code == 2 and "not a duration" in err
    code, _, err = run("export", "--db", str(tmp_path / "x.db"), "--format", "xml")
    assert code == 2
    code, _, err = run("db", "stats", "--db", "nosuchdriver://x")
    assert code == 1 and err.startswith("error:")


def test_parse_when_forms() -> None:
    now = 1_000_000.0
    assert parse_when("10m", now) == now - 600
    assert parse_when("1.5h", now) == now - 5400
    assert parse_when("123.5", now) == 123.5
    assert parse_when("1970-01-02T00:00:00", now) == 86400
    assert parse_when("1970-01-02T01:00:00+01:00", now) == 86400
    assert parse_when("9999-12-31T23:59:59Z", now) == 253402300799


@pytest.mark.parametrize("text", ["1" + "0" * 20, "9" * 400, "99999999999w", "1e400"])
def test_parse_when_refuses_times_beyond_the_calendar(text: str) -> None:
    with pytest.raises(typer.BadParameter):
        parse_when(text, 1_000_000.0)


def test_printable_escapes_controls_only() -> None:
    assert printable("héllo wörld") == "héllo wörld"
    assert printable("a\x00b\x1b\u202e\u2028") == "a\\x00b\\x1b\\u202e\\u2028"
