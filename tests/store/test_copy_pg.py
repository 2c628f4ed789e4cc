"""Events go into PostgreSQL by COPY: its failures reach the writer as SQLAlchemy's errors, so a
server that went away is retried and a bad row is isolated, as with INSERT."""

from collections.abc import Iterator
from typing import Any

import pytest
from sqlalchemy import Engine, create_engine, text
from sqlalchemy.exc import DataError, OperationalError

from egresswatch.store import open_store
from egresswatch.store.engine import make_engine
from egresswatch.store.statements import T_LABEL, insert_rows
from tests.store.factory import backend_url

pytestmark = pytest.mark.postgres


@pytest.fixture
def engine(tmp_path: Any) -> Iterator[Engine]:
    url = backend_url("postgres", tmp_path)
    open_store(url).close()
    made = make_engine(url)
    yield made
    made.dispose()


def test_copy_inserts_hostile_text(engine: Engine) -> None:
    texts = ["tab\\there", "new\nline", "back\\slash", "\\N", "quote'\"", "é\U0001f600"]
    with engine.begin() as conn:
        insert_rows(conn, T_LABEL, [{"id": 1000 + i, "text": t} for i, t in enumerate(texts)])
    with engine.connect() as conn:
        got = conn.execute(text("SELECT text FROM labels WHERE id >= 1000 ORDER BY id")).scalars()
        assert list(got) == texts


def test_copy_failure_is_a_sqlalchemy_error(engine: Engine) -> None:
    with pytest.raises(DataError), engine.begin() as conn:
        insert_rows(conn, T_LABEL, [{"id": "not a number", "text": "x"}])


def test_server_gone_during_copy_is_an_operational_error(engine: Engine) -> None:
    admin = create_engine(engine.url)
    try:
        with pytest.raises(OperationalError), engine.begin() as conn:
            pid = conn.execute(text("SELECT pg_backend_pid()")).scalar_one()
            with admin.connect() as other:
                other.execute(text("SELECT pg_terminate_backend(:p)"), {"p": pid})
            insert_rows(conn, T_LABEL, [{"id": 2000, "text": "y"}])
    finally:
        admin.dispose()
    with engine.connect() as conn:  # the dead connection was not handed out again
        assert conn.execute(text("SELECT count(*) FROM labels WHERE id = 2000")).scalar() == 0
