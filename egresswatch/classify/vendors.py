"""Vendor profiles: what the unlisted hosts of a known registrable domain most likely are.

Built from the catalog's own rows; a profile never answers `model-registry` (a vendor's unlisted
host is at most the CDN or API beside its registry, never the registry itself).
"""

from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass

from egresswatch.classify.destinations import Entry, pattern_anchor

NEVER_GUESSED = "model-registry"


@dataclass(frozen=True, slots=True)
class VendorProfile:
    """The categories of a vendor's catalogued hosts, most common first, and one example."""

    domain: str
    categories: tuple[str, ...]
    example: str

    @property
    def likely(self) -> str:
        """The most common category a guess may give (`other` when only a registry is known)."""
        guessable = [c for c in self.categories if c != NEVER_GUESSED]
        if guessable:
            return guessable[0]
        return "other"


def build_profiles(
    entries: Iterable[Entry], domain_of: Callable[[str], str | None]
) -> dict[str, VendorProfile]:
    """One profile per registrable domain named by a catalog pattern (every role counts)."""
    counts: dict[str, Counter[str]] = {}
    examples: dict[str, str] = {}
    for entry in entries:
        domain = domain_of(pattern_anchor(entry.pattern))
        if domain is None or entry.category == "unknown":
            continue
        tally = counts.setdefault(domain, Counter())
        for index, role in enumerate(entry.roles):
            tally[role.category] += 2 if index == 0 else 1  # a primary role weighs more
        examples.setdefault(domain, entry.pattern)
    return {
        domain: VendorProfile(domain, tuple(c for c, _ in tally.most_common()), examples[domain])
        for domain, tally in counts.items()
    }
