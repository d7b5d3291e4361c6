"""A Requestor's heartbeat with every per-download counter set still fits the frame the Maestro accepts."""

from __future__ import annotations

from services.peer.requestor_logic import hub_counter, peers_counter, refused_counter, stalled_counter
from services.runtime.heartbeat import MAX_BEAT_BYTES
from services.wire.pb import control_pb2

DOWNLOADS = 3000  # three times the libraries a hub lets one player announce (1,000)


def test_a_beat_of_3000_downloads_with_every_counter_fits() -> None:
    counters = []
    for n in range(DOWNLOADS):
        library = f"{n:064x}"
        for name in (peers_counter(library), hub_counter(library), stalled_counter(library),
                     refused_counter(library)):
            counters.append(control_pb2.Counter(name=name, value=2**63 - 1))  # the longest value
    beat = control_pb2.Heartbeat(service="requestor", pid=2**22, state="running", counters=counters)
    assert len(beat.SerializeToString()) < MAX_BEAT_BYTES
