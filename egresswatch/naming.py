"""Host names for events: a DNS message's question; a flow's own SNI, else the newest DNS answer
its process received for the address, else any seen on the box (`ambiguous`, with candidates,
when several names fit). Pure given its inputs (time is passed in) and bounded.
"""

import dataclasses
from dataclasses import dataclass
from typing import TypeVar

from egresswatch.lru import Lru
from egresswatch.model import DnsMessage, Event, FlowKey, NameSource, Observation

MAX_ENTRIES = 65536
MAX_CANDIDATES = 8  # names remembered per address (shared hosting, CDNs): the newest win
SNI_WAIT = 0.5  # seconds a TCP flow record waits for its ClientHello to name it
MAX_PENDING_FLOWS = 4096
HELLO_WINDOW = 10.0  # seconds a hello names the flow record of the same 5-tuple
TTL_GRACE = 30.0  # connections often start just after a short-TTL answer expires
TTL_MAX = 86400.0
_ADDRESS_TYPES = ("A", "AAAA")
K = TypeVar("K")
_MAX_CHAIN = 16


@dataclass(frozen=True, slots=True)
class Naming:
    """The name chosen for one observation and where it came from."""

    host: str | None = None
    source: NameSource | None = None
    conflict: bool = False
    candidates: tuple[str, ...] = ()  # every fitting name, newest first, when more than one
    cname_chain: tuple[str, ...] = ()  # the name's CNAME chain from its DNS answer, when it has one


@dataclass(frozen=True, slots=True)
class _Answer:
    asked: str  # the name the application asked for (the owner at the head of the CNAME chain)
    aliases: frozenset[str]  # every name on the chain, for comparing with an SNI
    expires: float
    chain: tuple[str, ...] = ()  # asked, then each CNAME target in order (when there are any)


@dataclass(frozen=True, slots=True)
class _DnsHit:
    """The newest fitting answer, where it came from, and the names of all that fit."""

    answer: _Answer
    source: NameSource
    candidates: tuple[str, ...]
    all_aliases: tuple[frozenset[str], ...]

    def naming(self) -> "Naming":
        many = self.candidates if len(self.candidates) > 1 else ()
        return Naming(
            self.answer.asked, self.source, candidates=many, cname_chain=self.answer.chain
        )


def normalise(name: str) -> str:
    return name.rstrip(".").lower()


def answers_by_address(msg: DnsMessage, ts: float) -> dict[str, _Answer]:
    """Each A/AAAA address of a response, with the name asked for and the CNAME chain to it."""
    cnames = {
        normalise(a.name): normalise(a.data) for a in msg.answers if a.type == "CNAME" and a.data
    }
    out: dict[str, _Answer] = {}
    for ans in msg.answers:
        if ans.type not in _ADDRESS_TYPES or not ans.data:
            continue
        asked, chain = _chain_head(msg.qname, normalise(ans.name), cnames)
        ttl = min(max(float(ans.ttl), 0.0) + TTL_GRACE, TTL_MAX)
        kept = chain if len(chain) > 1 else ()
        out[ans.data.lower()] = _Answer(asked, frozenset(chain), ts + ttl, kept)
    return out


def cname_chain(msg: DnsMessage) -> tuple[str, ...]:
    """The question and each CNAME target after it, in order (bounded; a loop stops it)."""
    if not msg.qname:
        return ()
    cnames = {
        normalise(a.name): normalise(a.data) for a in msg.answers if a.type == "CNAME" and a.data
    }
    chain = [normalise(msg.qname)]
    while chain[-1] in cnames and cnames[chain[-1]] not in chain and len(chain) < _MAX_CHAIN:
        chain.append(cnames[chain[-1]])
    return tuple(chain)


def _chain_head(
    qname: str | None, owner: str, cnames: dict[str, str]
) -> tuple[str, tuple[str, ...]]:
    """Follows the question's CNAME chain; uses the question only if it leads to `owner`.

    Returns the name asked for and the chain from it to `owner`, in order.
    """
    if qname is None:
        return owner, (owner,)
    head = normalise(qname)
    chain = [head]
    while chain[-1] != owner and chain[-1] in cnames and len(chain) < _MAX_CHAIN:
        chain.append(cnames[chain[-1]])
    if chain[-1] != owner:
        return owner, (owner,)
    return head, tuple(chain)


class Namer:
    """Remembers recent DNS answers and hellos (bounded, TTL-limited) and names observations.

    Flow records are named when seen (from DNS, or from a hello of the same 5-tuple already seen);
    tls/quic records carry their own SNI and `conflict` when a DNS name for the same process and
    address disagrees with it (modulo case and the CNAME chain).
    """

    def __init__(self, limit: int = MAX_ENTRIES) -> None:
        self._by_pid: Lru[tuple[int, str], dict[str, _Answer]] = Lru(limit)
        self._by_ip: Lru[str, dict[str, _Answer]] = Lru(limit)
        self._hellos: Lru[FlowKey, tuple[str, NameSource, float]] = Lru(limit)

    def name(self, obs: Observation, pid: int | None) -> Naming:
        """Learns from `obs` and names it; `pid` is the attributed process, when known."""
        if obs.kind == "dns":
            self._learn(obs, pid)
            # a lookup is itself evidence of where a tool meant to go: named by its question
            qname = obs.dns.qname if obs.dns is not None else None
            return Naming(normalise(qname), "dns") if qname else Naming()
        if obs.kind == "flow":
            return self._name_flow(obs, pid)
        return self._name_hello(obs, pid)

    def _learn(self, obs: Observation, pid: int | None) -> None:
        if obs.dns is None or not obs.dns.is_response:
            return
        for address, answer in answers_by_address(obs.dns, obs.ts).items():
            _add(self._by_ip, address, answer)
            if pid is not None:
                _add(self._by_pid, (pid, address), answer)

    def _dns_name(self, pid: int | None, address: str, now: float) -> _DnsHit | None:
        address = address.lower()
        if pid is not None:
            hit = _fitting(self._by_pid.get((pid, address)), now, "dns-same-pid")
            if hit is not None:
                return hit
        return _fitting(self._by_ip.get(address), now, "dns-any")

    def _name_flow(self, obs: Observation, pid: int | None) -> Naming:
        hello = self._hellos.get(obs.flow)
        dns = self._dns_name(pid, obs.flow.dst, obs.ts)
        if hello is not None and obs.ts - hello[2] <= HELLO_WINDOW:
            return Naming(
                hello[0], hello[1], _disagree(hello[0], dns), cname_chain=_chain_of(hello[0], dns)
            )
        return dns.naming() if dns is not None else Naming()

    def _name_hello(self, obs: Observation, pid: int | None) -> Naming:
        dns = self._dns_name(pid, obs.flow.dst, obs.ts)
        hello = obs.hello
        if hello is None or not hello.sni or hello.ech:
            # An ECH hello's SNI is only the provider's public name, not the destination.
            return dns.naming() if dns is not None else Naming()
        sni = normalise(hello.sni)
        source: NameSource = "quic-sni" if obs.kind == "quic" else "sni"
        self._hellos.put(obs.flow, (sni, source, obs.ts))
        return Naming(sni, source, _disagree(sni, dns), cname_chain=_chain_of(sni, dns))


def _add(table: "Lru[K, dict[str, _Answer]]", key: K, answer: _Answer) -> None:
    """Remembers `answer` as the newest name for `key` (a few names per address at most)."""
    names = table.get(key) or {}
    names.pop(answer.asked, None)
    names[answer.asked] = answer  # insertion order is recency
    while len(names) > MAX_CANDIDATES:
        del names[next(iter(names))]
    table.put(key, names)


def _fitting(names: dict[str, _Answer] | None, now: float, source: NameSource) -> _DnsHit | None:
    """The newest unexpired answer, with every unexpired name (newest first)."""
    if not names:
        return None
    alive = [answer for answer in reversed(names.values()) if answer.expires >= now]
    if not alive:
        return None
    asked = tuple(answer.asked for answer in alive)
    return _DnsHit(alive[0], source, asked, tuple(answer.aliases for answer in alive))


def _chain_of(sni: str, dns: _DnsHit | None) -> tuple[str, ...]:
    """The CNAME chain of the DNS answer that asked for this very SNI, if it had one."""
    if dns is not None and dns.answer.asked == sni:
        return dns.answer.chain
    return ()


def _disagree(sni: str, dns: _DnsHit | None) -> bool:
    """True when no fitting DNS name (nor its CNAME chain) is the SNI."""
    if dns is None:
        return False
    return not any(sni in aliases for aliases in dns.all_aliases)


class PendingFlows:
    """Holds each TCP flow record (its SYN) until its ClientHello names it, or `window` passes.

    A flow record then carries its own SNI instead of a DNS guess made at the SYN; one whose
    hello does not come in time goes out as it was. Bounded: beyond `limit` the oldest go out.
    """

    def __init__(self, window: float = SNI_WAIT, limit: int = MAX_PENDING_FLOWS) -> None:
        self._window = window
        self._limit = limit
        self._held: dict[FlowKey, tuple[float, Event]] = {}

    def __len__(self) -> int:
        return len(self._held)

    def admit(self, events: list[Event]) -> list[Event]:
        """The events to emit now: TCP flow starts are held, a hello releases its named flow."""
        out: list[Event] = []
        for event in events:
            obs = event.observation
            if obs.kind == "flow" and obs.flow.transport == "tcp":
                self._held[obs.flow] = (obs.ts + self._window, event)
                out.extend(self._overflow())
                continue
            held = self._held.pop(obs.flow, None) if obs.kind == "tls" else None
            if held is not None:
                out.append(_named_by_hello(held[1], event))
            out.append(event)
        return out

    def due(self, now: float) -> list[Event]:
        """Held flows whose hello did not come within the window (capture time `now`)."""
        late = [key for key, (deadline, _event) in self._held.items() if deadline <= now]
        return [self._held.pop(key)[1] for key in late]

    def flush(self) -> list[Event]:
        out = [event for _deadline, event in self._held.values()]
        self._held.clear()
        return out

    def _overflow(self) -> list[Event]:
        out = []
        while len(self._held) > self._limit:
            out.append(self._held.pop(next(iter(self._held)))[1])
        return out


def _named_by_hello(flow: Event, hello: Event) -> Event:
    if hello.name_source not in ("sni", "quic-sni"):
        return flow  # no usable SNI (none, or an ECH public name): the DNS name stands
    return dataclasses.replace(
        flow,
        host=hello.host,
        name_source=hello.name_source,
        name_conflict=hello.name_conflict,
        name_candidates=(),
        cname_chain=hello.cname_chain,  # the chain of the SNI's own lookup, if any
    )
