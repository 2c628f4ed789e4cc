"""Vendored public domain lists (v2fly domain-list-community, MIT licence), read as categories.

Data: egresswatch/data/v2fly-lists.csv (flattened lists, pinned commit in its header; licence in
egresswatch/data/v2fly-LICENSE). `ai-service` rows only say "an AI vendor": the host's own words
decide between its API, its CDN and `other` (classify/verdict.py).
"""

import functools
from dataclasses import dataclass
from importlib import resources

from egresswatch.classify.csvdata import data_rows
from egresswatch.errors import ConfigError

HEADER = ("kind", "domain", "list", "category")
AI_SERVICE = "ai-service"
LIST_CATEGORIES = frozenset(
    {"crash-report", "doh-dot", "mesh-vpn", "package-registry", "telemetry", "other", "docs-web",
     "web-search", AI_SERVICE}
)  # fmt: skip
MAX_DEPTH = 127  # labels in a DNS name; bounds the walk on hostile input


@dataclass(frozen=True, slots=True)
class ListMatch:
    """The list row that covers a host."""

    domain: str
    source_list: str
    category: str

    @property
    def cited(self) -> str:
        return f"v2fly:{self.source_list}:{self.domain}"


class DomainList:
    """`domain` rows cover the domain and every subdomain; `full` rows only the exact host."""

    __slots__ = ("_full", "_subtree")

    def __init__(self, rows: list[tuple[str, ListMatch]]) -> None:
        self._full = {m.domain: m for kind, m in rows if kind == "full"}
        self._subtree = {m.domain: m for kind, m in rows if kind == "domain"}

    def __len__(self) -> int:
        return len(self._full) + len(self._subtree)

    def lookup(self, host: str) -> ListMatch | None:
        """The row covering a normalised host name, deepest first."""
        if host in self._full:
            return self._full[host]
        name = host
        for _ in range(MAX_DEPTH):
            if name in self._subtree:
                return self._subtree[name]
            dot = name.find(".")
            if dot < 0:
                return None
            name = name[dot + 1 :]
        return None


def parse_domain_list(text: str, origin: str) -> DomainList:
    """Parse the vendored lists.

    Raises:
        ConfigError: "<origin>:<line>: <problem>" for a malformed row.
    """
    rows = []
    for where, fields in data_rows(text, origin, HEADER, "domain list"):
        kind, domain, source_list, category = (*(f.strip() for f in fields), "", "", "", "")[:4]
        if len(fields) != len(HEADER) or kind not in ("domain", "full"):
            raise ConfigError(f"{where}: expected kind (domain|full),domain,list,category")
        if category not in LIST_CATEGORIES:
            raise ConfigError(f"{where}: unknown category {category!r}")
        rows.append((kind, ListMatch(domain.lower(), source_list, category)))
    return DomainList(rows)


@functools.cache
def public_lists() -> DomainList:
    """The packaged lists, parsed on first use (never at import)."""
    path = resources.files("egresswatch").joinpath("data", "v2fly-lists.csv")
    return parse_domain_list(path.read_text("utf-8"), "egresswatch/data/v2fly-lists.csv")
