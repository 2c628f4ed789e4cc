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
NAME_SOURCE_CODES = {"sni": 0, "quic-sni": 1, "dns-same-pid": 2, "dns-any": 3, "dns": 4}


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING)


class Label(Base):
    """Low-cardinality protocol vocabulary (attribution status, DNS qtype/rcode/answer type)."""

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


class HelloShape(Base):
    """The parts of a ClientHello besides the name: few distinct values, so interned."""

    __tablename__ = "hello_shapes"
    __table_args__ = (UniqueConstraint("alpn", "tls_version", "tls_versions", "ech"),)
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    alpn: Mapped[str] = mapped_column(Text)  # JSON array
    tls_version: Mapped[int] = mapped_column(Integer)  # legacy_version
    tls_versions: Mapped[str] = mapped_column(Text)  # JSON array of supported_versions
    ech: Mapped[bool] = mapped_column(Boolean)


class EventRow(Base):
    """One observation. Per-kind columns are NULL where they do not apply (1 header byte each)."""

    __tablename__ = "events"
    # Indexes cost bytes on every event: only the time window, the destination and the
    # (rare, hence partial) tool get one. Retention finds orphans with set operations instead.
    __table_args__ = (
        Index(
            "ix_events_tool",
            "tool",
            sqlite_where=text("tool IS NOT NULL"),
            postgresql_where=text("tool IS NOT NULL"),
        ),
    )
    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    ts: Mapped[float] = mapped_column(Float, index=True)
    kind: Mapped[int] = mapped_column(SmallInteger)
    transport: Mapped[int] = mapped_column(SmallInteger)
    src_id: Mapped[int] = mapped_column(ForeignKey("addresses.id"))
    sport: Mapped[int] = mapped_column(Integer)
    dst_id: Mapped[int] = mapped_column(ForeignKey("addresses.id"))
    dport: Mapped[int] = mapped_column(Integer)
    tunneled: Mapped[bool] = mapped_column(Boolean)
    status_id: Mapped[int] = mapped_column(ForeignKey("labels.id"))
    process_id: Mapped[int | None] = mapped_column(ForeignKey("processes.id"))
    destination_id: Mapped[int | None] = mapped_column(ForeignKey("destinations.id"), index=True)
    name_source: Mapped[int | None] = mapped_column(SmallInteger)
    name_conflict: Mapped[bool] = mapped_column(Boolean)
    tool: Mapped[str | None] = mapped_column(Text)
    dns_proto: Mapped[int | None] = mapped_column(SmallInteger)
    dns_id: Mapped[int | None] = mapped_column(Integer)
    dns_response: Mapped[bool | None] = mapped_column(Boolean)
    dns_opcode: Mapped[int | None] = mapped_column(SmallInteger)
    dns_truncated: Mapped[bool | None] = mapped_column(Boolean)
    qname_id: Mapped[int | None] = mapped_column(ForeignKey("hostnames.id"))
    qtype_id: Mapped[int | None] = mapped_column(ForeignKey("labels.id"))
    rcode_id: Mapped[int | None] = mapped_column(ForeignKey("labels.id"))
    sni_id: Mapped[int | None] = mapped_column(ForeignKey("hostnames.id"))
    hello_id: Mapped[int | None] = mapped_column(ForeignKey("hello_shapes.id"))
    quic_version: Mapped[int | None] = mapped_column(BigInteger)


class DnsAnswerRow(Base):
    """One answer record of a DNS response event; A/AAAA data is interned as an address."""

    __tablename__ = "dns_answers"
    __table_args__ = ({"sqlite_with_rowid": False},)
    event_id: Mapped[int] = mapped_column(
        BigId, ForeignKey("events.id", ondelete="CASCADE"), primary_key=True
    )
    ord: Mapped[int] = mapped_column(SmallInteger, primary_key=True)
    hostname_id: Mapped[int] = mapped_column(ForeignKey("hostnames.id"))
    type_id: Mapped[int] = mapped_column(ForeignKey("labels.id"))
    address_id: Mapped[int | None] = mapped_column(ForeignKey("addresses.id"))
    data: Mapped[str | None] = mapped_column(Text)
    ttl: Mapped[int] = mapped_column(BigInteger)


class SessionRow(Base):
    """A span of activity of one tool (e.g. a local inference run), for the next issues."""

    __tablename__ = "sessions"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    tool: Mapped[str | None] = mapped_column(Text)
    process_id: Mapped[int | None] = mapped_column(ForeignKey("processes.id"), index=True)
    kind: Mapped[str] = mapped_column(Text)
    started: Mapped[float] = mapped_column(Float, index=True)
    ended: Mapped[float | None] = mapped_column(Float)


class AlertRow(Base):
    """A policy decision about an event or a session, for the alerting issue."""

    __tablename__ = "alerts"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    ts: Mapped[float] = mapped_column(Float, index=True)
    rule: Mapped[str] = mapped_column(Text)
    severity: Mapped[str] = mapped_column(String(16))
    message: Mapped[str] = mapped_column(Text)
    event_id: Mapped[int | None] = mapped_column(
        BigId, ForeignKey("events.id", ondelete="SET NULL"), index=True
    )
    session_id: Mapped[int | None] = mapped_column(
        ForeignKey("sessions.id", ondelete="SET NULL"), index=True
    )
    acknowledged: Mapped[bool] = mapped_column(Boolean)
