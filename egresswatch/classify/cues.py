"""Label cues: what a host name's own words say about its purpose (a heuristic, marked as one).

Only function words ("telemetry", "update", "download"...), never vendor or brand names: brand
knowledge belongs to the catalog and the public lists, where it is cited. Words are the runs of
letters in the name; a cue word of five letters or more also counts inside a longer word
("customsearch", "crashreports"). The first group with a word present wins. No cue ever yields
`model-registry`: a registry is only named by the catalog or a CNAME to a catalogued host.
"""

import re
from dataclasses import dataclass

_SPLIT = re.compile(r"[^a-z]+")
SUBSTRING_MIN = 5


@dataclass(frozen=True, slots=True)
class Cue:
    """A category suggested by one word of a host name."""

    category: str
    word: str


# Ordered: specific functions (crash, telemetry, update, search) before generic ones.
CUE_GROUPS: tuple[tuple[str, frozenset[str]], ...] = (
    (
        "crash-report",
        frozenset(
            {
                "crash",
                "crashes",
                "crashreport",
                "crashreports",
                "minidump",
                "minidumps",
                "breakpad",
                "errors",
                "exceptions",
                "bugs",
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
                "otel",
                "otlp",
                "traces",
                "tracing",
                "observability",
                "experiment",
                "experiments",
                "feature",
                "features",
                "flags",
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
    ("doh-dot", frozenset({"dns", "doh", "resolver", "familyshield"})),
    ("web-search", frozenset({"search", "serp", "crawl", "crawler", "scrape", "scraper"})),
    (
        "mesh-vpn",
        frozenset(
            {
                "tunnel",
                "tunnels",
                "relay",
                "derp",
                "vpn",
                "wireguard",
                "frp",
                "controlplane",
            }
        ),
    ),
    ("model-cdn", frozenset({"lfs", "xet", "weights", "gguf", "safetensors", "blobs", "transfer"})),
    (
        "package-registry",
        frozenset(
            {
                "pypi",
                "npm",
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
                "repos",
                "crates",
                "gallery",
                "marketplace",
                "deb",
                "rpm",
                "containers",
                "container",
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
                "ai",
                "genai",
                "aiplatform",
                "openai",
                "gpt",
                "llm",
                "llms",
                "completions",
                "chat",
                "chatbot",
                "embeddings",
                "router",
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
# Cue words that count only as a label below the vendor's domain ("ai.gitee.com",
# "gateway.ai.cloudflare.com"), not inside a brand name or as the public suffix (".ai").
LABEL_ONLY = frozenset({"ai", "genai", "openai", "gpt", "aiplatform"})
_LONG_WORDS = tuple(
    (category, word) for category, words in CUE_GROUPS for word in sorted(words)
    if len(word) >= SUBSTRING_MIN
)  # fmt: skip
# Words that only say something beside other evidence (a vendor profile, a list).
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
    """The first cue group with a word present in `words` (long cue words also inside words)."""
    present = frozenset(words)
    for category, cue_words in CUE_GROUPS:
        hit = present & cue_words
        if hit:
            return Cue(category, min(hit))
    for category, word in _LONG_WORDS:
        if any(word in w for w in words):
            return Cue(category, word)
    return None


def weak_cue(words: tuple[str, ...], allowed: frozenset[str]) -> Cue | None:
    """A weak word ("api", "cdn", "download"...) with exactly one candidate in `allowed`."""
    for word in words:
        candidates = WEAK_WORDS.get(word, frozenset()) & allowed
        if len(candidates) == 1:
            return Cue(next(iter(candidates)), word)
    return None
