"""The per-minute rollup (timeline_minutes) always equals a plain GROUP BY over the events: as the
writer adds, after retention deletes, after the migration's backfill, with several writers."""

import dataclasses
import random
import threading
from collections import Counter
from pathlib import Path
from typing import Any

from sqlalchemy import Engine, Integer, cast, func, select

from egresswatch.store import Store, migrate, open_store
from egresswatch.store.retention import apply_retention
from egresswatch.store.schema import DIMENSION_CODES, EventRow, TimelineMinute
from egresswatch.store.timeline import WIDTHS, Group, fold, slot_counts, timeline
from tests.store.factory import dns_query, process, tls_hello

START = 1_763_900_000.0  # minute-aligned
COLUMNS = {"tool": EventRow.tool_id, "destination": EventRow.destination_id,
           "process": EventRow.process_id, "node": EventRow.node_id}  # fmt: skip
GROUPS: tuple[Group, ...] = ("tool", "category", "host", "process", "node")


def write_mixed(store: Store, n: int, seed: int, span: float = 3 * 3600.0) -> None:
    """n events over `span` seconds: tools, none, hosts, no host, out of time order."""
    rng = random.Random(seed)
    procs = [process(10, "ollama"), process(11, None), process(12, "vllm"), None]
    writer = store.writer(batch_interval=0.01)
    for _ in range(n):
        ts = START + rng.random() * span
        proc = procs[rng.randrange(len(procs))]
        event = (
            dns_query(ts, f"q{rng.randrange(7)}.example.net", proc)
            if rng.random() < 0.2
            else tls_hello(ts, f"h{rng.randrange(40)}.example.org", proc)
        )
        node = ("box-a", "box-b", None)[rng.randrange(3)]
        assert writer.submit(dataclasses.replace(event, node=node))
    assert writer.flush(60)


def rolled(engine: Engine) -> dict[str, Counter[tuple[int, int]]]:
    """The rollup's rows per dimension, (minute, key) -> count; no row may be <= 0."""
    found: dict[str, Counter[tuple[int, int]]] = {d: Counter() for d in DIMENSION_CODES}
    names = {code: d for d, code in DIMENSION_CODES.items()}
    with engine.connect() as conn:
        for d, m, k, n in conn.execute(
            select(TimelineMinute.dimension, TimelineMinute.minute, TimelineMinute.key,
                   TimelineMinute.count)
        ):  # fmt: skip
            assert n > 0, (d, m, k, n)
            found[names[d]][(m, k)] = n
    return found


def grouped(engine: Engine) -> dict[str, Counter[tuple[int, int]]]:
    """The same counts by a plain GROUP BY over the events."""
    found: dict[str, Counter[tuple[int, int]]] = {}
    sqlite = engine.dialect.name == "sqlite"
    with engine.connect() as conn:
        for dim, column in COLUMNS.items():
            minute: Any = (
                cast(EventRow.ts / 60, Integer) if sqlite else func.floor(EventRow.ts / 60)
            )
            key = func.coalesce(column, 0)
            query = select(minute, key, func.count()).group_by(minute, key)
            found[dim] = Counter({(int(m), int(k)): int(n) for m, k, n in conn.execute(query)})
    return found


def check_timelines(engine: Engine, since: float, until: float) -> None:
    """timeline() (rollup plus partial minutes) equals counting the events, every grouping."""
    for group in GROUPS:
        for bucket in ("minute", "hour"):
            got = timeline(engine, since, until, bucket=bucket, group=group)
            counted = slot_counts(engine, since, until, WIDTHS[bucket], group)
            assert got == fold(bucket, since, until, counted), (group, bucket)


def test_rollup_equals_group_by_and_follows_retention(store: Store) -> None:
    write_mixed(store, 4000, seed=1)
    assert rolled(store.engine) == grouped(store.engine)
    assert sum(rolled(store.engine)["tool"].values()) == 4000
    check_timelines(store.engine, START + 17.25, START + 2.5 * 3600 + 41.5)  # partial minutes
    check_timelines(store.engine, START - 3600, START + 4 * 3600)  # the whole store
    # Retention through a cut in the middle of a minute: some of that minute's events stay.
    cut = START + 3600 + 30.5
    result = apply_retention(store.engine, max_age_days=1.0, now=cut + 86400)
    assert result.events_deleted > 0
    with store.engine.connect() as conn:
        assert conn.execute(select(func.min(EventRow.ts))).scalar_one() >= cut
    assert rolled(store.engine) == grouped(store.engine)
    check_timelines(store.engine, START, START + 3 * 3600)
    # Writes after retention go on adding to the same rows.
    write_mixed(store, 500, seed=2)
    assert rolled(store.engine) == grouped(store.engine)


def test_size_retention_keeps_the_rollup_exact(tmp_path: Path) -> None:
    store = open_store(str(tmp_path / "e.db"))
    write_mixed(store, 6000, seed=3)
    before = sum(rolled(store.engine)["process"].values())
    result = apply_retention(store.engine, max_bytes=200_000)
    assert result.events_deleted > 0
    assert sum(rolled(store.engine)["process"].values()) == before - result.events_deleted
    assert rolled(store.engine) == grouped(store.engine)
    store.close()


def test_the_migration_backfills_the_rollup_from_stored_events(store: Store) -> None:
    write_mixed(store, 1500, seed=4)
    expected = grouped(store.engine)
    migrate.downgrade(store.engine, "0007")  # drops the rollup, keeps the events
    migrate.upgrade(store.engine)
    assert rolled(store.engine) == expected


def test_several_writers_add_to_the_same_minutes(store: Store, tmp_path: Path) -> None:
    """Two stores (two writers, as two agents on one PostgreSQL database, or one after the
    other on SQLite) writing the same minutes: the upsert adds, nothing is lost."""
    url = str(store.engine.url.render_as_string(hide_password=False))
    other = open_store(url) if store.engine.dialect.name == "postgresql" else None
    if other is None:
        write_mixed(store, 1000, seed=5)
        write_mixed(store, 1000, seed=6)
    else:
        threads = [
            threading.Thread(target=write_mixed, args=(s, 1500, seed))
            for s, seed in ((store, 5), (other, 6))
        ]
        for t in threads:
            t.start()
        for t in threads:
            t.join(120)
        other.close()
    assert rolled(store.engine) == grouped(store.engine)
    with store.engine.connect() as conn:
        total = conn.execute(select(func.count()).select_from(EventRow)).scalar_one()
    assert sum(rolled(store.engine)["destination"].values()) == total
