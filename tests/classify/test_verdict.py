"""classify_destination: every answer says how it was decided, and guesses never name a registry."""

import re

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from egresswatch.classify.catalog import (
    Catalog,
    build_entries,
    load_catalog,
    packaged_catalog_text,
    parse_catalog,
)
from egresswatch.classify.context import role_for_tool, tool_keys
from egresswatch.classify.cues import CUE_GROUPS, label_cue
from egresswatch.classify.locality import address_locality, name_locality
from egresswatch.classify.publiclist import LIB_HEADER, parse_domain_list, public_lists
from egresswatch.classify.verdict import SOURCES, DestinationClassifier
from egresswatch.errors import ConfigError

CATALOG = load_catalog()
GRADIO = "Gradio apps (library)"
HF = "huggingface_hub / transformers"


@pytest.mark.parametrize(
    ("host", "tool", "category"),
    [
        ("api.gradio.app", GRADIO, "update-check"),
        ("huggingface.co", GRADIO, "telemetry"),
        ("pypi.org", HF, "update-check"),
        ("huggingface.co", HF, "model-registry"),
        ("gpt4all.io", "GPT4All", "model-registry"),
        ("pypi.org", "Open WebUI", "package-registry"),
        ("pypi.org", None, "package-registry"),
    ],
)
def test_the_tool_picks_the_role_of_a_multi_purpose_host(
    host: str, tool: str | None, category: str
) -> None:
    verdict = CATALOG.classify_destination(host, tool=tool)
    assert (verdict.category, verdict.source, verdict.matched) == (category, "catalog", host)
    assert verdict.citation


def test_a_tool_the_host_does_not_know_keeps_the_primary_role() -> None:
    verdict = CATALOG.classify_destination("huggingface.co", tool="Ollama")
    assert verdict.category == "model-registry"
    assert verdict.confidence < CATALOG.classify_destination("pypi.org", tool=HF).confidence


def test_tool_names_are_compared_by_keys() -> None:
    assert "gradio" in tool_keys(GRADIO)
    assert {"huggingface_hub", "transformers"} <= tool_keys(HF)
    assert role_for_tool(CATALOG.classify("pypi.org").roles, "nothing-like-it") is None


@pytest.mark.parametrize(
    ("address", "category"),
    [("127.0.0.1", "local"), ("::1", "local"), ("0.0.0.0", "local"), ("10.0.0.7", "lan"),
     ("192.168.1.20", "lan"), ("fe80::1%eth0", "lan"), ("fd00:199::2", "lan"),
     ("100.101.102.103", "lan"), ("[::ffff:127.0.0.1]", "local"), ("8.8.8.8", None),
     ("2606:4700::1", None), ("not-an-address", None), ("", None)],
)  # fmt: skip
def test_address_locality(address: str, category: str | None) -> None:
    assert address_locality(address) == category


def test_local_destinations_are_categories_not_null() -> None:
    own = CATALOG.classify_destination(None, address="127.0.0.1")
    assert (own.category, own.source, own.confidence) == ("local", "address", 1.0)
    # a LAN address with a catalogued name may be a proxy: the name wins; loopback never egresses
    assert CATALOG.classify_destination("api.openai.com", address="10.0.0.5").category == (
        "cloud-llm-api"
    )
    assert CATALOG.classify_destination("gpu-box.example", address="10.0.0.5").category == "lan"
    assert CATALOG.classify_destination("api.openai.com", address="127.0.0.1").category == "local"
    assert CATALOG.classify_destination("ollama.lan").category == "lan"
    assert CATALOG.classify_destination("api.openai.com", address="1.2.3.4").category == (
        "cloud-llm-api"
    )
    assert name_locality("gpu-box.local") == "lan"
    assert name_locality("LOCALHOST.") == "local"
    assert name_locality("localhost.example.com") is None


def test_a_cname_chain_to_a_catalogued_name_passes_its_category_on() -> None:
    verdict = CATALOG.classify_destination(
        "models.example-mirror.net",
        cname_chain=("models.example-mirror.net", "edge.example-cdn.net", "cdn-lfs-us-1.hf.co"),
    )
    assert (verdict.category, verdict.source) == ("model-cdn", "cname")
    assert verdict.matched == "cdn-lfs-us-1.hf.co->cdn-lfs-us-1.hf.co"


def test_a_cname_chain_of_unknown_or_hostile_names_gives_no_cname_answer() -> None:
    verdict = CATALOG.classify_destination(
        "a.example-mirror.net", cname_chain=("b.example.net", "bad\x00name", "x" * 2000)
    )
    assert verdict.source != "cname"


@pytest.mark.parametrize(
    ("host", "category", "source"),
    [
        ("versions-prod.lmstudio.ai", "update-check", "vendor"),
        ("console.mistral.ai", "cloud-llm-api", "vendor"),
        # a library's own endpoint row (litellm's openai_compatible_endpoints)
        ("codestral.mistral.ai", "cloud-llm-api", "list"),
        # a label "ai" is a cue; the public suffix ".ai" is not
        ("ai.some-new-vendor.example", "cloud-llm-api", "heuristic"),
        ("www.some-new-vendor.ai", "unknown", "none"),
        ("transfer.eu.hf.co", "model-cdn", "vendor"),
        ("telemetry.some-new-app.io", "telemetry", "heuristic"),
        ("crash-reports.some-new-app.io", "crash-report", "heuristic"),
        ("chatgpt.com", "cloud-llm-api", "list"),
        ("status.poe.com", "docs-web", "list"),
        ("cdn.some-ai-vendor.example", "unknown", "none"),
        ("api.some-new-vendor.example", "cloud-llm-api", "heuristic"),
        ("dns.adguard.com", "doh-dot", "list"),
        ("o42.ingest.sentry.io", "crash-report", "catalog"),
        ("nothing-to-see.example.org", "unknown", "none"),
        ("ddg.gg", "web-search", "list"),
        ("fast.com", "other", "list"),
        ("zhipuai.cn", "cloud-llm-api", "list"),
        # a list row for this very host outweighs the profile of its catalogued vendor
        ("network-test.debian.org", "other", "list"),
        ("security.debian.org", "package-registry", "vendor"),
        # known destinations of no egresswatch category are `other`; their words still decide
        ("www.netflix.com", "other", "list"),
        ("telemetry.netflix.com", "telemetry", "list"),
    ],
)
def test_beyond_the_catalog(host: str, category: str, source: str) -> None:
    verdict = CATALOG.classify_destination(host)
    assert (verdict.category, verdict.source) == (category, source), verdict
    assert verdict.source in SOURCES
    assert (verdict.confidence == 0.0) == (source == "none")


def test_a_registry_vendor_s_unlisted_host_is_never_guessed_a_registry() -> None:
    rows = parse_catalog(
        "host_pattern,category,tools,purpose,source\n"
        "models.example,model-registry,generic,the registry,test\n",
        "test",
    )
    classifier = DestinationClassifier(Catalog(build_entries(rows)), public_lists())
    for host in ("x.models.example", "registry.models.example", "api.models.example"):
        assert classifier.classify_destination(host).category != "model-registry"
    assert "model-registry" not in {category for category, _ in CUE_GROUPS}


def test_hostile_names_are_unknown_without_raising() -> None:
    for host in ("", "a..b", "\x1b[31mred", "x" * 5000, "-" * 70 + ".com"):
        verdict = CATALOG.classify_destination(host)
        assert verdict.category == "unknown"


def test_label_cues_read_words_not_substrings() -> None:
    assert label_cue(("catalog",)) is None  # "log" inside a word is no cue
    cue = label_cue(("otel", "collector"))
    assert cue is not None
    assert cue.category == "telemetry"


def test_the_vendored_lists_are_pinned_and_parsed() -> None:
    listed = public_lists()
    assert len(listed) > 2000
    match = listed.lookup("foo.api.anthropic.com")
    assert match is not None
    assert (match.domain, match.category) == ("anthropic.com", "ai-service")
    assert match.cited == "v2fly:category-ai-!cn:anthropic.com"
    assert listed.lookup("example.org") is None
    assert listed.lookup("a." * 200 + "example.org") is None
    header = "kind,domain,list,category\n"
    with pytest.raises(ConfigError, match="x:2"):
        parse_domain_list(header + "regexp,foo,bar,telemetry\n", "x")
    with pytest.raises(ConfigError, match="x:2: unknown category"):
        parse_domain_list(header + "domain,foo.example,bar,model-registry\n", "x")
    with pytest.raises(ConfigError, match="x:2"):
        parse_domain_list(header + "domain,foo.example\n", "x")


def _without(*domains: str) -> DestinationClassifier:
    """The packaged catalog without the rows of these vendors, and the packaged lists."""
    rows = [
        row
        for row in parse_catalog(packaged_catalog_text(), "packaged")
        if not any(row[0] == d or row[0].endswith("." + d) for d in domains)
    ]
    return DestinationClassifier(Catalog(build_entries(rows)), public_lists())


@pytest.mark.parametrize(
    ("host", "category", "cited"),
    [
        # langchain-community files these under its search utilities; litellm under providers
        ("api.tavily.com", "web-search", "tavily_search.py"),
        ("google.serper.dev", "web-search", "google_serper.py"),
        ("api.together.xyz", "cloud-llm-api", "langchain-community@bc877730"),
        ("api.venice.ai", "cloud-llm-api", "providers.json:19"),
        # ShadowWhisperer's Wild_Tracking covers a domain's subtree
        ("eu.i.posthog.com", "telemetry", "shadowwhisperer:Wild_Tracking:posthog.com"),
        ("zz9.scarf.sh", "telemetry", "shadowwhisperer:Wild_Tracking:scarf.sh"),
        # SDKs' and agents' default endpoints: the exact host outranks the tracking list's
        # domain row (Wild_Tracking files bugsnag.com as analytics) and v2fly's category-dev
        ("notify.bugsnag.com", "crash-report", "bugsnag/delivery.py:29"),
        ("api.rollbar.com", "crash-report", "rollbar/__init__.py:246"),
        ("api.github.com", "update-check", "GitHubProvider.ts:23"),
        ("api.smith.langchain.com", "telemetry", "langsmith/client.py:634"),
        # a tunnel agent's domain covers the names it hands out (v2fly files it under CDNs)
        ("zz9.trycloudflare.com", "mesh-vpn", "quick_tunnel.go:24"),
        ("zz9.gradio.live", "mesh-vpn", "gradio/blocks.py:2745"),
        # no row for the host: the vendor's agent endpoints agree (api, app: mesh-vpn; ingest)
        ("zz9.netbird.io", "mesh-vpn", "netbirdio/netbird@ee253fed"),
    ],
)
def test_unseen_hosts_named_by_the_libraries_and_public_lists(
    host: str, category: str, cited: str
) -> None:
    vendor = ".".join(host.split(".")[-2:])  # trycloudflare.com is a private suffix of its own
    verdict = _without(vendor).classify_destination(host)
    assert (verdict.category, verdict.source) == (category, "list"), verdict
    assert cited in (verdict.matched or "")


def test_a_vendor_s_unlisted_host_is_what_its_listed_hosts_agree_on() -> None:
    classifier = _without("example")
    lists = parse_domain_list(
        "kind,domain,list,category\n"
        "full,decide.tracky.example,a,telemetry\n"
        "full,api2.tracky.example,a,telemetry\n"
        "full,cdn.mixed.example,a,telemetry\n"
        "full,www.mixed.example,a,other\n",
        "test",
    )
    classifier = DestinationClassifier(CATALOG, lists)
    verdict = classifier.classify_destination("api.tracky.example")
    assert (verdict.category, verdict.source) == ("telemetry", "list"), verdict
    assert "tracky.example" in (verdict.purpose or "")
    # one telemetry and one other host: no agreement, so the host's own words (none) decide
    assert classifier.classify_destination("zz.mixed.example").category == "unknown"


def test_words_under_a_private_suffix_are_read() -> None:
    # googleapis.com is a public suffix of its own: the host is its own registrable domain
    verdict = _without("googleapis.com").classify_destination("x7-aiplatform.googleapis.com")
    assert (verdict.category, verdict.source) == ("cloud-llm-api", "list"), verdict


def test_a_list_naming_a_function_outranks_one_naming_a_broad_field() -> None:
    broad = parse_domain_list("kind,domain,list,category\ndomain,bugs.example,dev,other\n", "a")
    named = parse_domain_list(
        "kind,domain,list,category\ndomain,bugs.example,tr,telemetry\n", "b", publisher="sw"
    )
    for merged in (broad.merged(named), named.merged(broad)):
        match = merged.lookup("notify.bugs.example")
        assert match is not None
        assert (match.category, match.cited) == ("telemetry", "sw:tr:bugs.example")


def test_a_tracking_list_row_with_a_crash_word_is_a_crash_reporter() -> None:
    lists = parse_domain_list(
        "kind,domain,list,category\ndomain,crashy-sdk.example,tr,telemetry\n"
        "domain,stats-sdk.example,tr,telemetry\n",
        "test",
    )
    classifier = DestinationClassifier(CATALOG, lists)
    assert classifier.classify_destination("settings.crashy-sdk.example").category == "crash-report"
    assert classifier.classify_destination("api.stats-sdk.example").category == "telemetry"


def test_a_tracking_list_s_vendor_whose_sdk_hosts_report_crashes_is_a_crash_reporter() -> None:
    lists = parse_domain_list(
        "kind,domain,list,category,source\n"
        "domain,bugs.example,tr,telemetry,o/r@1 a.py:1\n"
        "full,notify.bugs.example,sdk,crash-report,o/r@1 b.py:2\n"
        "full,sessions.bugs.example,sdk,crash-report,o/r@1 b.py:3\n"
        "domain,clicks.example,tr,telemetry,o/r@1 a.py:4\n"
        "full,api.clicks.example,sdk,crash-report,o/r@1 c.py:5\n"
        "full,events.clicks.example,sdk,telemetry,o/r@1 c.py:6\n",
        "test",
        LIB_HEADER,
    )
    classifier = DestinationClassifier(CATALOG, lists)
    verdict = classifier.classify_destination("upload.bugs.example")
    assert (verdict.category, verdict.source) == ("crash-report", "list"), verdict
    assert "b.py:2" in (verdict.matched or "")
    # the vendor's SDK hosts do not agree: the tracking list stands
    assert classifier.classify_destination("zz.clicks.example").category == "telemetry"
    # the packaged lists: bugsnag.com is on Wild_Tracking, its SDK's notify/sessions hosts are not
    verdict = _without("bugsnag.com").classify_destination("upload.bugsnag.com")
    assert (verdict.category, verdict.source) == ("crash-report", "list"), verdict


def test_a_listed_regional_host_covers_the_same_host_in_other_regions() -> None:
    lists = parse_domain_list(
        "kind,domain,list,category\nfull,bedrock-runtime.us-east-1.amazonaws.com,p,cloud-llm-api\n"
        "domain,amazonaws.com,vendor,other\n",
        "test",
    )
    for host in (
        "bedrock-runtime.eu-west-3.amazonaws.com",
        "bedrock-runtime.us-gov-west-1.amazonaws.com",
    ):
        match = lists.lookup(host)
        assert match is not None and match.category == "cloud-llm-api", host
    # another service in that region, or a label that only looks like a region part, is not it
    for host in ("s3.eu-west-3.amazonaws.com", "bedrock-runtime.my-east.amazonaws.com"):
        match = lists.lookup(host)
        assert match is not None and match.category == "other", host


def test_library_hosts_need_their_source() -> None:
    header = "kind,domain,list,category,source\n"
    with pytest.raises(ConfigError, match="x:2: a library host needs its source"):
        parse_domain_list(header + "full,a.example,lib,web-search,\n", "x", LIB_HEADER)
    listed = parse_domain_list(
        header + "full,a.example,lib,web-search,o/r@1 f.py:3\n", "x", LIB_HEADER
    )
    match = listed.lookup("a.example")
    assert match is not None
    assert match.cited == "lib:a.example (o/r@1 f.py:3)"


def test_an_ai_vendor_s_api_host_is_its_llm_api_and_other_hosts_stay_vague() -> None:
    assert CATALOG.classify_destination("api.anthropic.com").category == "cloud-llm-api"
    assert CATALOG.classify_destination("claude.ai").category == "cloud-llm-api"
    assert CATALOG.classify_destination("x7.claude.ai").category == "other"


@pytest.mark.parametrize(
    ("host", "tool", "category"),
    [
        ("cdn-media.huggingface.co", GRADIO, "mesh-vpn"),
        ("chroma-onnx-models.s3.amazonaws.com", "chromadb", "model-cdn"),
        ("embed.trychroma.com", "chromadb", "cloud-llm-api"),
        ("us.i.posthog.com", "chromadb", "telemetry"),
        ("router.huggingface.co", HF, "cloud-llm-api"),
        ("queue.fal.run", HF, "cloud-llm-api"),
        ("endpoints.huggingface.co", HF, "other"),
        ("eu.api.smith.langchain.com", None, "telemetry"),
    ],
)
def test_hosts_mined_from_the_libraries_source(host: str, tool: str | None, category: str) -> None:
    verdict = CATALOG.classify_destination(host, tool=tool)
    assert (verdict.category, verdict.source) == (category, "catalog")
    assert verdict.citation


def test_mined_rows_cite_repository_commit_and_file() -> None:
    text = packaged_catalog_text()
    mined = text[text.index("# ---- Part 3") :]
    rows = parse_catalog("host_pattern,category,tools,purpose,source\n" + mined, "part 3")
    assert len(rows) >= 15
    for pattern, role in rows:
        assert re.search(r"[\w.-]+/[\w.-]+@[0-9a-f]{8} \S+\.\w+", role.source), pattern


_LABEL = st.text(alphabet="abcdefghijklmnopqrstuvwxyz0123456789-_", min_size=1, max_size=20)
_NAMES = st.one_of(
    st.lists(_LABEL, min_size=1, max_size=6).map(".".join),
    st.text(max_size=80),
)


@settings(max_examples=400, deadline=None)
@given(
    host=st.one_of(st.none(), _NAMES),
    chain=st.lists(_NAMES, max_size=5),
    address=st.one_of(st.none(), st.ip_addresses().map(str), st.text(max_size=40)),
    tool=st.one_of(st.none(), st.sampled_from([GRADIO, HF, "Ollama", "x"]), st.text(max_size=20)),
)
def test_classify_destination_never_raises_and_never_guesses_a_registry(
    host: str | None, chain: list[str], address: str | None, tool: str | None
) -> None:
    verdict = CATALOG.classify_destination(host, tool=tool, cname_chain=chain, address=address)
    assert verdict.source in SOURCES
    assert 0.0 <= verdict.confidence <= 1.0
    if verdict.category == "model-registry":
        assert verdict.source in ("catalog", "cname")
