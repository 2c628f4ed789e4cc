"""`egresswatch db retention` on a SQLite store: limits required, dry run, what it prints, side
rows only with --side-rows, and the size limit keeps the newest events."""

import json
import time
from pathlib import Path

from sqlalchemy import func, select

from egresswatch.store import EventFilter, open_store
from egresswatch.store.schema import EventRow, Hostname
from tests.api.server import egresswatch, write_events
from tests.store.factory import tls_hello

DAY = 86_400.0


def _count(db: Path, entity: type) -> int:
    store = open_store(str(db))
    try:
        with store.engine.connect() as conn:
            return int(conn.execute(select(func.count()).select_from(entity)).scalar_one())
    finally:
        store.close()


def _filled(tmp_path: Path) -> Path:
    db = tmp_path / "events.db"
    now = time.time()
    old = [tls_hello(now - 40 * DAY + i, f"old{i}.example", None) for i in range(5)]
    new = [tls_hello(now - 60 + i, "new.example", None) for i in range(3)]
    write_events(db, old + new)
    return db


def test_limits_are_required(tmp_path: Path) -> None:
    done = egresswatch("db", "retention", "--db", str(_filled(tmp_path)), check=False)
    assert done.returncode == 2 and "--max-age-days" in done.stderr


def test_dry_run_counts_then_a_run_deletes_events_and_keeps_side_rows(tmp_path: Path) -> None:
    db = _filled(tmp_path)
    dry = egresswatch("db", "retention", "--db", str(db), "--max-age-days", "30", "--dry-run",
                      "--json").stdout  # fmt: skip
    report = json.loads(dry)
    assert report["dry_run"] and report["events_deleted"] == 5 and report["size_after"] is None
    assert _count(db, EventRow) == 8
    text = egresswatch("db", "retention", "--db", str(db), "--max-age-days", "30").stdout
    assert text.splitlines()[0].startswith("deleted 5 events, ")
    assert "side rows kept" in text
    assert _count(db, EventRow) == 3 and _count(db, Hostname) == 6
    again = egresswatch("db", "retention", "--db", str(db), "--max-age-days", "1", "--side-rows",
                        "--json").stdout  # fmt: skip
    assert json.loads(again)["events_deleted"] == 0  # nothing older: the sweep needs a deletion
    write_events(db, [tls_hello(time.time() - 40 * DAY, "older.example", None)])
    swept = egresswatch("db", "retention", "--db", str(db), "--max-age-days", "30",
                        "--side-rows", "--json").stdout  # fmt: skip
    assert json.loads(swept)["side_rows_deleted"] >= 6 and _count(db, Hostname) == 1


def test_size_limit_keeps_the_newest(tmp_path: Path) -> None:
    db = tmp_path / "events.db"
    now = time.time()
    write_events(db, [tls_hello(now - 5000 + i, f"h{i}.example", None) for i in range(4000)])
    out = egresswatch("db", "retention", "--db", str(db), "--max-bytes", str(1 << 20), "--json")
    report = json.loads(out.stdout)
    assert report["events_deleted"] > 0 and report["size_after"] < report["size_before"]
    store = open_store(str(db))
    try:
        newest = store.query_events(EventFilter(), limit=1)[0].event
    finally:
        store.close()
    assert newest.host == "h3999.example"
