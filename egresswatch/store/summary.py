"""`egresswatch summary`: rolled-up rows grouped by tool, process, destination or category,
with how often, first and last seen, and who talked to what.
"""

from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

from egresswatch.store.views import ViewRow

GROUPINGS = ("tool", "process", "destination", "category")
SHOWN_PEERS = 3


@dataclass(slots=True)
class SummaryRow:
    """One group: its key, counts, time range, and the other side of its traffic."""

    key: str
    connections: int = 0
    lookups: int = 0
    first: float = float("inf")
    last: float = float("-inf")
    peers: Counter[str] = field(default_factory=Counter)
    categories: Counter[str] = field(default_factory=Counter)
    tools: Counter[str] = field(default_factory=Counter)

    def add(self, row: ViewRow, peer: str) -> None:
        if row.what == "connection":
            self.connections += 1
        else:
            self.lookups += 1
        self.first, self.last = min(self.first, row.ts), max(self.last, row.ts)
        self.peers[peer] += 1
        self.categories[row.category or "unknown"] += 1
        if row.tool:
            self.tools[row.tool] += 1

    def top_peers(self, n: int = SHOWN_PEERS) -> str:
        """`a (3), b (1) +2 more`."""
        shown = ", ".join(f"{name} ({count})" for name, count in self.peers.most_common(n))
        rest = len(self.peers) - n
        return f"{shown} +{rest} more" if rest > 0 else shown

    def to_dict(self, by: str) -> dict[str, Any]:
        return {
            "by": by, "key": self.key, "connections": self.connections,
            "lookups": self.lookups, "first": self.first, "last": self.last,
            "peers": dict(self.peers.most_common()),
            "categories": dict(self.categories.most_common()),
            "tools": dict(self.tools.most_common()),
        }  # fmt: skip


def _destination(row: ViewRow) -> str:
    return row.host or row.server


def _process(row: ViewRow) -> str:
    return row.process or row.attribution


_KEYS: dict[str, tuple[Callable[[ViewRow], str], Callable[[ViewRow], str]]] = {
    # grouping -> (the group's key, the peer listed beside it)
    "tool": (lambda r: r.tool or "(no LLM tool)", _destination),
    "process": (_process, _destination),
    "destination": (_destination, _process),
    "category": (lambda r: r.category or "unknown", _destination),
}


def peer_title(by: str) -> str:
    """What the peers column of a grouping holds."""
    return "processes" if by == "destination" else "destinations"


def summarise(rows: Iterable[ViewRow], by: str) -> list[SummaryRow]:
    """Groups of `rows` by `by` (one of GROUPINGS), busiest first."""
    key_of, peer_of = _KEYS[by]
    groups: dict[str, SummaryRow] = {}
    for row in rows:
        key = key_of(row)
        groups.setdefault(key, SummaryRow(key)).add(row, peer_of(row))
    return sorted(groups.values(), key=lambda g: (-(g.connections + g.lookups), g.key))
