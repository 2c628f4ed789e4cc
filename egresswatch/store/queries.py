"""The store's read side: events in a time window, filtered, rebuilt as model records; stats."""

import json
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any, cast

from sqlalchemy import Engine, Row, Select, and_, func, or_, select, text
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
    DNS_PROTO_CODES,
    KIND_CODES,
    NAME_SOURCE_CODES,
    TRANSPORT_CODES,
    Address,
    Base,
    Destination,
    DnsAnswerRow,
    EventRow,
    Executable,
    HelloShape,
    Hostname,
    Label,
    Process,
)

_KINDS = {v: k for k, v in KIND_CODES.items()}
_TRANSPORTS = {v: k for k, v in TRANSPORT_CODES.items()}
_DNS_PROTOS = {v: k for k, v in DNS_PROTO_CODES.items()}
_NAME_SOURCES = {v: k for k, v in NAME_SOURCE_CODES.items()}
PAGE = 1000


@dataclass(frozen=True, slots=True)
class EventFilter:
    """Which events to read; `host` matches the host itself and any name under it."""

    since: float | None = None
    until: float | None = None
    tool: str | None = None
    category: str | None = None
    host: str | None = None


@dataclass(frozen=True, slots=True)
class StoredEvent:
    id: int
    event: Event


@dataclass(frozen=True, slots=True)
class StoreStats:
    url: str
    size_bytes: int | None
    counts: dict[str, int]
    oldest: float | None
    newest: float | None
    revision: str | None


_status = aliased(Label, name="status")
_qtype = aliased(Label, name="qtype")
_rcode = aliased(Label, name="rcode")
_dest_host = aliased(Hostname, name="dest_host")
_qname = aliased(Hostname, name="qname")
_sni = aliased(Hostname, name="sni")
_src = aliased(Address, name="src")
_dst = aliased(Address, name="dst")


def _base_query() -> Select[*tuple[Any, ...]]:
    return (
        select(
            EventRow,
            _status.text.label("status"),
            Process,
            Executable.path.label("exe_path"),
            Executable.sha256.label("exe_sha"),
            _dest_host.name.label("host"),
            Destination.category,
            Destination.catalog_entry,
            _qname.name.label("qname"),
            _qtype.text.label("qtype"),
            _rcode.text.label("rcode"),
            _sni.name.label("sni"),
            HelloShape,
            _src.addr.label("src"),
            _dst.addr.label("dst"),
        )
        .join(_status, _status.id == EventRow.status_id)
        .join(_src, _src.id == EventRow.src_id)
        .join(_dst, _dst.id == EventRow.dst_id)
        .outerjoin(Process, Process.id == EventRow.process_id)
        .outerjoin(Executable, Executable.id == Process.exe_id)
        .outerjoin(Destination, Destination.id == EventRow.destination_id)
        .outerjoin(_dest_host, _dest_host.id == Destination.hostname_id)
        .outerjoin(_qname, _qname.id == EventRow.qname_id)
        .outerjoin(_qtype, _qtype.id == EventRow.qtype_id)
        .outerjoin(_rcode, _rcode.id == EventRow.rcode_id)
        .outerjoin(_sni, _sni.id == EventRow.sni_id)
        .outerjoin(HelloShape, HelloShape.id == EventRow.hello_id)
    )


def _like_suffix(name: str) -> str:
    escaped = name.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
    return "%." + escaped


def _filtered(query: Select[*tuple[Any, ...]], flt: EventFilter) -> Select[*tuple[Any, ...]]:
    conds = []
    if flt.since is not None:
        conds.append(EventRow.ts >= flt.since)
    if flt.until is not None:
        conds.append(EventRow.ts < flt.until)
    if flt.tool is not None:
        conds.append(EventRow.tool == flt.tool)
    if flt.category is not None:
        conds.append(Destination.category == flt.category)
    if flt.host is not None:
        host = flt.host.rstrip(".").lower()
        pattern = _like_suffix(host)
        conds.append(
            or_(
                _dest_host.name == host,
                _dest_host.name.like(pattern, escape="\\"),
                _qname.name == host,
                _qname.name.like(pattern, escape="\\"),
            )
        )
    return query.where(and_(*conds)) if conds else query


def query_events(engine: Engine, flt: EventFilter, limit: int = 100) -> list[StoredEvent]:
    """The newest `limit` events matching `flt`, oldest first."""
    query = _filtered(_base_query(), flt).order_by(EventRow.ts.desc(), EventRow.id.desc())
    with Session(engine) as conn:
        rows = list(conn.execute(query.limit(limit)))
        answers = _answers(conn, [r.EventRow.id for r in rows if r.EventRow.kind == 0])
    return [_stored(row, answers) for row in reversed(rows)]


def iter_events(engine: Engine, flt: EventFilter, page: int = PAGE) -> Iterator[StoredEvent]:
    """Every event matching `flt`, oldest first, read a page at a time (for export)."""
    after: tuple[float, int] | None = None
    while True:
        query = _filtered(_base_query(), flt).order_by(EventRow.ts, EventRow.id).limit(page)
        if after is not None:
            ts, eid = after
            query = query.where(or_(EventRow.ts > ts, and_(EventRow.ts == ts, EventRow.id > eid)))
        with Session(engine) as conn:
            rows = list(conn.execute(query))
            answers = _answers(conn, [r.EventRow.id for r in rows if r.EventRow.kind == 0])
        yield from (_stored(row, answers) for row in rows)
        if len(rows) < page:
            return
        after = (rows[-1].EventRow.ts, rows[-1].EventRow.id)


def _answers(conn: Session, event_ids: Sequence[int]) -> dict[int, list[DnsAnswer]]:
    out: dict[int, list[DnsAnswer]] = {}
    if not event_ids:
        return out
    name, kind, addr = aliased(Hostname), aliased(Label), aliased(Address)
    query = (
        select(DnsAnswerRow, name.name, kind.text, addr.addr)
        .join(name, name.id == DnsAnswerRow.hostname_id)
        .join(kind, kind.id == DnsAnswerRow.type_id)
        .outerjoin(addr, addr.id == DnsAnswerRow.address_id)
        .where(DnsAnswerRow.event_id.in_(event_ids))
        .order_by(DnsAnswerRow.event_id, DnsAnswerRow.ord)
    )
    for ans, host, rtype, address in conn.execute(query):
        data = address if address is not None else ans.data
        out.setdefault(ans.event_id, []).append(DnsAnswer(host, rtype, data, ans.ttl))
    return out


def _stored(row: Row[Any], answers: dict[int, list[DnsAnswer]]) -> StoredEvent:
    ev: EventRow = row.EventRow
    attribution = Attribution(row.status, _process(row))
    event = Event(
        observation=_observation(row, answers.get(ev.id, [])),
        attribution=attribution,
        host=row.host,
        name_source=None if ev.name_source is None else _NAME_SOURCES[ev.name_source],  # type: ignore[arg-type]
        name_conflict=bool(ev.name_conflict),
        category=row.category,
        catalog_entry=row.catalog_entry,
        tool=ev.tool,
    )
    return StoredEvent(ev.id, event)


def _observation(row: Row[Any], answers: list[DnsAnswer]) -> Observation:
    ev: EventRow = row.EventRow
    kind = _KINDS[ev.kind]
    flow = FlowKey(_TRANSPORTS[ev.transport], row.src, ev.sport, row.dst, ev.dport)  # type: ignore[arg-type]
    dns = None
    if ev.dns_id is not None:
        dns = DnsMessage(
            id=ev.dns_id,
            is_response=bool(ev.dns_response),
            opcode=ev.dns_opcode or 0,
            qname=row.qname,
            qtype=row.qtype,
            rcode=row.rcode,
            truncated=bool(ev.dns_truncated),
            answers=tuple(answers),
        )
    hello = None
    shape: HelloShape | None = row.HelloShape
    if shape is not None:
        hello = ClientHello(
            sni=row.sni,
            alpn=tuple(json.loads(shape.alpn)),
            legacy_version=shape.tls_version,
            supported_versions=tuple(json.loads(shape.tls_versions)),
            ech=bool(shape.ech),
        )
    return Observation(
        ts=ev.ts,
        kind=kind,  # type: ignore[arg-type]
        flow=flow,
        dns=dns,
        dns_proto=None if ev.dns_proto is None else _DNS_PROTOS[ev.dns_proto],  # type: ignore[arg-type]
        hello=hello,
        quic_version=ev.quic_version,
        tunneled=bool(ev.tunneled),
    )


def _process(row: Row[Any]) -> ProcessInfo | None:
    proc: Process | None = row.Process
    if proc is None:
        return None
    ancestry = tuple(ProcessRef(p, n, x) for p, n, x in json.loads(proc.ancestry))
    sha: bytes | None = row.exe_sha
    return ProcessInfo(
        pid=proc.pid,
        name=proc.name,
        exe=row.exe_path,
        exe_sha256=None if sha is None else sha.hex(),
        cmdline=tuple(json.loads(proc.cmdline)),
        user=proc.user,
        ppid=proc.ppid,
        start_time=proc.start_time,
        ancestry=ancestry,
        netns=proc.netns,
        container=proc.container,
        tool=proc.tool,
    )


def store_stats(engine: Engine, revision: str | None) -> StoreStats:
    """Size on disk (where the backend can tell), row counts and the events' time range."""
    with engine.connect() as conn:
        counts = {
            name: int(conn.execute(select(func.count()).select_from(table)).scalar_one())
            for name, table in Base.metadata.tables.items()
        }
        oldest, newest = conn.execute(select(func.min(EventRow.ts), func.max(EventRow.ts))).one()
        size = database_size(conn)
    return StoreStats(
        engine.url.render_as_string(hide_password=True), size, counts, oldest, newest, revision
    )


def database_size(conn: Any) -> int | None:
    """Bytes in use: SQLite pages minus free pages; PostgreSQL relations incl. indexes."""
    if conn.dialect.name == "sqlite":
        pages = conn.exec_driver_sql("PRAGMA page_count").scalar_one()
        free = conn.exec_driver_sql("PRAGMA freelist_count").scalar_one()
        page_size = conn.exec_driver_sql("PRAGMA page_size").scalar_one()
        return int((pages - free) * page_size)
    if conn.dialect.name == "postgresql":
        names = list(Base.metadata.tables)
        query = text(
            "SELECT sum(pg_total_relation_size(quote_ident(t)))"
            " FROM unnest(CAST(:n AS text[])) AS t"
        )
        return int(cast(int, conn.execute(query, {"n": names}).scalar() or 0))
    return None
