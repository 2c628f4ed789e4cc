"""Run by test_spool_kill.py: a writer with a spool, submitting events at a steady rate.

Usage: python -m tests.store.spool_child DB SPOOL RATE. Prints "submitted M written W spooled S
drained D batches B" every 20 ms until killed; event i has ts = i. With RATE 0 it only drains
what an earlier run left in the spool, prints "done", and exits.
"""

import sys
from pathlib import Path

from egresswatch.store import open_store
from egresswatch.store.engine import resolve_url
from egresswatch.store.shared import open_agent_store
from egresswatch.store.spool import Spool
from tests.store.writer_child import feed


def main(db: str, spool_path: str, rate: int) -> None:
    url = resolve_url(db)
    store = open_store(url) if url.startswith("sqlite") else open_agent_store(url)
    writer = store.writer(spool=Spool(Path(spool_path)))

    def report(submitted: int) -> bool:
        c = writer.counters()
        print(
            f"submitted {submitted} written {c.get('store.written', 0)} "
            f"spooled {c.get('spool.spooled', 0)} drained {c.get('spool.drained', 0)} "
            f"batches {c.get('spool.batches', 0)}",
            flush=True,
        )
        if rate == 0 and c.get("spool.batches", 0) == 0:
            store.close()
            print("done", flush=True)
            return True
        return False

    feed(writer, rate, report, 0.02)


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2], int(sys.argv[3]))
