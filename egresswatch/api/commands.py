"""The few state changes the web may ask for (acknowledge alerts, start and stop manual
sessions), each one short transaction on a separate writable engine. Reads never use it.

A web process without write access to the store (e.g. the one `egresswatch run` starts as an
unprivileged user) has none: its state-changing routes answer 503 and say why.
"""

import time
from collections.abc import Sequence
from dataclasses import dataclass

from sqlalchemy import Engine

from egresswatch.errors import StoreError
from egresswatch.store.alerts import acknowledge
from egresswatch.store.sessions import NewSession, close_session, open_session, writing


@dataclass
class Commands:
    """`engine` is None when this process may not write; `why` then says so."""

    engine: Engine | None
    why: str = ""

    def _writable(self) -> Engine:
        if self.engine is None:
            raise StoreError(f"this web process cannot change the store: {self.why}")
        return self.engine

    def acknowledge(self, ids: Sequence[int]) -> list[int]:
        return acknowledge(self._writable(), ids)

    def start_session(self, label: str | None, strict: bool, tools: Sequence[str]) -> int:
        new = NewSession(time.time(), "manual", label=label, strict=strict, tools=tuple(tools))
        return writing(self._writable(), lambda conn: open_session(conn, new))

    def stop_session(self, session_id: int) -> str | None:
        """The verdict, or None when the session is not open."""
        end = time.time()
        return writing(self._writable(), lambda conn: close_session(conn, session_id, end))

    def close(self) -> None:
        if self.engine is not None:
            self.engine.dispose()
