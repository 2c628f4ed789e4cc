"""GET /api/alerts and POST /api/alerts/{id}/ack."""

import time
from typing import Annotated

from fastapi import APIRouter, HTTPException, Path, Query
from pydantic import BaseModel, ConfigDict, Field

from egresswatch.api.deps import Components, when
from egresswatch.api.mapping import alert_out
from egresswatch.api.routes.events import TIME_HELP, TIME_PATTERN
from egresswatch.api.schemas import AckOut, AlertsOut, ErrorOut, Severity
from egresswatch.store.alerts import AlertFilter, list_alerts

router = APIRouter(tags=["alerts"])


class AlertParams(BaseModel):
    model_config = ConfigDict(extra="forbid")

    since: str | None = Field(
        default=None, max_length=64, pattern=TIME_PATTERN, description=TIME_HELP
    )
    severity: Severity | None = Field(default=None, description="this severity or higher")
    session: int | None = Field(default=None, ge=0, le=2**62)
    open: bool = Field(default=False, description="only alerts not yet acknowledged")
    node: str | None = Field(
        default=None, max_length=253, description="only this agent's ([agent] node, docs/fleet.md)"
    )
    limit: int = Field(default=200, ge=1, le=1000)


@router.get("/api/alerts", response_model=AlertsOut, responses={400: {"model": ErrorOut}})
def list_alerts_route(web: Components, params: Annotated[AlertParams, Query()]) -> AlertsOut:
    """Alerts, newest first (a repeat raises `count` and `last_time` of the first one)."""
    flt = AlertFilter(
        since=when(params.since, "since", time.time()),
        severity=params.severity,
        session=params.session,
        only_open=params.open,
        node=params.node,
    )
    found = list_alerts(web.store.engine, flt, params.limit)
    return AlertsOut(alerts=[alert_out(a) for a in reversed(found)])


@router.post(
    "/api/alerts/{alert_id}/ack",
    response_model=AckOut,
    responses={404: {"model": ErrorOut}, 503: {"model": ErrorOut}},
)
def acknowledge_alert(web: Components, alert_id: Annotated[int, Path(ge=1, le=2**62)]) -> AckOut:
    """Acknowledge one alert: it leaves the open list."""
    done = web.commands.acknowledge([alert_id])
    if not done:
        raise HTTPException(404, "no such alert")
    return AckOut(acknowledged=done)
