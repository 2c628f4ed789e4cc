"""Who opened each recent TCP connection. A later event of the same connection whose own lookup
failed (a short-lived socket closed before attribution saw it) is charged to the process that
opened it, so a ClientHello is not lost to rules that need its process or tool."""

import dataclasses
from collections import OrderedDict

from egresswatch.model import Attribution, Event, FlowKey

LIMIT = 50_000


class ConnectionOwners:
    """flow -> the attribution of its SYN, most recent `limit` connections."""

    def __init__(self, limit: int = LIMIT) -> None:
        self._owners: OrderedDict[FlowKey, Attribution] = OrderedDict()
        self._limit = limit

    def fill(self, event: Event) -> Event:
        obs = event.observation
        if obs.flow.transport != "tcp":
            return event
        if event.attribution.process is not None:
            if obs.kind == "flow":
                self._owners[obs.flow] = event.attribution
                self._owners.move_to_end(obs.flow)
                while len(self._owners) > self._limit:
                    self._owners.popitem(last=False)
            return event
        owner = self._owners.get(obs.flow)
        if owner is None or owner.process is None:
            return event
        return dataclasses.replace(event, attribution=owner, tool=owner.process.tool)
