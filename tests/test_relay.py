"""Upstream DNS of a stub resolver is linked to the application that asked on loopback."""

from egresswatch.model import (
    Attribution,
    DnsMessage,
    Event,
    FlowKey,
    Observation,
    ProcessInfo,
)
from egresswatch.relay import StubRelays


def _proc(pid: int, name: str, tool: str | None = None) -> ProcessInfo:
    return ProcessInfo(pid, name, f"/usr/bin/{name}", None, (name,), "u", 1, 0.0, (), 1, None, tool)


APP = _proc(100, "ollama", "Ollama")
STUB = _proc(50, "systemd-resolve")


def _dns(
    ts: float,
    src: str,
    dst: str,
    who: ProcessInfo | None,
    *,
    response: bool = False,
    qname: str = "registry.ollama.ai",
    proto: str = "dns",
) -> Event:
    sport, dport = (53, 40000) if response else (40000, 53)
    flow = FlowKey("udp", src, sport, dst, dport)
    msg = DnsMessage(7, response, 0, qname, "A", "NOERROR" if response else None, False, ())
    obs = Observation(ts, "dns", flow, dns=msg, dns_proto=proto)  # type: ignore[arg-type]
    status = "exact" if who else "unknown:no-socket"
    return Event(obs, Attribution(status, who), tool=who.tool if who else None)


def _flow(ts: float, src: str, dst: str, who: ProcessInfo) -> Event:
    obs = Observation(ts, "flow", FlowKey("udp", src, 40000, dst, 53))
    return Event(obs, Attribution("exact", who))


def test_upstream_query_and_answer_are_the_applications() -> None:
    relays = StubRelays()
    asked = relays.link([_dns(1.0, "127.0.0.1", "127.0.0.53", APP)])
    assert asked[0].attribution.process is APP
    upstream = relays.link(
        [_flow(1.01, "10.0.0.5", "9.9.9.9", STUB), _dns(1.01, "10.0.0.5", "9.9.9.9", STUB)]
    )
    for event in upstream:
        assert event.attribution.status == "relayed:systemd-resolve"
        assert event.attribution.process is APP and event.tool == "Ollama"
    (answer,) = relays.link([_dns(1.05, "9.9.9.9", "10.0.0.5", STUB, response=True)])
    assert answer.attribution.process is APP
    (back,) = relays.link([_dns(1.06, "127.0.0.53", "127.0.0.1", APP, response=True)])
    assert back.attribution.status == "exact"  # the stub's reply on lo stays as it was


def test_no_link_without_a_loopback_question_or_after_the_window() -> None:
    relays = StubRelays(window=2.0)
    (alone,) = relays.link([_dns(1.0, "10.0.0.5", "9.9.9.9", STUB)])
    assert alone.attribution.process is STUB
    relays.link([_dns(1.0, "127.0.0.1", "127.0.0.53", APP)])
    (late,) = relays.link([_dns(3.5, "10.0.0.5", "9.9.9.9", STUB)])
    assert late.attribution.process is STUB
    (other,) = relays.link([_dns(1.1, "10.0.0.5", "9.9.9.9", STUB, qname="other.example")])
    assert other.attribution.process is STUB


def test_an_application_asking_upstream_itself_is_left_alone() -> None:
    relays = StubRelays()
    relays.link([_dns(1.0, "127.0.0.1", "127.0.0.53", APP)])
    (direct,) = relays.link([_dns(1.1, "10.0.0.5", "9.9.9.9", APP)])
    assert direct.attribution.status == "exact"


def test_mdns_is_never_linked() -> None:
    relays = StubRelays()
    relays.link([_dns(1.0, "127.0.0.1", "127.0.0.53", APP, proto="mdns")])
    (query,) = relays.link([_dns(1.1, "10.0.0.5", "224.0.0.251", STUB, proto="mdns")])
    assert query.attribution.process is STUB
