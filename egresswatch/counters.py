"""Named event counters shared by the pipeline stages (frames read, decoded, skipped per reason)."""

from collections import Counter
from collections.abc import Mapping


class Counters:
    """A flat set of monotonically increasing counters keyed by dotted names.

    Not thread-safe by itself: each stage owns one instance, and readers take `snapshot()`.
    """

    __slots__ = ("_counts",)

    def __init__(self) -> None:
        self._counts: Counter[str] = Counter()

    def add(self, name: str, amount: int = 1) -> None:
        self._counts[name] += amount

    def get(self, name: str) -> int:
        return self._counts[name]

    def merge(self, other: "Counters") -> None:
        self._counts.update(other._counts)

    def snapshot(self) -> Mapping[str, int]:
        return dict(sorted(self._counts.items()))
