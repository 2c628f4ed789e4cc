"""Timeline counts of the settled past, kept in the web process so a dashboard that redraws
every few seconds does not count the same millions of events again.

A bucket is settled when it ends SETTLE seconds before the newest stored event (events are
stored in near time order; a late one older than that is not expected). Only whole buckets
inside a request are cached; the partial edges and the live tail are counted every time.
When retention removes the oldest block, everything cached is dropped.
"""

import math
import threading
from collections import Counter

from sqlalchemy import Engine

from egresswatch.store.timeline import (
    WIDTHS,
    Bucket,
    Group,
    SlotCounts,
    Timeline,
    fold,
    slot_counts,
    store_marks,
)

SETTLE = 120.0
MAX_SLOTS = 20_000  # cached (group, width, bucket) entries before the cache starts over


class TimelineCache:
    def __init__(self) -> None:
        self._slots: dict[tuple[str, int, int], Counter[str | None]] = {}
        self._oldest: int | None = None
        self._lock = threading.Lock()

    def timeline(
        self, engine: Engine, since: float, until: float, *, bucket: Bucket, group: Group
    ) -> Timeline:
        width = WIDTHS[bucket]
        oldest, newest = store_marks(engine)
        settled_end = -math.inf if newest is None else newest - SETTLE
        first = math.ceil(since / width)
        last = min(math.floor(until / width), math.floor(settled_end / width))
        if last <= first:
            return fold(bucket, since, until, slot_counts(engine, since, until, width, group))
        counts = self._settled(engine, oldest, width, group, range(first, last))
        counts.update(slot_counts(engine, since, first * width, width, group))
        counts.update(slot_counts(engine, last * width, until, width, group))
        return fold(bucket, since, until, counts)

    def _settled(
        self, engine: Engine, oldest: int | None, width: int, group: Group, slots: range
    ) -> SlotCounts:
        with self._lock:
            if oldest != self._oldest or len(self._slots) > MAX_SLOTS:
                self._slots.clear()
                self._oldest = oldest
            missing = [s for s in slots if (group, width, s) not in self._slots]
        if missing:
            fresh = slot_counts(engine, missing[0] * width, (missing[-1] + 1) * width, width, group)
            found: dict[int, Counter[str | None]] = {s: Counter() for s in missing}
            for (slot, name), n in fresh.items():
                if slot in found:
                    found[slot][name] += n
            with self._lock:
                for slot, per_group in found.items():
                    self._slots[(group, width, slot)] = per_group
        counts: SlotCounts = Counter()
        with self._lock:
            for slot in slots:
                for name, n in self._slots.get((group, width, slot), Counter()).items():
                    counts[(slot, name)] += n
        return counts
