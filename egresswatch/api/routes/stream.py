"""GET /api/stream: Server-Sent Events of events (and alerts) as they are stored."""

import asyncio
import json
from collections.abc import AsyncIterator
from typing import Annotated

from fastapi import APIRouter, Header
from fastapi.responses import StreamingResponse

from egresswatch.api.deps import Components
from egresswatch.api.feed import FeedItem, LiveFeed, Subscription
from egresswatch.store.export import event_record
from egresswatch.store.reads import events_after

router = APIRouter(tags=["stream"])
KEEPALIVE = 15.0
RETRY_MS = 2000


@router.get(
    "/api/stream",
    response_class=StreamingResponse,
    responses={
        200: {
            "content": {"text/event-stream": {}},
            "description": "SSE: `event: event` with an event record as data; "
            "`event: lagged` when this client fell behind and missed items",
        }
    },
)
async def stream(
    web: Components,
    last_event_id: Annotated[str | None, Header(max_length=32)] = None,
) -> StreamingResponse:
    """Live events as they are stored; keep-alive comments every 15 s. A reconnecting client's
    Last-Event-ID first gets what it missed (up to 500 events).
    """
    feed = web.feed
    sub = feed.subscribe()
    missed: list[FeedItem] = []
    if last_event_id is not None and last_event_id.isdigit():
        found = await asyncio.to_thread(events_after, web.store.engine, int(last_event_id), 500)
        missed = [FeedItem("event", s.id, event_record(s)) for s in found]
    return StreamingResponse(
        _messages(feed, sub, missed),
        media_type="text/event-stream",
        headers={"Cache-Control": "no-store", "X-Accel-Buffering": "no"},
    )


async def _messages(
    feed: LiveFeed, sub: Subscription, missed: list[FeedItem]
) -> AsyncIterator[str]:
    try:
        yield f"retry: {RETRY_MS}\n: connected\n\n"
        high = 0
        for old in missed:
            high = old.id
            yield sse(old)
        while True:
            try:
                item = await asyncio.wait_for(sub.queue.get(), KEEPALIVE)
            except TimeoutError:
                yield ": keep-alive\n\n"
                continue
            if item is None:
                return
            if item.kind == "event" and item.id <= high:
                continue  # already sent from the catch-up
            if sub.lagged:
                sub.lagged = False
                yield "event: lagged\ndata: {}\n\n"
            yield sse(item)
    finally:
        feed.unsubscribe(sub)


def sse(item: FeedItem) -> str:
    """One SSE message; the JSON is ASCII-only, so no newline can split `data`."""
    data = json.dumps(item.data, ensure_ascii=True, separators=(",", ":"))
    return f"event: {item.kind}\nid: {item.id}\ndata: {data}\n\n"
