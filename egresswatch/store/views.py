"""Rolled-up views of stored events: a lookup with its answers on one row, a connection with its
name on one row; and the distinct tool labels events carry (for --tool matching).

Pure over StoredEvent lists (the store's read functions fetch them), so the CLI and the web edge
can show the same rows.
"""

from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any, Literal

from sqlalchemy import Engine, select

from egresswatch.model import Event, Observation
from egresswatch.store.rows import ADDRESS_TYPES, StoredEvent
from egresswatch.store.schema import EventRow, Label

RowKind = Literal["lookup", "connection"]


@dataclass(slots=True)
class ViewRow:
    """One line a person reads: what a process looked up or connected to, and the outcome."""

    ts: float
    what: RowKind
    protocol: str  # dns | tls | quic | tcp | udp
    host: str | None
    process: str | None
    pid: int | None
    attribution: str
    tool: str | None
    category: str | None
    server: str  # the resolver of a lookup, the peer of a connection (never this machine)
    port: int
    qtypes: list[str] = field(default_factory=list)
    answers: list[str] = field(default_factory=list)
    rcode: str | None = None
    event_ids: list[int] = field(default_factory=list)

    def detail(self) -> str:
        """What happened, briefly: `A,AAAA -> 10.0.0.2, fd00::2` or `10.0.0.2:443 tls`."""
        if self.what == "connection":
            return f"{_hostport(self.server, self.port)} {self.protocol}"
        types = ",".join(self.qtypes) or "?"
        if self.answers:
            return f"{types} -> {', '.join(self.answers)}"
        return f"{types} -> {self.rcode or 'no answer seen'}"


def _hostport(addr: str, port: int) -> str:
    return f"[{addr}]:{port}" if ":" in addr else f"{addr}:{port}"


def roll_up(
    stored: Iterable[StoredEvent], category_of: Callable[[str], str] | None = None
) -> list[ViewRow]:
    """Rows for `stored` (oldest first): DNS queries merged with their responses, with the
    other record types asked for the same name on the same socket and with the socket's flow;
    each connection's flow merged with its TLS or QUIC hello.

    `category_of`, when given, classifies the host of rows stored without a category.
    """
    items = list(stored)
    lookups = _lookup_sockets(items)
    rows: dict[tuple[Any, ...], ViewRow] = {}
    for item in items:
        key = _row_key(item.event.observation)
        key = lookups.get(key, key)  # a DNS socket's flow joins its first lookup
        row = rows.get(key)
        if row is None:
            rows[key] = _new_row(item, key)
        else:
            _merge(row, item)
    if category_of is not None:
        for row in rows.values():
            if row.host and row.category in (None, "unknown"):
                row.category = category_of(row.host)
    return sorted(rows.values(), key=lambda r: (r.ts, r.event_ids[0]))


def _lookup_sockets(items: list[StoredEvent]) -> dict[tuple[Any, ...], tuple[Any, ...]]:
    """The connection key of each DNS client socket -> the row key of its first lookup."""
    found: dict[tuple[Any, ...], tuple[Any, ...]] = {}
    for item in items:
        obs = item.event.observation
        if obs.dns is not None:
            key = _row_key(obs)
            (client, cport), (server, sport) = key[2], key[3]
            found.setdefault(("conn", obs.flow.transport, client, cport, server, sport), key)
    return found


def _row_key(obs: Observation) -> tuple[Any, ...]:
    flow = obs.flow
    if obs.dns is not None:
        reply = obs.dns.is_response
        client = (flow.dst, flow.dport) if reply else (flow.src, flow.sport)
        server = (flow.src, flow.sport) if reply else (flow.dst, flow.dport)
        return ("dns", flow.transport, client, server, (obs.dns.qname or "").lower())
    return ("conn", flow.transport, flow.src, flow.sport, flow.dst, flow.dport)


def _new_row(item: StoredEvent, key: tuple[Any, ...]) -> ViewRow:
    event, obs = item.event, item.event.observation
    lookup = key[0] == "dns"
    server, port = key[3] if lookup else (obs.flow.dst, obs.flow.dport)
    row = ViewRow(
        ts=obs.ts,
        what="lookup" if lookup else "connection",
        protocol="dns" if lookup else _protocol(obs),
        host=_host(event),
        process=None,
        pid=None,
        attribution=event.attribution.status,
        tool=event.tool,
        category=event.category,
        server=server,
        port=port,
    )
    _merge(row, item)
    return row


def _protocol(obs: Observation) -> str:
    return obs.flow.transport if obs.kind == "flow" else obs.kind


def _host(event: Event) -> str | None:
    obs = event.observation
    if event.host:
        return event.host
    if obs.dns is not None:
        return obs.dns.qname
    return obs.hello.sni if obs.hello is not None else None


def _merge(row: ViewRow, item: StoredEvent) -> None:
    event, obs = item.event, item.event.observation
    row.event_ids.append(item.id)
    row.ts = min(row.ts, obs.ts)
    process = event.attribution.process
    if process is not None and row.pid is None:
        row.process, row.pid, row.attribution = process.name, process.pid, event.attribution.status
    row.tool = row.tool or event.tool
    if event.category and row.category in (None, "unknown"):
        row.category = event.category
    if obs.hello is not None:
        row.protocol, row.host = obs.kind, obs.hello.sni or row.host
    row.host = row.host or _host(event)
    if obs.dns is not None:
        _merge_dns(row, obs)


def _merge_dns(row: ViewRow, obs: Observation) -> None:
    msg = obs.dns
    assert msg is not None
    if msg.qtype and msg.qtype not in row.qtypes:
        row.qtypes.append(msg.qtype)
    if not msg.is_response:
        return
    if (msg.rcode and msg.rcode != "NOERROR") or row.rcode is None:
        row.rcode = msg.rcode
    for answer in msg.answers:
        if answer.type in ADDRESS_TYPES and answer.data and answer.data not in row.answers:
            row.answers.append(answer.data)


def tool_labels(engine: Engine) -> list[str]:
    """Every distinct tool label stored events carry (few; the tool column is indexed)."""
    used = select(EventRow.tool_id).where(EventRow.tool_id.is_not(None)).distinct()
    with engine.connect() as conn:
        return sorted(conn.execute(select(Label.text).where(Label.id.in_(used))).scalars())
