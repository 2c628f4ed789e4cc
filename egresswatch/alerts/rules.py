"""The alert rules (docs/alerts.md): pure functions from an event, the sessions covering it and
the known LLM listeners to findings, graded by the policy."""

import functools
import ipaddress
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

from publicsuffixlist import PublicSuffixList

from egresswatch.alerts.policy import Policy
from egresswatch.fanout import destination_name
from egresswatch.model import Alert, Event, InferenceSession, ProcessInfo
from egresswatch.sessions.scope import is_egress, is_local_address


@dataclass(frozen=True, slots=True)
class Listener:
    """A listening TCP socket of a recognised LLM tool."""

    tool: str
    pid: int
    process: str
    exe: str | None
    address: str
    port: int

    @property
    def exposed(self) -> bool:
        # The wildcard address (the OLLAMA_HOST=0.0.0.0 case) is reachable from everywhere.
        try:
            return not ipaddress.ip_address(self.address.split("%", 1)[0]).is_loopback
        except ValueError:
            return True


def who(process: ProcessInfo | None) -> str:
    """ "ollama (pid 812, /usr/bin/ollama)"; raw text: escaped wherever it is shown."""
    if process is None:
        return "an unattributed process"
    return f"{process.name} (pid {process.pid}, {process.exe or 'exe unknown'})"


def _alert(rule: str, event: Event, event_id: int, message: str, **more: object) -> Alert:
    process = event.attribution.process
    fields: dict[str, object] = {
        "rule": rule,
        "severity": "info",
        "time": event.observation.ts,
        "message": message,
        "tool": event.tool,
        "pid": process.pid if process else None,
        "process": process.name if process else None,
        "exe": process.exe if process else None,
        "exe_sha256": process.exe_sha256 if process else None,
        "host": destination_name(event) or event.observation.flow.dst,
        "category": event.category,
        "event_id": event_id,
        "node": event.node,
    }
    fields.update(more)
    return Alert(**fields)  # type: ignore[arg-type]


def _target(event: Event) -> str:
    host = destination_name(event) or event.observation.flow.dst
    return f"{host} [{event.category or 'unknown'}]"


def egress_during_session(
    policy: Policy, event: Event, event_id: int, sessions: Sequence[InferenceSession]
) -> list[Alert]:
    verb = "looked up" if event.observation.kind == "dns" else "contacted"
    severity = policy.severity("egress-during-session", event.category)
    return [
        _alert(
            "egress-during-session",
            event,
            event_id,
            f"{who(event.attribution.process)} {verb} {_target(event)} during session {s.id}",
            severity=severity,
            session=s.id,
        )
        for s in sessions
    ]


def name_findings(policy: Policy, event: Event, event_id: int) -> list[Alert]:
    """name-mismatch (DNS and SNI disagree) and name-hidden (ECH, DoH) for LLM tools."""
    if event.tool is None:
        return []
    found = []
    hello = event.observation.hello
    if event.name_conflict:
        found.append(("name-mismatch", "used a DNS name and an SNI that disagree for"))
    if (hello is not None and hello.ech) or event.category == "doh-dot":
        found.append(("name-hidden", "hid the name it looked up or contacted (ECH/DoH):"))
    return [
        _alert(
            rule,
            event,
            event_id,
            f"{who(event.attribution.process)} {text} {_target(event)}",
            severity=policy.severity(rule),
        )
        for rule, text in found
    ]


def remote_client(
    policy: Policy, event: Event, event_id: int, listeners: Mapping[int, Listener]
) -> Alert | None:
    """A non-local address opened a connection to an LLM tool's listening port."""
    obs = event.observation
    listener = listeners.get(obs.flow.dport)
    if obs.kind != "flow" or obs.flow.transport != "tcp" or listener is None:
        return None
    if is_local_address(obs.flow.src):
        return None
    message = (
        f"{obs.flow.src} connected to {listener.process} (pid {listener.pid}, "
        f"{listener.exe or 'exe unknown'}) on port {listener.port} [{listener.tool}]"
    )
    return _alert(
        "remote-client",
        event,
        event_id,
        message,
        severity=policy.severity("remote-client"),
        tool=listener.tool,
        pid=listener.pid,
        process=listener.process,
        exe=listener.exe,
        exe_sha256=None,
        host=obs.flow.src,
        category=None,
    )


def exposed_api(policy: Policy, listener: Listener, now: float) -> Alert | None:
    if not listener.exposed:
        return None
    return Alert(
        "exposed-api",
        policy.severity("exposed-api"),
        now,
        f"{listener.process} (pid {listener.pid}, {listener.exe or 'exe unknown'}) listens on "
        f"{listener.address} port {listener.port}, reachable from other machines [{listener.tool}]",
        tool=listener.tool,
        pid=listener.pid,
        process=listener.process,
        exe=listener.exe,
        host=f"{listener.address}:{listener.port}",
    )


MODEL_SOURCES = frozenset({"model-registry", "model-cdn"})


def untrusted_model_source(
    policy: Policy, event: Event, event_id: int, received: int, limit_mb: float
) -> Alert | None:
    """An LLM tool's connection received more than `limit_mb` MB from outside model sources."""
    if event.tool is None or event.category in MODEL_SOURCES or received <= limit_mb * 1e6:
        return None
    message = (
        f"{who(event.attribution.process)} received {received / 1e6:.1f} MB from "
        f"{_target(event)}, which is not a model registry or CDN"
    )
    return _alert(
        "untrusted-model-source",
        event,
        event_id,
        message,
        severity=policy.severity("untrusted-model-source"),
    )


@functools.cache
def _suffixes() -> PublicSuffixList:
    return PublicSuffixList()


def registrable_domain(host: str) -> str:
    """example.co.uk for a.b.example.co.uk; the host itself when it has none (IPs, TLDs)."""
    return _suffixes().privatesuffix(host.lower().rstrip(".")) or host


class NewDestinations:
    """new-destination: the first time an LLM tool's executable reaches a registrable domain.
    Executables are told apart by path (the hash is recorded in the alert when known).

    Remembers a bounded set in memory; after a restart the store's dedup key turns a repeat into
    a count on the existing alert (no second notification).
    """

    def __init__(self, limit: int = 100_000) -> None:
        self._seen: set[tuple[str, str]] = set()
        self._limit = limit

    def check(self, policy: Policy, event: Event, event_id: int) -> Alert | None:
        process = event.attribution.process
        name = destination_name(event)
        if event.tool is None or process is None or not name or not is_egress(event):
            return None
        domain = registrable_domain(name)
        # The path, like the store's dedup key: the hash may arrive after the first events.
        key = (process.exe or process.exe_sha256 or process.name, domain)
        if key in self._seen:
            return None
        if len(self._seen) >= self._limit:
            self._seen.clear()
        self._seen.add(key)
        message = f"{who(process)} reached {domain} for the first time ({_target(event)})"
        return _alert(
            "new-destination",
            event,
            event_id,
            message,
            severity=policy.severity("new-destination"),
            host=domain,
        )


class RuleSet:
    """Every enabled rule over one event; findings graded (or dropped) by the policy."""

    def __init__(self, policy: Policy) -> None:
        self.policy = policy
        self.new_destinations = NewDestinations()

    def evaluate(
        self,
        event: Event,
        event_id: int,
        sessions: Sequence[InferenceSession],
        listeners: Mapping[int, Listener],
    ) -> list[Alert]:
        found: list[Alert | None] = []
        on = self.policy.enabled
        if sessions and on("egress-during-session"):
            found += egress_during_session(self.policy, event, event_id, sessions)
        if on("new-destination"):
            found.append(self.new_destinations.check(self.policy, event, event_id))
        if on("remote-client"):
            found.append(remote_client(self.policy, event, event_id, listeners))
        found += [a for a in name_findings(self.policy, event, event_id) if on(a.rule)]
        return self.graded(found)

    def graded(self, found: Sequence[Alert | None]) -> list[Alert]:
        grade: Callable[[Alert], Alert | None] = self.policy.grade
        return [g for a in found if a is not None and (g := grade(a)) is not None]
