"""Run by test_interning_pg.py: write batches of events full of names that other writers are
creating at the same moment, then print "done FALLBACKS".

Usage: python -m tests.store.intern_child URL SEED GO_FILE. Waits for GO_FILE to exist, so all
children start together. `events(seed)` is what the parent expects to read back.
"""

import random
import sys
import time
from dataclasses import replace
from pathlib import Path

from egresswatch.model import DnsAnswer, Event
from egresswatch.store.engine import make_engine
from egresswatch.store.ingest import Ingest
from tests.store.factory import dns_response, process, tls_hello

BATCHES, PER_BATCH, POOL = 5, 240, 900


def events(seed: int) -> list[list[Event]]:
    """BATCHES batches; every writer meets the same POOL of names (with their addresses and
    processes), each in its own order, most of them new to the database when met."""
    rng = random.Random(seed)
    order = list(range(POOL))
    rng.shuffle(order)
    out: list[Event] = []
    for n in range(BATCHES * PER_BATCH):
        k = order[n % POOL]
        ts = 1e9 + seed * 1e5 + n
        name = f"n{k}.fleet{k % 7}.example"
        proc = process(pid=2000 + k % 150, name=f"p{k % 150}", exe=f"/usr/bin/p{k % 150 % 40}")
        if n % 2:
            ev = dns_response(ts, name, proc, addr=f"198.51.{k // 250}.{k % 250}")
            dns = ev.observation.dns
            assert dns is not None
            answers = (*dns.answers, DnsAnswer(name, "AAAA", f"2001:db8::{k:x}", 30))
            ev = replace(ev, observation=replace(ev.observation, dns=replace(dns, answers=answers)))
        else:
            ev = tls_hello(ts, name, proc if k % 3 else None)
        # The catalog entry is the destination's: the same for every event of a name.
        out.append(replace(ev, category="model-registry", catalog_entry=f"entry{k % 11}"))
    return [out[i : i + PER_BATCH] for i in range(0, len(out), PER_BATCH)]


def main(url: str, seed: int, go: Path) -> None:
    batches = events(seed)
    engine = make_engine(url)
    ingest = Ingest()
    while not go.exists():
        time.sleep(0.005)
    for batch in batches:
        with engine.begin() as conn:
            ingest.write(conn, batch)
    engine.dispose()
    print(f"done {ingest.fallbacks}", flush=True)


if __name__ == "__main__":
    main(sys.argv[1], int(sys.argv[2]), Path(sys.argv[3]))
