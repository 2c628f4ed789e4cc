"""Benchmark the event store on SQLite: sustained insert rate through the real writer thread,
and bytes per stored DNS event (file size after VACUUM, marginal over a baseline).

Usage: python bench/store.py [--events 100000] [--dir DIR]
"""

import argparse
import random
import sqlite3
import tempfile
import time
from pathlib import Path

from egresswatch.model import (
    Attribution,
    ClientHello,
    DnsAnswer,
    DnsMessage,
    Event,
    FlowKey,
    Observation,
    ProcessInfo,
)
from egresswatch.store import open_store

T0 = 1_763_900_000.0


def processes(n: int) -> list[ProcessInfo]:
    return [
        ProcessInfo(1000 + i, f"proc{i}", f"/usr/bin/proc{i}", f"{i:064x}", (f"proc{i}", "--serve"),
                    "user", 1, T0 - i, (), 4026531840, None, "ollama" if i % 4 == 0 else None)
        for i in range(n)
    ]  # fmt: skip


def hosts(n: int) -> list[str]:
    return [f"h{i}.svc{i % 97}.example{i % 13}.com" for i in range(n)]


def dns_event(rng: random.Random, i: int, names: list[str], procs: list[ProcessInfo]) -> Event:
    # Zipf-like popularity, as real resolver traffic is: a few names are most of the queries.
    name = names[min(int(rng.paretovariate(1.2)) - 1, len(names) - 1)]
    proc = procs[rng.randrange(len(procs))] if rng.random() < 0.8 else None
    response = i % 2 == 1
    answers: tuple[DnsAnswer, ...] = ()
    if response:
        addr = f"93.184.{hash(name) % 256}.{rng.randrange(1, 4)}"
        answers = (DnsAnswer(name, "A", addr, 300),)
    msg = DnsMessage(rng.randrange(65536), response, 0, name, "A", "NOERROR", False, answers)
    flow = FlowKey("udp", "10.0.0.2", rng.randrange(32768, 60999), "10.0.0.1", 53)
    if response:
        flow = flow.reversed()
    obs = Observation(T0 + i * 0.01, "dns", flow, dns=msg, dns_proto="dns")
    status = "exact" if proc else "unknown:no-socket"
    tool = proc.tool if proc else None
    return Event(obs, Attribution(status, proc), host=name, name_source=None,
                 category="other", catalog_entry=None, tool=tool)  # fmt: skip


def tls_event(rng: random.Random, i: int, names: list[str], procs: list[ProcessInfo]) -> Event:
    name = names[min(int(rng.paretovariate(1.2)) - 1, len(names) - 1)]
    proc = procs[rng.randrange(len(procs))]
    hello = ClientHello(name, ("h2", "http/1.1"), 0x0303, (0x0304, 0x0303), False)
    flow = FlowKey("tcp", "10.0.0.2", rng.randrange(32768, 60999), "93.184.216.34", 443)
    obs = Observation(T0 + i * 0.01, "tls", flow, hello=hello)
    return Event(obs, Attribution("exact", proc), host=name, name_source="sni",
                 category="other", catalog_entry=None, tool=proc.tool)  # fmt: skip


def write_all(db: Path, events: list[Event]) -> float:
    """Push every event through the writer as fast as it accepts them; returns events/s."""
    store = open_store(str(db))
    writer = store.writer()
    started = time.perf_counter()
    for event in events:
        while not writer.submit(event):
            time.sleep(0.001)  # buffer full: the writer is the bottleneck, which we measure
    writer.flush(600)
    rate = len(events) / (time.perf_counter() - started)
    counters = writer.counters()
    store.close()
    assert counters["store.written"] == len(events), counters
    return rate


def vacuumed_size(db: Path) -> int:
    conn = sqlite3.connect(db)
    conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    conn.execute("VACUUM")
    conn.close()
    return db.stat().st_size


def table_bytes(db: Path) -> dict[str, int]:
    conn = sqlite3.connect(db)
    try:
        rows = conn.execute("SELECT name, sum(pgsize) FROM dbstat GROUP BY name ORDER BY 2 DESC")
        return {name: int(size) for name, size in rows}
    except sqlite3.OperationalError:
        return {}  # SQLite built without DBSTAT_VTAB
    finally:
        conn.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--events", type=int, default=100_000)
    parser.add_argument("--dir", type=Path, default=None)
    args = parser.parse_args()
    rng = random.Random(4)
    names, procs = hosts(5000), processes(40)
    n = args.events
    with tempfile.TemporaryDirectory(dir=args.dir) as tmp:
        mixed = [(dns_event if i % 3 else tls_event)(rng, i, names, procs) for i in range(n)]
        rate = write_all(Path(tmp) / "mixed.db", mixed)
        print(f"sustained insert rate (mixed DNS/TLS, {n} events): {rate:,.0f} events/s")

        dns = [dns_event(rng, i, names, procs) for i in range(n)]
        base, full = Path(tmp) / "base.db", Path(tmp) / "dns.db"
        write_all(base, dns[: n // 5])
        dns_rate = write_all(full, dns)
        base_size, full_size = vacuumed_size(base), vacuumed_size(full)
        marginal = (full_size - base_size) / (n - n // 5)
        print(f"sustained insert rate (DNS only): {dns_rate:,.0f} events/s")
        print(f"DNS events: {n} (half queries, half responses with one A answer), "
              f"{len(names)} names, {len(procs)} processes")  # fmt: skip
        print(f"file after VACUUM: {full_size:,} bytes = {full_size / n:.1f} bytes/event overall")
        print(f"marginal bytes per DNS event: {marginal:.1f} "
              f"({2 * marginal:.1f} per query+response pair)")  # fmt: skip
        for name, size in table_bytes(full).items():
            print(f"  {name:32} {size:>12,} bytes  {size / n:6.1f} /event")


if __name__ == "__main__":
    main()
