"""The agent's status row: written by the agent every few seconds, read by the web process."""

import json
from dataclasses import dataclass

from sqlalchemy import Engine, delete, select
from sqlalchemy.orm import Session

from egresswatch.store.schema import AgentStatusRow
from egresswatch.store.window import newest_ts

AGENT = "agent"


@dataclass(frozen=True, slots=True)
class AgentStatus:
    """A snapshot of the running agent: counters (capture, attribution, store), queue depth."""

    pid: int
    started: float
    updated: float
    last_event_ts: float | None
    queue_depth: int
    counters: dict[str, int]


def write_status(engine: Engine, status: AgentStatus, name: str = AGENT) -> None:
    """Replace the row of agent `name` (call it on the store's writer thread); the last event
    time is the newest stored event's, unless `status` brings one.
    """
    with engine.connect() as conn:
        newest = status.last_event_ts or newest_ts(conn)
    row = AgentStatusRow(
        name=name,
        pid=status.pid,
        started=status.started,
        updated=status.updated,
        last_event_ts=newest,
        queue_depth=status.queue_depth,
        counters=json.dumps(status.counters, sort_keys=True),
    )
    with Session(engine) as session, session.begin():
        session.execute(delete(AgentStatusRow).where(AgentStatusRow.name == name))
        session.add(row)


def read_status(engine: Engine, name: str = AGENT) -> AgentStatus | None:
    """The last status the agent wrote, or None when no agent ever ran on this store."""
    with Session(engine) as conn:
        row = conn.scalars(select(AgentStatusRow).where(AgentStatusRow.name == name)).first()
        if row is None:
            return None
        counters = {str(k): int(v) for k, v in json.loads(row.counters).items()}
        return AgentStatus(
            row.pid, row.started, row.updated, row.last_event_ts, row.queue_depth, counters
        )
