"""The app factory: `create_app(components)` wires routers, errors, metrics, the live feed,
the guard and the dashboard's static files. Nothing is built at import time.
"""

import threading
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from importlib import resources

from fastapi import FastAPI, Request
from fastapi.responses import StreamingResponse
from prometheus_client import CollectorRegistry
from starlette.staticfiles import StaticFiles

from egresswatch import __version__
from egresswatch.api.components import WebComponents
from egresswatch.api.errors import install_error_handlers
from egresswatch.api.guard import GuardMiddleware
from egresswatch.api.metrics import StoreCollector
from egresswatch.api.preload import render_index, warm_up
from egresswatch.api.routes import (
    alerts,
    destinations,
    events,
    health,
    metrics,
    processes,
    sessions,
    stream,
    tools,
)
from egresswatch.api.routes import timeline as timeline_route
from egresswatch.api.schemas import ErrorOut

ROUTERS = (
    health.router,
    events.router,
    timeline_route.router,
    destinations.router,
    tools.router,
    processes.router,
    alerts.router,
    sessions.router,
    stream.router,
    metrics.router,
)


def static_dir() -> str:
    return str(resources.files("egresswatch.api") / "static")


def create_app(components: WebComponents) -> FastAPI:
    """The web app over `components` (the caller owns the store and closes it)."""

    @asynccontextmanager
    async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
        components.feed.start()
        threading.Thread(target=warm_up, args=(components,), daemon=True).start()
        try:
            yield
        finally:
            components.feed.stop()

    app = FastAPI(
        title="egresswatch",
        version=__version__,
        description="Egress events, timelines, destinations and tools from the egresswatch store.",
        docs_url=None,  # Swagger UI loads scripts from a CDN and runs inline script
        redoc_url=None,
        lifespan=lifespan,
        responses={503: {"model": ErrorOut, "description": "the store cannot be read"}},
    )
    app.state.components = components
    registry = CollectorRegistry(auto_describe=False)
    registry.register(StoreCollector(components.store))
    app.state.registry = registry
    for router in ROUTERS:
        app.include_router(router)
    install_error_handlers(app)
    _serve_dashboard(app, components)
    app.add_middleware(GuardMiddleware, policy=components.guard)
    return app


def _serve_dashboard(app: FastAPI, components: WebComponents) -> None:
    template = (resources.files("egresswatch.api") / "static" / "index.html").read_text("utf-8")

    @app.get("/", include_in_schema=False)
    def dashboard(request: Request) -> StreamingResponse:
        """The dashboard, with the overview's answers inside (`?preload=0`: without them, so
        the page asks the API for each, as bench/web.py's peer measurement does). The head goes
        out first, so the browser fetches the scripts while the answers are read."""
        preload = request.query_params.get("preload") != "0"
        return StreamingResponse(
            render_index(template, components, preload),
            media_type="text/html; charset=utf-8",
            headers={"Cache-Control": "no-store"},
        )

    app.mount("/static", StaticFiles(directory=static_dir()), name="static")
