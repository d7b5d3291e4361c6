"""Metrics without a swarm: the page format, the endpoint's HTTP, the collectors' names, the settings."""

from __future__ import annotations

import json
import re
import socket
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
import zmq
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.parser import text_string_to_metric_families

from services.hub.logic import HubLogic
from services.hub.metrics import PUBLISH_EVERY, HubCollector
from services.hub.model import HubLimits
from services.hub.store_memory import MemoryStore
from services.runtime.config import Config, ConfigError
from services.runtime.metrics_http import MetricsEndpoint, render
from services.supervisor.metrics import PlayerCollector, ServiceView
from services.wire.pb import hub_pb2


class Odd:
    """A collector whose label values need escaping."""

    def collect(self) -> Iterator[CounterMetricFamily | GaugeMetricFamily]:
        family = GaugeMetricFamily("emma_test_odd", "quotes \" and \\ and\nnewlines", labels=["name"])
        family.add_metric(['a "quoted" \\ name\nwith a newline'], 2.5)
        yield family
        yield CounterMetricFamily("emma_test_things", "things", value=3)


def samples(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    return {(s.name, tuple(sorted(s.labels.items()))): s.value
            for family in text_string_to_metric_families(text) for s in family.samples}


def test_render_reads_back_as_prometheus_client_writes_it() -> None:
    registry = CollectorRegistry(auto_describe=False)
    registry.register(Odd())
    ours = render(registry).decode()
    assert samples(ours) == samples(generate_latest(registry).decode())
    assert "emma_test_things_total 3.0" in ours


def test_the_hub_exports_requests_by_operation_and_code() -> None:
    logic = HubLogic(MemoryStore(), HubLimits(rate=0), started_at=0.0)
    logic.handle(b"c", hub_pb2.HubRequest(version=1, health=hub_pb2.Health()).SerializeToString(), 1.0)
    logic.handle(b"c", b"\xff", 1.0)
    logic.publish(1.0)
    registry = CollectorRegistry(auto_describe=False)
    registry.register(HubCollector(lambda: logic.snapshot, library_label=False))
    got = samples(render(registry).decode())
    assert got[("emma_hub_requests_total", (("code", "OK"), ("operation", "health")))] == 1
    assert got[("emma_hub_requests_total", (("code", "MALFORMED"), ("operation", "invalid")))] == 1
    assert not any(name.startswith("emma_hub_library_") for name, _ in got)  # the label turned off


class Player:
    def service_views(self) -> list[ServiceView]:
        return [ServiceView("maestro", True, 0, {"late_turns": 2}),
                ServiceView("requestor", False, 2, {"bytes_received": 10, "write_seconds_bucket_3": 4}),
                ServiceView("distributor", True, 0, {"bytes_sent": 7})]


def test_the_player_exports_child_counters_restarts_and_the_write_histogram(tmp_path: Path) -> None:
    registry = CollectorRegistry(auto_describe=False)
    registry.register(PlayerCollector(Player(), tmp_path / "state.db", lambda: True))
    got = samples(render(registry).decode())
    assert got[("emma_service_up", (("service", "requestor"),))] == 0
    assert got[("emma_service_restarts_total", (("service", "requestor"),))] == 2
    assert got[("emma_player_received_bytes_total", ())] == 10
    assert got[("emma_player_sent_bytes_total", ())] == 7
    assert got[("emma_maestro_late_turns_total", ())] == 2
    assert got[("emma_player_disk_write_seconds_count", ())] == 4
    assert got[("emma_player_disk_write_seconds_bucket", (("le", "0.0005"),))] == 0
    assert got[("emma_player_disk_write_seconds_bucket", (("le", "0.001"),))] == 4


def get(port: int, request: bytes) -> bytes:
    """Send ``request`` and read until the server closes the connection."""
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        sock.sendall(request)
        reply = b""
        while chunk := sock.recv(65536):
            reply += chunk
    return reply


@pytest.fixture
def endpoint() -> Iterator[tuple[MetricsEndpoint, int]]:
    context: zmq.Context[zmq.Socket[bytes]] = zmq.Context()
    served = MetricsEndpoint(context, "127.0.0.1:0", Odd())
    port = int(served.url.rsplit(":", 1)[1].split("/")[0])
    yield served, port
    served.close()
    context.term()


def serve_while(endpoint: MetricsEndpoint, request: bytes, port: int) -> bytes:
    """Send ``request`` from a thread while the endpoint's owner loop (here) answers it."""
    reply: list[bytes] = []
    client = threading.Thread(target=lambda: reply.append(get(port, request)))
    client.start()
    poller = zmq.Poller()
    for sock in endpoint.sockets():
        poller.register(sock, zmq.POLLIN)
    while client.is_alive():
        if poller.poll(50):
            endpoint.handle()
    client.join()
    return reply[0]


def test_the_endpoint_answers_get_metrics_and_nothing_else(endpoint: tuple[MetricsEndpoint, int]) -> None:
    served, port = endpoint
    page = serve_while(served, b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n", port)
    head, _, body = page.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 200 OK") and b"Content-Type: text/plain" in head
    assert samples(body.decode())[("emma_test_things_total", ())] == 3
    missing = serve_while(served, b"POST /admin HTTP/1.1\r\n\r\n", port)
    assert missing.startswith(b"HTTP/1.1 404")
    huge = serve_while(served, b"GET /metrics" + b"x" * 20_000, port)  # no end of head within the bound
    assert huge == b""
    assert served.scrapes == 1


@pytest.mark.parametrize("good", ["", "127.0.0.1:9102", "[::1]:0", "metrics.example:9102"])
def test_metrics_bind_takes_empty_or_host_port(tmp_path: Path, good: str) -> None:
    config = Config(data_dir=tmp_path, values={})
    config.set("metrics.bind", good)


@pytest.mark.parametrize("bad", ["9102", "127.0.0.1:99999", "127.0.0.1:x", ":9102", 5])
def test_metrics_bind_refuses_what_cannot_be_bound(tmp_path: Path, bad: object) -> None:
    config = Config(data_dir=tmp_path, values={})
    with pytest.raises(ConfigError):
        config.set("metrics.bind", bad)


def test_every_metric_the_dashboard_plots_is_exported(tmp_path: Path) -> None:
    logic = HubLogic(MemoryStore(), HubLimits(rate=0), started_at=0.0)
    logic.publish(0.0)
    registry = CollectorRegistry(auto_describe=False)
    registry.register(HubCollector(lambda: logic.snapshot))
    registry.register(PlayerCollector(Player(), tmp_path / "state.db", lambda: True))
    exported = render(registry).decode()
    names = {line.split()[2] for line in exported.splitlines() if line.startswith("# TYPE")}
    names |= {f"{name}_bucket" for name in names}
    dashboard = json.loads((Path(__file__).parents[2] / "docs" / "grafana-dashboard.json").read_text())
    plotted = {name for panel in dashboard["panels"] for target in panel["targets"]
               for name in re.findall(r"emma_[a-z_]+", target["expr"])}
    assert plotted and plotted <= names, plotted - names


def test_the_hub_makes_snapshots_only_once_one_was_asked_for() -> None:
    logic = HubLogic(MemoryStore(), HubLimits(rate=0), started_at=0.0)
    logic.tick(5.0)
    assert logic.snapshot is None  # no metrics served: the libraries are not walked for them
    first = logic.publish(5.0)
    logic.tick(5.0 + 2 * PUBLISH_EVERY)
    assert logic.snapshot is not None and logic.snapshot is not first
