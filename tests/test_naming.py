"""Naming flows: SNI first, then a DNS answer of the same process, then any DNS answer; bounded."""

from hypothesis import given, settings
from hypothesis import strategies as st

from egresswatch.model import (
    Attribution,
    ClientHello,
    DnsAnswer,
    DnsMessage,
    Event,
    FlowKey,
    Observation,
    ObservationKind,
    Transport,
)
from egresswatch.naming import TTL_GRACE, Namer, Naming, PendingFlows, answers_by_address

CLIENT = "10.199.7.1"
SERVER = "10.199.7.2"


def response(qname: str, *answers: DnsAnswer, ts: float = 100.0) -> Observation:
    msg = DnsMessage(1, True, 0, qname, "A", "NOERROR", False, answers)
    return Observation(
        ts, "dns", FlowKey("udp", "10.199.7.53", 53, CLIENT, 40000), dns=msg, dns_proto="dns"
    )


def a(name: str, address: str = SERVER, ttl: int = 60) -> DnsAnswer:
    return DnsAnswer(name, "A", address, ttl)


def flow(ts: float = 101.0, dst: str = SERVER, sport: int = 50000) -> Observation:
    return Observation(ts, "flow", FlowKey("tcp", CLIENT, sport, dst, 443))


def hello(
    sni: str | None,
    ts: float = 101.1,
    kind: ObservationKind = "tls",
    ech: bool = False,
    sport: int = 50000,
) -> Observation:
    transport: Transport = "udp" if kind == "quic" else "tcp"
    return Observation(
        ts,
        kind,
        FlowKey(transport, CLIENT, sport, SERVER, 443),
        hello=ClientHello(sni, (), 0x0303, (0x0304,), ech),
    )


def test_flow_named_from_dns_of_the_same_pid_before_any_dns() -> None:
    namer = Namer()
    namer.name(response("other.lab", a("other.lab")), pid=9)
    namer.name(response("api.openai.lab", a("api.openai.lab")), pid=7)
    own = namer.name(flow(), pid=9)
    assert (own.host, own.source) == ("other.lab", "dns-same-pid")
    stranger = namer.name(flow(), pid=8)
    assert (stranger.host, stranger.source) == ("api.openai.lab", "dns-any")


def test_unknown_address_has_no_name() -> None:
    namer = Namer()
    namer.name(response("x.lab", a("x.lab")), pid=7)
    result = namer.name(flow(dst="10.199.7.99"), pid=7)
    assert (result.host, result.source, result.conflict) == (None, None, False)


def test_cname_chain_names_the_question_and_does_not_conflict_with_the_target() -> None:
    namer = Namer()
    cname = DnsAnswer("alias.api.lab", "CNAME", "edge.cdn.lab", 60)
    namer.name(response("Alias.API.lab.", cname, a("edge.cdn.lab")), pid=7)
    assert namer.name(flow(), pid=7).host == "alias.api.lab"
    tls = namer.name(hello("EDGE.cdn.lab"), pid=7)
    assert (tls.host, tls.source, tls.conflict) == ("edge.cdn.lab", "sni", False)


def test_sni_that_disagrees_with_dns_is_flagged() -> None:
    namer = Namer()
    namer.name(response("api.openai.lab", a("api.openai.lab")), pid=7)
    tls = namer.name(hello("evil.lab"), pid=7)
    assert (tls.host, tls.source, tls.conflict) == ("evil.lab", "sni", True)


def test_quic_sni_names_a_flow_record_that_comes_after_it() -> None:
    namer = Namer()
    quic = namer.name(hello("q.lab", kind="quic", ts=5.0), pid=7)
    assert (quic.host, quic.source) == ("q.lab", "quic-sni")
    same = Observation(5.0, "flow", FlowKey("udp", CLIENT, 50000, SERVER, 443))
    assert namer.name(same, pid=7).source == "quic-sni"
    later = Observation(60.0, "flow", FlowKey("udp", CLIENT, 50000, SERVER, 443))
    assert namer.name(later, pid=7).source is None


def test_ech_public_name_does_not_override_dns() -> None:
    namer = Namer()
    namer.name(response("real.lab", a("real.lab")), pid=7)
    result = namer.name(hello("public.ech.lab", ech=True), pid=7)
    assert (result.host, result.source, result.conflict) == ("real.lab", "dns-same-pid", False)


def test_answers_expire_after_ttl_and_grace() -> None:
    namer = Namer()
    namer.name(response("x.lab", a("x.lab", ttl=10), ts=100.0), pid=7)
    assert namer.name(flow(ts=100.0 + 10 + TTL_GRACE - 1), pid=7).host == "x.lab"
    assert namer.name(flow(ts=100.0 + 10 + TTL_GRACE + 1), pid=7).host is None


def test_a_cname_to_somewhere_else_falls_back_to_the_owner() -> None:
    msg = DnsMessage(
        1,
        True,
        0,
        "q.lab",
        "A",
        "NOERROR",
        False,
        (DnsAnswer("q.lab", "CNAME", "t.lab", 5), a("unrelated.lab")),
    )
    got = answers_by_address(msg, 0.0)
    assert got[SERVER].asked == "unrelated.lab"


def test_memory_is_bounded() -> None:
    namer = Namer(limit=100)
    for i in range(1000):
        namer.name(response(f"n{i}.lab", a(f"n{i}.lab", f"10.199.{i // 250}.{i % 250}")), pid=i)
    assert len(namer._by_ip) == 100 and len(namer._by_pid) == 100


names = st.text(alphabet="abc.-\x00é", max_size=20)
answers = st.builds(
    DnsAnswer,
    names,
    st.sampled_from(["A", "AAAA", "CNAME", "HTTPS"]),
    st.one_of(st.none(), names, st.sampled_from([SERVER, "fd00:199::2"])),
    st.integers(-(2**31), 2**32),
)


@settings(max_examples=200, deadline=None)
@given(st.one_of(st.none(), names), st.lists(answers, max_size=20), st.one_of(st.none(), names))
def test_never_raises_on_arbitrary_answers(
    qname: str | None, records: list[DnsAnswer], sni: str | None
) -> None:
    namer = Namer(limit=8)
    msg = DnsMessage(1, True, 0, qname, "A", "NOERROR", False, tuple(records))
    namer.name(Observation(1.0, "dns", FlowKey("udp", SERVER, 53, CLIENT, 1), dns=msg), pid=1)
    result = namer.name(hello(sni, ts=2.0), pid=1)
    assert result.source in (None, "sni", "dns-same-pid", "dns-any")
    assert len(result.candidates) != 1
    namer.name(flow(ts=2.0), pid=1)


def test_dns_messages_are_named_by_their_question() -> None:
    namer = Namer()
    got = namer.name(response("HuggingFace.co.", a("huggingface.co")), pid=7)
    assert (got.host, got.source) == ("huggingface.co", "dns")
    query = Observation(
        1.0,
        "dns",
        FlowKey("udp", CLIENT, 40000, "10.199.7.53", 53),
        dns=DnsMessage(2, False, 0, "pypi.org", "A", None, False, ()),
    )
    assert namer.name(query, pid=7).host == "pypi.org"


def test_newest_answer_of_the_same_process_wins_and_the_name_is_ambiguous() -> None:
    namer = Namer()
    namer.name(response("huggingface.co", a("huggingface.co"), ts=100.0), pid=7)
    namer.name(response("pypi.org", a("pypi.org"), ts=100.5), pid=7)
    got = namer.name(flow(), pid=7)
    assert (got.host, got.source) == ("pypi.org", "dns-same-pid")
    assert got.candidates == ("pypi.org", "huggingface.co")
    # the same name asked again is the newest again
    namer.name(response("huggingface.co", a("huggingface.co"), ts=100.8), pid=7)
    assert namer.name(flow(), pid=7).candidates == ("huggingface.co", "pypi.org")


def test_one_fitting_name_is_not_ambiguous_and_other_processes_do_not_count() -> None:
    namer = Namer()
    namer.name(response("pypi.org", a("pypi.org")), pid=7)
    namer.name(response("huggingface.co", a("huggingface.co")), pid=8)
    got = namer.name(flow(), pid=7)
    assert (got.host, got.candidates) == ("pypi.org", ())
    stranger = namer.name(flow(), pid=9)
    assert stranger.source == "dns-any" and set(stranger.candidates) == {
        "pypi.org",
        "huggingface.co",
    }


def test_sni_matching_any_fitting_name_is_no_conflict() -> None:
    namer = Namer()
    namer.name(response("pypi.org", a("pypi.org")), pid=7)
    namer.name(response("huggingface.co", a("huggingface.co")), pid=7)
    assert not namer.name(hello("pypi.org"), pid=7).conflict
    assert namer.name(hello("evil.lab"), pid=7).conflict


def _event(obs: Observation, naming: Naming) -> Event:
    return Event(
        obs,
        Attribution("exact"),
        host=naming.host,
        name_source=naming.source,
        name_conflict=naming.conflict,
        name_candidates=naming.candidates,
        cname_chain=naming.cname_chain,
    )


def test_a_held_flow_named_by_its_hello_takes_the_hello_s_chain() -> None:
    namer, pending = Namer(), PendingFlows(window=0.5)
    alias = DnsAnswer("m.mirror.lab", "CNAME", "cdn-lfs.hf.co", 60)
    namer.name(response("m.mirror.lab", alias, a("cdn-lfs.hf.co")), pid=7)
    syn = flow(ts=101.0)
    assert pending.admit([_event(syn, namer.name(syn, pid=7))]) == []
    tls = hello("m.mirror.lab", ts=101.1)
    flow_event, hello_event = pending.admit([_event(tls, namer.name(tls, pid=7))])
    assert flow_event.cname_chain == hello_event.cname_chain == ("m.mirror.lab", "cdn-lfs.hf.co")


def test_a_flow_waits_for_its_hello_and_carries_the_sni() -> None:
    namer, pending = Namer(), PendingFlows(window=0.5)
    namer.name(response("huggingface.co", a("huggingface.co")), pid=7)
    namer.name(response("pypi.org", a("pypi.org")), pid=7)
    syn = flow(ts=101.0)
    assert pending.admit([_event(syn, namer.name(syn, pid=7))]) == []
    tls = hello("pypi.org", ts=101.1)
    out = pending.admit([_event(tls, namer.name(tls, pid=7))])
    assert [e.observation.kind for e in out] == ["flow", "tls"]
    assert (out[0].host, out[0].name_source, out[0].name_ambiguous) == ("pypi.org", "sni", False)


def test_a_flow_without_a_hello_goes_out_after_the_window() -> None:
    namer, pending = Namer(), PendingFlows(window=0.5)
    namer.name(response("x.lab", a("x.lab")), pid=7)
    syn = flow(ts=101.0)
    pending.admit([_event(syn, namer.name(syn, pid=7))])
    assert pending.due(101.4) == []
    [late] = pending.due(101.6)
    assert (late.host, late.name_source) == ("x.lab", "dns-same-pid")
    assert len(pending) == 0


def test_pending_flows_are_bounded_and_flushed() -> None:
    pending = PendingFlows(window=5.0, limit=10)
    out = pending.admit([_event(flow(sport=1000 + i), Naming()) for i in range(25)])
    assert len(out) == 15 and len(pending) == 10
    assert len(pending.flush()) == 10 and len(pending) == 0


def test_a_flow_and_a_hello_named_from_dns_carry_the_name_s_cname_chain() -> None:
    namer = Namer()
    links = (
        DnsAnswer("m.mirror.lab", "CNAME", "edge.cdn.lab", 60),
        DnsAnswer("edge.cdn.lab", "CNAME", "cdn-lfs.hf.co", 60),
    )
    namer.name(response("M.mirror.lab.", *links, a("cdn-lfs.hf.co")), pid=7)
    chain = ("m.mirror.lab", "edge.cdn.lab", "cdn-lfs.hf.co")
    named = namer.name(flow(), pid=7)
    assert (named.host, named.cname_chain) == ("m.mirror.lab", chain)
    # a hello whose SNI is the name asked for carries its chain; another SNI does not
    assert namer.name(hello("m.mirror.lab"), pid=7).cname_chain == chain
    assert namer.name(hello("cdn-lfs.hf.co", sport=50001), pid=7).cname_chain == ()


def test_a_name_without_an_alias_has_no_chain() -> None:
    namer = Namer()
    namer.name(response("plain.lab", a("plain.lab")), pid=7)
    assert namer.name(flow(), pid=7).cname_chain == ()
