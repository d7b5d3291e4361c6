"""The ``/metrics`` HTTP endpoint of a hub or a Maestro, answered by the service's own loop.

How this works. A zmq STREAM socket listens on ``HOST:PORT`` and the service's
loop polls it with its other sockets (:meth:`MetricsEndpoint.sockets`,
:meth:`MetricsEndpoint.handle`): a scrape is read until the end of its request
head and answered with the page last rendered, then closed. No thread is
started per scrape and no HTTP server runs beside the loop: a scraper polling
twenty times a second costs the loop a few hundred microseconds a second, not
a thread fighting it for the interpreter.

The page is rendered by one long-lived thread at most once per ``max_age``
seconds, while scrapes keep coming (the services publish their values about once
a second). Collectors must only read values the service loop publishes whole
(see services/hub/metrics.py), so rendering never waits for the loop either.
One registry per process, holding that process's collector only.
"""

from __future__ import annotations

import threading
from typing import Any

import zmq
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry
from prometheus_client.registry import Collector

from services.wire.ids import parse_host_port

MAX_AGE = 5.0  # seconds a rendered page is served again (Prometheus scrapes every 15 s by default)
MAX_HEAD = 8192  # bytes of a request head; more and the connection is closed
MAX_CLIENTS = 64  # scrapes being read at once; more are closed at once
_ESCAPES = str.maketrans({"\\": "\\\\", "\n": "\\n", '"': '\\"'})


def render(registry: CollectorRegistry) -> bytes:
    """The Prometheus text format (0.0.4) of ``registry``, as ``generate_latest`` writes it for the
    metric types our collectors make, and faster."""
    lines: list[str] = []
    for family in registry.collect():
        name = f"{family.name}_total" if family.type == "counter" else family.name
        help_text = family.documentation.replace("\\", "\\\\").replace("\n", "\\n")
        lines.append(f"# HELP {name} {help_text}")
        lines.append(f"# TYPE {name} {family.type}")
        for sample in family.samples:
            labels = ",".join(f'{key}="{str(value).translate(_ESCAPES)}"' for key, value in sample.labels.items())
            number = float(sample.value)
            shown = repr(number) if number == number and abs(number) != float("inf") else (
                "NaN" if number != number else ("+Inf" if number > 0 else "-Inf"))
            lines.append(f"{sample.name}{{{labels}}} {shown}" if labels else f"{sample.name} {shown}")
    lines.append("")
    return "\n".join(lines).encode()


class _Renderer(threading.Thread):
    """Renders the page in the background when asked, at most once per ``max_age``."""

    def __init__(self, registry: CollectorRegistry, max_age: float) -> None:
        super().__init__(name="metrics-render", daemon=True)
        self.registry = registry
        self.max_age = max_age
        self.page = render(registry)  # the first page before anyone asks
        self._wanted = threading.Event()
        self._stopped = threading.Event()

    def want(self) -> None:
        self._wanted.set()

    def run(self) -> None:
        while not self._stopped.is_set():
            if self._stopped.wait(self.max_age):
                return
            self._wanted.wait()
            self._wanted.clear()
            if not self._stopped.is_set():
                self.page = render(self.registry)  # one reference swap: the loop reads it whole

    def stop(self) -> None:
        self._stopped.set()
        self._wanted.set()
        self.join(5)


class MetricsEndpoint:
    """Serves ``collector`` at ``http://HOST:PORT/metrics`` from the owner's loop until :meth:`close`."""

    def __init__(self, context: zmq.Context[Any], bind: str, collector: Collector, max_age: float = MAX_AGE) -> None:
        host, port = parse_host_port(bind)
        self.registry = CollectorRegistry(auto_describe=False)
        self.registry.register(collector)
        self.socket: zmq.Socket[bytes] = context.socket(zmq.STREAM)
        self.socket.linger = 0
        if ":" in host:
            self.socket.ipv6 = True
        try:
            if port == 0:
                port = self.socket.bind_to_random_port(f"tcp://{host if ':' not in host else f'[{host}]'}")
            else:
                self.socket.bind(f"tcp://{host if ':' not in host else f'[{host}]'}:{port}")
        except zmq.ZMQError:
            self.socket.close()
            raise
        self.url = f"http://{host if ':' not in host else f'[{host}]'}:{port}/metrics"
        self._heads: dict[bytes, bytes] = {}
        self._renderer = _Renderer(self.registry, max_age)
        self._renderer.start()
        self.scrapes = 0

    def sockets(self) -> list[zmq.Socket[bytes]]:
        return [self.socket]

    def handle(self) -> None:
        """Read what scrapers sent; answer each complete request head. Bounded work per call."""
        for _ in range(MAX_CLIENTS):
            try:
                client, data = self.socket.recv_multipart(zmq.NOBLOCK)
            except zmq.Again:
                return
            except ValueError:
                continue  # not the two frames a STREAM socket delivers
            if not data:  # connected, or gone
                self._heads.pop(client, None)
                continue
            head = self._heads.get(client, b"") + data
            if b"\r\n\r\n" not in head:
                if len(head) > MAX_HEAD or (client not in self._heads and len(self._heads) >= MAX_CLIENTS):
                    self._close(client)
                else:
                    self._heads[client] = head
                continue
            self._heads.pop(client, None)
            self._answer(client, head)

    def _answer(self, client: bytes, head: bytes) -> None:
        request = head.split(b"\r\n", 1)[0].split(b" ")
        path = request[1].split(b"?", 1)[0] if len(request) >= 2 else b""
        if request[0] != b"GET" or path not in (b"/metrics", b"/"):
            self._reply(client, b"404 Not Found", b"text/plain", b"metrics are at GET /metrics\n")
            return
        self.scrapes += 1
        self._reply(client, b"200 OK", CONTENT_TYPE_LATEST.encode(), self._renderer.page)
        self._renderer.want()

    def _reply(self, client: bytes, status: bytes, kind: bytes, body: bytes) -> None:
        head = (b"HTTP/1.1 " + status + b"\r\nContent-Type: " + kind + b"\r\nContent-Length: "
                + str(len(body)).encode() + b"\r\nConnection: close\r\n\r\n")
        try:
            self.socket.send_multipart([client, head + body], zmq.NOBLOCK)
        except zmq.ZMQError:
            pass  # gone, or not reading: nothing is owed to it
        self._close(client)

    def _close(self, client: bytes) -> None:
        self._heads.pop(client, None)
        try:
            self.socket.send_multipart([client, b""], zmq.NOBLOCK)
        except zmq.ZMQError:
            pass

    def close(self) -> None:
        self._renderer.stop()
        self.socket.close(linger=0)


def exposition(collector: Collector) -> str:
    """The Prometheus text format of ``collector`` (for a snapshot without HTTP, e.g. ``emma metrics``)."""
    registry = CollectorRegistry(auto_describe=False)
    registry.register(collector)
    return render(registry).decode()
