"""Store and model records -> API response schemas, one explicit function per record type."""

import base64
import binascii
import json

from egresswatch.api.schemas import (
    AlertOut,
    CatalogEntryOut,
    CatalogRoleOut,
    CategoryUseOut,
    DestinationOut,
    EventOut,
    ProcessOut,
    ProcessRefOut,
    SessionOut,
    TimelineOut,
    TimelinePointOut,
    ToolCardOut,
    ToolUseOut,
)
from egresswatch.classify.catalog import Catalog
from egresswatch.model import Alert, InferenceSession, ProcessInfo, ProcessRef
from egresswatch.record import process_to_dict
from egresswatch.store.export import event_record
from egresswatch.store.queries import StoredEvent
from egresswatch.store.summaries import DestinationSummary, ToolSummary
from egresswatch.store.timeline import Timeline

# Where a local-inference tool is expected to go; everything else is "offsite" on its card.
EXPECTED_CATEGORIES = frozenset({"model-registry", "model-cdn", "package-registry"})


def event_out(stored: StoredEvent) -> EventOut:
    return EventOut.model_validate(event_record(stored))


def timeline_out(found: Timeline, group: str) -> TimelineOut:
    return TimelineOut(
        bucket=found.bucket,
        width=found.width,
        since=found.since,
        until=found.until,
        group=group,  # type: ignore[arg-type]
        groups=found.groups,
        points=[
            TimelinePointOut(start=p.start, group=p.group, count=p.count) for p in found.points
        ],
    )


def destination_out(dest: DestinationSummary, catalog: Catalog | None) -> DestinationOut:
    return DestinationOut(
        host=dest.host,
        category=dest.category,
        catalog_entry=dest.catalog_entry,
        catalog=catalog_entry_out(catalog, dest.catalog_entry),
        first_seen=dest.first_seen,
        last_seen=dest.last_seen,
        count=dest.count,
        tools=[
            ToolUseOut(tool=u.tool, count=u.count, first_seen=u.first_seen, last_seen=u.last_seen)
            for u in dest.tools
        ],
    )


def catalog_entry_out(catalog: Catalog | None, pattern: str | None) -> CatalogEntryOut | None:
    """The catalog's entry for `pattern` with its cited roles (None when not in the catalog)."""
    if catalog is None or pattern is None:
        return None
    for entry in catalog.entries:
        if entry.pattern == pattern:
            roles = [
                CatalogRoleOut(
                    category=r.category, tools=list(r.tools), purpose=r.purpose, source=r.source
                )
                for r in entry.roles
            ]
            return CatalogEntryOut(pattern=entry.pattern, roles=roles)
    return None


def tool_card_out(card: ToolSummary) -> ToolCardOut:
    return ToolCardOut(
        tool=card.tool,
        events=card.events,
        destinations=card.destinations,
        first_seen=card.first_seen,
        last_seen=card.last_seen,
        categories=[
            CategoryUseOut(category=c.category, events=c.events, destinations=c.destinations)
            for c in card.categories
        ],
        offsite=[c.category for c in card.categories if c.category not in EXPECTED_CATEGORIES],
        processes=card.processes,
        executables=list(card.executables),
    )


def process_out(proc: ProcessInfo) -> ProcessOut:
    return ProcessOut(**process_to_dict(proc))


def encode_cursor(ts: float, row_id: int) -> str:
    """An opaque page cursor for the (ts, id) key."""
    raw = json.dumps([ts, row_id], separators=(",", ":")).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode_cursor(cursor: str) -> tuple[float, int]:
    """ValueError when `cursor` is not one that encode_cursor made."""
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))
        ts, row_id = json.loads(raw)
    except (binascii.Error, ValueError, TypeError) as exc:
        raise ValueError("not a cursor from this API") from exc
    if not isinstance(ts, int | float) or not isinstance(row_id, int) or isinstance(row_id, bool):
        raise ValueError("not a cursor from this API")
    return float(ts), row_id


def alert_out(alert: Alert) -> AlertOut:
    return AlertOut(
        id=alert.id or 0,
        time=alert.time,
        last_time=alert.last_time,
        severity=alert.severity,
        rule=alert.rule,
        message=alert.message,
        session=alert.session,
        tool=alert.tool,
        pid=alert.pid,
        process=alert.process,
        exe=alert.exe,
        exe_sha256=alert.exe_sha256,
        host=alert.host,
        category=alert.category,
        count=alert.count,
        event_id=alert.event_id,
        acknowledged=alert.acknowledged,
        node=alert.node,
    )


def session_out(session: InferenceSession) -> SessionOut:
    return SessionOut(
        id=session.id,
        start=session.start,
        end=session.end,
        trigger=session.trigger,
        label=session.label,
        strict=session.strict,
        tools=list(session.tools),
        serving=[_ref(r) for r in session.serving],
        client=None if session.client is None else _ref(session.client),
        model=session.model,
        verdict=session.verdict,  # type: ignore[arg-type]
        egress=session.egress,
        alerts=session.alerts,
        node=session.node,
    )


def _ref(ref: ProcessRef) -> ProcessRefOut:
    return ProcessRefOut(pid=ref.pid, name=ref.name, exe=ref.exe)
