"""Prometheus metrics, collected at scrape time from the store's summary tables and the
agent's status row (the web process has no counters of its own worth exporting).
"""

import time
from collections.abc import Iterator, Mapping

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from egresswatch.store.database import Store
from egresswatch.store.schema import AlertRow, Destination, DestinationTool
from egresswatch.store.status import read_statuses

# (metric name, help, counter-name prefix, label) for counters the agent reports per reason.
_BY_REASON = (
    ("egresswatch_agent_events", "Events the agent emitted, by kind.", "agent.emitted.", "kind"),
    (
        "egresswatch_capture_dropped",
        "Frames dropped before decoding.",
        "capture.dropped.",
        "reason",
    ),
    (
        "egresswatch_attribution",
        "Attribution results by status (exact, or the reason for a miss).",
        "agent.attribution.",
        "result",
    ),
    ("egresswatch_store_errors", "Store write failures by kind.", "store.error.", "kind"),
    (
        "egresswatch_store_dropped",
        "Events the store refused, by reason.",
        "store.dropped.",
        "reason",
    ),
)


_SETTLED = (
    "store.written",
    "store.dropped.invalid",
    "store.dropped.shutdown",
    "spool.dropped",
    "spool.duplicates_skipped",
)
# the writer's local spool while the store is unreachable (docs/fleet.md, "Spool")
_SPOOL_GAUGES = (
    ("egresswatch_spool_bytes", "Bytes waiting in the local spool.", "spool.bytes"),
    ("egresswatch_spool_batches", "Batches waiting in the local spool.", "spool.batches"),
)
_SPOOL_COUNTERS = (
    ("egresswatch_spool_dropped_events", "Events the full spool refused.", "spool.dropped"),
    ("egresswatch_spool_drained_events", "Spooled events stored since.", "spool.drained"),
    ("egresswatch_store_retries", "Failed store writes retried later.", "writer.retries"),
)


class StoreCollector(Collector):
    """Reads the metrics from the store on every scrape."""

    def __init__(self, store: Store) -> None:
        self.store = store

    def collect(self) -> Iterator[Metric]:
        yield from self._stored()
        nodes = read_statuses(self.store.engine)
        if not nodes:
            return
        per_node = GaugeMetricFamily(
            "egresswatch_node_status_age_seconds",
            "Seconds since each agent of the store (by [agent] node) last wrote its status.",
            labels=["node"],
        )
        now = time.time()
        for each in nodes:
            per_node.add_metric([each.node], max(0.0, now - each.updated))
        yield per_node
        status = max(nodes, key=lambda s: s.updated)  # the unlabelled gauges: the newest agent
        yield from _by_reason(status.counters)
        yield GaugeMetricFamily(
            "egresswatch_queue_depth",
            "Frames waiting between capture and decode.",
            value=status.queue_depth,
        )
        yield GaugeMetricFamily(
            "egresswatch_status_age_seconds",
            "Seconds since the agent last wrote its status.",
            value=max(0.0, time.time() - status.updated),
        )
        pending = _pending(status.counters)
        yield GaugeMetricFamily(
            "egresswatch_store_lag_events",
            "Events accepted by the writer, not yet stored.",
            value=pending,
        )
        yield from _spool(status.counters)
        if status.last_event_ts is not None:
            yield GaugeMetricFamily(
                "egresswatch_last_event_timestamp_seconds",
                "Time of the newest stored event.",
                value=status.last_event_ts,
            )

    def _stored(self) -> Iterator[Metric]:
        by_category = CounterMetricFamily(
            "egresswatch_events_by_category",
            "Stored events by destination category.",
            labels=["category"],
        )
        by_tool = CounterMetricFamily(
            "egresswatch_events_by_tool", "Stored events by LLM tool.", labels=["tool"]
        )
        category = func.coalesce(Destination.category, "unknown")
        with Session(self.store.engine) as conn:
            for name, n in conn.execute(
                select(category, func.sum(Destination.count)).group_by(category)
            ):
                by_category.add_metric([str(name)], float(n or 0))
            for name, n in conn.execute(
                select(DestinationTool.tool, func.sum(DestinationTool.count)).group_by(
                    DestinationTool.tool
                )
            ):
                by_tool.add_metric([str(name)], float(n or 0))
            alerts = CounterMetricFamily(
                "egresswatch_alerts", "Alerts by severity and state.", labels=["severity", "state"]
            )
            for severity, acked, n in conn.execute(
                select(AlertRow.severity, AlertRow.acknowledged, func.count()).group_by(
                    AlertRow.severity, AlertRow.acknowledged
                )
            ):
                alerts.add_metric([str(severity), "acknowledged" if acked else "open"], float(n))
        yield by_category
        yield by_tool
        yield alerts


def _by_reason(counters: Mapping[str, int]) -> Iterator[Metric]:
    for name, help_text, prefix, label in _BY_REASON:
        family = CounterMetricFamily(name, help_text, labels=[label])
        for key, value in counters.items():
            if key.startswith(prefix):
                family.add_metric([key.removeprefix(prefix)], float(value))
        yield family


def _spool(counters: Mapping[str, int]) -> Iterator[Metric]:
    for name, help_text, key in _SPOOL_GAUGES:
        yield GaugeMetricFamily(name, help_text, value=counters.get(key, 0))
    for name, help_text, key in _SPOOL_COUNTERS:
        yield CounterMetricFamily(name, help_text, value=counters.get(key, 0))


def _pending(counters: Mapping[str, int]) -> int:
    # Refusals at submit (queue_full, closed) never count as submitted; these settle an event.
    settled = sum(counters.get(k, 0) for k in _SETTLED)
    return max(0, counters.get("store.submitted", 0) - settled)
