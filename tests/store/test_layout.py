"""A database marked at the head revision but missing a table or column (made before the initial
revision was edited in place) is refused with one clear line, by writers and by readers."""

import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest

from egresswatch.errors import StoreError
from egresswatch.store import open_store
from egresswatch.store.database import open_reader
from egresswatch.store.layout import missing_parts


def _early_store(tmp_path: Path) -> Path:
    """A store at head whose events table lacks a column and which lacks agent_status."""
    db = tmp_path / "events.db"
    open_store(str(db)).close()
    with sqlite3.connect(db) as conn:
        conn.execute("ALTER TABLE events DROP COLUMN name_candidates")
        conn.execute("DROP TABLE agent_status")
    return db


def test_current_store_has_every_part(tmp_path: Path) -> None:
    store = open_store(str(tmp_path / "events.db"))
    try:
        assert missing_parts(store.engine) == []
    finally:
        store.close()


def test_writer_and_reader_refuse_an_early_layout(tmp_path: Path) -> None:
    db = _early_store(tmp_path)
    for opener in (open_store, open_reader):
        with pytest.raises(StoreError) as caught:
            opener(str(db))
        message = str(caught.value)
        assert "events.name_candidates" in message and "agent_status" in message
        assert "marked at schema revision" in message


def test_cli_says_so_in_one_line(tmp_path: Path) -> None:
    db = _early_store(tmp_path)
    done = subprocess.run(
        [sys.executable, "-m", "egresswatch", "events", "--db", str(db)],
        capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert done.returncode != 0
    assert "Traceback" not in done.stderr
    assert "events.name_candidates" in done.stderr
