"""Alerts and sessions as the JSON objects of `egresswatch alerts --json` / `sessions --json`
(the keys issue #7 names); the webhook's generic payload is the same object."""

from typing import Any

from egresswatch.model import Alert, InferenceSession


def alert_to_dict(alert: Alert) -> dict[str, Any]:
    return {
        "id": alert.id,
        "time": alert.time,
        "last_time": alert.last_time,
        "severity": alert.severity,
        "rule": alert.rule,
        "session": alert.session,
        "tool": alert.tool,
        "pid": alert.pid,
        "process": alert.process,
        "exe": alert.exe,
        "exe_sha256": alert.exe_sha256,
        "host": alert.host,
        "category": alert.category,
        "count": alert.count,
        "event_id": alert.event_id,
        "acknowledged": alert.acknowledged,
        "message": alert.message,
        "node": alert.node,
    }


def session_to_dict(session: InferenceSession) -> dict[str, Any]:
    client = session.client
    return {
        "id": session.id,
        "start": session.start,
        "end": session.end,
        "trigger": session.trigger,
        "label": session.label,
        "strict": session.strict,
        "tools": list(session.tools),
        "serving": [{"pid": r.pid, "name": r.name, "exe": r.exe} for r in session.serving],
        "client": None if client is None else {"pid": client.pid, "name": client.name},
        "model": session.model,
        "egress": session.egress,
        "alerts": session.alerts,
        "verdict": session.verdict,
        "node": session.node,
    }
