"""Links a stub resolver's upstream DNS traffic to the application that asked it on loopback.

An application that resolves through a local stub (systemd-resolved on 127.0.0.53, dnsmasq, a
local unbound) sends its query to a loopback address, where it is attributed to the application.
The stub then asks upstream for the same name: that query and its answer are the application's
egress, relayed, not the resolver's own. `StubRelays` remembers loopback queries for a short
window (bounded) and re-attributes the matching upstream messages of another process to the
application, with status ``relayed:<resolver name>`` so the evidence keeps both.
"""

import dataclasses
import ipaddress
from collections.abc import Sequence
from functools import lru_cache

from egresswatch.lru import Lru
from egresswatch.model import Attribution, AttributionMethod, Event, FlowKey, ProcessInfo

RELAY_WINDOW = 2.0  # seconds between the application's query and the stub's upstream query
MAX_PENDING = 4096


@dataclasses.dataclass(frozen=True, slots=True)
class _Asked:
    process: ProcessInfo
    ts: float
    method: AttributionMethod | None = None


@lru_cache(maxsize=1024)
def _is_loopback(address: str) -> bool:
    return ipaddress.ip_address(address).is_loopback


class StubRelays:
    """Re-attributes upstream DNS of a stub resolver to the application behind it."""

    def __init__(self, window: float = RELAY_WINDOW, limit: int = MAX_PENDING) -> None:
        self._window = window
        self._asked: Lru[tuple[str, str | None], _Asked] = Lru(limit)

    def link(self, events: Sequence[Event]) -> list[Event]:
        """The events of one packet, the upstream ones re-attributed where a stub relayed them."""
        relayed: dict[FlowKey, Attribution] = {}
        out = [self._one(event, relayed) for event in events]
        if not relayed:
            return out
        # the packet's flow-start record belongs to the same application
        return [self._flow(event, relayed) for event in out]

    def _one(self, event: Event, relayed: dict[FlowKey, Attribution]) -> Event:
        obs, msg = event.observation, event.observation.dns
        if msg is None or obs.dns_proto != "dns" or not msg.qname:
            return event
        key = (msg.qname, msg.qtype)
        process = event.attribution.process
        if not msg.is_response and _is_loopback(obs.flow.dst):
            if process is not None:
                self._asked.put(key, _Asked(process, obs.ts, event.attribution.method))
            return event
        if _is_loopback(obs.flow.src) or _is_loopback(obs.flow.dst):
            return event  # the stub's answer to the application, already the application's
        asked = self._asked.get(key)
        if asked is None or not 0 <= obs.ts - asked.ts <= self._window:
            return event
        if process is not None and process.pid == asked.process.pid:
            return event  # the application asked upstream itself
        resolver = process.name if process is not None else event.attribution.status
        attribution = Attribution(f"relayed:{resolver}", asked.process, asked.method)
        relayed[obs.flow] = attribution
        return dataclasses.replace(event, attribution=attribution, tool=asked.process.tool)

    @staticmethod
    def _flow(event: Event, relayed: dict[FlowKey, Attribution]) -> Event:
        attribution = relayed.get(event.observation.flow)
        if event.observation.kind != "flow" or attribution is None:
            return event
        assert attribution.process is not None
        return dataclasses.replace(event, attribution=attribution, tool=attribution.process.tool)
