"""Records handed between pipeline stages: a packet's addressing and what the decoders found in it.

Every record is a frozen, slotted dataclass: cheap to build on the hot path, safe to share
between threads, and easy to compare in tests.
"""

from dataclasses import dataclass
from typing import Literal

Transport = Literal["udp", "tcp"]
ObservationKind = Literal["dns", "tls", "quic", "flow"]
DnsProto = Literal["dns", "mdns", "llmnr"]


@dataclass(frozen=True, slots=True)
class FlowKey:
    """The directional 5-tuple of one packet, as it was sent: src:sport -> dst:dport."""

    transport: Transport
    src: str
    sport: int
    dst: str
    dport: int

    def reversed(self) -> "FlowKey":
        return FlowKey(self.transport, self.dst, self.dport, self.src, self.sport)


@dataclass(frozen=True, slots=True)
class DnsAnswer:
    """One resource record of a DNS answer section.

    `name` is in presentation form without the trailing dot and lower-cased (ASCII only);
    `type` is the mnemonic ("A", "HTTPS", "TYPE65280"); `data` is the record's text form
    (see docs/replay-jsonl.md), or None where it has no useful text form.
    """

    name: str
    type: str
    data: str | None
    ttl: int


@dataclass(frozen=True, slots=True)
class DnsMessage:
    """The parts of a DNS/mDNS/LLMNR message egresswatch keeps (never the payload itself)."""

    id: int
    is_response: bool
    opcode: int
    qname: str | None
    qtype: str | None
    rcode: str | None
    truncated: bool
    answers: tuple[DnsAnswer, ...]


@dataclass(frozen=True, slots=True)
class ClientHello:
    """What a TLS ClientHello says about where it is going.

    `sni` is the server_name host name (None when absent). When `ech` is True the hello
    carries an encrypted_client_hello extension and `sni` is only the ECH public name.
    """

    sni: str | None
    alpn: tuple[str, ...]
    legacy_version: int
    supported_versions: tuple[int, ...]
    ech: bool


@dataclass(frozen=True, slots=True)
class Observation:
    """One metadata observation from the wire, in capture order.

    Exactly one of `dns` (kind "dns") or `hello` (kinds "tls" and "quic") is set; kind "flow"
    (a new outbound connection, issue #3) carries neither.
    """

    ts: float
    kind: ObservationKind
    flow: FlowKey
    dns: DnsMessage | None = None
    dns_proto: DnsProto | None = None
    hello: ClientHello | None = None
    quic_version: int | None = None
    tunneled: bool = False


NameSource = Literal["sni", "quic-sni", "dns-same-pid", "dns-any", "dns"]
AttributionMethod = Literal["ebpf", "sock-diag", "recent"]


@dataclass(frozen=True, slots=True)
class ProcessRef:
    """A link in a process's parent chain."""

    pid: int
    name: str
    exe: str | None


@dataclass(frozen=True, slots=True)
class ProcessInfo:
    """Facts about the local process that owned a socket, taken when the packet was seen.

    `start_time` (epoch seconds) with `pid` identifies the process across pid reuse;
    `netns` is the network-namespace inode; `container` the container id or cgroup path
    when the process is not in the host's root cgroup; `tool` the recognised LLM tool.
    """

    pid: int
    name: str
    exe: str | None
    exe_sha256: str | None
    cmdline: tuple[str, ...]
    user: str | None
    ppid: int | None
    start_time: float | None
    ancestry: tuple[ProcessRef, ...]
    netns: int | None
    container: str | None
    tool: str | None = None
    tool_reason: str | None = None  # why `tool` was recognised (rule, loaded library, model file)


@dataclass(frozen=True, slots=True)
class Attribution:
    """Who sent a packet: `status` is "exact" with `process` set, or "unknown:<reason>".

    `method` names what found the process: "ebpf" (the kernel's cgroup hooks), "sock-diag"
    (a live socket lookup), "recent" (the memory of a socket seen open); None when unknown.
    """

    status: str
    process: ProcessInfo | None = None
    method: AttributionMethod | None = None


@dataclass(frozen=True, slots=True)
class Event:
    """An observation with everything the later stages learned about it; what the store keeps.

    `host` is the best name for the destination and `name_source` where it came from;
    `name_conflict` is True when a DNS name and the SNI of the same flow disagree;
    `name_candidates` holds every name that fit when more than one did (`host` is then only the
    newest answer's: the name is ambiguous).
    `category` comes from the destination catalog ("unknown" when nothing matched) and
    `catalog_entry` names the pattern that matched.
    """

    observation: Observation
    attribution: Attribution
    host: str | None = None
    name_source: NameSource | None = None
    name_conflict: bool = False
    category: str | None = None
    catalog_entry: str | None = None
    tool: str | None = None
    name_candidates: tuple[str, ...] = ()
    category_source: str | None = None  # how `category` was decided (docs/catalog.md)
    category_confidence: float | None = None  # 0.0-1.0, by `category_source`
    # The destination name's CNAME chain (the name, then each target) as seen in DNS answers on
    # the box: a lookup's own answer, or the answer a flow or hello was named from; () if none.
    cname_chain: tuple[str, ...] = ()
    node: str | None = None  # the agent that saw it ([agent] node); None: stored before 0006

    @property
    def name_ambiguous(self) -> bool:
        return len(self.name_candidates) > 1


Severity = Literal["info", "low", "medium", "high", "critical"]
SEVERITIES: tuple[Severity, ...] = ("info", "low", "medium", "high", "critical")
SessionTrigger = Literal["auto", "manual"]


@dataclass(frozen=True, slots=True)
class InferenceSession:
    """A span of local inference (docs/sessions.md); `verdict` is "open", "clean" or "egress".

    `egress` counts the non-local DNS lookups and flows of in-scope processes during it.
    """

    id: int
    start: float
    end: float | None
    trigger: SessionTrigger
    label: str | None
    strict: bool
    tools: tuple[str, ...]
    serving: tuple[ProcessRef, ...] = ()
    client: ProcessRef | None = None
    model: str | None = None
    verdict: str = "open"
    egress: int = 0
    alerts: int = 0
    node: str | None = None  # the agent that opened it; None: stored before revision 0006


@dataclass(frozen=True, slots=True)
class Alert:
    """A policy finding (docs/alerts.md), deduplicated by (rule, tool, executable, host, session).

    `event_id` is the first evidence event; `count`, `time` and `last_time` aggregate repeats.
    """

    rule: str
    severity: Severity
    time: float
    message: str
    session: int | None = None
    tool: str | None = None
    pid: int | None = None
    process: str | None = None
    exe: str | None = None
    exe_sha256: str | None = None
    host: str | None = None
    category: str | None = None
    event_id: int | None = None
    count: int = 1
    id: int | None = None
    last_time: float | None = None
    acknowledged: bool = False
    node: str | None = None  # the agent that raised it; None: stored before revision 0006
