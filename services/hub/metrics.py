"""The hub's Prometheus metrics: counted by the loop, exported from a snapshot by the scrape thread.

How this works. The loop counts as it goes, at the cost of a dict update per
request: :class:`HubLogic` counts requests by operation and result code, the
broker times each request into a ``Latency`` (services/runtime/latency.py:
fixed buckets, a bisect; far cheaper than a locked histogram per request). About once a second the loop
publishes a :class:`HubSnapshot`, an immutable value; the HTTP thread of
``prometheus_client`` only ever reads the latest snapshot (one reference read),
so a scrape never waits for the loop nor makes it wait, and never sees a
table while it changes.

Names follow Prometheus conventions: the ``emma_hub_`` prefix, base units,
``_total`` on counters. The per-library seeders and leechers carry a
``library`` label whose cardinality is the number of libraries: an operator
can turn it off (``emma hub --no-metrics-library-label``).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily
from prometheus_client.registry import Collector

from services.runtime.latency import cumulative

PUBLISH_EVERY = 1.0  # seconds between snapshots


@dataclass(frozen=True)
class HubSnapshot:
    """What a scrape exports; built by the loop, never changed afterwards."""

    requests: tuple[tuple[str, str, int], ...]  # (operation, code, count)
    latency: tuple[int, ...]
    latency_sum: float
    players: int
    libraries: int
    swarms: tuple[tuple[str, int, int], ...]  # (library id hex, seeders, leechers)
    reports: int
    store_errors: int


class HubCollector(Collector):
    """Exports the latest snapshot ``source()`` returns (None before the first one)."""

    def __init__(self, source: Callable[[], HubSnapshot | None], library_label: bool = True) -> None:
        self.source = source
        self.library_label = library_label

    def collect(self) -> Iterator[CounterMetricFamily | GaugeMetricFamily | HistogramMetricFamily]:
        snap = self.source()
        if snap is None:
            return
        requests = CounterMetricFamily("emma_hub_requests", "Requests answered, by operation and result code.",
                                       labels=["operation", "code"])
        for operation, code, count in snap.requests:
            requests.add_metric([operation, code], count)
        yield requests
        yield HistogramMetricFamily("emma_hub_request_duration_seconds", "Time to answer one request.",
                                    buckets=cumulative(snap.latency), sum_value=snap.latency_sum)
        yield GaugeMetricFamily("emma_hub_players", "Distinct live players.", value=snap.players)
        yield GaugeMetricFamily("emma_hub_libraries", "Libraries with at least one live player.",
                                value=snap.libraries)
        if self.library_label:
            seeders = GaugeMetricFamily("emma_hub_library_seeders", "Live seeders per library.", labels=["library"])
            leechers = GaugeMetricFamily("emma_hub_library_leechers", "Live leechers per library.",
                                         labels=["library"])
            for library, seeds, leeches in snap.swarms:
                seeders.add_metric([library], seeds)
                leechers.add_metric([library], leeches)
            yield seeders
            yield leechers
        yield CounterMetricFamily("emma_hub_unreachable_reports", "Unreachable reports received.",
                                  value=snap.reports)
        yield CounterMetricFamily("emma_hub_store_errors", "Requests that failed inside the hub (store or bug).",
                                  value=snap.store_errors)
