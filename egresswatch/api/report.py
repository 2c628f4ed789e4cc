"""A session's report as the web serves it: the canonical report of egresswatch.report (the
same document and evidence hash as `egresswatch report SESSION`), signed by the agent through
its control channel (this process cannot read the machine key), else the same report marked
unsigned, with why and how to get a signed one.
"""

from dataclasses import dataclass

from sqlalchemy import Engine

from egresswatch.control.client import ControlClient
from egresswatch.control.protocol import ControlError
from egresswatch.report.document import build_report
from egresswatch.report.signed import unsigned_report

MEDIA_TYPES = {
    "json": "application/json",
    "md": "text/markdown; charset=utf-8",
    "html": "text/html; charset=utf-8",
}


@dataclass(frozen=True)
class ReportFile:
    data: bytes
    unsigned: str | None  # why it is not signed; None: signed by the agent


def report_file(
    engine: Engine, control: ControlClient | None, session_id: int, fmt: str
) -> ReportFile:
    """The report of `session_id` in `fmt`; StoreError (from the store) for an unknown id."""
    if control is None or not control.available():
        why = "no egresswatch agent is running to sign it"
    else:
        try:
            return ReportFile(control.sign_report(session_id, fmt), None)
        except ControlError as exc:
            why = f"the agent did not sign it ({exc.code}: {exc})"
    why += f"; `egresswatch report {session_id}` run as root gives a signed copy"
    return ReportFile(unsigned_report(build_report(engine, session_id), fmt, why), why)
