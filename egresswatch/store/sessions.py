"""Inference sessions in the store: open, link evidence, close (writes) and list (reads).

Writes take the caller's connection: inside `egresswatch run` they run as writer jobs
(`EventWriter.post`); the `session` commands, which run beside the service, use their own.
"""

import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

from sqlalchemy import Connection, Engine, Row, func, insert, select, update
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import Session

from egresswatch.errors import StoreError
from egresswatch.model import InferenceSession, ProcessRef
from egresswatch.store.rows import opt, storable
from egresswatch.store.schema import AlertRow, SessionEventRow, SessionRow

T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class NewSession:
    """What is known when a session opens."""

    start: float
    trigger: str
    label: str | None = None
    strict: bool = False
    tools: tuple[str, ...] = ()
    serving: tuple[ProcessRef, ...] = ()
    client: ProcessRef | None = None
    model: str | None = None
    node: str | None = None


def _ref_json(ref: ProcessRef) -> list[Any]:
    return [ref.pid, storable(ref.name), opt(ref.exe)]


def open_session(conn: Connection, new: NewSession) -> int:
    """Insert an open session; returns its id."""
    values = {
        "started": new.start,
        "last_active": new.start,
        "trigger": new.trigger,
        "label": opt(new.label),
        "strict": new.strict,
        "tools": json.dumps([storable(t) for t in new.tools]),
        "serving": json.dumps([_ref_json(r) for r in new.serving]),
        "client": None if new.client is None else json.dumps(_ref_json(new.client)),
        "model": opt(new.model),
        "egress": 0,
        "node": opt(new.node),
    }
    return int(
        conn.execute(insert(SessionRow).values(values).returning(SessionRow.id)).scalar_one()
    )


def add_evidence(conn: Connection, session_id: int, event_ids: Sequence[int], ts: float) -> None:
    """Link in-scope egress events to an open session and count them."""
    fresh = [e for e in event_ids if not _linked(conn, session_id, e)]
    if fresh:
        conn.execute(
            insert(SessionEventRow), [{"session_id": session_id, "event_id": e} for e in fresh]
        )
    conn.execute(
        update(SessionRow)
        .where(SessionRow.id == session_id)
        .values(egress=SessionRow.egress + len(fresh), last_active=ts)
    )


def _linked(conn: Connection, session_id: int, event_id: int) -> bool:
    found = conn.execute(
        select(SessionEventRow.event_id).where(
            SessionEventRow.session_id == session_id, SessionEventRow.event_id == event_id
        )
    ).first()
    return found is not None


def touch(conn: Connection, session_id: int, ts: float) -> None:
    """Record activity (an inference request) so the idle timeout starts again."""
    conn.execute(update(SessionRow).where(SessionRow.id == session_id).values(last_active=ts))


def close_session(conn: Connection, session_id: int, end: float) -> str | None:
    """End an open session with its verdict ("clean" or "egress"); None if not open."""
    row = conn.execute(
        select(SessionRow.egress).where(SessionRow.id == session_id, SessionRow.ended.is_(None))
    ).first()
    if row is None:
        return None
    verdict = "egress" if row.egress else "clean"
    conn.execute(
        update(SessionRow).where(SessionRow.id == session_id).values(ended=end, verdict=verdict)
    )
    return verdict


def latest_open(
    conn: Connection,
    trigger: str | None = None,
    node: str | None = None,
    *,
    adopted_by: str | None = None,
) -> int | None:
    """The newest open session's id (of `trigger`, opened by `node`, and one `adopted_by`'s
    tracker adopts — its own or a node-less one — when given)."""
    query = select(func.max(SessionRow.id)).where(SessionRow.ended.is_(None))
    if trigger is not None:
        query = query.where(SessionRow.trigger == trigger)
    if node is not None:
        query = query.where(SessionRow.node == node)
    if adopted_by is not None:
        query = query.where((SessionRow.node == adopted_by) | SessionRow.node.is_(None))
    found = conn.execute(query).scalar()
    return None if found is None else int(found)


# -- reads ---------------------------------------------------------------------------------


def list_sessions(
    engine: Engine,
    since: float | None = None,
    *,
    only_open: bool = False,
    limit: int = 1000,
    node: str | None = None,
) -> list[InferenceSession]:
    """Sessions that started at or after `since` (or are still open), oldest first; only
    `node`'s when given.
    """

    def read() -> list[InferenceSession]:
        query = _session_query().order_by(SessionRow.id.desc()).limit(limit)
        if since is not None:
            query = query.where((SessionRow.started >= since) | SessionRow.ended.is_(None))
        if only_open:
            query = query.where(SessionRow.ended.is_(None))
        if node is not None:
            query = query.where(SessionRow.node == node)
        with Session(engine) as conn:
            return [_session(row) for row in reversed(list(conn.execute(query)))]

    return reading(read)


def get_session(engine: Engine, session_id: int) -> InferenceSession | None:
    def read() -> InferenceSession | None:
        with Session(engine) as conn:
            row = conn.execute(_session_query().where(SessionRow.id == session_id)).first()
        return None if row is None else _session(row)

    return reading(read)


def evidence_ids(engine: Engine, session_id: int) -> list[int]:
    """The ids of the session's evidence events, ascending."""

    def read() -> list[int]:
        query = (
            select(SessionEventRow.event_id)
            .where(SessionEventRow.session_id == session_id)
            .order_by(SessionEventRow.event_id)
        )
        with engine.connect() as conn:
            return [int(e) for e in conn.execute(query).scalars()]

    return reading(read)


def _session_query() -> Any:
    alerts = (
        select(func.count(AlertRow.id))
        .where(AlertRow.session_id == SessionRow.id)
        .scalar_subquery()
        .label("alert_count")
    )
    return select(SessionRow, alerts)


def _refs(text: str | None) -> tuple[ProcessRef, ...]:
    if not text:
        return ()
    return tuple(ProcessRef(int(p), str(n), e) for p, n, e in json.loads(text))


def _session(row: Row[Any]) -> InferenceSession:
    s: SessionRow = row[0]
    client = _refs(f"[{s.client}]" if s.client else None)
    return InferenceSession(
        id=s.id,
        start=s.started,
        end=s.ended,
        trigger="auto" if s.trigger == "auto" else "manual",
        label=s.label,
        strict=bool(s.strict),
        tools=tuple(json.loads(s.tools)),
        serving=_refs(s.serving),
        client=client[0] if client else None,
        model=s.model,
        verdict=_verdict(s.ended, int(s.egress)),
        egress=int(s.egress),
        alerts=int(row.alert_count or 0),
        node=s.node,
    )


def _verdict(ended: float | None, egress: int) -> str:
    # From the count, not the stored column: evidence may be linked after a `session stop`.
    if ended is None:
        return "open"
    return "egress" if egress else "clean"


def reading(action: Callable[[], T]) -> T:
    """Run a read, turning database failures into a StoreError that says so."""
    try:
        return action()
    except SQLAlchemyError as exc:
        raise StoreError(f"cannot read the event store: {exc}") from exc


def writing(engine: Engine, action: Callable[[Connection], T]) -> T:
    """Run one write transaction from a command beside the service (e.g. `session start`)."""
    try:
        with engine.begin() as conn:
            return action(conn)
    except SQLAlchemyError as exc:
        raise StoreError(f"cannot write to the event store: {exc}") from exc
