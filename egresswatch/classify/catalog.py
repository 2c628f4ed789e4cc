"""The destination catalog: loads the packaged CSV (plus a user override file) and classifies hosts.

File format and matching rules: docs/catalog.md.
"""

import functools
import re
from collections.abc import Sequence
from importlib import resources
from pathlib import Path

from publicsuffixlist import PublicSuffixList

from egresswatch.classify.csvdata import data_rows
from egresswatch.classify.destinations import (
    Classification,
    Entry,
    PatternIndex,
    Role,
    ip_literal,
    name_problem,
    normalise_host,
    pattern_anchor,
)
from egresswatch.classify.publiclist import public_lists
from egresswatch.classify.verdict import DestinationClassifier, Verdict
from egresswatch.errors import ConfigError

HEADER = ("host_pattern", "category", "tools", "purpose", "source")
CATEGORIES = frozenset(
    {
        "model-registry",
        "model-cdn",
        "update-check",
        "telemetry",
        "crash-report",
        "cloud-llm-api",
        "web-search",
        "mesh-vpn",
        "package-registry",
        "docs-web",
        "doh-dot",
        "other",
        "unknown",  # allowed in user files, to silence a packaged pattern
    }
)
MAX_FILE_BYTES = 4 * 1024 * 1024
# Destinations repeat heavily in real traffic; a small memo makes the steady state dict-speed.
CACHE_SIZE = 8192
_PATTERN_CHARS = re.compile(r"[a-z0-9_*-]+(?:\.[a-z0-9_*-]+)*")

RawRow = tuple[str, Role]


def packaged_catalog_text() -> str:
    """The CSV text of the catalog shipped inside the package."""
    return resources.files("egresswatch").joinpath("data", "destinations.csv").read_text("utf-8")


def parse_catalog(text: str, origin: str) -> list[RawRow]:
    """Parse catalog CSV text into (pattern, role) rows in file order.

    Raises:
        ConfigError: "<origin>:<line>: <problem>" for the first malformed line.
    """
    rows: list[RawRow] = []
    seen: set[tuple[str, str]] = set()
    for where, fields in data_rows(text, origin, HEADER, "catalog"):
        row = _parse_row(fields, where)
        if (row[0], row[1].category) in seen:
            raise ConfigError(f"{where}: duplicate row for {row[0]} {row[1].category}")
        seen.add((row[0], row[1].category))
        rows.append(row)
    return rows


def _parse_row(fields: Sequence[str], where: str) -> RawRow:
    if len(fields) != len(HEADER):
        raise ConfigError(f"{where}: expected {len(HEADER)} fields, got {len(fields)}")
    pattern_text, category, tools, purpose, source = (f.strip() for f in fields)
    problem = pattern_problem(pattern_text)
    if problem is not None:
        raise ConfigError(f"{where}: bad host_pattern {pattern_text!r}: {problem}")
    if category not in CATEGORIES:
        raise ConfigError(f"{where}: unknown category {category!r}")
    tool_names = tuple(t.strip() for t in tools.split(";") if t.strip())
    return canonical_pattern(pattern_text), Role(category, tool_names, purpose, source)


def canonical_pattern(pattern: str) -> str:
    """Lower-case form of a pattern; IP literals in canonical text form."""
    return ip_literal(pattern) or pattern.lower()


def pattern_problem(pattern: str) -> str | None:
    """Why `pattern` is not a valid host pattern, or None."""
    if ip_literal(pattern) is not None:
        return None
    text = pattern.lower()
    if not text.isascii():
        return "use the ASCII (xn--) form of internationalised names"
    if not _PATTERN_CHARS.fullmatch(text):
        return "only letters, digits, '-', '_', '*' and dots are allowed"
    if not pattern_anchor(text):
        return "the rightmost label must be literal"
    if text.startswith("*.") and "*" not in text[2:]:
        return name_problem(text[2:])
    return name_problem(text.replace("*", "x"))


def read_catalog_file(path: Path) -> list[RawRow]:
    """Read and parse a user catalog file; every problem is a ConfigError naming the file."""
    try:
        size = path.stat().st_size
        if size > MAX_FILE_BYTES:
            raise ConfigError(f"{path}: catalog file too large ({size} bytes)")
        text = path.read_text("utf-8")
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read catalog: {exc.strerror or exc}") from exc
    except UnicodeDecodeError as exc:
        raise ConfigError(f"{path}: catalog is not UTF-8: {exc.reason}") from exc
    return parse_catalog(text, str(path))


def build_entries(base: Sequence[RawRow], override: Sequence[RawRow] = ()) -> list[Entry]:
    """Group rows by pattern (first row = primary role); a pattern in `override` replaces it."""
    grouped: dict[str, list[Role]] = {}
    for pattern, role in base:
        grouped.setdefault(pattern, []).append(role)
    replaced: dict[str, list[Role]] = {}
    for pattern, role in override:
        replaced.setdefault(pattern, []).append(role)
    grouped.update(replaced)
    return [Entry(pattern, tuple(roles)) for pattern, roles in grouped.items()]


@functools.cache
def bundled_public_suffix_list() -> PublicSuffixList:
    """The list shipped inside publicsuffixlist, parsed once (~0.1 s); never fetched."""
    return PublicSuffixList()


class Catalog:
    """Compiled destination catalog; `classify` is pure and safe to share between threads."""

    __slots__ = ("_cache", "_entries", "_generalised", "_index", "_psl", "_vendors")

    def __init__(self, entries: Sequence[Entry], psl: PublicSuffixList | None = None) -> None:
        self._entries = tuple(entries)
        self._index = PatternIndex(self._entries)
        self._psl = psl or bundled_public_suffix_list()
        self._vendors = self._vendor_domains()
        self._cache: dict[str, Classification] = {}
        self._generalised: DestinationClassifier | None = None

    @property
    def entries(self) -> tuple[Entry, ...]:
        return self._entries

    def __len__(self) -> int:
        return len(self._entries)

    def _vendor_domains(self) -> dict[str, Entry]:
        vendors: dict[str, Entry] = {}
        for entry in self._entries:
            domain = self.registrable_domain(pattern_anchor(entry.pattern))
            if domain is not None and entry.category != "unknown":
                vendors.setdefault(domain, entry)
        return vendors

    def registrable_domain(self, host: str) -> str | None:
        """The public-suffix-list registrable domain of a normalised DNS name."""
        if not host or ip_literal(host) is not None:
            return None
        return self._psl_domain(host)

    def _psl_domain(self, host: str) -> str | None:
        domain = self._psl.privatesuffix(host)
        return domain if isinstance(domain, str) else None

    def classify(self, host: str) -> Classification:
        """Classify one destination host name (or IP literal); never raises."""
        cached = self._cache.get(host)
        if cached is not None:
            return cached
        result = self._classify(host)
        if len(self._cache) >= CACHE_SIZE:
            self._cache.clear()  # crude but bounded, and single dict ops are thread-safe
        self._cache[host] = result
        return result

    def classify_destination(
        self,
        host: str | None,
        *,
        tool: str | None = None,
        cname_chain: Sequence[str] = (),
        address: str | None = None,
    ) -> Verdict:
        """Category with `source` and `confidence`, beyond the catalog too (classify/verdict.py)."""
        if self._generalised is None:  # built on first use; a benign race builds it twice
            self._generalised = DestinationClassifier(self, public_lists())
        return self._generalised.classify_destination(
            host, tool=tool, cname_chain=cname_chain, address=address
        )

    def _classify(self, host: str) -> Classification:
        name = normalise_host(host)
        if name.kind == "bad":
            return _unmatched(name.text, None, name.reason)
        entry = self._index.lookup(name.text)
        domain = self._psl_domain(name.text) if name.kind == "dns" else None
        if entry is not None:
            return _matched(name.text, entry, domain)
        if name.kind == "ip":
            return _unmatched(name.text, None, "ip-literal")
        vendor = self._vendors.get(domain) if domain else None
        if vendor is not None and domain is not None:
            return _vendor(name.text, domain, vendor)
        return _unmatched(name.text, domain, "no-match")


def _matched(host: str, entry: Entry, domain: str | None) -> Classification:
    primary = entry.roles[0]
    return Classification(
        host=host,
        category=primary.category,
        tools=entry.tools,
        purpose=primary.purpose,
        source=primary.source,
        matched=entry.pattern,
        registrable_domain=domain,
        roles=entry.roles,
    )


def _vendor(host: str, domain: str, known: Entry) -> Classification:
    purpose = (
        f"not in the catalog; its registrable domain {domain} is known "
        f"(e.g. {known.pattern}: {known.category}), so the vendor is known but not the purpose"
    )
    return Classification(
        host, "other", (), purpose, "registrable-domain fallback", None, domain, "vendor-domain"
    )


def _unmatched(host: str, domain: str | None, reason: str | None) -> Classification:
    return Classification(host, "unknown", (), "", "", None, domain, reason)


def load_catalog(extra: Path | None = None) -> Catalog:
    """The packaged catalog, with the rows of the user file `extra` (same format) winning.

    Raises:
        ConfigError: `extra` is unreadable or malformed (the message names file and line).
    """
    base = parse_catalog(packaged_catalog_text(), "egresswatch/data/destinations.csv")
    override = read_catalog_file(extra) if extra is not None else []
    return Catalog(build_entries(base, override))
