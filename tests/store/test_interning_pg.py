"""Several writers interning the same hosts, addresses, labels, executables and processes into
one real PostgreSQL database at the same moment: each row exists once, and nobody deadlocks."""

import os
import random
import threading
from collections.abc import Iterator
from dataclasses import replace

import pytest
from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url

from egresswatch.model import Event
from egresswatch.store import open_store
from egresswatch.store.engine import make_engine
from egresswatch.store.ingest import Ingest
from tests.store.factory import mixed, pg_url, process, tls_hello

pytestmark = pytest.mark.postgres
WRITERS, BATCHES = 4, 6


@pytest.fixture
def own_database() -> Iterator[str]:
    """A database of its own (the role may CREATEDB), so no other test's reset touches it."""
    base = make_url(pg_url())
    name = f"egresswatch_interning_{os.getpid()}"
    admin = create_engine(base, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f'DROP DATABASE IF EXISTS "{name}"'))
        conn.execute(text(f'CREATE DATABASE "{name}"'))
    url = base.set(database=name).render_as_string(hide_password=False)
    open_store(url).close()  # migrated once, as `egresswatch db upgrade` would
    try:
        yield url
    finally:
        with admin.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


def _events(seed: int) -> list[Event]:
    shared = [
        *mixed(80),
        *(tls_hello(1.0 + i, f"s{i}.example", process(pid=100 + i)) for i in range(20)),
    ]
    random.Random(seed).shuffle(shared)  # every writer meets the same names in its own order
    return [
        replace(e, observation=replace(e.observation, ts=1e9 + seed + n))
        for n, e in enumerate(shared)
    ]


def _writer(url: str, seed: int, start: threading.Barrier, errors: list[BaseException]) -> None:
    engine = make_engine(url)
    ingest = Ingest()
    try:
        start.wait()
        for batch in range(BATCHES):
            with engine.begin() as conn:
                ingest.write(conn, _events(seed * 100 + batch))
    except BaseException as err:  # reported by the test, not swallowed
        errors.append(err)
    finally:
        engine.dispose()


DUPLICATES = {
    "hostnames": "SELECT name FROM hostnames GROUP BY name HAVING count(*) > 1",
    "addresses": "SELECT addr FROM addresses GROUP BY addr HAVING count(*) > 1",
    "labels": "SELECT text FROM labels GROUP BY text HAVING count(*) > 1",
    "executables": "SELECT path FROM executables GROUP BY path, sha256 HAVING count(*) > 1",
    "processes": "SELECT pid FROM processes GROUP BY pid, start_time, name, exe_id, cmdline "
    "HAVING count(*) > 1",
    "destinations": "SELECT hostname_id FROM destinations GROUP BY hostname_id HAVING count(*) > 1",
    "names": "SELECT address_id FROM names GROUP BY address_id, hostname_id, source "
    "HAVING count(*) > 1",
    "destination_tools": "SELECT tool FROM destination_tools GROUP BY destination_id, tool "
    "HAVING count(*) > 1",
}


def test_concurrent_writers_intern_each_row_once(own_database: str) -> None:
    start = threading.Barrier(WRITERS)
    errors: list[BaseException] = []
    threads = [
        threading.Thread(target=_writer, args=(own_database, n, start, errors))
        for n in range(WRITERS)
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=300)
    assert not errors, errors
    engine = create_engine(own_database)
    try:
        with engine.connect() as conn:
            events = conn.execute(text("SELECT count(*) FROM events")).scalar_one()
            duplicated = {t: conn.execute(text(q)).all() for t, q in DUPLICATES.items()}
            hosts = conn.execute(text("SELECT count(*) FROM hostnames")).scalar_one()
    finally:
        engine.dispose()
    assert events == WRITERS * BATCHES * 100
    assert duplicated == {t: [] for t in DUPLICATES}
    assert hosts >= 20 + 50
