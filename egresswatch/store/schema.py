"""The event store's tables as SQLAlchemy 2 mapped classes (used only inside `store/`).

Side tables intern repeated strings so the one time-ordered fact table (`events`) holds integers.
"""

from sqlalchemy import (
    BigInteger,
    Boolean,
    Float,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    SmallInteger,
    String,
    Text,
    UniqueConstraint,
    text,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

# Deterministic constraint names, so migrations can drop them on both SQLite and PostgreSQL.
NAMING = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}

# 64-bit ids on PostgreSQL; on SQLite an INTEGER PRIMARY KEY is the rowid (no extra column).
BigId = BigInteger().with_variant(Integer(), "sqlite")

KIND_CODES = {"dns": 0, "tls": 1, "quic": 2, "flow": 3}
TRANSPORT_CODES = {"udp": 0, "tcp": 1}
DNS_PROTO_CODES = {"dns": 0, "mdns": 1, "llmnr": 2}
ATTRIBUTION_METHOD_CODES = {"ebpf": 0, "sock-diag": 1, "recent": 2}
NAME_SOURCE_CODES = {"sni": 0, "quic-sni": 1, "dns-same-pid": 2, "dns-any": 3, "dns": 4}
BLOCK_BITS = 8  # event_blocks: 256 ids a block
# timeline_minutes.dimension: which events column `key` holds.
DIMENSION_CODES = {"tool": 0, "destination": 1, "process": 2, "node": 3}

# events.flags: (shift, width) of each packed field. Optional fields store code + 1 (0 = None).
# The DNS id (16 bits) and opcode (almost always 0) come last so a value fits in 4 bytes.
FLAG_KIND = (0, 2)
FLAG_TRANSPORT = (2, 1)
FLAG_TUNNELED = (3, 1)
FLAG_NAME_CONFLICT = (4, 1)
FLAG_NAME_SOURCE = (5, 3)
FLAG_DNS_PROTO = (8, 2)
FLAG_DNS_RESPONSE = (10, 1)
FLAG_DNS_TRUNCATED = (11, 1)
FLAG_PORTS_SWAPPED = (12, 1)  # ports holds (dport, sport): the source port is the larger
FLAG_NAME_IS_HOST = (13, 1)  # the qname / SNI is the event's host: name_id stays NULL
FLAG_DNS_ID = (14, 16)
FLAG_DNS_OPCODE = (30, 4)


def pack_flags(fields: dict[tuple[int, int], int]) -> int:
    """One integer from {FLAG_*: value}; ValueError when a value does not fit its width."""
    packed = 0
    for (shift, width), value in fields.items():
        if not 0 <= value < 1 << width:
            raise ValueError(f"flag value {value} does not fit in {width} bits")
        packed |= value << shift
    return packed


def flag(packed: int, field: tuple[int, int]) -> int:
    shift, width = field
    return (packed >> shift) & ((1 << width) - 1)


def pack_ports(sport: int, dport: int) -> tuple[int, int]:
    """(ports, swapped): the smaller port in the high half keeps the value in 4 bytes."""
    if not (0 <= sport <= 0xFFFF and 0 <= dport <= 0xFFFF):
        raise ValueError(f"ports out of range: {sport}, {dport}")
    if sport > dport:
        return dport << 16 | sport, 1
    return sport << 16 | dport, 0


def unpack_ports(ports: int, swapped: int) -> tuple[int, int]:
    """(sport, dport) from `pack_ports`."""
    low, high = ports >> 16, ports & 0xFFFF
    return (high, low) if swapped else (low, high)


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING)


class Label(Base):
    """Low-cardinality vocabulary: attribution status, tool, answer type, event details."""

    __tablename__ = "labels"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    text: Mapped[str] = mapped_column(Text, unique=True)


class Hostname(Base):
    __tablename__ = "hostnames"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(Text, unique=True)


class Address(Base):
    __tablename__ = "addresses"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    addr: Mapped[str] = mapped_column(String(64), unique=True)


class Executable(Base):
    __tablename__ = "executables"
    __table_args__ = (UniqueConstraint("path", "sha256"),)
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    path: Mapped[str | None] = mapped_column(Text)
    sha256: Mapped[bytes | None] = mapped_column(LargeBinary(32))


class Process(Base):
    """One process as attribution saw it; (pid, start_time) survives pid reuse."""

    __tablename__ = "processes"
    __table_args__ = (Index("ix_processes_pid_start", "pid", "start_time"),)
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    pid: Mapped[int] = mapped_column(Integer)
    start_time: Mapped[float | None] = mapped_column(Float)
    name: Mapped[str] = mapped_column(Text)
    exe_id: Mapped[int | None] = mapped_column(ForeignKey("executables.id"), index=True)
    cmdline: Mapped[str] = mapped_column(Text)  # JSON array
    user: Mapped[str | None] = mapped_column(Text)
    ppid: Mapped[int | None] = mapped_column(Integer)
    ancestry: Mapped[str] = mapped_column(Text)  # JSON [[pid, name, exe], ...], parent first
    netns: Mapped[int | None] = mapped_column(BigInteger)
    container: Mapped[str | None] = mapped_column(Text)
    tool: Mapped[str | None] = mapped_column(Text, index=True)
    first_seen: Mapped[float] = mapped_column(Float)
    tool_reason: Mapped[str | None] = mapped_column(Text)  # revision 0005


class Destination(Base):
    """A host name and what the catalog says it is, with when it was first and last contacted."""

    __tablename__ = "destinations"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    hostname_id: Mapped[int] = mapped_column(ForeignKey("hostnames.id"), unique=True)
    category: Mapped[str | None] = mapped_column(Text, index=True)
    catalog_entry: Mapped[str | None] = mapped_column(Text)
    first_seen: Mapped[float] = mapped_column(Float)
    last_seen: Mapped[float] = mapped_column(Float)
    count: Mapped[int] = mapped_column(BigInteger)
    category_source: Mapped[str | None] = mapped_column(Text)  # revision 0005
    category_confidence: Mapped[float | None] = mapped_column(Float)  # revision 0005


class DestinationTool(Base):
    """Which LLM tools talked to a destination, how often, first and last."""

    __tablename__ = "destination_tools"
    destination_id: Mapped[int] = mapped_column(
        ForeignKey("destinations.id", ondelete="CASCADE"), primary_key=True
    )
    tool: Mapped[str] = mapped_column(Text, primary_key=True)
    first_seen: Mapped[float] = mapped_column(Float)
    last_seen: Mapped[float] = mapped_column(Float)
    count: Mapped[int] = mapped_column(BigInteger)


class NameBinding(Base):
    """ip -> name as learned from DNS answers (with the TTL window) or a hello's SNI."""

    __tablename__ = "names"
    __table_args__ = (UniqueConstraint("address_id", "hostname_id", "source"),)
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    address_id: Mapped[int] = mapped_column(ForeignKey("addresses.id"))
    hostname_id: Mapped[int] = mapped_column(ForeignKey("hostnames.id"), index=True)
    source: Mapped[int] = mapped_column(SmallInteger)  # NAME_SOURCE_CODES
    first_seen: Mapped[float] = mapped_column(Float)
    last_seen: Mapped[float] = mapped_column(Float, index=True)
    expires: Mapped[float | None] = mapped_column(Float)


class EventRow(Base):
    """One observation. Per-kind columns are NULL where they do not apply (1 header byte each).

    Every column costs a record-header byte on every row, so the small fields share one
    integer (`flags`, see FLAG_*), both ports share one (`ports`, the smaller one high), a DNS
    qname or TLS/QUIC SNI shares `name_id` (NULL when it is the host), and the few-valued rest
    (DNS qtype and rcode; a hello's ALPN, versions and ECH; the QUIC version) is one interned
    label, `detail_id` (see rows.detail_text).
    """

    __tablename__ = "events"
    # Indexes cost bytes on every event: only the (rare, hence partial) tool gets one. Time
    # windows go through `event_blocks`, destinations through `destination_blocks`.
    __table_args__ = (
        Index(
            "ix_events_tool_id",
            "tool_id",
            sqlite_where=text("tool_id IS NOT NULL"),
            postgresql_where=text("tool_id IS NOT NULL"),
        ),
    )
    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    ts: Mapped[float] = mapped_column(Float)
    flags: Mapped[int] = mapped_column(BigId)
    src_id: Mapped[int] = mapped_column(ForeignKey("addresses.id"))
    dst_id: Mapped[int] = mapped_column(ForeignKey("addresses.id"))
    ports: Mapped[int] = mapped_column(BigId)
    status_id: Mapped[int] = mapped_column(ForeignKey("labels.id"))
    process_id: Mapped[int | None] = mapped_column(ForeignKey("processes.id"))
    destination_id: Mapped[int | None] = mapped_column(ForeignKey("destinations.id"))
    tool_id: Mapped[int | None] = mapped_column(ForeignKey("labels.id"))
    name_id: Mapped[int | None] = mapped_column(ForeignKey("hostnames.id"))
    detail_id: Mapped[int | None] = mapped_column(ForeignKey("labels.id"))
    attribution_method: Mapped[int | None] = mapped_column(SmallInteger)  # ATTRIBUTION_METHOD_CODES
    name_candidates: Mapped[str | None] = mapped_column(Text)  # JSON list when ambiguous
    cname_chain: Mapped[str | None] = mapped_column(Text)  # JSON list (name, then each CNAME)
    # The agent that saw it (revision 0006), an interned label: 0-4 bytes a row, no index
    # (a node filter scans the time window it is given). NULL: stored before 0006.
    node_id: Mapped[int | None] = mapped_column(ForeignKey("labels.id"))


class EventBlock(Base):
    """The time range of each block of BLOCK consecutive event ids (id >> BLOCK_BITS).

    Ids are allocated in arrival order, which is nearly time order, so a time window maps to
    a short id range: the blocks whose [first_ts, last_ts] overlap it. This costs well under a
    byte per event where an index on ts costs 16. After retention a block's first_ts may be
    older than its oldest remaining event: it is a bound, never a promise of an event.
    """

    __tablename__ = "event_blocks"
    block: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=False)
    first_ts: Mapped[float] = mapped_column(Float)
    last_ts: Mapped[float] = mapped_column(Float)


class DestinationBlock(Base):
    """Which event blocks hold events of a destination: its index at block grain.

    A destination's events are found by scanning only its blocks' id ranges. Popular
    destinations are in every block, rare ones in few; a few bytes per pair instead of ~9 per
    event for an index on events.destination_id. Pairs of deleted blocks go with retention.
    """

    __tablename__ = "destination_blocks"
    __table_args__ = ({"sqlite_with_rowid": False},)
    destination_id: Mapped[int] = mapped_column(
        ForeignKey("destinations.id", ondelete="CASCADE"), primary_key=True
    )
    block: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=False)


class DnsAnswerRow(Base):
    """One answer record of a DNS response event; A/AAAA data is interned as an address."""

    __tablename__ = "dns_answers"
    __table_args__ = ({"sqlite_with_rowid": False},)
    event_id: Mapped[int] = mapped_column(
        BigId, ForeignKey("events.id", ondelete="CASCADE"), primary_key=True
    )
    ord: Mapped[int] = mapped_column(SmallInteger, primary_key=True)
    hostname_id: Mapped[int | None] = mapped_column(ForeignKey("hostnames.id"))  # NULL: qname
    type_id: Mapped[int] = mapped_column(ForeignKey("labels.id"))
    address_id: Mapped[int | None] = mapped_column(ForeignKey("addresses.id"))
    data: Mapped[str | None] = mapped_column(Text)
    ttl: Mapped[int] = mapped_column(BigInteger)


class SessionRow(Base):
    """An inference session (automatic or manual); `verdict` is NULL while it is open."""

    __tablename__ = "sessions"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    started: Mapped[float] = mapped_column(Float, index=True)
    ended: Mapped[float | None] = mapped_column(Float, index=True)
    last_active: Mapped[float | None] = mapped_column(Float)
    trigger: Mapped[str] = mapped_column(String(16))  # "auto" | "manual"
    label: Mapped[str | None] = mapped_column(Text)
    strict: Mapped[bool] = mapped_column(Boolean)
    tools: Mapped[str] = mapped_column(Text)  # JSON list of tool names
    serving: Mapped[str] = mapped_column(Text)  # JSON [[pid, name, exe], ...]
    client: Mapped[str | None] = mapped_column(Text)  # JSON [pid, name, exe]
    model: Mapped[str | None] = mapped_column(Text)
    verdict: Mapped[str | None] = mapped_column(String(16))  # "clean" | "egress" once ended
    egress: Mapped[int] = mapped_column(BigInteger)
    node: Mapped[str | None] = mapped_column(Text, index=True)  # revision 0006; NULL: before


class SessionEventRow(Base):
    """An in-scope egress event seen during a session: the session report's evidence."""

    __tablename__ = "session_events"
    __table_args__ = ({"sqlite_with_rowid": False},)
    session_id: Mapped[int] = mapped_column(
        ForeignKey("sessions.id", ondelete="CASCADE"), primary_key=True
    )
    event_id: Mapped[int] = mapped_column(
        BigId, ForeignKey("events.id", ondelete="CASCADE"), primary_key=True
    )


class AlertRow(Base):
    """One deduplicated alert: (rule, tool, executable, destination, session) with a count."""

    __tablename__ = "alerts"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    first_ts: Mapped[float] = mapped_column(Float, index=True)
    last_ts: Mapped[float] = mapped_column(Float)
    count: Mapped[int] = mapped_column(BigInteger)
    rule: Mapped[str] = mapped_column(String(64))
    severity: Mapped[str] = mapped_column(String(16))
    session_id: Mapped[int | None] = mapped_column(
        ForeignKey("sessions.id", ondelete="SET NULL"), index=True
    )
    tool: Mapped[str | None] = mapped_column(Text)
    pid: Mapped[int | None] = mapped_column(Integer)
    process: Mapped[str | None] = mapped_column(Text)
    exe: Mapped[str | None] = mapped_column(Text)
    exe_sha256: Mapped[str | None] = mapped_column(String(64))
    host: Mapped[str | None] = mapped_column(Text)
    category: Mapped[str | None] = mapped_column(Text)
    event_id: Mapped[int | None] = mapped_column(
        BigId, ForeignKey("events.id", ondelete="SET NULL"), index=True
    )
    message: Mapped[str] = mapped_column(Text)
    acknowledged: Mapped[bool] = mapped_column(Boolean)
    dedup_key: Mapped[str] = mapped_column(Text, unique=True)
    node: Mapped[str | None] = mapped_column(Text, index=True)  # revision 0006; NULL: before


class AgentStatusRow(Base):
    """Each running agent's health, rewritten every few seconds, for the web process to read.

    One row per (name, node) since revision 0006: agents sharing a store no longer overwrite
    each other.
    """

    __tablename__ = "agent_status"
    name: Mapped[str] = mapped_column(String(32), primary_key=True)
    node: Mapped[str] = mapped_column(Text, primary_key=True)
    pid: Mapped[int] = mapped_column(Integer)
    started: Mapped[float] = mapped_column(Float)
    updated: Mapped[float] = mapped_column(Float)
    last_event_ts: Mapped[float | None] = mapped_column(Float)
    queue_depth: Mapped[int] = mapped_column(Integer)
    counters: Mapped[str] = mapped_column(Text)  # JSON {name: value}


class IngestBatch(Base):
    """A batch the writer committed, by its unique id: a spooled batch drained twice (after a
    crash between the commit and the spool's truncation) is recognised and skipped."""

    __tablename__ = "ingest_batches"
    batch_id: Mapped[str] = mapped_column(String(96), primary_key=True)
    written_at: Mapped[float] = mapped_column(Float)
    events: Mapped[int] = mapped_column(Integer)


class TimelineMinute(Base):
    """Events per minute and key of one dimension (tool label, destination or process id; 0
    for none), kept by the writer in the events' own transaction and lowered by retention, so
    a timeline of whole minutes is read from here instead of counting events (revision 0008).
    """

    __tablename__ = "timeline_minutes"
    __table_args__ = ({"sqlite_with_rowid": False},)
    dimension: Mapped[int] = mapped_column(SmallInteger, primary_key=True)  # DIMENSION_CODES
    minute: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=False)
    key: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=False)
    count: Mapped[int] = mapped_column(BigInteger)
