"""The store under test, on SQLite and (when EGRESSWATCH_TEST_PG_URL is set) PostgreSQL."""

from collections.abc import Iterator
from pathlib import Path

import pytest

from egresswatch.store import Store, open_store
from tests.store.factory import backend_url


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Store]:
    s = open_store(backend_url(request.param, tmp_path))
    yield s
    s.close()
