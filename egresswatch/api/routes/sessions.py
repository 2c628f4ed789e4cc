"""Sessions: list, start and stop a manual one, and the verdict report (json, md, html)."""

from typing import Annotated, Literal

from fastapi import APIRouter, HTTPException, Path, Query
from fastapi.responses import Response

from egresswatch.api.deps import Components, when
from egresswatch.api.mapping import session_out
from egresswatch.api.report import MEDIA_TYPES, report_file
from egresswatch.api.routes.events import TIME_HELP, TIME_PATTERN
from egresswatch.api.schemas import (
    ErrorOut,
    SessionOut,
    SessionReportOut,
    SessionsOut,
    SessionStartIn,
)
from egresswatch.store.sessions import get_session, list_sessions

router = APIRouter(tags=["sessions"])
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
    sid = web.commands.start_session(body.label, body.strict, body.tools, body.node)
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
        200: {
            "content": {"text/markdown": {}, "text/html": {}},
            "headers": {
                "X-Egresswatch-Signature": {"description": "ed25519: signed by the agent"},
                "X-Egresswatch-Unsigned": {"description": "why the report is not signed"},
            },
        },
        404: {"model": ErrorOut},
    },
)
def session_report(
    web: Components,
    session_id: SessionId,
    fmt: Annotated[Literal["json", "md", "html"], Query(alias="format")] = "json",
) -> Response:
    """The session's report, as `egresswatch report SESSION --format FORMAT` writes it: signed
    by the agent when it runs (`egresswatch report verify` accepts it), else marked unsigned."""
    _session(web, session_id)
    found = report_file(web.store.engine, web.commands.control, session_id, fmt)
    if found.unsigned is None:
        headers = {"X-Egresswatch-Signature": "ed25519"}
    else:  # a header holds printable ASCII only
        shown = "".join(c if " " <= c <= "~" else "?" for c in found.unsigned)
        headers = {"X-Egresswatch-Unsigned": shown}
    return Response(found.data, media_type=MEDIA_TYPES[fmt], headers=headers)


def _session(web: Components, session_id: int) -> SessionOut:
    found = get_session(web.store.engine, session_id)
    if found is None:
        raise HTTPException(404, "no such session")
    return session_out(found)
