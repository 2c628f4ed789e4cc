"""The overview's first answers, embedded in the dashboard's HTML.

Measured in headless Chromium (docs/web.md), most of the overview's time went to a chain of
round trips: the HTML, then app.js, then the modules it imports, then chart.js, and only then
six API requests. The page now names every module up front (modulepreload) and the HTML carries
the overview's API answers as one inert JSON block (`<script type="application/json">` is data,
never run, so the strict CSP stays: script-src 'self'). Each answer is exactly what the API
route returns for the same request; the page takes each one once, for the default overview.
"""

import json
import logging
from collections.abc import Iterator
from typing import Any

from sqlalchemy.exc import SQLAlchemyError

from egresswatch.api.components import WebComponents
from egresswatch.api.routes.alerts import AlertParams, list_alerts_route
from egresswatch.api.routes.destinations import DestinationParams, list_destinations
from egresswatch.api.routes.events import EventParams, list_events
from egresswatch.api.routes.health import health
from egresswatch.api.routes.sessions import list_sessions_route
from egresswatch.api.routes.timeline import get_timeline
from egresswatch.errors import StoreError

log = logging.getLogger(__name__)
MARKER = "<!--preload-->"
# What views.js asks for on the default overview; the keys are the requests it would make.
TOP_DESTINATIONS = 10
LATEST_EVENTS = 10
OPEN_ALERTS = 50
SESSIONS_SINCE = "30d"


def overview_answers(web: WebComponents) -> dict[str, Any]:
    """The API answers the default overview needs, keyed by the request the page would make."""
    answers = {
        "timeline": get_timeline(web, since=None, until=None, bucket="auto", group="tool"),
        "destinations": list_destinations(
            web, DestinationParams(order="count", limit=TOP_DESTINATIONS)
        ),
        "events": list_events(web, EventParams(limit=LATEST_EVENTS)),
        "alerts": list_alerts_route(web, AlertParams(open=True, limit=OPEN_ALERTS)),
        "sessions": list_sessions_route(web, since=SESSIONS_SINCE),
        "health": health(web),
    }
    return {key: model.model_dump(mode="json") for key, model in answers.items()}


def script_json(data: Any) -> str:
    """JSON that cannot end or alter the <script> element holding it: <, > and & as escapes
    (JSON.parse reads them back), so no stored name can close the block or open a comment."""
    text = json.dumps(data, separators=(",", ":"), ensure_ascii=False)
    return text.replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026")


def render_index(template: str, web: WebComponents, preload: bool = True) -> Iterator[str]:
    """index.html in two parts: everything before MARKER at once, then the overview's answers
    in its place and the rest (no answers when the store cannot be read: the page then asks
    the API itself and shows the error there)."""
    head, _, tail = template.partition(MARKER)
    yield head
    if not preload:
        yield tail
        return
    try:
        answers = overview_answers(web)
    except (StoreError, SQLAlchemyError) as exc:
        log.warning("dashboard served without its preloaded overview: %s", exc)
        yield tail
        return
    yield f'<script type="application/json" id="preload">{script_json(answers)}</script>' + tail


def warm_up(web: WebComponents) -> None:
    """Answer the overview once at start (timeline cache, query plans), so the first visitor
    does not pay for it; a store that cannot be read is only logged here."""
    try:
        overview_answers(web)
    except (StoreError, SQLAlchemyError) as exc:
        log.warning("could not warm the overview at start: %s", exc)
