"""Host names for flows: a flow's own SNI, else a DNS answer its process received, else any DNS
answer seen on the box for its address. Pure given its inputs (time is passed in) and bounded.
"""

from dataclasses import dataclass

from egresswatch.lru import Lru
from egresswatch.model import DnsMessage, FlowKey, NameSource, Observation

MAX_ENTRIES = 65536
HELLO_WINDOW = 10.0  # seconds a hello names the flow record of the same 5-tuple
TTL_GRACE = 30.0  # connections often start just after a short-TTL answer expires
TTL_MAX = 86400.0
_ADDRESS_TYPES = ("A", "AAAA")
_MAX_CHAIN = 16


@dataclass(frozen=True, slots=True)
class Naming:
    """The name chosen for one observation and where it came from."""

    host: str | None = None
    source: NameSource | None = None
    conflict: bool = False


@dataclass(frozen=True, slots=True)
class _Answer:
    asked: str  # the name the application asked for (the owner at the head of the CNAME chain)
    aliases: frozenset[str]  # every name on the chain, for comparing with an SNI
    expires: float


_DnsHit = tuple[_Answer, NameSource]


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
        asked, aliases = _chain_head(msg.qname, normalise(ans.name), cnames)
        ttl = min(max(float(ans.ttl), 0.0) + TTL_GRACE, TTL_MAX)
        out[ans.data.lower()] = _Answer(asked, aliases, ts + ttl)
    return out


def _chain_head(
    qname: str | None, owner: str, cnames: dict[str, str]
) -> tuple[str, frozenset[str]]:
    """Follows the question's CNAME chain; uses the question only if it leads to `owner`."""
    if qname is None:
        return owner, frozenset((owner,))
    head = normalise(qname)
    chain = [head]
    while chain[-1] != owner and chain[-1] in cnames and len(chain) < _MAX_CHAIN:
        chain.append(cnames[chain[-1]])
    if chain[-1] != owner:
        return owner, frozenset((owner,))
    return head, frozenset(chain)


class Namer:
    """Remembers recent DNS answers and hellos (bounded, TTL-limited) and names observations.

    Flow records are named when seen (from DNS, or from a hello of the same 5-tuple already seen);
    tls/quic records carry their own SNI and `conflict` when a DNS name for the same process and
    address disagrees with it (modulo case and the CNAME chain).
    """

    def __init__(self, limit: int = MAX_ENTRIES) -> None:
        self._by_pid: Lru[tuple[int, str], _Answer] = Lru(limit)
        self._by_ip: Lru[str, _Answer] = Lru(limit)
        self._hellos: Lru[FlowKey, tuple[str, NameSource, float]] = Lru(limit)

    def name(self, obs: Observation, pid: int | None) -> Naming:
        """Learns from `obs` and names it; `pid` is the attributed process, when known."""
        if obs.kind == "dns":
            self._learn(obs, pid)
            return Naming()
        if obs.kind == "flow":
            return self._name_flow(obs, pid)
        return self._name_hello(obs, pid)

    def _learn(self, obs: Observation, pid: int | None) -> None:
        if obs.dns is None or not obs.dns.is_response:
            return
        for address, answer in answers_by_address(obs.dns, obs.ts).items():
            self._by_ip.put(address, answer)
            if pid is not None:
                self._by_pid.put((pid, address), answer)

    def _dns_name(
        self, pid: int | None, address: str, now: float
    ) -> tuple[_Answer, NameSource] | None:
        address = address.lower()
        if pid is not None:
            hit = self._by_pid.get((pid, address))
            if hit is not None and hit.expires >= now:
                return hit, "dns-same-pid"
        hit = self._by_ip.get(address)
        if hit is not None and hit.expires >= now:
            return hit, "dns-any"
        return None

    def _name_flow(self, obs: Observation, pid: int | None) -> Naming:
        hello = self._hellos.get(obs.flow)
        dns = self._dns_name(pid, obs.flow.dst, obs.ts)
        if hello is not None and obs.ts - hello[2] <= HELLO_WINDOW:
            return Naming(hello[0], hello[1], _disagree(hello[0], dns))
        if dns is not None:
            return Naming(dns[0].asked, dns[1])
        return Naming()

    def _name_hello(self, obs: Observation, pid: int | None) -> Naming:
        dns = self._dns_name(pid, obs.flow.dst, obs.ts)
        hello = obs.hello
        if hello is None or not hello.sni or hello.ech:
            # An ECH hello's SNI is only the provider's public name, not the destination.
            return Naming(dns[0].asked, dns[1]) if dns is not None else Naming()
        sni = normalise(hello.sni)
        source: NameSource = "quic-sni" if obs.kind == "quic" else "sni"
        self._hellos.put(obs.flow, (sni, source, obs.ts))
        return Naming(sni, source, _disagree(sni, dns))


def _disagree(sni: str, dns: _DnsHit | None) -> bool:
    return dns is not None and sni not in dns[0].aliases
