"""Announce batches over real sockets: the client's call, and the Distributor's hub worker (HubLink), which
announces one by one to a hub that does not know batches."""

from __future__ import annotations

from collections.abc import Callable, Iterator

import pytest
import zmq

from services.hub.client import HubClient, HubError
from services.hub.client_types import AnnounceResult
from services.peer.hublink import AnnounceBatchJob, AnnounceJob, HubLink, HubResult
from services.wire.pb import common_pb2, hub_pb2
from tests.contract.conftest import RunningHub
from tests.polling import wait_for

ME = b"\x02" * 16
ME_AT = "tcp://10.0.0.2:6881"


def lib(n: int) -> bytes:
    return n.to_bytes(32, "big")


def job(hub: RunningHub, n: int) -> AnnounceJob:
    return AnnounceJob(library_id=lib(n), hubs=(hub.endpoint,), player_id=ME, endpoint=ME_AT,
                       event=hub_pb2.STARTED, uploaded=0, downloaded=0, left=0, numwant=0)


@pytest.fixture
def link(ctx: zmq.Context[zmq.Socket[bytes]]) -> Iterator[HubLink]:
    made = HubLink(ctx, timeout=5.0)
    yield made
    made.close()


def results_of(link: HubLink, count: int) -> list[HubResult]:
    got: list[HubResult] = []

    def all_in() -> bool:
        if link.socket.poll(100):
            got.extend(link.results())
        return len(got) >= count

    wait_for(all_in, 30, f"{count} hub results")
    return got


def test_a_batch_is_answered_announce_by_announce(hub: RunningHub,
                                                  ctx: zmq.Context[zmq.Socket[bytes]]) -> None:
    client = HubClient(hub.endpoint, context=ctx)
    try:
        answers = client.announce_batch([
            hub_pb2.Announce(library_id=lib(n), player_id=ME, endpoint=ME_AT, event=hub_pb2.STARTED) for n in range(3)
        ] + [hub_pb2.Announce(library_id=b"short", player_id=ME, endpoint=ME_AT)])
        assert [type(a) for a in answers] == [AnnounceResult] * 3 + [HubError]
        last = answers[-1]
        assert isinstance(last, HubError) and last.code == common_pb2.INVALID_ARGUMENT
        assert [s.seeders for s in client.scrape([lib(n) for n in range(3)])] == [1, 1, 1]
        assert client.health().requests["announce_batch"] == 1
    finally:
        client.close()


def test_the_hub_worker_sends_a_batch_in_one_request_and_returns_a_result_per_library(
    hub: RunningHub, link: HubLink
) -> None:
    jobs = [job(hub, n) for n in range(50)]
    link.submit(AnnounceBatchJob(tuple(jobs)))
    results = results_of(link, 50)
    assert [r.job for r in results] == jobs and all(r.ok for r in results)
    counts = hub.logic.counts
    assert [counts[kind] for kind in (k for k in counts if k.value in ("announce", "announce_batch"))] == [50, 1]


def test_a_hub_without_batches_is_sent_the_announces_one_by_one(hubs: Callable[..., RunningHub],
                                                                link: HubLink) -> None:
    hub = hubs()
    hub.logic._kinds = frozenset(hub.logic._kinds - {"announce_batch"})  # as a hub of version 1 answers it
    jobs = [job(hub, n) for n in range(5)]
    link.submit(AnnounceBatchJob(tuple(jobs)))
    results = results_of(link, 5)
    assert [r.job for r in results] == jobs and all(r.ok for r in results)
    link.submit(AnnounceBatchJob(tuple(job(hub, n) for n in range(5, 8))))  # no batch tried again
    assert all(r.ok for r in results_of(link, 3))
    counts = {kind.value: count for kind, count in hub.logic.counts.items()}
    assert (counts["announce"], counts["invalid"] + counts["announce_batch"]) == (8, 1)
