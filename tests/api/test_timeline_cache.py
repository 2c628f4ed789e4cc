"""The web process's timeline cache answers exactly what a fresh count answers."""

import time
from pathlib import Path

from egresswatch.api.timeline_cache import TimelineCache
from egresswatch.store import open_store
from egresswatch.store.timeline import WIDTHS, Group, timeline
from tests.store.factory import process, tls_hello

GROUPS: tuple[Group, ...] = ("tool", "category", "host", "process")


def test_cached_timelines_equal_fresh_counts_as_the_store_changes(tmp_path: Path) -> None:
    store = open_store(str(tmp_path / "e.db"))
    writer = store.writer(batch_interval=0.01)
    now = time.time()
    tools = [process(10, "ollama"), process(11, None), process(12, "vllm")]
    for i in range(3000):
        ts = now - 3 * 3600 + i * 3.5
        assert writer.submit(tls_hello(ts, f"h{i % 17}.example.org", tools[i % 3]))
    assert writer.flush(30)
    cache = TimelineCache()
    since, until = now - 2.5 * 3600 + 7, now + 60

    def check() -> None:
        for group in GROUPS:
            for bucket in ("minute", "hour"):
                cached = cache.timeline(store.engine, since, until, bucket=bucket, group=group)
                fresh = timeline(store.engine, since, until, bucket=bucket, group=group)
                assert cached == fresh, (group, bucket)
                assert sum(p.count for p in cached.points) > 0

    check()
    check()  # now from the cache
    for i in range(50):  # the live tail grows
        assert writer.submit(tls_hello(now + i, "late.example.org", tools[0]))
    assert writer.flush(10)
    check()
    widths = {key[1] for key in cache._slots}
    assert widths == {WIDTHS["minute"], WIDTHS["hour"]}  # whole hours, and minutes at the edges
    store.apply_retention(max_age_days=2.6 / 24)  # drops the oldest blocks
    check()
    store.close()
