"""The owner/agent split on a real PostgreSQL: an agent never migrates, says when the schema is
missing, names each missing grant, and works once the owner has run docs/fleet.md's SQL."""

import os
import re
import shutil
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url
from sqlalchemy.exc import ProgrammingError

from egresswatch.errors import StoreError
from egresswatch.store.ingest import Ingest
from egresswatch.store.shared import open_agent_store
from tests.store.factory import mixed, pg_url

pytestmark = [
    pytest.mark.postgres,
    pytest.mark.skipif(
        os.geteuid() != 0 or shutil.which("psql") is None, reason="needs psql as root"
    ),
]
FLEET_DOC = Path(__file__).resolve().parents[2] / "docs" / "fleet.md"


@dataclass(frozen=True)
class Shared:
    database: str
    owner_url: str
    agent_url: str


def _superuser(sql: str, database: str = "postgres") -> None:
    done = subprocess.run(
        ["su", "postgres", "-c", f"psql -v ON_ERROR_STOP=1 -q -d {database}"],
        input=sql, capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr


def _doc_sql(fence: str, tag: str) -> str:
    found = re.search(rf"```{fence}\n(.*?)```", FLEET_DOC.read_text(), re.S)
    assert found, fence
    return (
        found.group(1)
        .replace("egresswatch_owner", f"{tag}_owner")
        .replace("egresswatch_agent", f"{tag}_agent")
    )


@pytest.fixture
def shared() -> Iterator[Shared]:
    tag = f"ew_fleet_{os.getpid()}"
    base = make_url(pg_url())
    setup = _doc_sql("sql", tag).replace("DATABASE egresswatch", f"DATABASE {tag}")
    _superuser(setup)
    urls = [
        base.set(username=f"{tag}_{who}", password=f"change-me-{who}", database=tag)
        for who in ("owner", "agent")
    ]
    try:
        yield Shared(tag, *(u.render_as_string(hide_password=False) for u in urls))
    finally:
        _superuser(
            f"DROP DATABASE IF EXISTS {tag} WITH (FORCE);"
            f"DROP ROLE IF EXISTS {tag}_owner; DROP ROLE IF EXISTS {tag}_agent;"
        )


def _refusal(url: str) -> str:
    with pytest.raises(StoreError) as caught:
        open_agent_store(url).close()
    return str(caught.value)


def test_agent_role_never_migrates_and_names_what_is_missing(shared: Shared) -> None:
    assert "not an egresswatch store yet" in _refusal(shared.agent_url)
    upgrade = [sys.executable, "-m", "egresswatch", "db", "upgrade", "--db", shared.owner_url]
    done = subprocess.run(upgrade, capture_output=True, text=True, timeout=120, check=False)
    assert done.returncode == 0, done.stderr
    refusal = _refusal(shared.agent_url)
    run = [sys.executable, "-m", "egresswatch", "run", "--no-web", "-i", "lo"]
    started = subprocess.run(
        [*run, "--db", shared.agent_url], capture_output=True, text=True, timeout=120, check=False
    )
    assert started.returncode == 2 and "Traceback" not in started.stderr
    assert "lacks SELECT on alembic_version" in " ".join(started.stderr.split())
    assert f"the role {shared.database}_agent" in refusal
    assert "lacks SELECT on alembic_version" in refusal and "docs/fleet.md" in refusal
    _superuser(
        _doc_sql("sql grants", shared.database).replace(
            "ALTER DEFAULT PRIVILEGES", f"ALTER DEFAULT PRIVILEGES FOR ROLE {shared.database}_owner"
        ),
        shared.database,
    )
    store = open_agent_store(shared.agent_url)
    try:
        with store.engine.begin() as conn:
            assert len(Ingest().write_ids(conn, mixed(40))) == 40
        with pytest.raises(ProgrammingError), store.engine.begin() as conn:
            conn.execute(text("DELETE FROM events"))  # the agent cannot delete events
        with pytest.raises(ProgrammingError), store.engine.begin() as conn:
            conn.execute(text("CREATE TABLE mine (x int)"))  # nor change the schema
    finally:
        store.close()
    owner = create_engine(shared.owner_url)
    try:
        with owner.connect() as conn:
            assert conn.execute(text("SELECT count(*) FROM events")).scalar_one() == 40
    finally:
        owner.dispose()
