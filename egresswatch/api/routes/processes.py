"""Process drill-down: GET /api/processes/{pid} and GET /api/processes?exe=PATH."""

from typing import Annotated

from fastapi import APIRouter, HTTPException, Path, Query

from egresswatch.api.deps import Components
from egresswatch.api.mapping import event_out, process_out
from egresswatch.api.schemas import ErrorOut, ProcessDrillOut, ProcessListOut
from egresswatch.store.reads import EventQuery, page_events
from egresswatch.store.summaries import processes_by_exe, processes_by_pid

router = APIRouter(tags=["processes"])
RECENT_EVENTS = 50


@router.get("/api/processes", response_model=ProcessListOut)
def processes_of_executable(
    web: Components,
    exe: Annotated[str, Query(max_length=4096, description="executable path")],
) -> ProcessListOut:
    """Every recorded process that ran this executable, newest first."""
    found = processes_by_exe(web.store.engine, exe)
    return ProcessListOut(processes=[process_out(p) for p in found])


@router.get(
    "/api/processes/{pid}",
    response_model=ProcessDrillOut,
    responses={404: {"model": ErrorOut}},
)
def process_drill_down(
    web: Components, pid: Annotated[int, Path(ge=0, le=2**31)]
) -> ProcessDrillOut:
    """The processes seen with this pid (ancestry, exe hash, cmdline, container), newest
    first, and their newest events.
    """
    found = processes_by_pid(web.store.engine, pid)
    if not found:
        raise HTTPException(404, "no process with this pid was recorded")
    events = page_events(web.store.engine, EventQuery(pid=pid), RECENT_EVENTS).events
    return ProcessDrillOut(
        pid=pid,
        processes=[process_out(p) for p in found],
        events=[event_out(e) for e in events],
    )
