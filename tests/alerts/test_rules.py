"""The rules as pure functions over events: who is in scope, what is egress, what fires."""

import dataclasses

from egresswatch.alerts.policy import load_policy
from egresswatch.alerts.rules import (
    Listener,
    RuleSet,
    exposed_api,
    registrable_domain,
    remote_client,
)
from egresswatch.classify.catalog import load_catalog
from egresswatch.fanout import classify_event
from egresswatch.model import Event, FlowKey, InferenceSession, Observation
from egresswatch.sessions.scope import is_egress, is_local_name
from egresswatch.sessions.tracker import in_scope
from tests.store.factory import dns_query, dns_response, process, tls_hello

OLLAMA = process(812, tool="Ollama", name="ollama", exe="/usr/bin/ollama")
CURL = process(900, tool=None, name="curl", exe="/usr/bin/curl")


def session(**changes: object) -> InferenceSession:
    fields: dict[str, object] = {
        "id": 7,
        "start": 0.0,
        "end": None,
        "trigger": "manual",
        "label": None,
        "strict": False,
        "tools": (),
    }
    fields.update(changes)
    return InferenceSession(**fields)  # type: ignore[arg-type]


def hello(host: str, proc: object = OLLAMA, category: str = "cloud-llm-api") -> Event:
    return tls_hello(10.0, host, proc, category=category)  # type: ignore[arg-type]


def test_egress_is_non_local_lookups_and_flows() -> None:
    assert is_egress(hello("api.openai.com"))
    assert is_egress(dns_query(1.0, "api.openai.com", OLLAMA))
    assert not is_egress(dns_query(1.0, "printer.local", OLLAMA))
    assert not is_egress(dns_query(1.0, "localhost", OLLAMA))
    assert not is_egress(dns_response(1.0, "api.openai.com", OLLAMA))  # the query counted
    loop = hello("localhost")
    flow = dataclasses.replace(loop.observation.flow, dst="127.0.0.1")
    assert not is_egress(dataclasses.replace(loop, observation=_obs(loop, flow)))
    assert is_local_name("nas") and not is_local_name("example.com")
    to_resolver = Observation(1.0, "flow", FlowKey("udp", "10.0.0.2", 40000, "10.0.0.1", 53))
    assert not is_egress(Event(to_resolver, loop.attribution))  # the DNS event is the egress


def _obs(event: Event, flow: FlowKey) -> Observation:
    return dataclasses.replace(event.observation, flow=flow)


def test_scope_llm_tools_named_tools_and_strict() -> None:
    tool_event, curl_event = hello("a.example"), hello("a.example", CURL)
    assert in_scope(session(), tool_event) and not in_scope(session(), curl_event)
    assert in_scope(session(strict=True), curl_event)
    assert in_scope(session(tools=("ollama",)), tool_event)
    assert not in_scope(session(tools=("LM Studio",)), tool_event)
    assert in_scope(session(trigger="auto", tools=("LM Studio",)), tool_event)


def test_egress_during_a_session_is_graded_by_category_with_a_readable_message() -> None:
    rules = RuleSet(load_policy())
    found = rules.evaluate(hello("api.openai.com"), 41, [session()], {})
    during = [a for a in found if a.rule == "egress-during-session"]
    assert len(during) == 1
    alert = during[0]
    assert (alert.severity, alert.session, alert.pid, alert.tool) == ("critical", 7, 812, "Ollama")
    assert (alert.host, alert.category, alert.event_id) == ("api.openai.com", "cloud-llm-api", 41)
    assert alert.message == (
        "ollama (pid 812, /usr/bin/ollama) contacted api.openai.com [cloud-llm-api]"
        " during session 7"
    )
    update = rules.evaluate(
        hello("registry.ollama.ai", category="update-check"), 42, [session()], {}
    )
    assert [a.severity for a in update if a.rule == "egress-during-session"] == ["medium"]
    assert not [a for a in rules.evaluate(hello("x.example"), 43, [], {}) if a.session]


def test_a_lookup_alerts_under_the_name_asked_for() -> None:
    query = classify_event(load_catalog(), dns_query(10.0, "api.openai.com", CURL))
    assert query.category == "cloud-llm-api"
    (alert,) = RuleSet(load_policy()).evaluate(query, 5, [session(strict=True)], {})
    assert (alert.host, alert.category, alert.severity) == (
        "api.openai.com",
        "cloud-llm-api",
        "critical",
    )
    assert alert.message.startswith("curl (pid 900, /usr/bin/curl) looked up api.openai.com")


def test_new_destination_once_per_executable_and_registrable_domain() -> None:
    rules = RuleSet(load_policy())
    first = rules.evaluate(hello("a.cdn.example.co.uk", category="other"), 1, [], {})
    again = rules.evaluate(hello("b.cdn.example.co.uk", category="other"), 2, [], {})
    hashed_later = dataclasses.replace(OLLAMA, exe_sha256=None)  # same executable, hash pending
    assert not rules.evaluate(hello("c.example.co.uk", hashed_later, "other"), 3, [], {})
    other_exe = dataclasses.replace(OLLAMA, exe="/opt/ollama/bin/ollama")
    third = rules.evaluate(hello("example.co.uk", other_exe, "other"), 3, [], {})
    assert [a.host for a in first if a.rule == "new-destination"] == ["example.co.uk"]
    assert not [a for a in again if a.rule == "new-destination"]
    assert [a.rule for a in third] == ["new-destination"]
    assert registrable_domain("x.y.github.io") == "y.github.io"
    assert not rules.evaluate(hello("a.example", CURL, "other"), 4, [], {})


def test_name_mismatch_and_hidden_names() -> None:
    rules = RuleSet(load_policy())
    conflict = dataclasses.replace(hello("api.example", category="other"), name_conflict=True)
    assert "name-mismatch" in {a.rule for a in rules.evaluate(conflict, 1, [], {})}
    doh = hello("cloudflare-dns.com", category="doh-dot")
    assert "name-hidden" in {a.rule for a in rules.evaluate(doh, 2, [], {})}


def test_remote_client_and_exposed_api() -> None:
    policy = load_policy()
    listener = Listener("Ollama", 812, "ollama", "/usr/bin/ollama", "0.0.0.0", 11434)
    syn = Observation(5.0, "flow", FlowKey("tcp", "10.199.3.3", 40000, "10.199.3.1", 11434))
    event = Event(syn, dataclasses.replace(hello("x").attribution, process=None, status="unknown"))
    alert = remote_client(policy, event, 9, {11434: listener})
    assert alert is not None and alert.severity == "high" and alert.host == "10.199.3.3"
    local = dataclasses.replace(syn, flow=dataclasses.replace(syn.flow, src="127.0.0.1"))
    assert remote_client(policy, dataclasses.replace(event, observation=local), 9, {}) is None
    exposed = exposed_api(policy, listener, 1.0)
    assert exposed is not None and exposed.host == "0.0.0.0:11434" and "OLLAMA" not in exposed.rule
    loopback = dataclasses.replace(listener, address="127.0.0.1")
    assert exposed_api(policy, loopback, 1.0) is None
