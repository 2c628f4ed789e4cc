"""The one classify step after the agent, and the fan-out of each classified event to every
consumer (store writer, live feed...) for both `egresswatch run` and `egresswatch agent`."""

import dataclasses
from collections.abc import Callable, Sequence
from typing import Any

from egresswatch.classify.catalog import Catalog
from egresswatch.classify.verdict import classified_event
from egresswatch.counters import Counters
from egresswatch.model import Event
from egresswatch.naming import cname_chain


def destination_name(event: Event) -> str | None:
    """The name an event is about: its host, or for a DNS message the name asked for."""
    dns = event.observation.dns
    return event.host or (dns.qname if dns is not None else None)


def classify_event(catalog: Catalog, event: Event, node: str | None = None) -> Event:
    """The event with its destination's verdict (category, how it was decided, confidence),
    its CNAME chain (a DNS response's own, else the one its name came from: flows, hellos) and,
    when given, the agent's node."""
    dns = event.observation.dns
    chain = event.cname_chain
    if dns is not None and dns.is_response:
        own = cname_chain(dns)
        chain = own if len(own) > 1 else ()
    changes: dict[str, Any] = {}
    if chain != event.cname_chain:
        changes["cname_chain"] = chain
    if node is not None and node != event.node:
        changes["node"] = node
    if changes:  # one copy of the event for both, not one each
        event = dataclasses.replace(event, **changes)
    return classified_event(catalog, event, cname_chain=chain, name=destination_name(event))


class FanOut:
    """The agent's sink: classifies each event once, stamps its node, then calls every consumer.

    Consumers run on the decode thread and must not block (the writer's `submit`, `Bus.publish`).
    """

    def __init__(
        self,
        catalog: Catalog,
        consumers: Sequence[Callable[[Event], None]],
        node: str | None = None,
    ) -> None:
        self.catalog = catalog
        self.node = node  # stamped on every event: the agent's [agent] node
        self.consumers = tuple(consumers)
        self.counters = Counters()

    def __call__(self, event: Event) -> None:
        classified = classify_event(self.catalog, event, self.node)
        self.counters.add(f"recorder.category.{classified.category}")
        for consumer in self.consumers:
            consumer(classified)
