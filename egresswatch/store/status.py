"""Agent status rows: written by each agent every few seconds, read by the web process.

One row per (name, node): agents sharing a store each keep their own (revision 0006).
"""

import json
from dataclasses import dataclass

from sqlalchemy import Engine, delete, select
from sqlalchemy.orm import Session

from egresswatch.store.schema import AgentStatusRow, Label
from egresswatch.store.window import newest_ts

AGENT = "agent"


@dataclass(frozen=True, slots=True)
class AgentStatus:
    """A snapshot of a running agent: counters (capture, attribution, store), queue depth.

    `last_event_ts` is the newest event this agent stored, or None: then the stored row's
    value, else the newest event of `node` in the newest block ("" : of any node, the
    single-agent store).
    """

    pid: int
    started: float
    updated: float
    last_event_ts: float | None
    queue_depth: int
    counters: dict[str, int]
    node: str = ""


def write_status(engine: Engine, status: AgentStatus, name: str = AGENT) -> None:
    """Replace the row of agent `name` on `status.node` (call it on the store's writer thread)."""
    where = (AgentStatusRow.name == name, AgentStatusRow.node == status.node)
    with Session(engine) as session, session.begin():
        newest = status.last_event_ts
        if newest is None:  # keep what an earlier run of this agent stored
            newest = session.scalars(select(AgentStatusRow.last_event_ts).where(*where)).first()
        if newest is None:
            node_id = None
            if status.node:
                node_id = select(Label.id).where(Label.text == status.node).scalar_subquery()
            newest = newest_ts(session, node_id)
        session.execute(delete(AgentStatusRow).where(*where))
        session.add(
            AgentStatusRow(
                name=name,
                node=status.node,
                pid=status.pid,
                started=status.started,
                updated=status.updated,
                last_event_ts=newest,
                queue_depth=status.queue_depth,
                counters=json.dumps(status.counters, sort_keys=True),
            )
        )


def read_statuses(engine: Engine, name: str = AGENT) -> list[AgentStatus]:
    """Every node's last status of agent `name`, by node name."""
    query = select(AgentStatusRow).where(AgentStatusRow.name == name)
    with Session(engine) as conn:
        rows = list(conn.scalars(query.order_by(AgentStatusRow.node)))
        return [_status(row) for row in rows]


def read_status(engine: Engine, name: str = AGENT, node: str | None = None) -> AgentStatus | None:
    """`node`'s last status (any node's newest when None), or None when none ever ran here."""
    query = select(AgentStatusRow).where(AgentStatusRow.name == name)
    if node is not None:
        query = query.where(AgentStatusRow.node == node)
    with Session(engine) as conn:
        row = conn.scalars(query.order_by(AgentStatusRow.updated.desc()).limit(1)).first()
        return None if row is None else _status(row)


def _status(row: AgentStatusRow) -> AgentStatus:
    counters = {str(k): int(v) for k, v in json.loads(row.counters).items()}
    return AgentStatus(
        row.pid, row.started, row.updated, row.last_event_ts, row.queue_depth, counters, row.node
    )
