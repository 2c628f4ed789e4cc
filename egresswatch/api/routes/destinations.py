"""GET /api/destinations: every host contacted, with its category, tools, first and last seen."""

from typing import Annotated, Literal

from fastapi import APIRouter, HTTPException, Query
from pydantic import BaseModel, ConfigDict, Field

from egresswatch.api.deps import Components, cursor
from egresswatch.api.mapping import destination_out, encode_cursor
from egresswatch.api.schemas import DestinationOut, DestinationPageOut, ErrorOut
from egresswatch.store.summaries import DestinationFilter, destination_by_host, page_destinations

router = APIRouter(tags=["destinations"])


class DestinationParams(BaseModel):
    model_config = ConfigDict(extra="forbid")

    order: Literal["recent", "count"] = Field(
        default="recent", description="recent: last contacted first; count: busiest first"
    )
    category: str | None = Field(default=None, max_length=64)
    tool: str | None = Field(default=None, max_length=256)
    host: str | None = Field(default=None, max_length=300, description="host or a name under it")
    limit: int = Field(default=100, ge=1, le=1000)
    cursor: str | None = Field(default=None, max_length=200, description="`next` of the last page")


@router.get(
    "/api/destinations", response_model=DestinationPageOut, responses={400: {"model": ErrorOut}}
)
def list_destinations(
    web: Components, params: Annotated[DestinationParams, Query()]
) -> DestinationPageOut:
    """Destinations, most recently contacted (or busiest) first; follow `next` for more."""
    page = page_destinations(
        web.store.engine,
        DestinationFilter(
            order=params.order, category=params.category, tool=params.tool, host=params.host
        ),
        params.limit,
        cursor(params.cursor),
    )
    return DestinationPageOut(
        destinations=[destination_out(d, web.catalog) for d in page.destinations],
        next=None if page.next is None else encode_cursor(*page.next),
    )


@router.get(
    "/api/destinations/{host}",
    response_model=DestinationOut,
    responses={404: {"model": ErrorOut}},
)
def get_destination(web: Components, host: str) -> DestinationOut:
    """One destination by exact host name, with its catalog entry, purpose and citation."""
    found = destination_by_host(web.store.engine, host)
    if found is None:
        raise HTTPException(404, "no such destination")
    return destination_out(found, web.catalog)
