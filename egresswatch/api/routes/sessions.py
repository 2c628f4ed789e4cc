"""Sessions: list, start and stop a manual one, and the verdict report (json, md, html)."""

from typing import Annotated, Literal

from fastapi import APIRouter, HTTPException, Path, Query
from fastapi.responses import HTMLResponse, PlainTextResponse, Response

from egresswatch.api.deps import Components, when
from egresswatch.api.mapping import alert_out, event_out, session_out
from egresswatch.api.report import report_html, report_markdown
from egresswatch.api.routes.events import TIME_HELP, TIME_PATTERN
from egresswatch.api.schemas import (
    ErrorOut,
    SessionOut,
    SessionReportOut,
    SessionsOut,
    SessionStartIn,
)
from egresswatch.store.alerts import AlertFilter, list_alerts
from egresswatch.store.reads import events_by_ids
from egresswatch.store.sessions import evidence_ids, get_session, list_sessions

router = APIRouter(tags=["sessions"])
EVIDENCE_SHOWN = 200
MAX_ID = 2**62  # larger ids cannot exist, and would overflow a 64-bit database integer
SessionId = Annotated[int, Path(ge=1, le=MAX_ID)]


@router.get("/api/sessions", response_model=SessionsOut, responses={400: {"model": ErrorOut}})
def list_sessions_route(
    web: Components,
    since: Annotated[
        str | None, Query(max_length=64, pattern=TIME_PATTERN, description=TIME_HELP)
    ] = "7d",
    only_open: Annotated[bool, Query(alias="open")] = False,
    node: Annotated[
        str | None, Query(max_length=253, description="only sessions this agent opened")
    ] = None,
) -> SessionsOut:
    """Sessions started since `since` or still open, newest first, with their verdicts."""
    found = list_sessions(web.store.engine, when(since, "since"), only_open=only_open, node=node)
    return SessionsOut(sessions=[session_out(s) for s in reversed(found)])


@router.post(
    "/api/sessions",
    response_model=SessionOut,
    status_code=201,
    responses={503: {"model": ErrorOut}},
)
def start_session(web: Components, body: SessionStartIn | None = None) -> SessionOut:
    """Open a manual session now (`egresswatch run` picks it up within a second)."""
    body = body or SessionStartIn()
    sid = web.commands.start_session(body.label, body.strict, body.tools)
    return _session(web, sid)


@router.post(
    "/api/sessions/{session_id}/stop",
    response_model=SessionOut,
    responses={404: {"model": ErrorOut}, 409: {"model": ErrorOut}, 503: {"model": ErrorOut}},
)
def stop_session(web: Components, session_id: SessionId) -> SessionOut:
    """End a session; its verdict becomes clean or egress."""
    _session(web, session_id)
    if web.commands.stop_session(session_id) is None:
        raise HTTPException(409, "this session is not open")
    return _session(web, session_id)


@router.get(
    "/api/sessions/{session_id}/report",
    response_model=SessionReportOut,
    responses={
        200: {"content": {"text/markdown": {}, "text/html": {}}},
        404: {"model": ErrorOut},
    },
)
def session_report(
    web: Components,
    session_id: SessionId,
    fmt: Annotated[Literal["json", "md", "html"], Query(alias="format")] = "json",
) -> Response | SessionReportOut:
    """The verdict report: the session, its alerts and its evidence events (first 200)."""
    report = build_report(web, session_id)
    if fmt == "md":
        return PlainTextResponse(report_markdown(report), media_type="text/markdown")
    if fmt == "html":
        return HTMLResponse(report_html(report))
    return report


def build_report(web: Components, session_id: int) -> SessionReportOut:
    session = _session(web, session_id)
    alerts = list_alerts(web.store.engine, AlertFilter(session=session_id))
    ids = evidence_ids(web.store.engine, session_id)
    events = events_by_ids(web.store.engine, ids[:EVIDENCE_SHOWN])
    return SessionReportOut(
        session=session,
        alerts=[alert_out(a) for a in reversed(alerts)],
        evidence=[event_out(e) for e in events],
        evidence_total=len(ids),
    )


def _session(web: Components, session_id: int) -> SessionOut:
    found = get_session(web.store.engine, session_id)
    if found is None:
        raise HTTPException(404, "no such session")
    return session_out(found)
