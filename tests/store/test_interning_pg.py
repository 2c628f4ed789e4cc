"""Several writers interning the same hosts, addresses, labels, executables and processes into
one real PostgreSQL database at the same moment: each row exists once, and nobody deadlocks."""

import os
import random
import subprocess
import sys
import threading
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import pytest
from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url

from egresswatch.model import Event
from egresswatch.store import EventFilter, open_store
from egresswatch.store.engine import make_engine
from egresswatch.store.ingest import Ingest
from tests.store import intern_child
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
        if ingest.fallbacks:  # the batch interning missed a name the events needed
            errors.append(AssertionError(f"{ingest.fallbacks} rows interned one at a time"))
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


def _duplicates(url: str) -> dict[str, list[object]]:
    engine = create_engine(url)
    try:
        with engine.connect() as conn:
            return {t: list(conn.execute(text(q)).all()) for t, q in DUPLICATES.items()}
    finally:
        engine.dispose()


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


def test_writer_processes_interning_overlapping_new_names(
    own_database: str, tmp_path: Path
) -> None:
    """Several processes, each batch full of names the others are inserting at the same moment:
    no duplicate, no deadlock, and every stored event reads back with its own names."""
    go = tmp_path / "go"
    children = [
        subprocess.Popen(
            [sys.executable, "-m", "tests.store.intern_child", own_database, str(seed), str(go)],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for seed in range(WRITERS)
    ]
    go.touch()
    outputs = [child.communicate(timeout=240) for child in children]
    for child, (out, err) in zip(children, outputs, strict=True):
        assert child.returncode == 0, err
        assert out.split() == ["done", "0"], (out, err)  # no row interned one at a time
    assert _duplicates(own_database) == {t: [] for t in DUPLICATES}
    expected = {
        ev.observation.ts: ev
        for seed in range(WRITERS)
        for batch in intern_child.events(seed)
        for ev in batch
    }
    store = open_store(own_database, upgrade=False)
    try:
        stored = store.query_events(EventFilter(), limit=len(expected) + 10)
    finally:
        store.close()
    assert len(stored) == len(expected)
    wrong = [s.event.observation.ts for s in stored if s.event != expected[s.event.observation.ts]]
    assert wrong == []
    engine = create_engine(own_database)
    try:
        with engine.connect() as conn:
            hosts = conn.execute(text("SELECT count(*) FROM hostnames")).scalar_one()
            procs = conn.execute(text("SELECT count(*) FROM processes")).scalar_one()
            seen = conn.execute(text("SELECT sum(count) FROM destinations")).scalar_one()
            tools = conn.execute(text("SELECT sum(count) FROM destination_tools")).scalar_one()
    finally:
        engine.dispose()
    assert hosts == intern_child.POOL + 1  # + the CNAME target every DNS answer names
    assert procs == 150
    # Every writer's counter updates landed (none lost to another's concurrent update).
    assert seen == sum(ev.host is not None for ev in expected.values())
    assert tools == sum(ev.host is not None and ev.tool is not None for ev in expected.values())
