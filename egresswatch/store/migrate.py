"""Alembic driven from code: find the shipped migration scripts; upgrade or downgrade a database."""

from collections.abc import Callable
from pathlib import Path

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Engine
from sqlalchemy.exc import SQLAlchemyError

from egresswatch.errors import StoreError


def migrations_dir() -> Path:
    """The Alembic scripts: top-level `migrations/`, reached as `egresswatch/migrations`.

    In a checkout that is a symlink; wheels and sdists hold the files themselves.
    """
    return Path(__file__).resolve().parent.parent / "migrations"


def alembic_config(engine: Engine) -> Config:
    cfg = Config()
    cfg.set_main_option("script_location", str(migrations_dir()))
    cfg.attributes["engine"] = engine
    return cfg


def upgrade(engine: Engine, revision: str = "head") -> None:
    _run(engine, lambda cfg: command.upgrade(cfg, revision))


def downgrade(engine: Engine, revision: str = "base") -> None:
    _run(engine, lambda cfg: command.downgrade(cfg, revision))


def current_revision(engine: Engine) -> str | None:
    with engine.connect() as conn:
        return MigrationContext.configure(conn).get_current_revision()


def head_revision(engine: Engine) -> str | None:
    return ScriptDirectory.from_config(alembic_config(engine)).get_current_head()


def _run(engine: Engine, action: Callable[[Config], None]) -> None:
    try:
        action(alembic_config(engine))
    except SQLAlchemyError as exc:
        raise StoreError(f"database migration failed on {engine.url!r}: {exc}") from exc
