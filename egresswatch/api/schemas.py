"""Response schemas of the JSON API: the public contract, mapped explicitly from store records.

Every name a remote party chose (DNS names, SNI, process names, command lines) is returned as
plain JSON text; the dashboard renders it with textContent only.
"""

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from egresswatch.config import check_node

Kind = Literal["dns", "tls", "quic", "flow"]


class ErrorOut(BaseModel):
    """Every error the API returns has this shape."""

    error: str = Field(description="a stable code, e.g. not_found, bad_request, store_unavailable")
    detail: str = Field(description="what went wrong, for people")


class AnswerOut(BaseModel):
    name: str
    type: str
    data: str | None
    ttl: int


class AncestorOut(BaseModel):
    pid: int
    name: str
    exe: str | None


class EventOut(BaseModel):
    """The event record of docs/events.md (keys of other kinds are null)."""

    model_config = ConfigDict(extra="allow")

    event_id: int
    time: str = Field(description="UTC, ISO 8601, milliseconds")
    ts: float
    kind: Kind
    transport: Literal["udp", "tcp"]
    src: str
    sport: int
    dst: str
    dport: int
    tunneled: bool = False
    host: str | None
    name_source: str | None
    name_conflict: bool
    name_ambiguous: bool = False
    name_candidates: list[str] | None = Field(
        default=None, description="every name that fits the address, when more than one does"
    )
    cname_chain: list[str] | None = Field(
        default=None,
        description="the name's CNAME chain as seen in DNS answers (the name, then each target)",
    )
    category: str | None
    catalog_entry: str | None
    category_source: str | None = Field(
        default=None, description="how the category was decided (docs/catalog.md)"
    )
    category_confidence: float | None = None
    tool: str | None
    tool_reason: str | None = Field(default=None, description="why the process is that tool")
    node: str | None = Field(
        default=None, description="the agent that stored it; null: stored before nodes existed"
    )
    attribution: str
    attribution_method: str | None = Field(
        default=None, description="ebpf, sock-diag or recent (docs/attribution.md)"
    )
    pid: int | None
    process: str | None
    exe: str | None
    exe_sha256: str | None
    cmdline: list[str] | None
    user: str | None
    ppid: int | None
    ancestry: list[AncestorOut] | None
    netns: int | None
    container: str | None
    proto: str | None = None
    id: int | None = Field(default=None, description="the DNS message id")
    is_response: bool | None = None
    qname: str | None = None
    qtype: str | None = None
    rcode: str | None = None
    truncated: bool | None = None
    answers: list[AnswerOut] | None = None
    sni: str | None = None
    alpn: list[str] | None = None
    ech: bool | None = None
    tls_versions: list[str] | None = None
    quic_version: str | None = None


class EventPageOut(BaseModel):
    events: list[EventOut] = Field(description="newest first")
    next: str | None = Field(description="pass as `cursor` for the next (older) page; null: end")


class TimelinePointOut(BaseModel):
    start: float = Field(description="bucket start, epoch seconds")
    group: str | None
    count: int


class TimelineOut(BaseModel):
    bucket: Literal["minute", "hour", "day"]
    width: int = Field(description="bucket width in seconds")
    since: float
    until: float
    group: Literal["tool", "category", "host", "process", "node"]
    groups: list[str | None] = Field(description='busiest first; "(other)" folds the rest')
    points: list[TimelinePointOut]


class ToolUseOut(BaseModel):
    tool: str
    count: int
    first_seen: float
    last_seen: float


class CatalogRoleOut(BaseModel):
    category: str
    tools: list[str]
    purpose: str
    source: str = Field(description="the citation for this role")


class CatalogEntryOut(BaseModel):
    pattern: str
    roles: list[CatalogRoleOut]


class DestinationOut(BaseModel):
    host: str
    category: str | None
    catalog_entry: str | None
    catalog: CatalogEntryOut | None = Field(description="the catalog entry that matched")
    first_seen: float
    last_seen: float
    count: int
    tools: list[ToolUseOut]


class DestinationPageOut(BaseModel):
    destinations: list[DestinationOut] = Field(description="most recently contacted first")
    next: str | None


class CategoryUseOut(BaseModel):
    category: str
    events: int
    destinations: int


class ToolCardOut(BaseModel):
    """A tool's report card: where it went, by category, and from which executables."""

    tool: str
    events: int
    destinations: int
    first_seen: float
    last_seen: float
    categories: list[CategoryUseOut]
    offsite: list[str] = Field(
        description="categories beyond model downloads and package registries"
    )
    processes: int
    executables: list[str]


class ToolsOut(BaseModel):
    tools: list[ToolCardOut]


class ProcessOut(BaseModel):
    pid: int
    name: str
    exe: str | None
    exe_sha256: str | None
    cmdline: list[str]
    user: str | None
    ppid: int | None
    start_time: float | None
    ancestry: list[AncestorOut]
    netns: int | None
    container: str | None
    tool: str | None


class ProcessDrillOut(BaseModel):
    pid: int
    processes: list[ProcessOut] = Field(
        description="every process seen with this pid, newest first"
    )
    events: list[EventOut] = Field(description="its newest events")


class ProcessListOut(BaseModel):
    processes: list[ProcessOut]


class AgentOut(BaseModel):
    node: str = Field(default="", description="the agent's [agent] node")
    status: Literal["ok", "stale"] = Field(
        default="ok", description="ok: it wrote its status recently; stale: it stopped"
    )
    pid: int
    started: float
    updated: float
    age_seconds: float = Field(description="seconds since the agent last wrote its status")
    last_event_ts: float | None
    queue_depth: int
    counters: dict[str, int]


class HealthOut(BaseModel):
    status: Literal["ok", "stale", "no-agent"] = Field(
        description="ok: the agent wrote its status recently; stale: it stopped; no-agent: never"
    )
    version: str
    store: str = Field(description="the store URL, password hidden")
    revision: str | None
    agent: AgentOut | None = Field(description="the agent that wrote its status last")
    nodes: list[AgentOut] = Field(
        default_factory=list, description="every agent of the store, one per node, by node"
    )


Severity = Literal["info", "low", "medium", "high", "critical"]


class AlertOut(BaseModel):
    """A policy finding (docs/alerts.md); repeats are counted on the first one."""

    id: int
    time: float = Field(description="first occurrence, epoch seconds")
    last_time: float | None
    severity: Severity
    rule: str
    message: str
    session: int | None
    tool: str | None
    pid: int | None
    process: str | None
    exe: str | None
    exe_sha256: str | None
    host: str | None
    category: str | None
    count: int
    event_id: int | None
    acknowledged: bool
    node: str | None = Field(default=None, description="the agent that raised it")


class AlertsOut(BaseModel):
    alerts: list[AlertOut] = Field(description="newest first")


class AckOut(BaseModel):
    acknowledged: list[int]


class ProcessRefOut(BaseModel):
    pid: int
    name: str
    exe: str | None


class SessionOut(BaseModel):
    """An inference session (docs/sessions.md): verdict open, clean or egress."""

    id: int
    start: float
    end: float | None
    trigger: Literal["auto", "manual"]
    label: str | None
    strict: bool
    tools: list[str]
    serving: list[ProcessRefOut]
    client: ProcessRefOut | None
    model: str | None
    verdict: Literal["open", "clean", "egress"]
    egress: int
    alerts: int
    node: str | None = Field(default=None, description="the agent that opened it")


class SessionsOut(BaseModel):
    sessions: list[SessionOut] = Field(description="newest first")


class SessionStartIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    label: str | None = Field(default=None, max_length=200)
    strict: bool = Field(default=False, description="every process is in scope, not only tools")
    tools: list[str] = Field(default_factory=list, max_length=32)
    node: str | None = Field(
        default=None,
        max_length=253,
        description="the agent whose egress the session watches ([agent] node); default: the "
        "agent this dashboard's host runs, else this host's settings' node",
    )

    @field_validator("node")
    @classmethod
    def _valid_node(cls, value: str | None) -> str | None:
        return None if value is None else check_node(value)


class ReportSignatureOut(BaseModel):
    algorithm: Literal["ed25519"]
    public_key: str = Field(description="base64 of the raw Ed25519 public key")
    value: str = Field(description="base64 signature over the report's canonical JSON")


class SessionReportOut(BaseModel):
    """The session's canonical report, the file `egresswatch report SESSION --format json`
    writes: signed by the agent, or `signature` null and `unsigned` saying why."""

    report: dict[str, Any] = Field(
        description="egresswatch-session-report/1: session, summary, groups, alerts, "
        "evidence (events --json records with event_id), evidence_sha256, remediation"
    )
    signature: ReportSignatureOut | None
    unsigned: str | None = Field(default=None, description="why there is no signature")
