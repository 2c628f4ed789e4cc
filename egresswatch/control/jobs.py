"""Control requests as store writer jobs: each runs in the agent's single writer's own
transaction (`EventWriter.post`), and its result comes back to the waiting connection.
"""

import threading
import time
from collections.abc import Callable
from concurrent.futures import Future
from typing import Any

from sqlalchemy import Connection
from sqlalchemy.exc import OperationalError

from egresswatch.control.protocol import (
    Ack,
    ControlError,
    StartSession,
    StopSession,
    WriteRequest,
)
from egresswatch.store.alerts import acknowledge_in
from egresswatch.store.sessions import NewSession, close_session, latest_open, open_session
from egresswatch.store.writer import EventWriter


def answer_of(
    request: WriteRequest, node: str | None = None
) -> Callable[[Connection], dict[str, Any]]:
    """The writer job for `request`; it returns the answer to send. A manual session carries
    the node the request names, else `node` (the agent's own)."""
    if isinstance(request, Ack):
        return lambda conn: {"ok": True, "acknowledged": acknowledge_in(conn, request.ids)}
    if isinstance(request, StartSession):
        new = NewSession(time.time(), "manual", label=request.label, strict=request.strict,
                         tools=request.tools, node=request.node or node)  # fmt: skip
        return lambda conn: {"ok": True, "session": open_session(conn, new)}
    return lambda conn: _stop(conn, request, node)


def _stop(conn: Connection, request: StopSession, node: str | None) -> dict[str, Any]:
    """Without an id: the newest open manual session this agent watches (not another node's)."""
    sid = request.session
    if sid is None:
        sid = latest_open(conn, "manual", adopted_by=node)
    if sid is None:
        return {"ok": True, "session": None, "verdict": None}
    return {"ok": True, "session": sid, "verdict": close_session(conn, sid, time.time())}


class WriterJob:
    """One request posted to the writer; `wait` gives its answer or raises ControlError.

    A job whose caller gave up waiting is skipped when the writer reaches it.
    """

    def __init__(self, job: Callable[[Connection], dict[str, Any]]) -> None:
        self._job = job
        self._future: Future[dict[str, Any]] = Future()
        self._lock = threading.Lock()
        self._abandoned = False

    def post(self, writer: EventWriter) -> None:
        if not writer.post(self._run, self._done):
            raise ControlError("busy", "the agent's store writer is not taking jobs")

    def wait(self, timeout: float) -> dict[str, Any]:
        try:
            return self._future.result(timeout)
        except TimeoutError:
            with self._lock:
                self._abandoned = True
                if self._future.done():
                    return self._future.result()
            late = f"the store did not take the change within {timeout:g} s"
            raise ControlError("timeout", late) from None

    def _run(self, conn: Connection) -> dict[str, Any] | None:
        with self._lock:
            if self._abandoned:
                return None
        try:
            return self._job(conn)
        except OperationalError:
            raise  # the writer keeps the job and retries it; the waiter may time out first
        except Exception as exc:
            with self._lock:
                if not self._future.done():
                    refused = ControlError("store", f"the store refused the change: {exc}")
                    self._future.set_exception(refused)
            raise  # the writer rolls the transaction back and counts the failure

    def _done(self, answer: dict[str, Any] | None) -> None:
        with self._lock:
            if answer is not None and not self._future.done():
                self._future.set_result(answer)
