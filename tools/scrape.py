"""A scraper that hammers a /metrics endpoint from a thread, for the benchmarks' metrics-on runs.

It speaks just enough HTTP over a plain socket: on a 2-core machine the scraper
shares the CPU with what it measures, and urllib cost several times more per scrape.
"""

from __future__ import annotations

import socket
import threading
import time
from urllib.parse import urlsplit


class Scraper(threading.Thread):
    """GETs ``url`` ``per_second`` times a second until :meth:`stop`; counts scrapes and failures."""

    def __init__(self, url: str, per_second: float = 20.0) -> None:
        super().__init__(name="bench-scraper", daemon=True)
        parts = urlsplit(url)
        self.address = (parts.hostname or "127.0.0.1", parts.port or 80)
        self.request = f"GET {parts.path or '/'} HTTP/1.0\r\nHost: {parts.netloc}\r\n\r\n".encode()
        self.period = 1.0 / per_second
        self.scrapes = 0
        self.failures = 0
        self._stopped = threading.Event()

    def run(self) -> None:
        due = time.monotonic()
        while True:
            due += self.period  # on a schedule: a slow scrape does not lower the rate asked for
            if self._stopped.wait(max(0.0, due - time.monotonic())):
                return
            try:
                with socket.create_connection(self.address, timeout=5) as sock:
                    sock.sendall(self.request)
                    reply = b""
                    while chunk := sock.recv(65536):
                        reply += chunk
                ok = reply.startswith(b"HTTP/1.1 200")
            except OSError:
                ok = False
            if ok:
                self.scrapes += 1
            else:
                self.failures += 1

    def stop(self) -> None:
        self._stopped.set()
        self.join(10)
