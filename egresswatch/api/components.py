"""What the web app is built from: the composition root hands these to `create_app`."""

from dataclasses import dataclass, field

from egresswatch.api.commands import Commands
from egresswatch.api.feed import LiveFeed
from egresswatch.api.guard import GuardPolicy
from egresswatch.api.timeline_cache import TimelineCache
from egresswatch.classify.catalog import Catalog
from egresswatch.store.database import Store

STALE_AFTER = 15.0  # seconds without an agent heartbeat before health says "stale"


@dataclass
class WebComponents:
    store: Store
    feed: LiveFeed
    guard: GuardPolicy
    commands: Commands
    catalog: Catalog | None = None
    stale_after: float = STALE_AFTER
    timelines: TimelineCache = field(default_factory=TimelineCache)
