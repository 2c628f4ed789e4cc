"""`egresswatch run`, assembled: capture -> agent (decode, attribute, name) -> classify -> store.

This is the composition root of the long-running service: it builds every component from the
settings, wires the agent's sink to the classify and store stages, trims the store on a timer,
and tears everything down in order when asked to stop.
"""

import dataclasses
import logging
import threading

from egresswatch.agent import Agent, Attributor
from egresswatch.capture.live import LiveCapture
from egresswatch.classify.catalog import Catalog
from egresswatch.config import Settings
from egresswatch.counters import Counters
from egresswatch.errors import StoreError
from egresswatch.model import Event
from egresswatch.store.database import Store
from egresswatch.store.writer import EventWriter

log = logging.getLogger(__name__)

RETENTION_INTERVAL = 600.0


def classify_event(catalog: Catalog, event: Event) -> Event:
    """The event with its destination's category and the catalog entry that matched."""
    if not event.host:
        return dataclasses.replace(event, category="unknown")
    found = catalog.classify(event.host)
    return dataclasses.replace(event, category=found.category, catalog_entry=found.matched)


class Recorder:
    """The agent's sink: classifies each event and hands it to the store's writer (never blocks)."""

    def __init__(self, catalog: Catalog, writer: EventWriter) -> None:
        self.catalog = catalog
        self.writer = writer
        self.counters = Counters()

    def __call__(self, event: Event) -> None:
        classified = classify_event(self.catalog, event)
        self.counters.add(f"recorder.category.{classified.category}")
        if not self.writer.submit(classified):
            self.counters.add("recorder.dropped")


class RetentionTimer(threading.Thread):
    """Applies the store's age and size limits every `interval` seconds, off the capture path."""

    def __init__(
        self,
        store: Store,
        settings: Settings,
        stop: threading.Event,
        interval: float = RETENTION_INTERVAL,
    ) -> None:
        super().__init__(name="egresswatch-retention", daemon=True)
        self.store, self.settings, self.stop, self.interval = store, settings, stop, interval
        self.counters = Counters()

    def run(self) -> None:
        while not self.stop.wait(self.interval):
            self.trim_once()

    def trim_once(self) -> None:
        limits = self.settings.store
        try:
            self.store.apply_retention(max_age_days=limits.max_age_days, max_bytes=limits.max_bytes)
            self.counters.add("retention.runs")
        except StoreError as err:  # the store says why; capture goes on and the next run retries
            self.counters.add("retention.errors")
            log.warning("retention failed: %s", err)


@dataclasses.dataclass
class Service:
    """The running pieces of `egresswatch run`, in the order they are stopped."""

    capture: LiveCapture
    agent: Agent
    recorder: Recorder
    retention: RetentionTimer
    store: Store

    def run(self, stop: threading.Event) -> None:
        self.retention.start()
        try:
            self.agent.run(stop)
        finally:
            stop.set()
            self.capture.stop()
            self.store.close()  # flushes the writer's buffer first

    def counters(self) -> Counters:
        merged = Counters()
        for part in (
            self.agent.all_counters(),
            self.capture.counters(),
            self.recorder.counters,
            self.retention.counters,
        ):
            merged.merge(part)
        for name, value in self.recorder.writer.counters().items():
            merged.add(name, value)
        # ProcessResolver contains its own faults and counts them ("attribute.errors", misses)
        attributor_counters = getattr(self.agent.attributor, "counters", None)
        if isinstance(attributor_counters, Counters):
            merged.merge(attributor_counters)
        return merged


def build_service(
    settings: Settings,
    store: Store,
    catalog: Catalog,
    attributor: Attributor,
    stop: threading.Event,
) -> Service:
    """Wires the components; the capture socket is opened by the caller (`capture.start()`)."""
    capture = LiveCapture(settings.capture.interfaces, queue_size=settings.capture.queue_size)
    recorder = Recorder(catalog, store.writer())
    agent = Agent(capture, attributor, recorder)
    return Service(capture, agent, recorder, RetentionTimer(store, settings, stop), store)
