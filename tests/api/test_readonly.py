"""The read seam: serving never migrates or writes the store, and says when it cannot read it."""

import hashlib
import sqlite3
from pathlib import Path

from tests.api.server import egresswatch, sample_events, web_server, write_events


def digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_serving_leaves_the_database_file_unchanged(tmp_path: Path) -> None:
    db = tmp_path / "e.db"
    write_events(db, sample_events(1_800_000_000.0))
    sqlite3.connect(db).execute("PRAGMA wal_checkpoint(TRUNCATE)").close()
    before = digest(db)
    with web_server(db) as server, server.client() as client:
        for path in ("/api/health", "/api/events", "/api/timeline", "/api/tools",
                     "/api/destinations", "/metrics", "/api/processes/4242"):  # fmt: skip
            assert client.get(path).status_code == 200, path
    assert digest(db) == before


def test_an_old_schema_is_reported_not_migrated(tmp_path: Path) -> None:
    db = tmp_path / "old.db"
    egresswatch("db", "upgrade", "--db", str(db))
    with sqlite3.connect(db) as conn:
        conn.execute("UPDATE alembic_version SET version_num = '0001'")
    done = egresswatch("web", "--db", str(db), "--port", "1", check=False)
    assert done.returncode == 2
    assert "schema revision 0001" in done.stderr and "egresswatch db upgrade" in done.stderr
    with sqlite3.connect(db) as conn:
        assert conn.execute("SELECT version_num FROM alembic_version").fetchone() == ("0001",)


def test_a_missing_store_is_reported_not_created(tmp_path: Path) -> None:
    db = tmp_path / "nothing" / "e.db"
    done = egresswatch("web", "--db", str(db), "--port", "1", check=False)
    assert done.returncode == 2 and "no event store" in done.stderr
    assert not db.parent.exists()
