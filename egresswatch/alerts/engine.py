"""The alert engine: a thread that takes committed events from the store's writer, links
session evidence, evaluates the rules and stores alerts through the writer; stored alerts go
to the live feed and (when new) to the sinks. Capture never waits for any of this.
"""

import dataclasses
import functools
import logging
import math
import os
import queue
import threading
import time
from collections import OrderedDict, defaultdict
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

from sqlalchemy import Connection

from egresswatch.alerts.held import HeldFindings
from egresswatch.alerts.listeners import ListenerScan, client_of
from egresswatch.alerts.owners import ConnectionOwners
from egresswatch.alerts.rules import Listener, RuleSet, exposed_api, untrusted_model_source
from egresswatch.alerts.sinks import Delivery
from egresswatch.bus import Bus
from egresswatch.counters import Counters
from egresswatch.model import Alert, Event, FlowKey, ProcessRef
from egresswatch.sessions.clients import ClientNamer, OwnerRecords
from egresswatch.sessions.requests import HttpRequest, is_inference, model_in
from egresswatch.sessions.scope import is_egress
from egresswatch.sessions.tracker import SessionTracker
from egresswatch.store.alerts import record_alert
from egresswatch.store.writer import EventWriter

log = logging.getLogger(__name__)
QUEUE_BATCHES = 10_000
REFRESH_EVERY = 1.0
LISTENERS_EVERY = 2.0
RESCAN_AFTER = 0.5  # an unknown port in a request: rescan, at most this often
TOOL_FLOWS = 50_000  # LLM tools' TCP connections remembered for their byte counts
# A short download can close before its SYN's event is committed: the close waits this long.
CLOSE_WAIT = 5.0


@dataclass(frozen=True, slots=True)
class TcpClosed:
    """A TCP socket the kernel destroyed, with what it received (alerts/transfers.py)."""

    flow: FlowKey
    received: int
    ts: float = 0.0


Scanner = Callable[[], Mapping[int, Sequence[Listener]]]


class AlertEngine(threading.Thread):
    """See the module docstring. `offer` is the writer's on_written hook."""

    def __init__(
        self,
        writer: EventWriter,
        *,
        tracker: SessionTracker,
        rules: RuleSet,
        delivery: Delivery,
        feed: Bus[object],
        stop: threading.Event,
        scanner: Scanner | None = None,
        auto_sessions: bool = True,
        large_download_mb: float = 50.0,
        kernel: OwnerRecords | None = None,
        node: str | None = None,
    ) -> None:
        super().__init__(name="egresswatch-alerts", daemon=True)
        self.node = node  # stamped on every alert this agent raises (docs/fleet.md)
        self.writer, self.tracker, self.rules = writer, tracker, rules
        self.delivery, self.feed, self.stop = delivery, feed, stop
        self.scanner = scanner or ListenerScan()
        self.auto_sessions = auto_sessions
        self.large_download_mb = large_download_mb
        self._tool_flows: OrderedDict[FlowKey, tuple[int, Event]] = OrderedDict()
        self._early_closes: OrderedDict[FlowKey, tuple[float, int]] = OrderedDict()
        self.counters = Counters()
        self._queue: queue.Queue[Sequence[tuple[int, Event]] | HttpRequest | TcpClosed] = (
            queue.Queue(QUEUE_BATCHES)
        )
        self._listeners: dict[int, Listener] = {}
        self._known: set[Listener] = set()
        self._own_pid = os.getpid()  # the monitor's own traffic (sinks) never alerts
        self._next_refresh = self._next_scan = 0.0
        self.held = HeldFindings()
        self.owners = ConnectionOwners()
        self.client_of = ClientNamer(kernel, client_of)  # `kernel`: the resolver's eBPF records

    def offer(self, written: Sequence[tuple[int, Event]]) -> None:
        try:
            self._queue.put_nowait(written)
        except queue.Full:
            self.counters.add("alerts.dropped.queue_full", len(written))

    def offer_request(self, ts: float, flow: FlowKey, method: str, path: str) -> None:
        """The decoder's request hook (decode thread): queue it, never wait."""
        try:
            self._queue.put_nowait(HttpRequest(ts, flow, method, path))
        except queue.Full:
            self.counters.add("alerts.dropped.queue_full")

    def offer_closed(self, flow: FlowKey, received: int) -> None:
        """The TCP close watch's hook: connections that received a lot, and connections to an
        LLM tool's listening port (either end; they may be an automatic session's), are queued."""
        big = received > self.large_download_mb * 1e6
        listeners = self._listeners
        if not big and flow.sport not in listeners and flow.dport not in listeners:
            return
        try:
            self._queue.put_nowait(TcpClosed(flow, received, time.time()))
        except queue.Full:
            self.counters.add("alerts.dropped.queue_full")

    def run(self) -> None:
        while not self.stop.is_set():
            try:
                item = self._queue.get(timeout=0.2)
            except queue.Empty:
                item = ()
            try:
                self._housekeeping()
                if isinstance(item, HttpRequest):
                    self.handle_request(item)
                elif isinstance(item, TcpClosed):
                    self.handle_closed(item)
                else:
                    self.handle(item)
            except Exception:  # the containment point of alerting: log, count, keep going
                log.exception("alert evaluation failed")
                self.counters.add("alerts.errors")
        self.raise_all(self.held.due(math.inf))

    def drain(self, timeout: float) -> None:
        """Handle what is queued (for up to `timeout` seconds), then stop the thread."""
        deadline = time.monotonic() + timeout
        while not self._queue.empty() and time.monotonic() < deadline:
            time.sleep(0.02)
        self.stop.set()
        if self.is_alive():
            self.join(max(0.0, deadline - time.monotonic()) + 1.0)

    def _housekeeping(self) -> None:
        now = time.monotonic()
        self.raise_all(self.held.due(now))
        self._expire_early_closes(now)
        if now >= self._next_refresh:
            self._next_refresh = now + REFRESH_EVERY
            self.tracker.refresh()
            self.tracker.expire()
        if now >= self._next_scan:
            self._next_scan = now + LISTENERS_EVERY
            self.check_listeners()

    def handle_request(self, request: HttpRequest) -> None:
        """An inference request to an LLM tool's listening port opens or extends a session."""
        if not is_inference(request.method, request.path):
            self.counters.add("sessions.requests.housekeeping")
            return
        self.counters.add("sessions.requests.inference")
        self.inference_at(request.flow, request.ts, model_in(request.path))

    def inference_at(self, flow: FlowKey, ts: float, model: str | None = None) -> None:
        listener = self._listener(flow.dport)
        if listener is None or not self.auto_sessions:
            return
        serving = ProcessRef(listener.pid, listener.process, listener.exe)
        client = self.client_of(flow, ts)
        self.tracker.inference(listener.tool, serving, client, model, ts, flow=flow)

    def handle_closed(self, closed: TcpClosed) -> None:
        """A session's client connection ended; untrusted-model-source for a big download by
        an LLM tool's known connection."""
        self.tracker.connection_closed(closed.flow, closed.ts)
        if closed.received <= self.large_download_mb * 1e6:
            return
        known = self._tool_flows.pop(closed.flow, None)
        if known is None:
            self._early_closes[closed.flow] = (time.monotonic() + CLOSE_WAIT, closed.received)
            while len(self._early_closes) > TOOL_FLOWS:
                self._early_closes.popitem(last=False)
            return
        self._downloaded(*known, closed.received)

    def _downloaded(self, event_id: int, event: Event, received: int) -> None:
        if not self.rules.policy.enabled("untrusted-model-source"):
            return
        found = untrusted_model_source(
            self.rules.policy, event, event_id, received, self.large_download_mb
        )
        self.raise_all(self.rules.graded([found]))

    def _expire_early_closes(self, now: float) -> None:
        while self._early_closes and next(iter(self._early_closes.values()))[0] < now:
            self._early_closes.popitem(last=False)

    def _remember_tool_flow(self, event_id: int, event: Event) -> None:
        obs = event.observation
        if event.tool is None or obs.flow.transport != "tcp" or obs.kind == "dns":
            return
        early = self._early_closes.pop(obs.flow, None)
        if early is not None:
            self._downloaded(event_id, event, early[1])
            return
        self._tool_flows[obs.flow] = (event_id, event)  # the hello (named) replaces the SYN
        self._tool_flows.move_to_end(obs.flow)
        while len(self._tool_flows) > TOOL_FLOWS:
            self._tool_flows.popitem(last=False)

    def _listener(self, port: int) -> Listener | None:
        found = self._listeners.get(port)
        if found is None and time.monotonic() >= self._next_scan - LISTENERS_EVERY + RESCAN_AFTER:
            self._next_scan = time.monotonic() + LISTENERS_EVERY
            self.check_listeners()
            found = self._listeners.get(port)
        return found

    def check_listeners(self) -> None:
        """exposed-api for every new listener of an LLM tool on a non-loopback address."""
        found = self.scanner()
        self._listeners = {port: ls[0] for port, ls in found.items() if ls}
        for listener in (item for ls in found.values() for item in ls):
            if listener in self._known:
                continue
            self._known.add(listener)
            if self.rules.policy.enabled("exposed-api"):
                alert = exposed_api(self.rules.policy, listener, time.time())
                self.raise_all(self.rules.graded([alert]))

    def handle(self, batch: Sequence[tuple[int, Event]]) -> None:
        evidence: dict[int, list[int]] = defaultdict(list)
        for event_id, stored in batch:
            event = self.owners.fill(stored)
            process = event.attribution.process
            if process is not None and process.pid == self._own_pid:
                continue
            if event.observation.kind == "tls" and event.observation.flow.dport in self._listeners:
                self.inference_at(event.observation.flow, event.observation.ts)  # TLS: any client
            self._remember_tool_flow(event_id, event)
            sessions = self.tracker.covering(event) if is_egress(event) else []
            for session in sessions:
                evidence[session.id].append(event_id)
            self.settle(event, self.rules.evaluate(event, event_id, sessions, self._listeners))
        for session_id, ids in evidence.items():
            self.tracker.link(session_id, ids, time.time())

    def settle(self, event: Event, found: Sequence[Alert]) -> None:
        """Raise `found` now, or hold it while the connection may still say its name."""
        obs = event.observation
        if obs.flow.transport == "tcp" and obs.kind == "flow" and event.host is None:
            self.raise_all(self.held.hold(obs.flow, found, time.monotonic()))
            return
        if obs.kind == "tls":
            if found:
                self.held.named(obs.flow)  # the hello's findings stand for the connection
            else:
                self.raise_all(self.held.release(obs.flow))
        self.raise_all(found)

    def raise_all(self, alerts: Sequence[Alert]) -> None:
        for found in alerts:
            self.counters.add(f"alerts.raised.{found.rule}")
            alert = found if self.node is None else dataclasses.replace(found, node=self.node)
            job = functools.partial(_record, alert)
            if not self.writer.post(job, self._stored):
                self.counters.add("alerts.dropped.store_busy")

    def _stored(self, result: tuple[Alert, bool]) -> None:
        """On the writer thread after commit: publish; deliver only the first of a kind."""
        alert, new = result
        self.feed.publish(alert)
        if new:
            self.delivery.send(alert)


def _record(alert: Alert, conn: Connection) -> tuple[Alert, bool]:
    return record_alert(conn, alert)
