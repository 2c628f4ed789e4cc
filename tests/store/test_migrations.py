"""Alembic migrations give exactly the models' schema, round-trip, and ship inside the package."""

import fnmatch
import tomllib
from collections.abc import Iterator
from pathlib import Path

import pytest
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import Engine, inspect

from egresswatch.store import migrate, open_store
from egresswatch.store.engine import make_engine, resolve_url
from egresswatch.store.schema import Base
from tests.store.factory import backend_url

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def engine(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Engine]:
    e = make_engine(resolve_url(backend_url(request.param, tmp_path)))
    yield e
    e.dispose()


def schema_diffs(engine: Engine) -> list[object]:
    with engine.connect() as conn:
        return list(compare_metadata(MigrationContext.configure(conn), Base.metadata))


def test_upgrade_of_an_empty_database_gives_the_models_schema(engine: Engine) -> None:
    assert set(inspect(engine).get_table_names()) == set()
    migrate.upgrade(engine)
    assert set(inspect(engine).get_table_names()) == set(Base.metadata.tables) | {"alembic_version"}
    assert schema_diffs(engine) == []
    assert migrate.current_revision(engine) == migrate.head_revision(engine) == "0005"


def test_downgrade_to_base_and_upgrade_again_round_trips(engine: Engine) -> None:
    migrate.upgrade(engine)
    migrate.downgrade(engine, "base")
    assert set(inspect(engine).get_table_names()) == {"alembic_version"}
    assert migrate.current_revision(engine) is None
    migrate.upgrade(engine)
    assert schema_diffs(engine) == []


def test_a_drifted_schema_is_detected(tmp_path: Path) -> None:
    # Guards the two tests above: compare_metadata must see a missing index.
    engine = make_engine(resolve_url(str(tmp_path / "drift.db")))
    migrate.upgrade(engine)
    with engine.begin() as conn:
        conn.exec_driver_sql("DROP INDEX ix_events_tool_id")
    assert schema_diffs(engine) != []
    engine.dispose()


def test_open_store_upgrades_automatically_and_is_idempotent(tmp_path: Path) -> None:
    path = tmp_path / "sub" / "dir" / "events.db"
    open_store(str(path)).close()
    store = open_store(str(path))
    assert store.stats().revision == "0005"
    store.close()


def test_migration_scripts_are_package_data() -> None:
    """Every file alembic needs is under egresswatch/migrations and matched by package-data."""
    scripts = migrate.migrations_dir()
    assert scripts == REPO / "egresswatch" / "migrations"
    assert (scripts / "env.py").is_file() and (scripts / "script.py.mako").is_file()
    assert scripts.resolve() == (REPO / "migrations").resolve()
    config = tomllib.loads((REPO / "pyproject.toml").read_text())
    globs = config["tool"]["setuptools"]["package-data"]["egresswatch"]
    needed = [p for p in scripts.rglob("*") if p.is_file() and "__pycache__" not in p.parts]
    assert needed
    for path in needed:
        rel = path.relative_to(REPO / "egresswatch").as_posix()
        assert any(fnmatch.fnmatch(rel, g) and rel.count("/") == g.count("/") for g in globs), rel
