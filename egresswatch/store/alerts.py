"""Alerts in the store: record with dedup (a writer job), list with filters, acknowledge."""

import json
from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import Any, cast

from sqlalchemy import Connection, Engine, insert, select, update
from sqlalchemy.orm import Session

from egresswatch.model import SEVERITIES, Alert, Severity
from egresswatch.store.rows import opt, storable
from egresswatch.store.schema import AlertRow
from egresswatch.store.sessions import reading, writing


@dataclass(frozen=True, slots=True)
class AlertFilter:
    """Which alerts to list: newer than `since`, at least `severity`, of one session, unacked."""

    since: float | None = None
    severity: Severity | None = None
    session: int | None = None
    only_open: bool = False
    node: str | None = None


def dedup_key(alert: Alert) -> str:
    """One alert per (rule, tool, executable, destination, session, node).

    The executable is its path when known: attribution hashes executables in the background,
    so a process's first events may lack the hash its later ones carry.
    """
    exe = alert.exe or alert.exe_sha256
    key: list[object] = [alert.rule, alert.tool, exe, alert.host, alert.session]
    if alert.node is not None:  # per agent on a shared store; keys of older rows unchanged
        key.append(alert.node)
    return json.dumps(key)


def record_alert(conn: Connection, alert: Alert) -> tuple[Alert, bool]:
    """Insert `alert` or count a repeat of it; returns the stored alert and whether it is new."""
    key = storable(dedup_key(alert))
    table = AlertRow.__table__
    existing = conn.execute(select(table).where(AlertRow.dedup_key == key)).first()
    if existing is not None:
        conn.execute(
            update(AlertRow)
            .where(AlertRow.id == existing.id)
            .values(count=AlertRow.count + 1, last_ts=max(existing.last_ts, alert.time))
        )
        repeat = alert_from_row(existing)
        return replace(repeat, count=repeat.count + 1, last_time=alert.time), False
    new_id = conn.execute(insert(AlertRow).values(_values(alert, key)).returning(AlertRow.id))
    return replace(alert, id=int(new_id.scalar_one()), last_time=alert.time), True


def _values(alert: Alert, key: str) -> dict[str, Any]:
    return {
        "first_ts": alert.time,
        "last_ts": alert.time,
        "count": 1,
        "rule": alert.rule,
        "severity": alert.severity,
        "session_id": alert.session,
        "tool": opt(alert.tool),
        "pid": alert.pid,
        "process": opt(alert.process),
        "exe": opt(alert.exe),
        "exe_sha256": opt(alert.exe_sha256),
        "host": opt(alert.host),
        "category": opt(alert.category),
        "event_id": alert.event_id,
        "message": storable(alert.message),
        "acknowledged": False,
        "dedup_key": key,
        "node": opt(alert.node),
    }


def list_alerts(engine: Engine, flt: AlertFilter, limit: int = 1000) -> list[Alert]:
    """The newest `limit` alerts matching `flt`, oldest first."""
    query = select(AlertRow).order_by(AlertRow.id.desc()).limit(limit)
    if flt.since is not None:
        query = query.where(AlertRow.last_ts >= flt.since)
    if flt.severity is not None:
        query = query.where(AlertRow.severity.in_(SEVERITIES[SEVERITIES.index(flt.severity) :]))
    if flt.session is not None:
        query = query.where(AlertRow.session_id == flt.session)
    if flt.only_open:
        query = query.where(AlertRow.acknowledged.is_(False))
    if flt.node is not None:
        query = query.where(AlertRow.node == flt.node)

    def read() -> list[Alert]:
        with Session(engine) as conn:
            return [alert_from_row(row) for row in reversed(list(conn.execute(query).scalars()))]

    return reading(read)


def acknowledge(engine: Engine, ids: Sequence[int]) -> list[int]:
    """Mark alerts acknowledged; returns the ids that exist (the others are unknown)."""
    return writing(engine, lambda conn: acknowledge_in(conn, ids))


def acknowledge_in(conn: Connection, ids: Sequence[int]) -> list[int]:
    """`acknowledge` inside a transaction (e.g. a writer job); returns the ids that exist."""
    rows = conn.execute(select(AlertRow.id).where(AlertRow.id.in_(ids)))
    found = [int(i) for i in rows.scalars()]
    if found:
        conn.execute(update(AlertRow).where(AlertRow.id.in_(found)).values(acknowledged=True))
    return found


def alert_from_row(row: Any) -> Alert:
    """An Alert from a mapped AlertRow or a Core row of the alerts table."""
    severity: Any = row.severity if row.severity in SEVERITIES else "info"
    return Alert(
        rule=row.rule,
        severity=cast(Severity, severity),
        time=row.first_ts,
        message=row.message,
        session=row.session_id,
        tool=row.tool,
        pid=row.pid,
        process=row.process,
        exe=row.exe,
        exe_sha256=row.exe_sha256,
        host=row.host,
        category=row.category,
        event_id=row.event_id,
        count=int(row.count),
        id=row.id,
        last_time=row.last_ts,
        acknowledged=bool(row.acknowledged),
        node=row.node,
    )
