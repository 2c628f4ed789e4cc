"""`egresswatch run`, assembled: capture -> agent (decode, attribute, name) -> classify -> fan-out
to the store writer and the live feed; committed events -> alert engine (sessions, rules) ->
alerts stored through the same writer -> sinks.

This is the composition root of the long-running service: it builds every component from the
settings, wires the stages, trims the store on a timer, and tears everything down in order.
"""

import dataclasses
import logging
import os
import threading
from pathlib import Path

from egresswatch.agent import Agent, Attributor
from egresswatch.alerts.desktop import DesktopSink
from egresswatch.alerts.engine import AlertEngine
from egresswatch.alerts.journal import JournalSink
from egresswatch.alerts.policy import Policy
from egresswatch.alerts.rules import RuleSet
from egresswatch.alerts.sinks import AlertSink, Delivery
from egresswatch.alerts.transfers import TcpCloseWatch
from egresswatch.alerts.webhook import WebhookSink
from egresswatch.bus import Bus
from egresswatch.capture.live import LiveCapture
from egresswatch.classify.catalog import Catalog
from egresswatch.config import Settings, SinkSettings, StoreSettings
from egresswatch.control.server import ControlServer, for_agent
from egresswatch.counters import Counters
from egresswatch.errors import StoreError
from egresswatch.fanout import FanOut, classify_event
from egresswatch.heartbeat import Heartbeat
from egresswatch.model import Event, Severity
from egresswatch.pipeline import ObservationDecoder
from egresswatch.sessions.tracker import SessionTracker
from egresswatch.store.database import Store
from egresswatch.store.engine import default_path, is_sqlite
from egresswatch.store.spool import Spool, spool_path
from egresswatch.store.writer import EventWriter

log = logging.getLogger(__name__)

RETENTION_INTERVAL = 600.0
DRAIN_TIMEOUT = 5.0
__all__ = ["Recorder", "Service", "build_service", "build_sinks", "classify_event"]


class Recorder:
    """The fan-out's store consumer: hands each classified event to the writer (never blocks)."""

    def __init__(self, writer: EventWriter) -> None:
        self.writer = writer
        self.counters = Counters()

    def __call__(self, event: Event) -> None:
        if not self.writer.submit(event):
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
        if not is_sqlite(self.store.engine):  # a shared store is trimmed by its owner
            log.info("retention skipped: on a shared store it is the owner's job (docs/fleet.md)")
            self.counters.add("retention.skipped_shared")
            return
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
    fanout: FanOut
    alerts: AlertEngine
    delivery: Delivery
    feed: Bus[object]
    transfers: TcpCloseWatch
    heartbeat: Heartbeat | None = None
    control: ControlServer | None = None

    def run(self, stop: threading.Event) -> None:
        self.retention.start()
        self._start_control()
        if self.heartbeat is not None:
            self.heartbeat.start()
        self.delivery.start()
        self.alerts.start()
        if self.transfers.open():
            self.transfers.start()
        else:  # untrusted-model-source needs it; everything else works without
            log.warning("%s", self.transfers.error)
        try:
            self.agent.run(stop)
        finally:
            stop.set()
            self.capture.stop()
            if self.control is not None:
                self.control.close()
            self._drain()
            self.store.close()  # flushes the writer's buffer (events, sessions, alerts) first
            self.delivery.close()

    def _start_control(self) -> None:
        """The control socket for the dashboard and the CLI; without it they write directly."""
        if self.control is None:
            return
        try:
            self.control.open()
        except (OSError, ValueError) as err:
            log.warning(
                "control socket not opened (the dashboard cannot change the store): %s", err
            )
            self.control = None
            return
        self.control.start()

    def _drain(self) -> None:
        """Committed events reach the alert engine, and its alerts the writer, before closing."""
        self.recorder.writer.flush(DRAIN_TIMEOUT)
        self.alerts.drain(DRAIN_TIMEOUT)
        self.recorder.writer.flush(DRAIN_TIMEOUT)

    def counters(self) -> Counters:
        merged = Counters()
        for part in (
            self.agent.all_counters(),
            self.capture.counters(),
            self.fanout.counters,
            self.recorder.counters,
            self.retention.counters,
            self.alerts.counters,
            self.alerts.tracker.counters,
            self.delivery.counters,
            self.feed.counters,
            Counters() if self.control is None else self.control.counters(),
        ):
            merged.merge(part)
        for name, value in self.recorder.writer.counters().items():
            merged.add(name, value)
        # ProcessResolver contains its own faults and counts them ("attribute.errors", misses)
        attributor_counters = getattr(self.agent.attributor, "counters", None)
        if isinstance(attributor_counters, Counters):
            merged.merge(attributor_counters)
        return merged


def open_spool(settings: StoreSettings, store: Store) -> Spool | None:
    """The writer's local spool (docs/fleet.md, "Spool") for a shared store; None for SQLite
    (the spool would share its disk: a full disk would refuse both, while the memory queue
    rides out a short stall) and when `spool_max_bytes` is 0."""
    if settings.spool_max_bytes == 0 or is_sqlite(store.engine):
        return None
    path = spool_path(settings.spool_dir or _state_dir(), store.url)
    try:
        return Spool(path, settings.spool_max_bytes)
    except OSError as err:
        if store.pending_check is not None:  # nowhere to put events until the store answers
            raise StoreError(f"cannot open the spool {path}: {err}") from err
        log.warning("no spool (%s): an outage of the store fills the memory queue only", err)
        return None


def _state_dir() -> Path:
    """systemd's StateDirectory, else the default SQLite store's directory."""
    given = os.environ.get("STATE_DIRECTORY")
    return Path(given.split(":")[0]) if given else default_path().parent


def build_sinks(settings: SinkSettings) -> list[tuple[AlertSink, Severity]]:
    """The configured sinks with the lowest severity each delivers."""
    sinks: list[tuple[AlertSink, Severity]] = []
    if settings.journald:
        sinks.append((JournalSink(), "low"))
    if settings.desktop:
        sinks.append((DesktopSink(), "medium"))
    hook = settings.webhook
    if hook is not None:
        sink = WebhookSink(hook.url, hook.preset, hook.retries, hook.timeout)
        sinks.append((sink, hook.min_severity))
    return sinks


def build_service(
    settings: Settings,
    store: Store,
    catalog: Catalog,
    attributor: Attributor,
    stop: threading.Event,
    *,
    policy: Policy,
) -> Service:
    """Wires the components; the capture socket is opened by the caller (`capture.start()`)."""
    capture = LiveCapture(settings.capture.interfaces, queue_size=settings.capture.queue_size)
    writer = store.writer(spool=open_spool(settings.store, store))
    recorder = Recorder(writer)
    feed: Bus[object] = Bus()
    node = settings.agent.node
    fanout = FanOut(catalog, (recorder, feed.publish), node=node)
    tracker = SessionTracker(writer, store.engine, settings.sessions.idle_seconds, node=node)
    delivery = Delivery(build_sinks(settings.sinks))
    alerts = AlertEngine(
        writer,
        tracker=tracker,
        rules=RuleSet(policy),
        delivery=delivery,
        feed=feed,
        stop=threading.Event(),
        auto_sessions=settings.sessions.auto,
        large_download_mb=settings.alerts.large_download_mb,
        kernel=getattr(attributor, "kernel", None),
        node=node,
    )
    writer.on_written(alerts.offer)
    transfers = TcpCloseWatch(alerts.offer_closed, alerts.stop)
    decoder = ObservationDecoder(emit_flows=True, on_request=alerts.offer_request)
    agent = Agent(capture, attributor, fanout, decoder=decoder)
    retention = RetentionTimer(store, settings, stop)
    service = Service(
        capture, agent, recorder, retention, store, fanout, alerts, delivery, feed, transfers
    )
    service.control = for_agent(store.url, writer, store.engine, node=node)
    service.heartbeat = Heartbeat(store, service.counters, capture.queue.qsize, stop, node=node)
    return service
