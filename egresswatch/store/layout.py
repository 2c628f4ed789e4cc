"""A store that says "head" but has an older layout: the initial revision was once edited in
place, so databases made before that edit carry the head revision without its tables/columns.
Alembic cannot see this; comparing the live tables with the models can.
"""

from sqlalchemy import Engine, inspect
from sqlalchemy.exc import SQLAlchemyError

from egresswatch.errors import StoreError
from egresswatch.store.schema import Base


def missing_parts(engine: Engine) -> list[str]:
    """`table` or `table.column` names the models have and the database lacks."""
    live = inspect(engine)
    present = set(live.get_table_names())
    missing: list[str] = []
    for table in Base.metadata.sorted_tables:
        if table.name not in present:
            missing.append(table.name)
            continue
        columns = {c["name"] for c in live.get_columns(table.name)}
        missing += [f"{table.name}.{c.name}" for c in table.columns if c.name not in columns]
    return missing


def check_layout(engine: Engine, revision: str | None) -> None:
    """StoreError naming what is missing when the database at `revision` lacks parts of it."""
    where = engine.url.render_as_string(hide_password=True)
    try:
        missing = missing_parts(engine)
    except SQLAlchemyError as exc:
        raise StoreError(f"cannot read the tables of the event store {where}: {exc}") from exc
    if not missing:
        return
    shown = ", ".join(missing[:6]) + (f" and {len(missing) - 6} more" if len(missing) > 6 else "")
    raise StoreError(
        f"the event store {where} is marked at schema revision {revision} but lacks {shown}: "
        "it was made by an early egresswatch whose first schema revision was later changed. "
        "Move it aside (sqlite3 or psql still read it) and let egresswatch create a new store"
    )
