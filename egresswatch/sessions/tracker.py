"""Open inference sessions as the service sees them: picked up from the store (manual ones come
from `egresswatch session start`), opened on inference requests, closed when idle, and asked
which sessions cover an event. Runs on the alert thread only; writes go to the store's writer.
"""

import functools
import logging
import time
from collections.abc import Callable, Iterable
from concurrent.futures import TimeoutError as FutureTimeout

from sqlalchemy import Engine

from egresswatch.counters import Counters
from egresswatch.errors import StoreError
from egresswatch.model import Event, FlowKey, InferenceSession, ProcessRef
from egresswatch.sessions.connections import OpenConnections
from egresswatch.store.sessions import (
    NewSession,
    add_evidence,
    close_session,
    list_sessions,
    open_session,
    touch,
    writing,
)
from egresswatch.store.writer import EventWriter

log = logging.getLogger(__name__)
CALL_TIMEOUT = 5.0


def in_scope(session: InferenceSession, event: Event) -> bool:
    """Strict: every process. Otherwise a recognised LLM tool (or a descendant, which attribution
    tags with the tool), restricted to the session's tools when a manual session names them."""
    if session.strict:
        return True
    tool = event.tool
    if tool is None:
        return False
    if session.trigger == "auto" or not session.tools:
        return True
    return tool.casefold() in {t.casefold() for t in session.tools}


class SessionTracker:
    """See the module docstring; an automatic session closes `idle_seconds` after its last
    request or evidence once none of its client connections is open any more."""

    def __init__(
        self,
        writer: EventWriter,
        engine: Engine,
        idle_seconds: float,
        clock: Callable[[], float] = time.time,
        connections: OpenConnections | None = None,
        *,
        node: str | None = None,
    ) -> None:
        self._writer, self._engine = writer, engine
        self.node = node  # opens sessions as this node; adopts only its own (or node-less) ones
        self._idle = idle_seconds
        self._clock = clock
        self._open: dict[int, InferenceSession] = {}
        self._last_active: dict[int, float] = {}
        self.connections = connections or OpenConnections()
        self.counters = Counters()

    @property
    def open_sessions(self) -> list[InferenceSession]:
        return list(self._open.values())

    def refresh(self) -> None:
        """Adopt sessions opened in the store by others; forget those closed there."""
        try:
            found = list_sessions(self._engine, only_open=True)
            current = {s.id: s for s in found if s.node is None or s.node == self.node}
        except StoreError as err:
            self.counters.add("sessions.refresh_errors")
            log.warning("cannot read open sessions: %s", err)
            return
        for sid, session in current.items():
            self._last_active.setdefault(sid, session.start)
        for sid in set(self._last_active) - set(current):
            del self._last_active[sid]
        self._open = current

    def covering(self, event: Event) -> list[InferenceSession]:
        ts = event.observation.ts
        return [s for s in self._open.values() if s.start <= ts and in_scope(s, event)]

    def link(self, session_id: int, event_ids: Iterable[int], ts: float) -> None:
        """Record in-scope egress events as the session's evidence (a writer job)."""
        ids = list(event_ids)
        self._last_active[session_id] = max(self._last_active.get(session_id, ts), ts)
        if not self._writer.post(lambda conn: add_evidence(conn, session_id, ids, ts)):
            self.counters.add("sessions.evidence_dropped", len(ids))

    def inference(
        self,
        tool: str,
        serving: ProcessRef,
        client: ProcessRef | None,
        model: str | None,
        ts: float,
        *,
        flow: FlowKey | None = None,
    ) -> InferenceSession | None:
        """An inference request reached `tool` on the client connection `flow`: extend its
        open automatic session or open one; the session lasts while `flow` is open."""
        session = self._extend(tool, ts)
        if session is None:
            new = NewSession(
                ts, "auto", tools=(tool,), serving=(serving,), client=client, model=model,
                node=self.node,
            )
            session = self._open_now(new)
        if session is not None and flow is not None:
            closed_at = self.connections.opened(session.id, flow, ts)
            if closed_at is not None:
                self.closed_at(session.id, closed_at)
        return session

    def _extend(self, tool: str, ts: float) -> InferenceSession | None:
        for session in self._open.values():
            if session.trigger == "auto" and tool in session.tools:
                self._last_active[session.id] = max(self._last_active.get(session.id, ts), ts)
                self._writer.post(functools.partial(touch, session_id=session.id, ts=ts))
                return session
        return None

    def connection_closed(self, flow: FlowKey, ts: float) -> None:
        """The kernel destroyed a TCP socket: the end of a session's client connection?"""
        session_id = self.connections.closed(flow, ts)
        if session_id is not None:
            self.closed_at(session_id, ts)

    def closed_at(self, session_id: int, ts: float) -> None:
        if session_id in self._open and ts > self._last_active.get(session_id, ts - 1):
            self._last_active[session_id] = ts
            self._writer.post(functools.partial(touch, session_id=session_id, ts=ts))

    def _open_now(self, new: NewSession) -> InferenceSession | None:
        try:
            sid = self._writer.call(
                lambda: writing(self._engine, lambda conn: open_session(conn, new)), CALL_TIMEOUT
            )
        except (StoreError, FutureTimeout) as err:
            self.counters.add("sessions.open_failed")
            log.warning("cannot open an automatic session: %s", err)
            return None
        session = InferenceSession(
            sid, new.start, None, "auto", None, False, new.tools, new.serving, new.client, new.model
        )
        self._open[sid] = session
        self._last_active[sid] = new.start
        self.counters.add("sessions.auto_opened")
        return session

    def expire(self) -> list[int]:
        """Close automatic sessions idle for `idle_seconds` with no client connection open;
        returns their ids."""
        now = self._clock()
        idle = [s.id for s in self._open.values() if s.trigger == "auto" and self._idle_at(s, now)]
        for sid in idle:
            self.connections.forget(sid)
            end = self._last_active.get(sid, now)
            self._writer.post(functools.partial(close_session, session_id=sid, end=end))
            del self._open[sid]
            self._last_active.pop(sid, None)
            self.counters.add("sessions.auto_closed")
        return idle

    def _idle_at(self, session: InferenceSession, now: float) -> bool:
        last = self._last_active.get(session.id, session.start)
        if now - last < self._idle:
            return False
        if not self.connections.counts_open(session.id):
            return True
        still_open, seen = self.connections.verify(session.id, now)
        if still_open:
            return False
        self.closed_at(session.id, seen)  # a close the broadcast missed: idle from last seen
        return now - max(last, seen) >= self._idle
