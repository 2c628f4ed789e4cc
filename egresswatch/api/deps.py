"""Dependencies of the route functions, as `Annotated` aliases."""

import time
from typing import Annotated

from fastapi import Depends, HTTPException, Request

from egresswatch.api.components import WebComponents
from egresswatch.api.mapping import decode_cursor
from egresswatch.when import parse_when


def components(request: Request) -> WebComponents:
    found: WebComponents = request.app.state.components
    return found


Components = Annotated[WebComponents, Depends(components)]


def when(text: str | None, name: str, now: float | None = None) -> float | None:
    """A query-string time, or HTTP 400 naming the parameter."""
    if text is None:
        return None
    try:
        return parse_when(text, time.time() if now is None else now)
    except ValueError as exc:
        raise HTTPException(400, f"{name}: {exc}") from exc


def cursor(text: str | None) -> tuple[float, int] | None:
    if text is None:
        return None
    try:
        return decode_cursor(text)
    except ValueError as exc:
        raise HTTPException(400, f"cursor: {exc}") from exc
