"""Label cues: what a host name's own words say about its purpose (a heuristic, marked as one).

Words come from the labels left of the registrable domain (split on '.', '-', '_' and digits);
the first cue group with a word present wins. No cue ever yields `model-registry`: a registry is
only named by the catalog or a CNAME to a catalogued host.
"""

import re
from dataclasses import dataclass

_SPLIT = re.compile(r"[^a-z]+")


@dataclass(frozen=True, slots=True)
class Cue:
    """A category suggested by one word of a host name."""

    category: str
    word: str


# Ordered: specific functions (crash, telemetry, update, search) before generic ones (api, cdn).
CUE_GROUPS: tuple[tuple[str, frozenset[str]], ...] = (
    (
        "crash-report",
        frozenset(
            {
                "crash",
                "crashes",
                "crashreport",
                "crashreports",
                "crashlytics",
                "sentry",
                "bugsnag",
                "minidump",
                "minidumps",
                "breakpad",
                "errors",
                "rollbar",
            }
        ),
    ),
    (
        "telemetry",
        frozenset(
            {
                "telemetry",
                "analytics",
                "events",
                "event",
                "ingest",
                "ingestion",
                "intake",
                "metrics",
                "stats",
                "statistics",
                "track",
                "tracking",
                "tracker",
                "collect",
                "collector",
                "beacon",
                "insights",
                "log",
                "logs",
                "logging",
                "usage",
                "rum",
                "pixel",
                "posthog",
                "mixpanel",
                "amplitude",
                "segment",
                "statsig",
                "datadog",
                "featuregates",
                "experiment",
                "experiments",
                "exp",
                "tas",
                "plausible",
                "heap",
                "otel",
                "otlp",
                "traces",
                "tracing",
                "smith",
            }
        ),
    ),
    (
        "update-check",
        frozenset(
            {
                "update",
                "updates",
                "updater",
                "autoupdate",
                "autoupdates",
                "versions",
                "version",
                "releases",
                "release",
                "upgrade",
                "upgrades",
                "appcast",
                "latest",
            }
        ),
    ),
    ("doh-dot", frozenset({"dns", "doh", "dot", "resolver", "resolve", "adblock", "familyshield"})),
    (
        "web-search",
        frozenset(
            {
                "search",
                "serp",
                "serpapi",
                "serper",
                "crawl",
                "crawler",
                "scrape",
                "scraper",
                "firecrawl",
                "bing",
                "duckduckgo",
                "websearch",
            }
        ),
    ),
    (
        "mesh-vpn",
        frozenset(
            {
                "tunnel",
                "tunnels",
                "relay",
                "derp",
                "vpn",
                "ngrok",
                "tailscale",
                "zerotier",
                "netbird",
                "wireguard",
                "frp",
                "controlplane",
                "share",
                "argotunnel",
            }
        ),
    ),
    (
        "model-cdn",
        frozenset(
            {
                "lfs",
                "xet",
                "xethub",
                "weights",
                "gguf",
                "safetensors",
                "blobs",
                "transfer",
            }
        ),
    ),
    (
        "package-registry",
        frozenset(
            {
                "pypi",
                "npm",
                "npmjs",
                "registry",
                "packages",
                "pkgs",
                "pkg",
                "wheels",
                "conda",
                "mirror",
                "mirrors",
                "archive",
                "repo",
                "crates",
                "gallery",
                "marketplace",
                "deb",
                "rpm",
                "ghcr",
                "docker",
                "containers",
                "formulae",
                "codeload",
            }
        ),
    ),
    (
        "cloud-llm-api",
        frozenset(
            {
                "inference",
                "llm",
                "llms",
                "completions",
                "chat",
                "openai",
                "gpt",
                "bedrock",
                "aiplatform",
                "generativelanguage",
                "router",
                "endpoints",
                "gateway",
                "dashscope",
            }
        ),
    ),
    (
        "docs-web",
        frozenset(
            {
                "docs",
                "doc",
                "documentation",
                "help",
                "support",
                "blog",
                "community",
                "forum",
                "status",
                "learn",
                "wiki",
            }
        ),
    ),
)
CUE_CATEGORIES = frozenset(category for category, _ in CUE_GROUPS)
# Words that only tell something when the vendor's profile agrees (see vendors.py).
WEAK_WORDS: dict[str, frozenset[str]] = {
    "api": frozenset({"cloud-llm-api", "web-search", "telemetry", "crash-report", "update-check"}),
    "cdn": frozenset({"model-cdn", "package-registry", "telemetry", "update-check"}),
    "download": frozenset({"model-cdn", "package-registry", "update-check"}),
    "downloads": frozenset({"model-cdn", "package-registry", "update-check"}),
    "dl": frozenset({"model-cdn", "package-registry", "update-check"}),
    "models": frozenset({"model-cdn", "cloud-llm-api"}),
    "storage": frozenset({"model-cdn", "package-registry"}),
    "files": frozenset({"model-cdn", "package-registry", "docs-web"}),
}


def host_words(labels: str) -> tuple[str, ...]:
    """The lower-case words of a host name part (letters only; digits and punctuation split)."""
    return tuple(w for w in _SPLIT.split(labels.lower()) if w)


def label_cue(words: tuple[str, ...]) -> Cue | None:
    """The first cue group with a word present in `words`, or None."""
    present = frozenset(words)
    for category, cue_words in CUE_GROUPS:
        hit = present & cue_words
        if hit:
            return Cue(category, min(hit))
    return None


def weak_cue(words: tuple[str, ...], allowed: frozenset[str]) -> Cue | None:
    """A weak word ("api", "cdn", "download"...) whose candidates include one of `allowed`."""
    for word in words:
        candidates = WEAK_WORDS.get(word, frozenset()) & allowed
        if len(candidates) == 1:
            return Cue(next(iter(candidates)), word)
    return None
