"""Opening a shared (PostgreSQL) store as an agent: agents never migrate it (the owner role runs
`egresswatch db upgrade` once); they check that the schema is there at the newest revision and
that their role holds every privilege the writer uses, and say exactly what is missing.
"""

from sqlalchemy import Engine, text
from sqlalchemy.exc import OperationalError, SQLAlchemyError

from egresswatch.errors import StoreError
from egresswatch.store.database import Store, check_at_head, open_store
from egresswatch.store.engine import make_engine, resolve_url
from egresswatch.store.schema import Base

WRITER_PRIVILEGES = ("SELECT", "INSERT", "UPDATE")
EXTRA_PRIVILEGES = {"agent_status": ("DELETE",)}  # the agent replaces its own status row
GRANTS_DOC = "docs/fleet.md, 'Roles'"


def missing_grants(engine: Engine) -> list[str]:
    """`PRIVILEGE on table` (and `USAGE on sequence`) the connected role lacks."""
    missing = []
    with engine.connect() as conn:
        for name, wanted in _wanted():
            if conn.execute(text("SELECT to_regclass(:t)"), {"t": name}).scalar() is None:
                continue  # an older schema: check_at_head names the revisions
            for privilege in wanted:
                query = text("SELECT has_table_privilege(:t, :p)")
                if not conn.execute(query, {"t": name, "p": privilege}).scalar_one():
                    missing.append(f"{privilege} on {name}")
        for sequence in conn.execute(text(_SEQUENCES)).scalars():
            query = text("SELECT has_sequence_privilege(:s, 'USAGE')")
            if not conn.execute(query, {"s": sequence}).scalar_one():
                missing.append(f"USAGE on sequence {sequence}")
    return missing


def _wanted() -> list[tuple[str, tuple[str, ...]]]:
    tables = [
        (t.name, (*WRITER_PRIVILEGES, *EXTRA_PRIVILEGES.get(t.name, ())))
        for t in Base.metadata.sorted_tables
    ]
    return [("alembic_version", ("SELECT",)), *tables]


_SEQUENCES = (
    "SELECT c.relname FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace "
    "WHERE c.relkind = 'S' AND n.nspname = current_schema()"
)


def open_agent_store(url: str | None, *, allow_unreachable: bool = False) -> Store:
    """SQLite: the agent's own file, migrated. Anything else: checked, never migrated.

    With `allow_unreachable`, a server that does not answer yet is no error: the Store comes
    back with `pending_check` set, which the writer runs once the server answers (issue #9).
    """
    resolved = resolve_url(url)
    if resolved.startswith("sqlite"):
        return open_store(resolved)
    engine = make_engine(resolved)

    def check() -> None:
        _check_schema_exists(engine)
        _check_grants(engine)
        check_at_head(engine)

    try:
        check()
    except Unreachable:
        if not allow_unreachable:
            engine.dispose()
            raise
        store = Store(engine)
        store.pending_check = check
        return store
    except BaseException:
        engine.dispose()
        raise
    return Store(engine)


class Unreachable(StoreError):
    """The server did not answer (as opposed to answering with a wrong schema or grants)."""


def _check_schema_exists(engine: Engine) -> None:
    where = engine.url.render_as_string(hide_password=True)
    try:
        with engine.connect() as conn:
            found = conn.execute(text("SELECT to_regclass('alembic_version')")).scalar()
    except OperationalError as exc:
        raise Unreachable(f"cannot open the event store {where}: {exc}") from exc
    except SQLAlchemyError as exc:
        raise StoreError(f"cannot open the event store {where}: {exc}") from exc
    if found is None:
        raise StoreError(
            f"{where} is not an egresswatch store yet (no schema): the owner runs "
            "`egresswatch db upgrade --db ...` once (docs/fleet.md)"
        )


def _check_grants(engine: Engine) -> None:
    where = engine.url.render_as_string(hide_password=True)
    try:
        missing = missing_grants(engine)
    except SQLAlchemyError as exc:
        raise StoreError(f"cannot check the privileges on {where}: {exc}") from exc
    if missing:
        shown = ", ".join(missing[:8]) + (
            f" and {len(missing) - 8} more" if len(missing) > 8 else ""
        )
        raise StoreError(
            f"the role {engine.url.username} on {where} lacks {shown}: the owner grants them "
            f"({GRANTS_DOC})"
        )
