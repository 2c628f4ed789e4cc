"""The vendored public list of AI-service domains (v2fly domain-list-community, MIT licence).

Data: egresswatch/data/v2fly-category-ai.csv (flattened `category-ai-!cn`, pinned commit in its
header; licence in egresswatch/data/v2fly-LICENSE). A listed domain says "an AI service", so a
match suggests `cloud-llm-api` unless the host's own words say otherwise.
"""

import functools
from dataclasses import dataclass
from importlib import resources

from egresswatch.classify.csvdata import data_rows
from egresswatch.errors import ConfigError

HEADER = ("kind", "domain", "list")
LIST_NAME = "v2fly:category-ai-!cn"


@dataclass(frozen=True, slots=True)
class ListMatch:
    """The list entry that covers a host."""

    domain: str
    sublist: str


class DomainList:
    """`domain` rows cover the domain and every subdomain; `full` rows only the exact host."""

    __slots__ = ("_full", "_subtree")

    def __init__(self, rows: list[tuple[str, str, str]]) -> None:
        self._full = {d: s for kind, d, s in rows if kind == "full"}
        self._subtree = {d: s for kind, d, s in rows if kind == "domain"}

    def __len__(self) -> int:
        return len(self._full) + len(self._subtree)

    def lookup(self, host: str) -> ListMatch | None:
        """The entry covering a normalised host name, deepest first."""
        if host in self._full:
            return ListMatch(host, self._full[host])
        name = host
        while True:
            if name in self._subtree:
                return ListMatch(name, self._subtree[name])
            dot = name.find(".")
            if dot < 0:
                return None
            name = name[dot + 1 :]


def parse_domain_list(text: str, origin: str) -> DomainList:
    """Parse the vendored list.

    Raises:
        ConfigError: "<origin>:<line>: <problem>" for a malformed row.
    """
    rows = []
    for where, fields in data_rows(text, origin, HEADER, "domain list"):
        if len(fields) != len(HEADER) or fields[0] not in ("domain", "full"):
            raise ConfigError(f"{where}: expected kind (domain|full),domain,list")
        rows.append((fields[0], fields[1].strip().lower(), fields[2].strip()))
    return DomainList(rows)


@functools.cache
def ai_service_list() -> DomainList:
    """The packaged list, parsed on first use (never at import)."""
    path = resources.files("egresswatch").joinpath("data", "v2fly-category-ai.csv")
    return parse_domain_list(path.read_text("utf-8"), "egresswatch/data/v2fly-category-ai.csv")
