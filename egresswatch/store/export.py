"""Stored events as flat records, written as JSON lines or CSV."""

import csv
import json
from collections.abc import Iterable
from datetime import UTC, datetime
from typing import Any, TextIO

from sqlalchemy import Engine

from egresswatch.errors import StoreError
from egresswatch.record import event_to_dict, to_json_line
from egresswatch.store.queries import EventFilter, iter_events
from egresswatch.store.rows import StoredEvent

FORMATS = ("jsonl", "csv")
# CSV columns: every key an event record can have (docs/events.md), in a stable order.
FIELDS = (
    "event_id", "time", "ts", "kind", "transport", "src", "sport", "dst", "dport", "tunneled",
    "host", "name_source", "name_conflict", "category", "catalog_entry", "tool", "attribution",
    "attribution_method", "name_ambiguous", "name_candidates",
    "pid", "process", "exe", "exe_sha256", "cmdline", "user", "ppid", "ancestry", "netns",
    "container", "proto", "id", "is_response", "qname", "qtype", "rcode", "truncated", "answers",
    "sni", "alpn", "ech", "tls_versions", "quic_version",
    "category_source", "category_confidence", "tool_reason", "cname_chain", "node",
)  # fmt: skip
# Spreadsheets run cells starting with these as formulas (CSV injection).
_FORMULA_START = ("=", "+", "-", "@", "\t", "\r")


def event_record(stored: StoredEvent) -> dict[str, Any]:
    """One stored event: its row id and UTC time, then the shared event record."""
    record: dict[str, Any] = {
        "event_id": stored.id,
        "time": datetime.fromtimestamp(stored.event.observation.ts, UTC).isoformat(
            timespec="milliseconds"
        ),
    }
    record.update(event_to_dict(stored.event))
    return record


def write_jsonl(records: Iterable[dict[str, Any]], out: TextIO) -> int:
    n = 0
    for n, record in enumerate(records, 1):  # noqa: B007 - n is the count afterwards
        out.write(to_json_line(record) + "\n")
    return n


def write_csv(records: Iterable[dict[str, Any]], out: TextIO) -> int:
    writer = csv.DictWriter(out, fieldnames=FIELDS, restval="")
    writer.writeheader()
    n = 0
    for n, record in enumerate(records, 1):  # noqa: B007
        writer.writerow({k: _csv_cell(v) for k, v in record.items()})
    return n


def _csv_cell(value: Any) -> Any:
    if isinstance(value, list):
        value = json.dumps(value, separators=(",", ":"))
    if isinstance(value, str) and value.startswith(_FORMULA_START):
        return "'" + value
    return value


def export(engine: Engine, fmt: str, out: TextIO, flt: EventFilter) -> int:
    """Write every event matching `flt`, oldest first; returns how many were written."""
    records = (event_record(s) for s in iter_events(engine, flt))
    if fmt == "jsonl":
        return write_jsonl(records, out)
    if fmt == "csv":
        return write_csv(records, out)
    raise StoreError(f"unknown export format {fmt!r} (use one of: {', '.join(FORMATS)})")
