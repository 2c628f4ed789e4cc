"""The content of a session report, read from the store: verdict, egress grouped by tool,
process and category, alerts, evidence (with its SHA-256) and remediation."""

import socket
import time
from collections import defaultdict
from datetime import datetime
from typing import Any

from sqlalchemy import Engine

from egresswatch.alerts.render import alert_to_dict, session_to_dict
from egresswatch.errors import StoreError
from egresswatch.model import InferenceSession
from egresswatch.report.evidence import evidence_records, evidence_sha256
from egresswatch.report.remediation import paste_blocks, switches_for
from egresswatch.store.alerts import AlertFilter, list_alerts
from egresswatch.store.sessions import get_session

FORMAT = "egresswatch-session-report/1"


def build_report(engine: Engine, session_id: int) -> dict[str, Any]:
    """Everything the report shows, as plain JSON-able data; StoreError for an unknown id."""
    session = get_session(engine, session_id)
    if session is None:
        raise StoreError(f"no session {session_id}")
    evidence = evidence_records(engine, session_id)
    alerts = [alert_to_dict(a) for a in list_alerts(engine, AlertFilter(session=session_id))]
    return {
        "format": FORMAT,
        "generated": time.time(),
        "machine": socket.gethostname(),
        "session": session_to_dict(session),
        "summary": summary(session, evidence),
        "groups": groups(evidence),
        "alerts": alerts,
        "evidence": evidence,
        "evidence_sha256": evidence_sha256(evidence),
        "remediation": remediation(evidence, alerts),
    }


def _span(session: InferenceSession) -> str:
    start = datetime.fromtimestamp(session.start).strftime("%Y-%m-%d %H:%M")
    end = (
        "still open"
        if session.end is None
        else datetime.fromtimestamp(session.end).strftime("%H:%M")
    )
    return f"{start}-{end}"


def summary(session: InferenceSession, evidence: list[dict[str, Any]]) -> str:
    """The verdict in one sentence (raw text: escaped by each renderer)."""
    where = f"during session {session.id} ({_span(session)})"
    if not evidence:
        return f"No process in scope sent anything off this machine {where}."
    seen = sorted({f"{r['process'] or r['attribution']} -> {_name(r)}" for r in evidence})
    return f"{len(evidence)} in-scope egress events left this machine {where}: {'; '.join(seen)}."


def _name(record: dict[str, Any]) -> str:
    """What an evidence event is about: its host, the DNS question, or the address."""
    return str(record["host"] or record.get("qname") or record["dst"])


def groups(evidence: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Evidence grouped by (tool, process, category), with hosts and counts."""
    grouped: dict[tuple[str, str, str], dict[str, Any]] = {}
    hosts: dict[tuple[str, str, str], set[str]] = defaultdict(set)
    for record in evidence:
        key = (
            record["tool"] or "-",
            record["process"] or record["attribution"],
            record["category"] or "unknown",
        )
        entry = grouped.setdefault(
            key, {"tool": key[0], "process": key[1], "category": key[2], "events": 0}
        )
        entry["events"] += 1
        hosts[key].add(_name(record))
    return [grouped[k] | {"hosts": sorted(hosts[k])} for k in sorted(grouped)]


def remediation(evidence: list[dict[str, Any]], alerts: list[dict[str, Any]]) -> dict[str, Any]:
    seen = {(r["tool"], r["category"]) for r in evidence if r["tool"]}
    seen |= {
        (a["tool"], "exposure" if a["rule"] == "exposed-api" else a["category"])
        for a in alerts
        if a["tool"]
    }
    found = switches_for(sorted(seen, key=str))
    return {
        "switches": [
            {"tool": s.tool, "setting": s.setting, "source": s.source, "stops_what_was_seen": stops}
            for s, stops in found
        ],
        "paste": paste_blocks(
            [_name(r) for r in evidence if r["host"] or r.get("qname")],
            [r["dst"] for r in evidence if r["kind"] != "dns"],  # not the resolver
        ),
    }
