"""Prometheus metrics of an UpdateService, read from ``statistics()`` at scrape time.

Needs ``pip install 'refetch[prometheus]'`` (``prometheus-client``). The hub keeps
plain counters and its own latency buckets, so nothing here runs per notify or per
frame: a scrape costs one ``statistics()`` call.

    from refetch.metrics import metrics_app
    app.mount("/metrics", metrics_app(updates))   # Starlette / FastAPI

or, to serve refetch's metrics next to the app's own from the default registry::

    from prometheus_client import REGISTRY
    REGISTRY.register(RefetchCollector(updates))
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING

from ._exceptions import ConfigurationError
from ._hub.front import UpdateService
from ._polling.run import PollerStatistics
from ._polling.worker import BackgroundWorker

try:
    from prometheus_client import CollectorRegistry, make_asgi_app
    from prometheus_client.core import (
        CounterMetricFamily,
        GaugeMetricFamily,
        HistogramMetricFamily,
    )
except ModuleNotFoundError as exc:
    raise ConfigurationError(
        "refetch.metrics needs prometheus-client: pip install 'refetch[prometheus]'"
    ) from exc

if TYPE_CHECKING:
    from prometheus_client.metrics_core import Metric

    from ._types import ASGIApp

__all__ = ["RefetchCollector", "metrics_app"]


class RefetchCollector:
    """A prometheus-client collector for one hub; register it on any registry.

    ``labels`` are added to every sample (e.g. ``{"hub": "admin"}`` when one process
    runs two hubs into one registry). With ``worker`` (the ``BackgroundWorker``) the
    pollers' series are added: polls made and avoided, which pollers are active and why.
    """

    def __init__(
        self,
        service: UpdateService,
        *,
        namespace: str = "refetch",
        labels: dict[str, str] | None = None,
        worker: BackgroundWorker | None = None,
    ) -> None:
        if not isinstance(service, UpdateService):
            raise ConfigurationError(
                f"RefetchCollector takes the UpdateService, not {type(service).__name__}"
            )
        if worker is not None and not isinstance(worker, BackgroundWorker):
            raise ConfigurationError(
                f"RefetchCollector(worker=...) takes the BackgroundWorker, not "
                f"{type(worker).__name__}"
            )
        self.service = service
        self.worker = worker
        self.namespace = namespace
        self.labels = dict(labels or {})

    def _name(self, name: str) -> str:
        return f"{self.namespace}_{name}" if self.namespace else name

    def collect(self) -> Iterator[Metric]:
        stats = self.service.statistics()
        extra_names = list(self.labels)
        extra_values = list(self.labels.values())

        def gauge(name: str, doc: str, value: float) -> GaugeMetricFamily:
            family = GaugeMetricFamily(self._name(name), doc, labels=extra_names)
            family.add_metric(extra_values, value)
            return family

        def counter(name: str, doc: str, value: float) -> CounterMetricFamily:
            family = CounterMetricFamily(self._name(name), doc, labels=extra_names)
            family.add_metric(extra_values, value)
            return family

        def per_type(
            kind: type[GaugeMetricFamily] | type[CounterMetricFamily],
            name: str,
            doc: str,
            values: dict[str, int],
        ) -> GaugeMetricFamily | CounterMetricFamily:
            family = kind(self._name(name), doc, labels=[*extra_names, "type"])
            for type_, value in values.items():
                family.add_metric([*extra_values, type_], value)
            return family

        yield gauge("connections", "Open update streams.", stats.connections)
        yield per_type(
            GaugeMetricFamily,
            "connections_by_type",
            "Open update streams that listen to each update type.",
            stats.connections_by_type,
        )
        yield per_type(
            CounterMetricFamily,
            "updates",
            "Updates delivered by this hub (local notifies, and with a backend, every "
            "instance's), per type.",
            stats.updates_by_type,
        )
        yield per_type(
            CounterMetricFamily,
            "type_deliveries",
            "Invalidate frames that named each update type (one frame can name several).",
            stats.deliveries_by_type,
        )
        yield counter("frames", "Invalidate frames written to streams.", stats.frames)
        yield counter(
            "coalesced",
            "Updates merged into a frame already waiting (per stream).",
            stats.coalesced,
        )
        yield counter("pings", "Heartbeat comments written.", stats.pings)
        yield counter(
            "resyncs", "Resync frames sent (the hub could not tell what was missed).", stats.resyncs
        )
        yield counter(
            "replays", "Resuming streams answered with a replay of what they missed.", stats.replays
        )
        yield counter(
            "slow_disconnects",
            "Streams dropped because no write completed within send_timeout.",
            stats.slow_disconnects,
        )
        yield gauge("replay_log_entries", "Updates held for resuming clients.", stats.replay_log)

        buckets: list[tuple[str, float]] = []
        cumulative = 0
        for bound, count in zip(
            (*stats.latency_bounds, math.inf), stats.latency_counts, strict=True
        ):
            cumulative += count
            buckets.append(("+Inf" if bound == math.inf else repr(bound), cumulative))
        histogram = HistogramMetricFamily(
            self._name("frame_latency_seconds"),
            "How long updates waited from notify() (with a backend: from their publish) "
            "until an invalidate frame carried them out; one count per frame.",
            labels=extra_names,
        )
        if buckets:
            histogram.add_metric(extra_values, buckets, stats.latency_sum)
        yield histogram
        if self.worker is not None:
            yield from self._pollers(extra_names, extra_values)

        if stats.backend is None:
            return  # one process, no broker: no backend metrics
        up = GaugeMetricFamily(
            self._name("backend_up"),
            "1 while the backend accepts publishes / the listener reads the shared stream.",
            labels=[*extra_names, "role", "backend"],
        )
        up.add_metric([*extra_values, "publish", stats.backend], 0 if stats.publisher_down else 1)
        up.add_metric([*extra_values, "listen", stats.backend], 0 if stats.listener_down else 1)
        yield up
        if stats.backend_lag is not None:
            yield gauge(
                "backend_lag_seconds",
                "Seconds from publishing an update to reading it back from the broker, "
                "last measured.",
                stats.backend_lag,
            )

    def _pollers(self, extra_names: list[str], extra_values: list[str]) -> Iterator[Metric]:
        assert self.worker is not None
        pollers = self.worker.statistics()
        names = [*extra_names, "poller"]

        def family(
            kind: type[GaugeMetricFamily] | type[CounterMetricFamily],
            name: str,
            doc: str,
            value: Callable[[PollerStatistics], float],
        ) -> GaugeMetricFamily | CounterMetricFamily:
            found = kind(self._name(name), doc, labels=names)
            for poller, s in pollers.items():
                found.add_metric([*extra_values, poller], value(s))
            return found

        yield family(
            CounterMetricFamily, "poller_polls", "Polls made by this instance.", lambda s: s.polls
        )
        yield family(
            CounterMetricFamily,
            "poller_polls_avoided",
            "Polls an on-demand poller skipped because nobody listened (one per interval).",
            lambda s: s.polls_avoided,
        )
        yield family(
            GaugeMetricFamily,
            "poller_active",
            "1 while the poller polls on this instance.",
            lambda s: 1 if s.active else 0,
        )
        why = GaugeMetricFamily(
            self._name("poller_why"),
            "1 for the reason the poller polls here or not: always, listeners, idle, lease.",
            labels=[*names, "why"],
        )
        for poller, s in pollers.items():
            for reason in WHY:
                why.add_metric([*extra_values, poller, reason], 1 if s.why == reason else 0)
        yield why
        yield family(
            GaugeMetricFamily,
            "poller_listeners",
            "Open streams on this instance that would hear an on-demand poller's notify.",
            lambda s: s.listeners,
        )
        yield family(
            GaugeMetricFamily,
            "poller_listening_instances",
            "Other instances with streams that would hear an on-demand poller's notify.",
            lambda s: s.instances,
        )


#: The values of ``PollerStatistics.why``.
WHY = ("always", "listeners", "idle", "lease")


def metrics_app(
    service: UpdateService,
    *,
    registry: CollectorRegistry | None = None,
    worker: BackgroundWorker | None = None,
) -> ASGIApp:
    """An ASGI app that answers with the Prometheus exposition of ``service``.

    Without ``registry`` it serves a registry of its own holding only the hub's
    metrics (two hubs in one process do not clash); pass one to serve the hub's
    metrics next to everything else registered there. ``worker`` adds the pollers' series.
    """
    if registry is None:
        registry = CollectorRegistry(auto_describe=True)
    registry.register(RefetchCollector(service, worker=worker))
    app: ASGIApp = make_asgi_app(registry)
    return app
