"""GET /api/timeline: event counts per bucket and group, for the charts."""

import time
from typing import Annotated, Literal

from fastapi import APIRouter, HTTPException, Query

from egresswatch.api.deps import Components, when
from egresswatch.api.mapping import timeline_out
from egresswatch.api.routes.events import TIME_HELP, TIME_PATTERN
from egresswatch.api.schemas import ErrorOut, TimelineOut
from egresswatch.store.timeline import MAX_BUCKETS, WIDTHS, auto_bucket

router = APIRouter(tags=["timeline"])
DEFAULT_SPAN = 86400.0


@router.get("/api/timeline", response_model=TimelineOut, responses={400: {"model": ErrorOut}})
def get_timeline(
    web: Components,
    since: Annotated[
        str | None, Query(pattern=TIME_PATTERN, description=TIME_HELP + "; default 24h")
    ] = None,
    until: Annotated[
        str | None, Query(pattern=TIME_PATTERN, description=TIME_HELP + "; default now")
    ] = None,
    bucket: Literal["auto", "minute", "hour", "day"] = "auto",
    group: Literal["tool", "category", "host", "process", "node"] = "tool",
) -> TimelineOut:
    """Counts of events with since <= ts < until per time bucket and group (top 10 + other)."""
    now = time.time()
    parsed_until = when(until, "until", now)
    end = now if parsed_until is None else parsed_until
    start = when(since, "since", now)
    start = end - DEFAULT_SPAN if start is None else start
    if start >= end:
        raise HTTPException(400, "since must be before until")
    chosen = auto_bucket(end - start) if bucket == "auto" else bucket
    if (end - start) / WIDTHS[chosen] > MAX_BUCKETS:
        raise HTTPException(400, f"more than {MAX_BUCKETS} {chosen} buckets: use a wider bucket")
    found = web.timelines.timeline(web.store.engine, start, end, bucket=chosen, group=group)
    return timeline_out(found, group)
