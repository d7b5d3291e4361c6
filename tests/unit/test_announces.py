"""When the Distributor announces: periodic announces, the backoff of failed ones (fake clock, seeded random),
and how announces are grouped into batches for the hub."""

from __future__ import annotations

import random

from services.peer.announces import ANNOUNCE_DEFAULT, Announces
from services.peer.hublink import MAX_BATCH, AnnounceBatchJob, AnnounceJob, batches

A, B = b"A" * 32, b"B" * 32


class Highest(random.Random):
    """Every jitter at its top: the backoff's own doubling shows."""

    def uniform(self, a: float, b: float) -> float:
        return b


def test_a_sent_announce_is_due_again_after_the_default_or_the_interval_the_hub_names() -> None:
    announces = Announces(random.Random(1))
    announces.sent(A, 100.0)
    announces.sent(B, 100.0)
    assert announces.due(100.0 + ANNOUNCE_DEFAULT - 0.01) == []
    announces.answered(B, 101.0, 600.0)
    assert announces.due(100.0 + ANNOUNCE_DEFAULT) == [A]
    assert announces.due(701.0) == [A, B]


def test_failures_back_off_doubling_to_a_cap_and_an_answer_resets_it() -> None:
    announces = Announces(Highest(), first=2.0, most=30.0)
    announces.sent(A, 0.0)
    assert [announces.failed(A, 0.0) for _ in range(6)] == [2.0, 4.0, 8.0, 16.0, 30.0, 30.0]
    assert announces.due(29.9) == [] and announces.due(30.0) == [A]
    announces.answered(A, 30.0, 0.0)
    assert announces.failed(A, 30.0) == 2.0


def test_the_retries_of_many_libraries_are_spread_not_in_step() -> None:
    announces = Announces(random.Random(7), first=2.0)
    libraries = [n.to_bytes(32, "big") for n in range(1000)]
    for library_id in libraries:
        announces.sent(library_id, 0.0)
    delays = [announces.failed(library_id, 0.0) for library_id in libraries]
    assert all(1.0 <= delay <= 2.0 for delay in delays)
    assert max(delays) - min(delays) > 0.9  # spread over (nearly) the whole half-to-full range
    assert len(announces.due(1.5)) < 700  # not all at once


def test_a_library_no_longer_served_is_not_retried() -> None:
    announces = Announces(random.Random(1))
    announces.sent(A, 0.0)
    announces.forget(A)
    assert announces.failed(A, 0.0) == 0.0
    assert announces.due(1e9) == []


def job(n: int, hubs: tuple[str, ...] = ("tcp://h:1",), keys: tuple[str, ...] = ()) -> AnnounceJob:
    return AnnounceJob(library_id=n.to_bytes(32, "big"), hubs=hubs, player_id=b"p" * 16, endpoint="tcp://*:1",
                       event=1, uploaded=0, downloaded=0, left=0, hub_keys=keys)


def test_announces_to_the_same_hubs_go_together_in_batches_of_at_most_max_batch() -> None:
    jobs = [job(n) for n in range(MAX_BATCH + 1)] + [job(900, hubs=("tcp://other:1",))]
    sent = batches(jobs)
    assert [type(item).__name__ for item in sent] == ["AnnounceBatchJob", "AnnounceJob", "AnnounceJob"]
    first = sent[0]
    assert isinstance(first, AnnounceBatchJob) and first.jobs == tuple(jobs[:MAX_BATCH])
    assert sent[1:] == [jobs[MAX_BATCH], jobs[-1]]


def test_the_same_hubs_with_other_keys_are_another_batch() -> None:
    sent = batches([job(1, keys=("k1",)), job(2, keys=("k1",)), job(3, keys=("k2",))])
    assert [len(item.jobs) if isinstance(item, AnnounceBatchJob) else 1 for item in sent] == [2, 1]
