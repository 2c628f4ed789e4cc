"""The few state changes the web may ask for (acknowledge alerts, start and stop manual
sessions). When the agent runs, they go through its control socket (egresswatch.control), so
its single writer makes them; otherwise each is one short transaction on a separate writable
engine. Reads never use either.

A web process that has neither (e.g. the one `egresswatch run` starts as an unprivileged user,
before the agent listens) answers 503 on its state-changing routes and says why.
"""

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TypeVar

from sqlalchemy import Engine

from egresswatch.config import load_settings
from egresswatch.control.client import ControlClient, ControlUnavailable
from egresswatch.errors import ConfigError, StoreError
from egresswatch.store.alerts import acknowledge
from egresswatch.store.sessions import NewSession, close_session, open_session, writing

T = TypeVar("T")


@dataclass
class Commands:
    """`engine` is None when this process may not write; `why` then says so. `control` is the
    agent's control channel, used first whenever the agent listens on it.
    """

    engine: Engine | None
    why: str = ""
    control: ControlClient | None = None
    node: str | None = None  # a direct write's default node; None: the settings' [agent] node

    def _writable(self) -> Engine:
        if self.engine is None:
            raise StoreError(f"this web process cannot change the store: {self.why}")
        return self.engine

    def _either(self, by_agent: Callable[[ControlClient], T], direct: Callable[[Engine], T]) -> T:
        if self.control is not None and self.control.available():
            try:
                return by_agent(self.control)
            except ControlUnavailable:
                pass  # the agent stopped since: write directly if this process may
        return direct(self._writable())

    def acknowledge(self, ids: Sequence[int]) -> list[int]:
        return self._either(
            lambda agent: agent.acknowledge(list(ids)), lambda engine: acknowledge(engine, ids)
        )

    def start_session(
        self, label: str | None, strict: bool, tools: Sequence[str], node: str | None = None
    ) -> int:
        """A manual session for `node`; when None, the running agent's node (control channel)
        or, written directly, this host's settings' `[agent] node`."""

        def direct(engine: Engine) -> int:
            new = NewSession(time.time(), "manual", label=label, strict=strict,
                             tools=tuple(tools), node=node or self._own_node())  # fmt: skip
            return writing(engine, lambda conn: open_session(conn, new))

        return self._either(
            lambda agent: agent.start_session(label, strict, tuple(tools), node), direct
        )

    def _own_node(self) -> str:
        if self.node is None:
            try:
                self.node = load_settings().agent.node
            except ConfigError as exc:
                raise StoreError(f"cannot tell this host's node: {exc}") from exc
        return self.node

    def stop_session(self, session_id: int) -> str | None:
        """The verdict, or None when the session is not open."""

        def direct(engine: Engine) -> str | None:
            end = time.time()
            return writing(engine, lambda conn: close_session(conn, session_id, end))

        return self._either(lambda agent: agent.stop_session(session_id)[1], direct)

    def close(self) -> None:
        if self.engine is not None:
            self.engine.dispose()
