"""The row <-> record mapping of stored events and processes, in one place.

Writing: an Event's column values (`event_flags`, `detail_text`, `process_values`, ...), made
storable; ingest adds the interned ids. Reading: `event_select()` names an event's columns and
joins, `stored_event` turns one of its rows (plus `load_answers`) back into the Event.
"""

import json
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Row, Select, select
from sqlalchemy.orm import Session, aliased

from egresswatch.model import (
    Attribution,
    ClientHello,
    DnsAnswer,
    DnsMessage,
    Event,
    FlowKey,
    Observation,
    ProcessInfo,
    ProcessRef,
)
from egresswatch.store.schema import (
    ATTRIBUTION_METHOD_CODES,
    DNS_PROTO_CODES,
    FLAG_DNS_ID,
    FLAG_DNS_OPCODE,
    FLAG_DNS_PROTO,
    FLAG_DNS_RESPONSE,
    FLAG_DNS_TRUNCATED,
    FLAG_KIND,
    FLAG_NAME_CONFLICT,
    FLAG_NAME_IS_HOST,
    FLAG_NAME_SOURCE,
    FLAG_PORTS_SWAPPED,
    FLAG_TRANSPORT,
    FLAG_TUNNELED,
    KIND_CODES,
    NAME_SOURCE_CODES,
    TRANSPORT_CODES,
    Address,
    Destination,
    DnsAnswerRow,
    EventRow,
    Executable,
    Hostname,
    Label,
    Process,
    flag,
    pack_flags,
    unpack_ports,
)

ADDRESS_TYPES = frozenset({"A", "AAAA"})
DNS_DETAIL = '[["d",'  # how detail_text starts for a DNS message

_KINDS = {v: k for k, v in KIND_CODES.items()}
_TRANSPORTS = {v: k for k, v in TRANSPORT_CODES.items()}
_DNS_PROTOS = {v: k for k, v in DNS_PROTO_CODES.items()}
_NAME_SOURCES = {v: k for k, v in NAME_SOURCE_CODES.items()}
_METHODS = {v: k for k, v in ATTRIBUTION_METHOD_CODES.items()}


@dataclass(frozen=True, slots=True)
class StoredEvent:
    id: int
    event: Event


# -- writing: record -> column values ------------------------------------------------------


def storable(text: str) -> str:
    """`text` made storable in any backend: NUL and lone surrogates become backslash escapes.

    PostgreSQL TEXT cannot hold NUL and UTF-8 cannot hold lone surrogates; everything else,
    however hostile, is stored exactly (display escaping is the reader's job).
    """
    if "\x00" in text:
        text = text.replace("\x00", "\\x00")
    if text.isascii():
        return text
    return text.encode("utf-8", "backslashreplace").decode("utf-8")


def opt(text: str | None) -> str | None:
    return None if text is None else storable(text)


def to_json(items: Sequence[Any]) -> str:
    # ensure_ascii keeps NULs and surrogates as \u escapes, so the JSON round-trips exactly.
    return json.dumps(list(items), separators=(",", ":"))


def detail_text(obs: Observation) -> str:
    """The few-valued parts of an observation as one JSON label: a list of tagged parts,
    ["d", qtype, rcode] for DNS, ["h", alpn, legacy_version, supported_versions, ech] for a
    hello, ["v", quic_version], in that order (queries look for a leading DNS part).
    """
    parts: list[list[Any]] = []
    if obs.dns is not None:
        parts.append(["d", obs.dns.qtype, obs.dns.rcode])
    if obs.hello is not None:
        h = obs.hello
        parts.append(["h", list(h.alpn), h.legacy_version, list(h.supported_versions), h.ech])
    if obs.quic_version is not None:
        parts.append(["v", obs.quic_version])
    return to_json(parts)


def event_name(ev: Event) -> str | None:
    """The name the packet itself carries: a DNS question's or a hello's SNI."""
    obs = ev.observation
    if obs.dns is not None:
        return obs.dns.qname
    return None if obs.hello is None else obs.hello.sni


def method_code(ev: Event) -> int | None:
    method = ev.attribution.method
    return None if method is None else ATTRIBUTION_METHOD_CODES[method]


def name_candidates_text(ev: Event) -> str | None:
    return json.dumps(ev.name_candidates) if ev.name_ambiguous else None


def cname_chain_text(ev: Event) -> str | None:
    """The CNAME chain as stored: a JSON list (the name, then each CNAME), NULL when none."""
    return json.dumps(ev.cname_chain) if ev.cname_chain else None


def event_flags(ev: Event, ports_swapped: int, name_is_host: bool) -> int:
    obs = ev.observation
    fields = {
        FLAG_KIND: KIND_CODES[obs.kind],
        FLAG_TRANSPORT: TRANSPORT_CODES[obs.flow.transport],
        FLAG_TUNNELED: int(obs.tunneled),
        FLAG_NAME_CONFLICT: int(ev.name_conflict),
        FLAG_NAME_SOURCE: 0 if ev.name_source is None else NAME_SOURCE_CODES[ev.name_source] + 1,
        FLAG_DNS_PROTO: 0 if obs.dns_proto is None else DNS_PROTO_CODES[obs.dns_proto] + 1,
        FLAG_PORTS_SWAPPED: ports_swapped,
        FLAG_NAME_IS_HOST: int(name_is_host),
    }
    if obs.dns is not None:
        fields[FLAG_DNS_RESPONSE] = int(obs.dns.is_response)
        fields[FLAG_DNS_TRUNCATED] = int(obs.dns.truncated)
        fields[FLAG_DNS_ID] = obs.dns.id
        fields[FLAG_DNS_OPCODE] = obs.dns.opcode
    return pack_flags(fields)


def sha_bytes(sha: str | None) -> bytes | None:
    if sha is None:
        return None
    try:
        return bytes.fromhex(sha)
    except ValueError:
        return storable(sha).encode()


def process_values(proc: ProcessInfo, exe_id: int | None) -> dict[str, Any]:
    ancestry = [[ref.pid, ref.name, ref.exe] for ref in proc.ancestry]
    return {
        "pid": proc.pid,
        "start_time": proc.start_time,
        "name": storable(proc.name),
        "exe_id": exe_id,
        "cmdline": to_json(proc.cmdline),
        "user": opt(proc.user),
        "ppid": proc.ppid,
        "ancestry": to_json(ancestry),
        "netns": proc.netns,
        "container": opt(proc.container),
        "tool": opt(proc.tool),
        "tool_reason": opt(proc.tool_reason),
    }


# -- reading: rows -> records --------------------------------------------------------------

status_label = aliased(Label, name="status")
tool_label = aliased(Label, name="tool")
detail_label = aliased(Label, name="detail")
node_label = aliased(Label, name="node")
dest_host = aliased(Hostname, name="dest_host")
name_host = aliased(Hostname, name="name")
src_addr = aliased(Address, name="src")
dst_addr = aliased(Address, name="dst")


def event_select() -> Select[*tuple[Any, ...]]:
    """Every column `stored_event` reads, joined from the event's interned rows."""
    return (
        select(
            EventRow,
            status_label.text.label("status"),
            Process,
            Executable.path.label("exe_path"),
            Executable.sha256.label("exe_sha"),
            dest_host.name.label("host"),
            Destination.category,
            Destination.catalog_entry,
            Destination.category_source,
            Destination.category_confidence,
            tool_label.text.label("tool"),
            name_host.name.label("name"),
            detail_label.text.label("detail"),
            node_label.text.label("node"),
            src_addr.addr.label("src"),
            dst_addr.addr.label("dst"),
        )
        .join(status_label, status_label.id == EventRow.status_id)
        .join(src_addr, src_addr.id == EventRow.src_id)
        .join(dst_addr, dst_addr.id == EventRow.dst_id)
        .outerjoin(Process, Process.id == EventRow.process_id)
        .outerjoin(Executable, Executable.id == Process.exe_id)
        .outerjoin(Destination, Destination.id == EventRow.destination_id)
        .outerjoin(dest_host, dest_host.id == Destination.hostname_id)
        .outerjoin(tool_label, tool_label.id == EventRow.tool_id)
        .outerjoin(name_host, name_host.id == EventRow.name_id)
        .outerjoin(detail_label, detail_label.id == EventRow.detail_id)
        .outerjoin(node_label, node_label.id == EventRow.node_id)
    )


# One stored answer: its name (None: the question's), type, data and TTL.
StoredAnswer = tuple[str | None, str, str | None, int]


def load_answers(conn: Session, rows: Sequence[Row[Any]]) -> dict[int, list[StoredAnswer]]:
    """The stored answers of the DNS events among `rows` (of `event_select`), by event id."""
    event_ids = [r.EventRow.id for r in rows if (r.detail or "").startswith(DNS_DETAIL)]
    out: dict[int, list[StoredAnswer]] = {}
    if not event_ids:
        return out
    name, kind, addr = aliased(Hostname), aliased(Label), aliased(Address)
    query = (
        select(DnsAnswerRow, name.name, kind.text, addr.addr)
        .outerjoin(name, name.id == DnsAnswerRow.hostname_id)
        .join(kind, kind.id == DnsAnswerRow.type_id)
        .outerjoin(addr, addr.id == DnsAnswerRow.address_id)
        .where(DnsAnswerRow.event_id.in_(event_ids))
        .order_by(DnsAnswerRow.event_id, DnsAnswerRow.ord)
    )
    for ans, host, rtype, address in conn.execute(query):
        data = address if address is not None else ans.data
        out.setdefault(ans.event_id, []).append((host, rtype, data, ans.ttl))
    return out


def stored_events(conn: Session, rows: Sequence[Row[Any]]) -> list[StoredEvent]:
    """`rows` of `event_select` as StoredEvents, in their order, with their DNS answers."""
    answers = load_answers(conn, rows)
    return [stored_event(row, answers) for row in rows]


def stored_event(row: Row[Any], answers: dict[int, list[StoredAnswer]]) -> StoredEvent:
    ev: EventRow = row.EventRow
    method = None if ev.attribution_method is None else _METHODS.get(ev.attribution_method)
    process = None if row.Process is None else process_from_row(row.Process, row.exe_path,
                                                                  row.exe_sha)  # fmt: skip
    attribution = Attribution(row.status, process, method)  # type: ignore[arg-type]
    event = Event(
        observation=_observation(row, answers.get(ev.id, [])),
        attribution=attribution,
        host=row.host,
        name_source=_code(_NAME_SOURCES, flag(ev.flags, FLAG_NAME_SOURCE)),  # type: ignore[arg-type]
        name_conflict=bool(flag(ev.flags, FLAG_NAME_CONFLICT)),
        category=row.category,
        catalog_entry=row.catalog_entry,
        tool=row.tool,
        name_candidates=tuple(json.loads(ev.name_candidates)) if ev.name_candidates else (),
        cname_chain=tuple(json.loads(ev.cname_chain)) if ev.cname_chain else (),
        node=row.node,
        category_source=row.category_source,
        category_confidence=row.category_confidence,
    )
    return StoredEvent(ev.id, event)


def _observation(row: Row[Any], answers: list[StoredAnswer]) -> Observation:
    ev: EventRow = row.EventRow
    flags = ev.flags
    transport = _TRANSPORTS[flag(flags, FLAG_TRANSPORT)]
    sport, dport = unpack_ports(ev.ports, flag(flags, FLAG_PORTS_SWAPPED))
    flow = FlowKey(transport, row.src, sport, row.dst, dport)  # type: ignore[arg-type]
    name = row.host if flag(flags, FLAG_NAME_IS_HOST) else row.name
    parts = {part[0]: part[1:] for part in json.loads(row.detail or "[]")}
    dns, hello = parts.get("d"), parts.get("h")
    return Observation(
        ts=ev.ts,
        kind=_KINDS[flag(flags, FLAG_KIND)],  # type: ignore[arg-type]
        flow=flow,
        dns=None if dns is None else _dns(flags, dns, name, answers),
        dns_proto=_code(_DNS_PROTOS, flag(flags, FLAG_DNS_PROTO)),  # type: ignore[arg-type]
        hello=None if hello is None else _hello(hello, name),
        quic_version=parts.get("v", [None])[0],
        tunneled=bool(flag(flags, FLAG_TUNNELED)),
    )


def _dns(flags: int, part: list[Any], qname: str | None, answers: list[StoredAnswer]) -> DnsMessage:
    qtype, rcode = part
    return DnsMessage(
        id=flag(flags, FLAG_DNS_ID),
        is_response=bool(flag(flags, FLAG_DNS_RESPONSE)),
        opcode=flag(flags, FLAG_DNS_OPCODE),
        qname=qname,
        qtype=qtype,
        rcode=rcode,
        truncated=bool(flag(flags, FLAG_DNS_TRUNCATED)),
        answers=tuple(DnsAnswer(_or(n, qname), t, d, ttl) for n, t, d, ttl in answers),
    )


def _or(name: str | None, qname: str | None) -> str:
    # NULL stands for the question's name (never None when an answer was stored that way).
    return name if name is not None else qname or ""


def _hello(part: list[Any], sni: str | None) -> ClientHello:
    alpn, legacy_version, supported_versions, ech = part
    return ClientHello(sni, tuple(alpn), legacy_version, tuple(supported_versions), ech)


def _code(names: dict[int, str], packed: int) -> str | None:
    """An optional field's name from its flags value (code + 1; 0 is None)."""
    return None if packed == 0 else names[packed - 1]


def process_from_row(proc: Process, exe_path: str | None, exe_sha: bytes | None) -> ProcessInfo:
    """A stored process (with its executable's path and hash) as the model's ProcessInfo."""
    return ProcessInfo(
        pid=proc.pid,
        name=proc.name,
        exe=exe_path,
        exe_sha256=None if exe_sha is None else exe_sha.hex(),
        cmdline=tuple(json.loads(proc.cmdline)),
        user=proc.user,
        ppid=proc.ppid,
        start_time=proc.start_time,
        ancestry=tuple(ProcessRef(p, n, x) for p, n, x in json.loads(proc.ancestry)),
        netns=proc.netns,
        container=proc.container,
        tool=proc.tool,
        tool_reason=proc.tool_reason,
    )
