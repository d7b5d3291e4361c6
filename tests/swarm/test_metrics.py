"""Metrics scraped over HTTP from a real hub and a real player during a small swarm, checked against its truth."""

from __future__ import annotations

import re
import time
import urllib.request
from collections.abc import Callable
from pathlib import Path

import pytest
import zmq
from prometheus_client.parser import text_string_to_metric_families

from services.runtime import config as config_mod
from services.runtime.rundir import metrics_url_file, run_dir
from services.supervisor.control_client import ControlClient
from services.wire.curve import KeyPair, connect_curve
from tools.swarm import Swarm

pytestmark = pytest.mark.slow
BOOK = 16 * 1024
Samples = dict[tuple[str, tuple[tuple[str, str], ...]], float]


def scrape(url: str) -> Samples:
    with urllib.request.urlopen(url, timeout=10) as reply:
        text = reply.read().decode()
    return parse(text)


def parse(text: str) -> Samples:
    return {(s.name, tuple(sorted(s.labels.items()))): s.value
            for family in text_string_to_metric_families(text) for s in family.samples}


def value(samples: Samples, metric: str, **labels: str) -> float:
    return samples.get((metric, tuple(sorted(labels.items()))), 0.0)


def eventually(url: str, check: Callable[[Samples], bool], what: str, timeout: float = 60.0) -> Samples:
    """Scrape until ``check`` holds (counters travel with heartbeats); fail after ``timeout``."""
    deadline = time.monotonic() + timeout
    while True:
        samples = scrape(url)
        if check(samples):
            return samples
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.1)


def hub_metrics_url(swarm: Swarm) -> str:
    assert swarm.hub is not None
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        found = re.search(r"http://\S+/metrics", swarm.hub.log_path.read_text())
        if found:
            return found.group(0)
        time.sleep(0.05)
    raise AssertionError("the hub did not print its metrics address")


def test_hub_and_player_metrics_tell_the_truth_of_a_swarm(tmp_path: Path, stuff: Callable[..., Path]) -> None:
    source = stuff("measured.bin", 50 * BOOK + 77)
    with Swarm(tmp_path / "swarm", maestro=True, hub_args=("--metrics", "127.0.0.1:0")) as swarm:
        hub_endpoint = swarm.start_hub()
        hub_url = hub_metrics_url(swarm)
        seed, leecher = swarm.add_player("seed"), swarm.add_player("leecher")
        config = config_mod.load(leecher.data_dir)
        config.set("metrics.bind", "127.0.0.1:0")
        config.save()
        library = swarm.share(seed, source, BOOK)
        swarm.start_player(seed)
        swarm.start_player(leecher)
        swarm.wait_serving([seed, leecher])
        url = metrics_url_file(run_dir(leecher.data_dir)).read_text()
        swarm.give(leecher, library)
        swarm.wait_complete(library, [leecher], timeout=60)

        done = eventually(url, lambda s: value(s, "emma_player_books_verified_total") == library.books,
                          "every book verified")
        received = value(done, "emma_player_received_bytes_total")
        wasted = value(done, "emma_player_wasted_bytes_total")
        assert received == library.size + wasted
        assert value(done, "emma_player_library_progress_ratio", library=library.id_hex, name=library.name) == 1.0
        assert value(done, "emma_service_up", service="requestor") == 1.0
        assert value(done, "emma_player_disk_write_seconds_count") == library.books

        snapshot = parse(ControlClient(run_dir(leecher.data_dir)).metrics())  # what `emma metrics` prints
        assert value(snapshot, "emma_player_books_verified_total") == library.books

        swarm.kill_service(leecher, "requestor")
        eventually(url, lambda s: value(s, "emma_service_restarts_total", service="requestor") == 1,
                   "the killed Requestor counted as a restart")

        with zmq.Context() as context, context.socket(zmq.DEALER) as dealer:
            dealer.linger = 0
            connect_curve(dealer, KeyPair.generate(), swarm.hub_key)
            dealer.connect(hub_endpoint)
            dealer.send(b"\xff not a request")
            assert dealer.poll(10_000)
        eventually(hub_url, lambda s: value(s, "emma_hub_requests_total", operation="invalid", code="MALFORMED") == 1,
                   "the malformed request counted under its code")
        hub = scrape(hub_url)
        assert value(hub, "emma_hub_library_seeders", library=library.id_hex) == 2
        assert value(hub, "emma_hub_requests_total", operation="announce", code="OK") >= 2
        assert value(hub, "emma_hub_request_duration_seconds_count") >= 3
