"""What a library row says: the state word and its reason, current rates, ETA and ratio (no sockets)."""

from __future__ import annotations

from pathlib import Path

import pytest

from services.peer.bitfield import Bitfield
from services.peer.state import LibraryRecord, Status
from services.supervisor.download_view import Live, RateMeter, Shown, current_rates, eta, ratio, state_word

HUBS = ("tcp://hub.example:7070",)
MIB = 1 << 20


def record(status: Status = Status.DOWNLOADING, reason: str = "", downloaded: int = 0, uploaded: int = 0
           ) -> LibraryRecord:
    return LibraryRecord(id="ab" * 32, lib_path=Path("/l"), stuff_path=Path("/s"), name="x", size=100 * MIB,
                         books=10, status=status, have=Bitfield(10), uploaded=uploaded, downloaded=downloaded,
                         fetched=0, added_at=0.0, completed_at=None, reason=reason)


@pytest.mark.parametrize(("live", "shown"), [
    (Live(), Shown("waiting", "asking the hub tcp://hub.example:7070")),
    (Live(hub_answered=True), Shown("waiting", "no peers yet")),
    (Live(hub_answered=True, peers=2), Shown("downloading")),
    (Live(hub_answered=True, peers=1, stalled=3), Shown("stalled", "no source for 3 books")),
    (Live(hub_answered=True, stalled=1), Shown("stalled", "no source for 1 book")),
    (Live(hub_answered=True, hub_named_nobody=True, stalled=4), Shown(
        "waiting", "no peers yet: the hub knows no other player of this library")),
    (Live(hub_answered=True, peers=1, refused=3), Shown("refused", "not authorised by hub and 1 peer: our key is "
                                                                   "not on their allowlist (emma logs says more)")),
])
def test_a_download_says_why_it_is_not_fetching(live: Live, shown: Shown) -> None:
    assert state_word(record(), live, HUBS) == shown


def test_an_unreachable_hub_is_named_with_since_when() -> None:
    # the hubs stopped answering 90 s before now (monotonic 1000), which is 02:51:30 UTC on the wall
    wall = 1_796_007_090.0  # 2026-11-30 02:51:30 UTC
    shown = state_word(record(), Live(hub_answered=True, hub_down_since=910.0), HUBS, wall=wall, mono=1000.0)
    assert shown == Shown("waiting", "hub tcp://hub.example:7070 unreachable since 02:50:00 UTC", wall - 90)


def test_states_of_the_user_and_of_errors_carry_their_reason() -> None:
    assert state_word(record(Status.PAUSED), Live(), HUBS) == Shown("paused")
    assert state_word(record(Status.SEEDING), Live(), HUBS) == Shown("seeding")
    assert state_word(record(Status.STOPPED), Live(), HUBS) == Shown(
        "paused", "complete; not seeding (`emma resume` seeds it again)")
    assert state_word(record(Status.STOPPED, "seeding ratio 2 reached"), Live(), HUBS).detail == (
        "seeding ratio 2 reached")
    failed = record(Status.ERROR, "cannot write /dl/x.part: read-only file system; check the downloads folder")
    assert state_word(failed, Live(), HUBS) == Shown("error", failed.reason)
    assert state_word(record(Status.ERROR), Live(), HUBS).detail.startswith("see `emma logs errors`")


def test_eta_and_ratio() -> None:
    assert eta(100 * MIB, 10, 5, MIB) == 50.0
    assert eta(100 * MIB, 10, 5, 0.0) == 0.0  # unknown without a rate
    assert eta(100 * MIB, 10, 10, MIB) == 0.0  # nothing left
    assert ratio(150 * MIB, 100 * MIB) == 1.5
    assert ratio(5, 0) == 0.0


def test_finished_paused_and_stopped_rows_show_no_stale_rate() -> None:
    assert current_rates(Status.DOWNLOADING, 10.0, 5.0) == (10.0, 5.0)
    assert current_rates(Status.SEEDING, 10.0, 5.0) == (0.0, 5.0)
    assert current_rates(Status.PAUSED, 10.0, 5.0) == (0.0, 5.0)  # a paused download still serves its books
    assert current_rates(Status.STOPPED, 10.0, 5.0) == (0.0, 0.0)
    assert current_rates(Status.ERROR, 10.0, 5.0) == (0.0, 0.0)


def test_rates_are_measured_over_the_last_seconds_only() -> None:
    meter = RateMeter(window=5.0)
    meter.sample([record(downloaded=0)], 0.0)
    assert meter.of("ab" * 32) == (0.0, 0.0)  # one sample: no rate yet
    meter.sample([record(downloaded=10 * MIB)], 1.0)
    assert meter.of("ab" * 32) == (10 * MIB, 0.0)
    for second in range(2, 20):
        meter.sample([record(downloaded=10 * MIB, uploaded=second * MIB)], float(second))
    down, up = meter.of("ab" * 32)
    assert down == 0.0  # the burst at second 1 is out of the window
    assert up == pytest.approx(MIB)
    meter.sample([], 21.0)
    assert meter.of("ab" * 32) == (0.0, 0.0)  # a removed library is forgotten
