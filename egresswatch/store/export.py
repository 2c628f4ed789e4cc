"""Stored events as flat records, written as JSON lines or CSV."""

import csv
import json
from collections.abc import Iterable
from datetime import UTC, datetime
from typing import Any, TextIO

from sqlalchemy import Engine

from egresswatch.errors import StoreError
from egresswatch.store.queries import EventFilter, StoredEvent, iter_events

FORMATS = ("jsonl", "csv")
FIELDS = (
    "id", "time", "ts", "kind", "transport", "src", "sport", "dst", "dport", "host",
    "name_source", "name_conflict", "category", "catalog_entry", "tool", "status", "pid",
    "process", "exe", "exe_sha256", "cmdline", "user", "container", "process_tool",
    "dns_proto", "dns_id", "response", "qname", "qtype", "rcode", "answers", "sni", "alpn",
    "ech", "quic_version", "tunneled",
)  # fmt: skip
# Spreadsheets run cells starting with these as formulas (CSV injection).
_FORMULA_START = ("=", "+", "-", "@", "\t", "\r")


def event_record(stored: StoredEvent) -> dict[str, Any]:
    """One event as a flat dict with the FIELDS keys (lists stay lists)."""
    ev = stored.event
    obs, proc = ev.observation, ev.attribution.process
    dns, hello = obs.dns, obs.hello
    return {
        "id": stored.id,
        "time": datetime.fromtimestamp(obs.ts, UTC).isoformat(timespec="milliseconds"),
        "ts": obs.ts,
        "kind": obs.kind,
        "transport": obs.flow.transport,
        "src": obs.flow.src,
        "sport": obs.flow.sport,
        "dst": obs.flow.dst,
        "dport": obs.flow.dport,
        "host": ev.host,
        "name_source": ev.name_source,
        "name_conflict": ev.name_conflict,
        "category": ev.category,
        "catalog_entry": ev.catalog_entry,
        "tool": ev.tool,
        "status": ev.attribution.status,
        "pid": proc and proc.pid,
        "process": proc and proc.name,
        "exe": proc and proc.exe,
        "exe_sha256": proc and proc.exe_sha256,
        "cmdline": proc and list(proc.cmdline),
        "user": proc and proc.user,
        "container": proc and proc.container,
        "process_tool": proc and proc.tool,
        "dns_proto": obs.dns_proto,
        "dns_id": dns and dns.id,
        "response": dns and dns.is_response,
        "qname": dns and dns.qname,
        "qtype": dns and dns.qtype,
        "rcode": dns and dns.rcode,
        "answers": dns and [[a.name, a.type, a.data, a.ttl] for a in dns.answers],
        "sni": hello and hello.sni,
        "alpn": hello and list(hello.alpn),
        "ech": hello and hello.ech,
        "quic_version": obs.quic_version,
        "tunneled": obs.tunneled,
    }


def write_jsonl(records: Iterable[dict[str, Any]], out: TextIO) -> int:
    n = 0
    for n, record in enumerate(records, 1):  # noqa: B007 - n is the count afterwards
        out.write(json.dumps(record, separators=(",", ":")) + "\n")
    return n


def write_csv(records: Iterable[dict[str, Any]], out: TextIO) -> int:
    writer = csv.DictWriter(out, fieldnames=FIELDS)
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
