"""The live agent loop: frames from capture -> observations -> attributed, named events -> a sink.

Runs on the decode thread; the capture threads only fill the bounded queue it drains.
"""

import contextlib
import os
import socket
import sys
import threading
import time
from collections import deque
from collections.abc import Callable
from typing import Literal, Protocol

from egresswatch.capture.frame import Frame
from egresswatch.counters import Counters
from egresswatch.lru import Lru
from egresswatch.model import Attribution, Event, FlowKey, Observation
from egresswatch.naming import Namer, PendingFlows
from egresswatch.pipeline import ObservationDecoder
from egresswatch.relay import StubRelays

EXPIRE_EVERY = 1.0
DUPLICATE_WINDOW = 0.2
LocalEnd = Literal["auto", "src", "dst"]
LATENCY_SAMPLES = 10000
# A lookup makes dozens of GIL-releasing /proc and netlink syscalls; getting the GIL back behind
# a busy thread costs up to the switch interval each time (5 ms by default), so lookups of
# short-lived processes were stretched to ~100 ms. 0.5 ms bounds that wait (measured worst
# lookup ~105 ms -> ~19 ms) at the price of more frequent switches.
SWITCH_INTERVAL = 0.0005
AGENT_NICE = -10


class FrameSource(Protocol):
    """Where frames come from (LiveCapture; a list in tests)."""

    def get(self, timeout: float | None = None) -> Frame | None: ...


class Attributor(Protocol):
    """Who owns a packet's local socket (egresswatch.attribute.resolver.ProcessResolver).

    `local` is "auto" (the sender when it is local) or "dst" (the receiver: DNS responses);
    `new_connection` is True for a TCP SYN (a 5-tuple's earlier owner no longer applies).
    """

    def attribute(
        self,
        flow: FlowKey,
        ts: float,
        *,
        ifindex: int = 0,
        local: LocalEnd = "auto",
        new_connection: bool = False,
    ) -> Attribution: ...


class NoAttribution:
    """Stands in where process attribution is unavailable; says so in every event."""

    def __init__(self, reason: str = "attribution-unavailable") -> None:
        self.reason = reason

    def attribute(
        self,
        flow: FlowKey,
        ts: float,
        *,
        ifindex: int = 0,
        local: LocalEnd = "auto",
        new_connection: bool = False,
    ) -> Attribution:
        return Attribution(f"unknown:{self.reason}")


class Agent:
    """Turns captured frames into events and hands each to `sink` as soon as it is complete."""

    def __init__(
        self,
        source: FrameSource,
        attributor: Attributor,
        sink: Callable[[Event], None],
        *,
        decoder: ObservationDecoder | None = None,
        namer: Namer | None = None,
    ) -> None:
        self.source = source
        self.attributor = attributor
        self.sink = sink
        self.decoder = decoder or ObservationDecoder(emit_flows=True)
        self.namer = namer or Namer()
        self.relays = StubRelays()
        self.pending = PendingFlows()  # TCP flow records wait briefly for their hello's SNI
        self.counters = Counters()
        self.latencies: deque[float] = deque(maxlen=LATENCY_SAMPLES)
        self._last_expire = 0.0
        self._recent = _RecentFrames(DUPLICATE_WINDOW)
        self._ifindex: dict[str, int] = {}
        self.last_turn = time.monotonic()  # the service watchdog's proof of progress

    def run(self, stop: threading.Event) -> None:
        """Drains the source until `stop` is set (with a short GIL switch interval meanwhile)."""
        previous = sys.getswitchinterval()
        sys.setswitchinterval(min(previous, SWITCH_INTERVAL))
        niceness = _raise_thread_priority()
        try:
            self._drain(stop)
        finally:
            self._emit(self.pending.flush())
            sys.setswitchinterval(previous)
            _restore_thread_priority(niceness)

    def _drain(self, stop: threading.Event) -> None:
        while not stop.is_set():
            frame = self.source.get(timeout=0.05 if len(self.pending) else 0.2)
            now = time.time()
            self.last_turn = time.monotonic()
            if frame is not None:
                self.handle(frame)
            self._emit(self.pending.due(now))
            if now - self._last_expire >= EXPIRE_EVERY:
                self.decoder.expire(now)
                self._ifindex.clear()  # interfaces come and go; indexes are reused
                self._last_expire = now

    def handle(self, frame: Frame) -> list[Event]:
        """Decodes, attributes and names one frame; emits and returns its events."""
        if self._recent.seen(frame.data, frame.ts):
            # A bridged packet is captured on the bridge and again on the port it leaves by.
            self.counters.add("agent.skipped.duplicate_frame")
            return []
        ifindex = self._index_of(frame.interface)
        observations = self.decoder.decode_frame(frame.ts, frame.linktype, frame.data)
        shared: dict[tuple[FlowKey, LocalEnd], Attribution] = {}  # flow + hello of one packet
        events = self.relays.link([self.event(obs, ifindex, shared) for obs in observations])
        ready = self.pending.admit(events)
        self._emit(ready, frame.ts)
        return ready

    def _emit(self, events: list[Event], frame_ts: float | None = None) -> None:
        """Hands events to the sink; latency counts only those of the frame just handled."""
        for event in events:
            self.sink(event)
            if frame_ts is not None and event.observation.ts == frame_ts:
                self.latencies.append(time.time() - frame_ts)
            self.counters.add(f"agent.emitted.{event.observation.kind}")

    def _index_of(self, interface: str) -> int:
        index = self._ifindex.get(interface)
        if index is None:
            try:
                index = socket.if_nametoindex(interface)
            except OSError:
                index = 0
            self._ifindex[interface] = index
        return index

    def event(
        self,
        obs: Observation,
        ifindex: int = 0,
        shared: dict[tuple[FlowKey, LocalEnd], Attribution] | None = None,
    ) -> Event:
        """`obs` attributed and named; `shared` reuses lookups for the same packet's flow."""
        # A DNS answer names the flows of the process that receives it, not of the server.
        local: LocalEnd = "dst" if obs.dns is not None and obs.dns.is_response else "auto"
        key = (obs.flow, local)
        attribution = shared.get(key) if shared is not None else None
        if attribution is None:
            attribution = self._attribute(obs, ifindex, local)
            if shared is not None:
                shared[key] = attribution
        process = attribution.process
        naming = self.namer.name(obs, process.pid if process else None)
        return Event(
            obs,
            attribution,
            host=naming.host,
            name_source=naming.source,
            name_conflict=naming.conflict,
            tool=process.tool if process else None,
            name_candidates=naming.candidates,
            cname_chain=naming.cname_chain,
        )

    def _attribute(self, obs: Observation, ifindex: int, local: LocalEnd) -> Attribution:
        # a "flow" observation of TCP is a SYN: a new connection on this 5-tuple
        syn = obs.kind == "flow" and obs.flow.transport == "tcp"
        try:
            result = self.attributor.attribute(
                obs.flow, obs.ts, ifindex=ifindex, local=local, new_connection=syn
            )
        # Backstop for attributors that raise despite the contract: ProcessResolver contains its
        # own faults and counts them as "attribute.errors" (reported by Service.counters).
        except Exception as err:  # a lookup bug must not stop capture
            self.counters.add(f"agent.errors.attribute.{type(err).__name__}")
            return Attribution("unknown:error")
        self.counters.add(f"agent.attribution.{result.status.split(':', 1)[-1]}")
        return result

    def all_counters(self) -> Counters:
        merged = Counters()
        merged.merge(self.counters)
        merged.merge(self.decoder.all_counters())
        attributor_counters = getattr(self.attributor, "all_counters", None)
        if callable(attributor_counters):  # the resolver's lookups and the kernel source's loss
            merged.merge(attributor_counters())
        return merged


class _RecentFrames:
    """Frames seen in the last `window` seconds, by content hash, to drop bridged copies."""

    def __init__(self, window: float, limit: int = 4096) -> None:
        self._window = window
        self._seen: Lru[int, float] = Lru(limit)

    def seen(self, data: bytes, ts: float) -> bool:
        key = hash(data)
        last = self._seen.peek(key)
        self._seen.put(key, ts)
        while (oldest := self._seen.oldest()) is not None and oldest[1] < ts - self._window:
            self._seen.pop(oldest[0])
        return last is not None and ts - last <= self._window


def _raise_thread_priority() -> int | None:
    """Runs this thread at AGENT_NICE when allowed (CAP_SYS_NICE); its previous nice value.

    A socket of a short-lived client lives a few ms: on a busy box the lookup must not wait
    behind the very processes it names. Only this thread (a Linux tid) is changed.
    """
    tid = threading.get_native_id()
    try:
        old = os.getpriority(os.PRIO_PROCESS, tid)
        if old > AGENT_NICE:
            os.setpriority(os.PRIO_PROCESS, tid, AGENT_NICE)
    except OSError:
        return None
    return old


def _restore_thread_priority(niceness: int | None) -> None:
    if niceness is not None:
        with contextlib.suppress(OSError):  # lowering a priority needs no privilege
            os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), niceness)


def latency_percentiles(samples: deque[float]) -> tuple[float, float] | None:
    """p50 and p95 of packet-to-emit latency in seconds, or None without samples."""
    if not samples:
        return None
    ordered = sorted(samples)
    return ordered[len(ordered) // 2], ordered[min(len(ordered) - 1, int(len(ordered) * 0.95))]
