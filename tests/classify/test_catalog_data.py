"""The packaged destination catalog: well-formed, cited, and a superset of the shared catalog."""

import csv
from pathlib import Path

import pytest

from egresswatch.classify.catalog import (
    CATEGORIES,
    load_catalog,
    packaged_catalog_text,
    parse_catalog,
)

REPO = Path(__file__).resolve().parents[2]
SHARED_CATALOG = REPO / ".." / "shared" / "catalog" / "llm-egress-hosts.csv"
DOCS = REPO / "docs" / "catalog.md"

CATALOG = load_catalog()


def _example_host(pattern: str) -> str:
    """A host the pattern is meant to match (the subtree wildcard gets an extra label)."""
    return (
        pattern.replace("*.", "zz9.", 1) if pattern.startswith("*.") else pattern.replace("*", "x")
    )


def _shared_rows() -> list[dict[str, str]]:
    if not SHARED_CATALOG.exists():
        pytest.skip(
            f"shared catalog not found at {SHARED_CATALOG} (needs ../shared beside the repo)"
        )
    with SHARED_CATALOG.open(newline="", encoding="utf-8") as fh:
        return list(csv.DictReader(fh))


def test_packaged_rows_are_cited_and_categorised() -> None:
    rows = parse_catalog(packaged_catalog_text(), "packaged")
    assert len(rows) > 200
    for pattern, role in rows:
        assert role.source, f"{pattern} has no source"
        assert role.purpose, f"{pattern} has no purpose"
        assert role.category in CATEGORIES - {"unknown"}, pattern
        assert role.tools, f"{pattern} names no tools (use 'generic')"


def test_every_category_has_rows_and_is_documented() -> None:
    used = {e.category for e in CATALOG.entries} | {
        r.category for e in CATALOG.entries for r in e.roles
    }
    assert CATEGORIES - {"unknown"} <= used
    text = DOCS.read_text(encoding="utf-8")
    for category in CATEGORIES:
        assert f"`{category}`" in text, f"{category} missing from docs/catalog.md"


def test_every_shared_row_is_in_the_catalog_with_its_category() -> None:
    rows = _shared_rows()
    assert len(rows) == 113
    for row in rows:
        pattern, category = row["host_pattern"], row["category"]
        result = CATALOG.classify(_example_host(pattern))
        assert result.matched == pattern, (pattern, result)
        assert category in result.categories, (pattern, category, result.categories)
        shared_tools = {t.strip() for t in row["tools"].split(";") if t.strip()}
        assert shared_tools <= set(result.tools), pattern


def test_single_role_shared_rows_are_the_primary_category() -> None:
    rows = _shared_rows()
    counts: dict[str, int] = {}
    for row in rows:
        counts[row["host_pattern"]] = counts.get(row["host_pattern"], 0) + 1
    for row in rows:
        if counts[row["host_pattern"]] == 1:
            assert CATALOG.classify(_example_host(row["host_pattern"])).category == row["category"]


MIXED_PRIMARY = {
    "huggingface.co": ("model-registry", {"telemetry", "other"}),
    "ollama.com": ("cloud-llm-api", {"update-check", "web-search"}),
    "pypi.org": ("package-registry", {"update-check"}),
    "gpt4all.io": ("model-registry", {"update-check"}),
}


@pytest.mark.parametrize("host", sorted(MIXED_PRIMARY))
def test_mixed_purpose_hosts_keep_every_role(host: str) -> None:
    primary, others = MIXED_PRIMARY[host]
    result = CATALOG.classify(host)
    assert result.category == primary
    assert set(result.categories) == {primary, *others}


EXPECTED = {
    "cloud-llm-api": [
        "api.openai.com",
        "api.anthropic.com",
        "generativelanguage.googleapis.com",
        "api.mistral.ai",
        "api.groq.com",
        "api.together.xyz",
        "openrouter.ai",
        "api.deepseek.com",
        "api.cohere.com",
        "api.x.ai",
        "api.perplexity.ai",
        "myresource.openai.azure.com",
        "bedrock-runtime.eu-west-1.amazonaws.com",
        "api.fireworks.ai",
        "europe-west4-aiplatform.googleapis.com",
        "api.githubcopilot.com",
    ],
    "telemetry": [
        "us.i.posthog.com",
        "app.posthog.com",
        "api.segment.io",
        "api-js.mixpanel.com",
        "api2.amplitude.com",
        "www.google-analytics.com",
        "acme.gateway.scarf.sh",
        "http-intake.logs.datadoghq.com",
        "stats.vllm.ai",
        "log.tailscale.io",
    ],
    "crash-report": [
        "o123.ingest.sentry.io",
        "o4507954455314432.ingest.us.sentry.io",
        "notify.bugsnag.com",
        "crashlyticsreports-pa.googleapis.com",
    ],
    "web-search": [
        "api.search.brave.com",
        "api.bing.microsoft.com",
        "serpapi.com",
        "api.tavily.com",
        "html.duckduckgo.com",
        "lite.duckduckgo.com",
        "customsearch.googleapis.com",
    ],
    "doh-dot": [
        "dns.google",
        "cloudflare-dns.com",
        "mozilla.cloudflare-dns.com",
        "one.one.one.one",
        "dns.quad9.net",
        "dns11.quad9.net",
        "doh.opendns.com",
        "dns.nextdns.io",
        "1.1.1.1",
        "2001:4860:4860::8888",
    ],
    "mesh-vpn": [
        "controlplane.tailscale.com",
        "derp12.tailscale.com",
        "root-lax-01.zerotier.com",
        "api.netbird.io",
        "connect.ngrok-agent.com",
        "abc.ngrok-free.app",
        "x1.gradio.live",
        "region1.v2.argotunnel.com",
    ],
    "package-registry": [
        "pypi.org",
        "files.pythonhosted.org",
        "registry.npmjs.org",
        "github.com",
        "objects.githubusercontent.com",
        "ghcr.io",
        "registry-1.docker.io",
    ],
    "model-cdn": [
        "cdn-lfs-us-1.hf.co",
        "cdn-lfs-ap-1.hf.co",
        "cas-bridge.xethub.hf.co",
        "dd20bb891979d25aebc8bec07b2b3bbc.r2.cloudflarestorage.com",
        "us.gcp.cdn.hf.co",
    ],
    "model-registry": ["huggingface.co", "hf.co", "registry.ollama.ai", "www.modelscope.cn"],
    "update-check": ["update.code.visualstudio.com", "llmster.lmstudio.ai"],
    "docs-web": ["openwebui.com", "files.lmstudio.ai"],
    "other": ["fonts.googleapis.com", "unlisted-bucket.r2.cloudflarestorage.com"],
}


@pytest.mark.parametrize(
    ("host", "category"), [(h, c) for c, hosts in EXPECTED.items() for h in hosts]
)
def test_packaged_catalog_covers_the_expected_destinations(host: str, category: str) -> None:
    result = CATALOG.classify(host)
    assert result.category == category, result
    assert result.matched is not None
