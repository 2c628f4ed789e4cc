"""Where the store lives and how to connect to it: default paths, URLs and SQLite pragmas."""

import os
import sqlite3
from pathlib import Path
from typing import Any

from sqlalchemy import Engine, create_engine, event
from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError

from egresswatch.errors import StoreError

SYSTEM_DIR = Path("/var/lib/egresswatch")
DB_NAME = "events.db"
BUSY_TIMEOUT_MS = 5000
CONNECT_TIMEOUT = 5


def default_path() -> Path:
    """/var/lib/egresswatch/events.db for root; the user's XDG state directory otherwise."""
    if os.geteuid() == 0 and _writable_dir(SYSTEM_DIR):
        return SYSTEM_DIR / DB_NAME
    state = os.environ.get("XDG_STATE_HOME") or str(Path.home() / ".local" / "state")
    return Path(state) / "egresswatch" / DB_NAME


def _writable_dir(path: Path) -> bool:
    """Whether a writer could use `path`; never creates it (reading commands must not)."""
    while not path.exists():
        if path.parent == path:
            return False
        path = path.parent
    return path.is_dir() and os.access(path, os.W_OK)


def resolve_url(url: str | None) -> str:
    """A SQLAlchemy URL for `url`: None means the default path; a bare path means SQLite."""
    if url is None:
        return f"sqlite:///{default_path()}"
    if "://" not in url:
        return f"sqlite:///{Path(url).expanduser().resolve()}"
    return url


def make_engine(url: str) -> Engine:
    """An engine for `url`; for SQLite with the durability pragmas and its directory created."""
    try:
        parsed = make_url(url)
        if parsed.get_backend_name() == "postgresql" and "connect_timeout" not in parsed.query:
            # an unreachable server must not hold the writer thread for minutes (TCP timeouts)
            args = {"connect_timeout": CONNECT_TIMEOUT}
            return create_engine(url, pool_pre_ping=True, connect_args=args)
        if parsed.get_backend_name() != "sqlite":
            return create_engine(url, pool_pre_ping=True)
    except (ArgumentError, ImportError) as exc:
        raise StoreError(f"unusable database URL {_redacted(url)}: {exc}") from exc
    database = parsed.database or ""
    if database and database != ":memory:" and not database.startswith("file:"):
        _ensure_parent(Path(database))
    engine = create_engine(url, connect_args={"timeout": BUSY_TIMEOUT_MS / 1000})
    event.listen(engine, "connect", _sqlite_pragmas)
    return engine


def _redacted(url: str) -> str:
    try:
        return make_url(url).render_as_string(hide_password=True)
    except ArgumentError:
        return repr(url)


def _ensure_parent(path: Path) -> None:
    try:
        path.parent.mkdir(mode=0o750, parents=True, exist_ok=True)
    except OSError as exc:
        raise StoreError(f"cannot create the store directory {path.parent}: {exc}") from exc


def _sqlite_pragmas(dbapi_conn: sqlite3.Connection, _record: Any) -> None:
    # WAL: readers never block the writer. NORMAL: a commit is a write() into the WAL, which
    # survives a crash of this process; only power loss can undo commits since the last
    # checkpoint, and the writer checkpoints every second (see writer.py).
    # auto_vacuum must precede the first table; later it is a no-op, so setting it is harmless.
    cur = dbapi_conn.cursor()
    for pragma in (
        "auto_vacuum=INCREMENTAL",
        "journal_mode=WAL",
        "synchronous=NORMAL",
        f"busy_timeout={BUSY_TIMEOUT_MS}",
        "foreign_keys=ON",
        "journal_size_limit=8388608",
    ):
        try:
            cur.execute(f"PRAGMA {pragma}")
        except sqlite3.OperationalError:
            # A read-only file cannot switch journal mode; reads still work, writes report it.
            continue
    cur.close()


def is_sqlite(engine: Engine) -> bool:
    return engine.dialect.name == "sqlite"


def make_reader_engine(url: str) -> Engine:
    """An engine that cannot write: SQLite opened with mode=ro (no directory made, no file
    created); other backends as usual (the connecting role's grants decide).
    """
    try:
        parsed = make_url(url)
    except ArgumentError as exc:
        raise StoreError(f"unusable database URL {_redacted(url)}: {exc}") from exc
    database = parsed.database or ""
    if parsed.get_backend_name() != "sqlite" or database.startswith("file:"):
        return make_engine(url)
    if not database or database == ":memory:" or not Path(database).exists():
        raise StoreError(f"no event store at {database or url} (start the agent, or pass --db)")
    uri = f"file:{Path(database).resolve()}?mode=ro"
    engine = create_engine(
        url,
        creator=lambda: sqlite3.connect(
            uri, uri=True, timeout=BUSY_TIMEOUT_MS / 1000, check_same_thread=False
        ),
    )
    event.listen(engine, "connect", _reader_pragmas)
    return engine


def _reader_pragmas(dbapi_conn: sqlite3.Connection, _record: Any) -> None:
    cur = dbapi_conn.cursor()
    cur.execute(f"PRAGMA busy_timeout={BUSY_TIMEOUT_MS}")
    cur.execute("PRAGMA query_only=ON")
    cur.close()
