"""GET /api/health: is the store readable, and is the agent alive (from its status row)?"""

import time
from typing import Literal

from fastapi import APIRouter

from egresswatch import __version__
from egresswatch.api.deps import Components
from egresswatch.api.schemas import AgentOut, ErrorOut, HealthOut
from egresswatch.store.migrate import current_revision
from egresswatch.store.status import AgentStatus, read_statuses

router = APIRouter(tags=["health"])


@router.get("/api/health", response_model=HealthOut, responses={503: {"model": ErrorOut}})
def health(web: Components) -> HealthOut:
    """ok when the newest agent wrote its status within the last few seconds (`nodes`: each
    agent of a shared store); 503 when the store cannot be read.
    """
    engine = web.store.engine
    nodes = read_statuses(engine)
    status = max(nodes, key=lambda s: s.updated, default=None)
    now = time.time()
    return HealthOut(
        status=_state(status, now, web.stale_after),
        version=__version__,
        store=web.store.url,
        revision=current_revision(engine),
        agent=None if status is None else agent_out(status, now, web.stale_after),
        nodes=[agent_out(s, now, web.stale_after) for s in nodes],
    )


def _state(
    status: AgentStatus | None, now: float, stale_after: float
) -> Literal["ok", "stale", "no-agent"]:
    if status is None:
        return "no-agent"
    return "ok" if now - status.updated <= stale_after else "stale"


def agent_out(status: AgentStatus, now: float, stale_after: float) -> AgentOut:
    return AgentOut(
        node=status.node,
        status="ok" if now - status.updated <= stale_after else "stale",
        pid=status.pid,
        started=status.started,
        updated=status.updated,
        age_seconds=max(0.0, now - status.updated),
        last_event_ts=status.last_event_ts,
        queue_depth=status.queue_depth,
        counters=status.counters,
    )
