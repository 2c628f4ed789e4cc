"""A small least-recently-used map: the bounded memory behind per-flow and per-name state."""

from collections import OrderedDict
from collections.abc import Iterator
from typing import Generic, TypeVar

K = TypeVar("K")
V = TypeVar("V")


class Lru(Generic[K, V]):
    """A dictionary that forgets its least recently used entries beyond `limit`.

    `get` and `put` count as use; `peek`, `in` and iteration (oldest first) do not.
    """

    __slots__ = ("_items", "_limit")

    def __init__(self, limit: int) -> None:
        self._items: OrderedDict[K, V] = OrderedDict()
        self._limit = limit

    def get(self, key: K) -> V | None:
        value = self._items.get(key)
        if value is not None:
            self._items.move_to_end(key)
        return value

    def peek(self, key: K) -> V | None:
        return self._items.get(key)

    def put(self, key: K, value: V) -> tuple[K, V] | None:
        """Store `value` as the most recently used; returns the entry this pushed out, if any."""
        self._items[key] = value
        self._items.move_to_end(key)
        if len(self._items) > self._limit:
            return self._items.popitem(last=False)
        return None

    def pop(self, key: K) -> V | None:
        return self._items.pop(key, None)

    def oldest(self) -> tuple[K, V] | None:
        """The least recently used entry (left in place), or None when empty."""
        for item in self._items.items():
            return item
        return None

    def items(self) -> Iterator[tuple[K, V]]:
        """Entries from the least to the most recently used."""
        return iter(self._items.items())

    def __contains__(self, key: object) -> bool:
        return key in self._items

    def __len__(self) -> int:
        return len(self._items)
