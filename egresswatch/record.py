"""Events and observations as JSON records (docs/events.md, docs/replay-jsonl.md); no rich."""

import json
from collections.abc import Iterable
from typing import Any, TextIO

from egresswatch.model import ClientHello, DnsMessage, Event, Observation, ProcessInfo


def observation_to_dict(obs: Observation) -> dict[str, Any]:
    """The stable JSON object for one observation (see docs/replay-jsonl.md)."""
    flow = obs.flow
    record: dict[str, Any] = {
        "ts": obs.ts,
        "kind": obs.kind,
        "src": flow.src,
        "dst": flow.dst,
        "sport": flow.sport,
        "dport": flow.dport,
        "transport": flow.transport,
    }
    if obs.dns is not None:
        record.update(_dns_fields(obs.dns))
        record["proto"] = obs.dns_proto
    if obs.hello is not None:
        record.update(_hello_fields(obs.hello))
    if obs.kind == "quic":
        record["quic_version"] = f"0x{(obs.quic_version or 0):08x}"
    if obs.tunneled:
        record["tunneled"] = True
    return record


def event_to_dict(event: Event) -> dict[str, Any]:
    """An event as JSON: the observation's keys plus process, naming and classification.

    The one record shape of `agent --jsonl`, `events --json` and `export` (docs/events.md).
    """
    record = observation_to_dict(event.observation)
    process = event.attribution.process
    record.update(
        attribution=event.attribution.status,
        attribution_method=event.attribution.method,
        host=event.host,
        name_source=event.name_source,
        name_conflict=event.name_conflict,
        name_ambiguous=event.name_ambiguous,
        name_candidates=list(event.name_candidates) if event.name_ambiguous else None,
        cname_chain=list(event.cname_chain) if event.cname_chain else None,
        category=event.category,
        catalog_entry=event.catalog_entry,
        category_source=event.category_source,
        category_confidence=event.category_confidence,
        tool=event.tool,
        tool_reason=process.tool_reason if process is not None else None,
        pid=None,
        process=None,
        exe=None,
        exe_sha256=None,
        cmdline=None,
        user=None,
        ppid=None,
        ancestry=None,
        netns=None,
        container=None,
        node=event.node,
    )
    if process is not None:
        fields = process_to_dict(process)
        record.update({key: fields[key] for key in _EVENT_PROCESS_KEYS}, process=process.name)
    return record


# The process keys an event record carries (its name as "process"; start_time and tool elsewhere).
_EVENT_PROCESS_KEYS = (
    "pid", "exe", "exe_sha256", "cmdline", "user", "ppid", "ancestry", "netns", "container",
)  # fmt: skip


def process_to_dict(process: ProcessInfo) -> dict[str, Any]:
    """A process as JSON values: its fields (not tool_reason), ancestry as [{pid, name, exe}]."""
    return {
        "pid": process.pid,
        "name": process.name,
        "exe": process.exe,
        "exe_sha256": process.exe_sha256,
        "cmdline": list(process.cmdline),
        "user": process.user,
        "ppid": process.ppid,
        "start_time": process.start_time,
        "ancestry": [{"pid": a.pid, "name": a.name, "exe": a.exe} for a in process.ancestry],
        "netns": process.netns,
        "container": process.container,
        "tool": process.tool,
    }


def _dns_fields(msg: DnsMessage) -> dict[str, Any]:
    return {
        "id": msg.id,
        "is_response": msg.is_response,
        "qname": msg.qname,
        "qtype": msg.qtype,
        "rcode": msg.rcode,
        "truncated": msg.truncated,
        "answers": [
            {"name": a.name, "type": a.type, "data": a.data, "ttl": a.ttl} for a in msg.answers
        ],
    }


def _hello_fields(hello: ClientHello) -> dict[str, Any]:
    return {
        "sni": hello.sni,
        "alpn": list(hello.alpn),
        "ech": hello.ech,
        "tls_versions": [f"0x{v:04x}" for v in hello.supported_versions],
    }


def to_json_line(record: dict[str, Any]) -> str:
    """One JSON line with every non-ASCII and control character escaped (safe on any terminal)."""
    return json.dumps(record, ensure_ascii=True, separators=(",", ":")).replace("\x7f", "\\u007f")


def write_jsonl(observations: Iterable[Observation], out: TextIO) -> int:
    """Writes observations as JSON lines; returns how many."""
    count = 0
    for obs in observations:
        out.write(to_json_line(observation_to_dict(obs)))
        out.write("\n")
        count += 1
    return count
