"""Timeline counts of the settled past, kept in the web process so a dashboard that redraws
every few seconds does not count the same millions of events again.

A bucket is settled when it ends SETTLE seconds before the newest stored event (events are
stored in near time order; a late one older than that is not expected). Whole settled buckets
are cached at the request's width; the partial buckets at its edges and the live tail are
cached per settled minute, so only partial minutes and the last few minutes are counted on
every request. When retention removes the oldest block, everything cached is dropped.

Whole minutes are read from the per-minute rollup (store/rollup.py), so even a cold cache (the
first request after the web process starts) reads a few rows a minute, not every event; only
the partial minutes at a range's edges are counted from the events.
"""

import math
import threading
from collections import Counter
from dataclasses import dataclass

from sqlalchemy import Engine

from egresswatch.store.timeline import (
    WIDTHS,
    Bucket,
    Group,
    SlotCounts,
    Timeline,
    fold,
    rolled_counts,
    store_marks,
)

SETTLE = 120.0
MINUTE = 60
MAX_SLOTS = 20_000  # cached (group, width, bucket) entries before the cache starts over


@dataclass(frozen=True)
class _Span:
    """What one request's counting needs: where, which grouping, how far is settled, and the
    bucket width of the answer."""

    engine: Engine
    oldest: int | None
    group: Group
    settled_end: float
    out_width: int


def _regroup(counts: SlotCounts, width: int, out_width: int) -> SlotCounts:
    """Counts per `width` slot added up per `out_width` slot (width divides out_width)."""
    if width == out_width:
        return counts
    out: SlotCounts = Counter()
    for (slot, name), n in counts.items():
        out[(slot * width // out_width, name)] += n
    return out


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
        span = _Span(engine, oldest, group, -math.inf if newest is None else newest - SETTLE, width)
        return fold(bucket, since, until, self._count(span, since, until, width))

    def _count(self, span: "_Span", a: float, b: float, width: int) -> SlotCounts:
        """[a, b) per output bucket: whole settled `width` buckets from the cache; the partial
        ones at minute grain (cached where settled); the rest counted now.
        """
        if b <= a:
            return Counter()
        first = math.ceil(a / width)
        last = min(math.floor(b / width), math.floor(span.settled_end / width))
        if last <= first:
            return self._finer(span, a, b, width)
        counts = _regroup(
            self._settled(span.engine, span.oldest, width, span.group, range(first, last)),
            width,
            span.out_width,
        )
        counts.update(self._finer(span, a, first * width, width))
        counts.update(self._finer(span, last * width, b, width))
        return counts

    def _finer(self, span: "_Span", a: float, b: float, width: int) -> SlotCounts:
        if width > MINUTE:
            return self._count(span, a, b, MINUTE)
        return rolled_counts(span.engine, a, b, span.out_width, span.group) if b > a else Counter()

    def _settled(
        self, engine: Engine, oldest: int | None, width: int, group: Group, slots: range
    ) -> SlotCounts:
        with self._lock:
            if oldest != self._oldest or len(self._slots) > MAX_SLOTS:
                self._slots.clear()
                self._oldest = oldest
            missing = [s for s in slots if (group, width, s) not in self._slots]
        if missing:
            start, end = missing[0] * width, (missing[-1] + 1) * width
            fresh = rolled_counts(engine, start, end, width, group)
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
