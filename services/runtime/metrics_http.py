"""The ``/metrics`` HTTP endpoint a hub or a Maestro serves, from prometheus_client's own thread.

One registry per process, holding that process's collector only (no default
process or platform collectors, no global registry). The server is a daemon
thread of prometheus_client; collectors must only read values the service loop
publishes whole (see services/hub/metrics.py), so a scrape never blocks the loop.
"""

from __future__ import annotations

from wsgiref.simple_server import WSGIServer

from prometheus_client import CollectorRegistry, generate_latest, start_http_server
from prometheus_client.registry import Collector

from services.wire.ids import parse_host_port


class MetricsServer:
    """Serves ``collector`` at ``http://HOST:PORT/metrics`` until :meth:`close`."""

    def __init__(self, bind: str, collector: Collector) -> None:
        host, port = parse_host_port(bind)
        self.registry = CollectorRegistry(auto_describe=False)
        self.registry.register(collector)
        self._server: WSGIServer
        self._server, self._thread = start_http_server(port, addr=host, registry=self.registry)
        bound_host, bound_port = self._server.server_address[:2]
        self.url = f"http://{host if ':' not in host else f'[{host}]'}:{bound_port}/metrics"
        self.address = (str(bound_host), int(bound_port))

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(5)


def exposition(collector: Collector) -> str:
    """The Prometheus text format of ``collector`` (for a snapshot without HTTP, e.g. ``emma metrics``)."""
    registry = CollectorRegistry(auto_describe=False)
    registry.register(collector)
    return generate_latest(registry).decode()
