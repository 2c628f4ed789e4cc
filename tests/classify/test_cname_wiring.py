"""The fan-out's classify step reads a DNS answer's CNAME chain: an unknown name that aliases a
catalogued CDN is classified through the chain (real wire bytes, the product's DNS parser)."""

import dns.message
import dns.rrset

from egresswatch.classify.catalog import load_catalog
from egresswatch.decode.dns import parse_dns
from egresswatch.fanout import classify_event
from egresswatch.model import Attribution, DnsMessage, Event, FlowKey, Observation
from egresswatch.naming import cname_chain

CATALOG = load_catalog()


def _response(qname: str, *links: tuple[str, str]) -> DnsMessage:
    query = dns.message.make_query(qname, "A")
    reply = dns.message.make_response(query)
    for owner, target in links:
        reply.answer.append(dns.rrset.from_text(owner, 60, "IN", "CNAME", target))
    last = links[-1][1] if links else qname
    reply.answer.append(dns.rrset.from_text(last, 60, "IN", "A", "203.0.113.7"))
    return parse_dns(reply.to_wire())


def _lookup(msg: DnsMessage) -> Event:
    flow = FlowKey("udp", "10.199.9.53", 53, "10.199.9.1", 40000)
    obs = Observation(1.0, "dns", flow, dns=msg, dns_proto="dns")
    return Event(obs, Attribution("unknown:no-socket", None), host=None, name_source="dns")


def test_the_chain_is_read_in_order_and_a_loop_stops_it() -> None:
    msg = _response("m.example.net.", ("m.example.net.", "edge.example.org."),
                    ("edge.example.org.", "cdn-lfs.hf.co."))  # fmt: skip
    assert cname_chain(msg) == ("m.example.net", "edge.example.org", "cdn-lfs.hf.co")
    looped = _response("a.example.net.", ("a.example.net.", "b.example.net."),
                       ("b.example.net.", "a.example.net."))  # fmt: skip
    assert cname_chain(looped) == ("a.example.net", "b.example.net")


def test_a_lookup_aliasing_a_model_cdn_is_classified_through_its_chain() -> None:
    msg = _response("m.example.net.", ("m.example.net.", "cdn-lfs.hf.co."))
    event = classify_event(CATALOG, _lookup(msg))
    assert (event.category, event.category_source) == ("model-cdn", "cname")


def test_without_an_alias_the_same_name_stays_unknown() -> None:
    event = classify_event(CATALOG, _lookup(_response("m.example.net.")))
    assert event.category == "unknown"


def test_a_flow_named_from_an_aliasing_answer_is_classified_through_the_chain() -> None:
    flow = FlowKey("tcp", "10.199.9.1", 50000, "203.0.113.7", 443)
    event = Event(
        Observation(2.0, "flow", flow),
        Attribution("unknown:no-socket", None),
        host="m.example.net",
        name_source="dns-any",
        cname_chain=("m.example.net", "cdn-lfs.hf.co"),
    )
    classified = classify_event(CATALOG, event)
    assert (classified.category, classified.category_source) == ("model-cdn", "cname")
    assert classified.cname_chain == ("m.example.net", "cdn-lfs.hf.co")


def test_a_lookup_keeps_its_own_chain_and_a_plain_answer_none() -> None:
    msg = _response("m.example.net.", ("m.example.net.", "cdn-lfs.hf.co."))
    assert classify_event(CATALOG, _lookup(msg)).cname_chain == ("m.example.net", "cdn-lfs.hf.co")
    assert classify_event(CATALOG, _lookup(_response("m.example.net."))).cname_chain == ()
