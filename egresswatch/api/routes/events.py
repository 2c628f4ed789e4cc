"""GET /api/events: filtered, newest first, keyset-paged."""

from typing import Annotated

from fastapi import APIRouter, Query
from pydantic import BaseModel, ConfigDict, Field

from egresswatch.api.deps import Components, cursor, when
from egresswatch.api.mapping import encode_cursor, event_out
from egresswatch.api.schemas import ErrorOut, EventPageOut, Kind
from egresswatch.store.queries import EventFilter
from egresswatch.store.reads import Cursor, EventQuery, page_events
from egresswatch.store.sessions import evidence_ids

router = APIRouter(tags=["events"])
MAX_SESSION_EVENTS = 20_000  # the newest evidence of a session, as one IN list
TIME_HELP = "epoch seconds, ISO 8601 (UTC unless offset), or an age such as 15m, 24h, 7d"
TIME_PATTERN = r"^(\d+(\.\d+)?[smhdw]?|\d{4}-\d{2}-\d{2}([T ][0-9:.]+)?(Z|[+-]\d{2}:?\d{2})?)$"


class EventParams(BaseModel):
    """The filters of /api/events; all given ones must match."""

    model_config = ConfigDict(extra="forbid")

    since: str | None = Field(
        default=None, max_length=64, pattern=TIME_PATTERN, description=TIME_HELP
    )
    until: str | None = Field(
        default=None, max_length=64, pattern=TIME_PATTERN, description=TIME_HELP + " (exclusive)"
    )
    kind: Kind | None = None
    tool: str | None = Field(default=None, max_length=256)
    category: str | None = Field(default=None, max_length=64)
    host: str | None = Field(default=None, max_length=300, description="host or a name under it")
    node: str | None = Field(
        default=None, max_length=253, description="only this agent's ([agent] node, docs/fleet.md)"
    )
    pid: int | None = Field(default=None, ge=0, le=2**31)
    process: str | None = Field(default=None, max_length=256, description="process name")
    session: int | None = Field(
        default=None, ge=1, le=2**62, description="only this session's evidence"
    )
    limit: int = Field(default=100, ge=1, le=1000)
    cursor: str | None = Field(default=None, max_length=200, description="`next` of the last page")


@router.get("/api/events", response_model=EventPageOut, responses={400: {"model": ErrorOut}})
def list_events(web: Components, params: Annotated[EventParams, Query()]) -> EventPageOut:
    """Stored events matching every filter given, newest first; follow `next` for older ones."""
    base = EventFilter(
        since=when(params.since, "since"),
        until=when(params.until, "until"),
        tool=params.tool,
        category=params.category,
        host=params.host,
        node=params.node,
    )
    after = cursor(params.cursor)
    ids = None
    if params.session is not None:
        ids = tuple(evidence_ids(web.store.engine, params.session)[-MAX_SESSION_EVENTS:])
    page = page_events(
        web.store.engine,
        EventQuery(base=base, kind=params.kind, pid=params.pid, process=params.process, ids=ids),
        params.limit,
        None if after is None else Cursor(*after),
    )
    return EventPageOut(
        events=[event_out(stored) for stored in page.events],
        next=None if page.next is None else encode_cursor(page.next.ts, page.next.id),
    )
