"""Run by test_writer.py: submit events at a steady rate and report progress until killed.

Usage: python -m tests.store.writer_child DB RATE. Prints "committed N submitted M" every 50 ms;
event i has ts = i, so the parent can tell exactly which events survived.
"""

import sys
import time
from collections.abc import Callable
from dataclasses import replace

from egresswatch.model import Event
from egresswatch.store import open_store
from egresswatch.store.writer import EventWriter
from tests.store.factory import mixed


def with_ts(event: Event, ts: float) -> Event:
    return replace(event, observation=replace(event.observation, ts=ts))


def feed(writer: EventWriter, rate: int, report: Callable[[int], bool], every: float) -> None:
    """Submit events at `rate` per second (event i has ts = i) and call `report(submitted)`
    every `every` seconds, until it returns True."""
    template = mixed(64)
    submitted = 0
    started = next_report = time.monotonic()
    while True:
        due = int((time.monotonic() - started) * rate)
        while submitted < due and writer.submit(with_ts(template[submitted % 64], submitted)):
            submitted += 1
        now = time.monotonic()
        if now >= next_report:
            if report(submitted):
                return
            next_report = now + every
        time.sleep(0.002)


def main(db: str, rate: int) -> None:
    writer = open_store(db).writer()

    def report(submitted: int) -> bool:
        committed = writer.counters().get("store.written", 0)
        print(f"committed {committed} submitted {submitted}", flush=True)
        return False

    feed(writer, rate, report, 0.05)


if __name__ == "__main__":
    main(sys.argv[1], int(sys.argv[2]))
