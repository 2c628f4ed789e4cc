"""Per-tool report cards read from the store: executables, destinations by category, sessions
and alerts of each recognised LLM tool (`egresswatch tools`)."""

import json
import time
from collections import defaultdict
from typing import Any

from sqlalchemy import Engine, func, select

from egresswatch.store.schema import (
    AlertRow,
    Destination,
    DestinationTool,
    Executable,
    Hostname,
    Process,
    SessionRow,
)
from egresswatch.store.sessions import reading

RECENT_DAYS = 30


def tool_cards(engine: Engine, now: float | None = None) -> list[dict[str, Any]]:
    """One card per tool seen in processes, destinations, sessions or alerts, by name."""
    recent = (now or time.time()) - RECENT_DAYS * 86400

    def read() -> list[dict[str, Any]]:
        cards: dict[str, dict[str, Any]] = defaultdict(_empty)
        with engine.connect() as conn:
            _executables(conn, cards)
            _destinations(conn, cards, recent)
            _sessions(conn, cards)
            _alerts(conn, cards)
        return [{"tool": name, **cards[name]} for name in sorted(cards)]

    return reading(read)


def _empty() -> dict[str, Any]:
    return {
        "executables": [],
        "destinations": {"ever": {}, "last_30_days": {}},
        "sessions": 0,
        "clean_sessions": 0,
        "alerts": 0,
    }


def _executables(conn: Any, cards: dict[str, dict[str, Any]]) -> None:
    query = (
        select(Process.tool, Executable.path, Executable.sha256)
        .join(Executable, Executable.id == Process.exe_id)
        .where(Process.tool.is_not(None))
        .distinct()
    )
    for tool, path, sha in conn.execute(query):
        entry = {
            "path": path,
            "sha256": sha.hex() if isinstance(sha, bytes) and len(sha) == 32 else None,
        }
        if entry not in cards[tool]["executables"]:
            cards[tool]["executables"].append(entry)


def _destinations(conn: Any, cards: dict[str, dict[str, Any]], recent: float) -> None:
    query = (
        select(DestinationTool.tool, Hostname.name, Destination.category, DestinationTool.last_seen)
        .join(Destination, Destination.id == DestinationTool.destination_id)
        .join(Hostname, Hostname.id == Destination.hostname_id)
    )
    for tool, host, category, last_seen in conn.execute(query):
        where = cards[tool]["destinations"]
        where["ever"].setdefault(category or "unknown", []).append(host)
        if last_seen >= recent:
            where["last_30_days"].setdefault(category or "unknown", []).append(host)


def _sessions(conn: Any, cards: dict[str, dict[str, Any]]) -> None:
    for tools, ended, egress in conn.execute(
        select(SessionRow.tools, SessionRow.ended, SessionRow.egress)
    ):
        for tool in json.loads(tools):
            cards[tool]["sessions"] += 1
            cards[tool]["clean_sessions"] += int(ended is not None and not egress)


def _alerts(conn: Any, cards: dict[str, dict[str, Any]]) -> None:
    query = (
        select(AlertRow.tool, func.count())
        .where(AlertRow.tool.is_not(None))
        .group_by(AlertRow.tool)
    )
    for tool, count in conn.execute(query):
        cards[tool]["alerts"] = int(count)
