"""`report.sign`: the agent builds a session's canonical report (egresswatch.report) from the
store and signs it with the machine key, which only it (root) can read. A read: it runs in the
asking connection's thread on a reading engine, never in the store's single writer.
"""

from typing import Any

from sqlalchemy import Engine
from sqlalchemy.exc import SQLAlchemyError

from egresswatch.control.protocol import ControlError, SignReport
from egresswatch.errors import ConfigError, StoreError
from egresswatch.report.document import build_report
from egresswatch.report.signed import signed_report
from egresswatch.report.signing import machine_key


def sign_answer(engine: Engine | None, request: SignReport) -> dict[str, Any]:
    """The answer carrying the signed report's bytes (UTF-8 text); ControlError otherwise."""
    if engine is None:
        raise ControlError("unsupported", "this agent has no store reader to build reports")
    try:
        key = machine_key()
    except ConfigError as exc:
        raise ControlError("no_key", f"the agent cannot use its report key: {exc}") from None
    try:
        doc = build_report(engine, request.session)
    except StoreError as exc:  # an unknown session
        raise ControlError("not_found", str(exc)) from None
    except SQLAlchemyError as exc:
        raise ControlError("store", f"the store could not be read: {exc}") from None
    data = signed_report(doc, request.format, key)
    return {"ok": True, "session": request.session, "format": request.format,
            "report": data.decode("utf-8")}  # fmt: skip
