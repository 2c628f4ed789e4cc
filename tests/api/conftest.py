"""Stores for the API tests: the corpus replayed by the real CLI; a sample with hostile names."""

import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.api.server import (
    WebServer,
    replay_into,
    sample_events,
    web_server,
    write_events,
    write_sessions_and_alerts,
)


@pytest.fixture(scope="session")
def corpus_db(tmp_path_factory: pytest.TempPathFactory, corpus_dir: Path) -> Path:
    db = tmp_path_factory.mktemp("corpus") / "events.db"
    replay_into(db, sorted((corpus_dir / "pcaps").iterdir()))
    return db


@pytest.fixture(scope="session")
def sample_db(tmp_path_factory: pytest.TempPathFactory) -> Path:
    db = tmp_path_factory.mktemp("sample") / "events.db"
    now = time.time()
    write_events(db, sample_events(now))
    write_sessions_and_alerts(db, now)
    return db


@pytest.fixture(scope="module")
def corpus_web(corpus_db: Path) -> Iterator[WebServer]:
    with web_server(corpus_db) as server:
        yield server


@pytest.fixture(scope="module")
def sample_web(sample_db: Path) -> Iterator[WebServer]:
    with web_server(sample_db) as server:
        yield server
