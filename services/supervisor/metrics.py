"""A player's Prometheus metrics, for all three of its processes, from the Maestro.

How this works. The Distributor and the Requestor already send their counters
with every heartbeat; the Maestro keeps the latest set of each child (a dict
replaced whole per beat) next to its own supervision state. :class:`PlayerCollector`
reads those, plus per-library progress from ``state.db`` (a connection of its
own, opened per scrape), and yields metric families: no multiprocess mode, no
shared files. It runs in prometheus_client's HTTP thread for ``/metrics`` and in
the Maestro's loop for ``emma metrics`` (over the control socket), one producer
for both. Child counters restart at zero when the child does; Prometheus's
``rate()`` reads that as a counter reset, as it should.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily
from prometheus_client.registry import Collector

from services.peer.requestor_logic import WRITE_BUCKET, WRITE_SUM_US
from services.peer.state import State, Status
from services.runtime.latency import BUCKETS, cumulative


@dataclass(frozen=True)
class ServiceView:
    """One supervised service as a scrape sees it."""

    name: str
    up: bool
    restarts: int
    counters: dict[str, int]


class PlayerView(Protocol):
    def service_views(self) -> list[ServiceView]: ...


# (process, its counter, metric name, help): the counters that are exported as they are
_COUNTERS: tuple[tuple[str, str, str, str], ...] = (
    ("distributor", "bytes_sent", "emma_player_sent_bytes", "Book payload bytes sent to other players."),
    ("distributor", "books_sent", "emma_player_books_sent", "Books sent to other players."),
    ("requestor", "bytes_received", "emma_player_received_bytes", "Book payload bytes received."),
    ("requestor", "bytes_wasted", "emma_player_wasted_bytes",
     "Received bytes not kept: bad hashes, duplicates in endgame, books landed too late."),
    ("requestor", "books", "emma_player_books_verified", "Books that passed verification and were written."),
    ("requestor", "bad_books", "emma_player_books_failed", "Books that failed verification."),
    ("maestro", "bad_heartbeats", "emma_maestro_dropped_heartbeats",
     "Frames on the heartbeat socket that were not a beat of a live child."),
    ("maestro", "bad_control_messages", "emma_maestro_dropped_control_messages", "Malformed control messages."),
    ("maestro", "late_turns", "emma_maestro_late_turns",
     "Loop turns the Maestro came late to (starved or busy); no child is blamed for them."),
)
_GAUGES = (
    ("requestor", "peers", "emma_player_peers", "Players the Requestor is connected to."),
    ("requestor", "requests_in_flight", "emma_player_requests_in_flight", "Book requests sent and not answered."),
)


class PlayerCollector(Collector):
    def __init__(self, view: PlayerView, state_db: Path, library_label: Callable[[], bool]) -> None:
        self.view = view
        self.state_db = state_db
        self.library_label = library_label

    def collect(self) -> Iterator[CounterMetricFamily | GaugeMetricFamily | HistogramMetricFamily]:
        services = self.view.service_views()
        up = GaugeMetricFamily("emma_service_up", "1 when the service is running.", labels=["service"])
        restarts = CounterMetricFamily("emma_service_restarts", "Restarts by the Maestro.", labels=["service"])
        for service in services:
            up.add_metric([service.name], 1 if service.up else 0)
            restarts.add_metric([service.name], service.restarts)
        yield up
        yield restarts
        counters = {service.name: service.counters for service in services}
        for child, key, name, text in _COUNTERS:
            yield CounterMetricFamily(name, text, value=counters.get(child, {}).get(key, 0))
        for child, key, name, text in _GAUGES:
            yield GaugeMetricFamily(name, text, value=counters.get(child, {}).get(key, 0))
        requestor = counters.get("requestor", {})
        buckets = [requestor.get(f"{WRITE_BUCKET}{i}", 0) for i in range(len(BUCKETS) + 1)]
        yield HistogramMetricFamily("emma_player_disk_write_seconds", "Time to write one verified book.",
                                    buckets=cumulative(buckets), sum_value=requestor.get(WRITE_SUM_US, 0) / 1e6)
        if self.library_label():
            yield from self._libraries()

    def _libraries(self) -> Iterator[GaugeMetricFamily]:
        progress = GaugeMetricFamily("emma_player_library_progress_ratio", "Share of the library's books held.",
                                     labels=["library", "name"])
        completion = GaugeMetricFamily("emma_player_library_completion_seconds",
                                       "Seconds from adding the library to holding all of it (downloads only).",
                                       labels=["library", "name"])
        if self.state_db.exists():
            state = State(self.state_db)
            try:
                records = state.all()
            finally:
                state.close()
            for record in records:
                labels = [record.id, record.name]
                progress.add_metric(labels, len(record.have) / record.books if record.books else 1.0)
                if record.status is Status.SEEDING and record.completed_at is not None and record.fetched:
                    completion.add_metric(labels, max(0.0, record.completed_at - record.added_at))
        yield progress
        yield completion
