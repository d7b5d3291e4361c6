"""What the Requestor decides, event by event, on a fake clock and without sockets.

Each scenario drives one ``RequestorLogic`` through a ``Scene``: ``s.hub("A")`` is the hub
naming player A, ``s.bitfield("A", "**..")`` is A's handshake answer (``*`` a book it holds),
``s.book("A", 2)`` is book 2 arriving from A and being verified and written (or not, with
``BAD``/``DISK``), ``s.at(t).tick()`` is time passing. Every step returns the actions as
short lines: ``request A 2``, ``cancel A 2``, ``land A 2``, ``notify 2``, ``sync``,
``persist 0 1``, ``report A``, ``drop A``, ``stalled 2``, ``stop paused 0``, ``finish``.
Log actions are left out of the lines (``events`` lists them); so are the hub asks, except
where ``tick(hub=True)`` asks for them.
"""

from __future__ import annotations

import random

import pytest

from services.hub.client_types import PeerInfo
from services.peer import requestor_logic
from services.peer.library import MIN_BOOK_SIZE, HashAlgorithm, Library, hash_bytes, make_library
from services.peer.remote import FIRST_CONTACT
from services.peer.requestor_logic import (
    DEAD_FIRST,
    ERROR_SECONDS,
    HUB_NAMED,
    HUB_NAMED_NOBODY,
    NUMWANT,
    NUMWANT_SEARCHING,
    PEERS_EVERY,
    STALL_GRACE,
    STARVED_FIRST,
    Action,
    AskHub,
    Connect,
    Drop,
    Fail,
    Finish,
    Land,
    Log,
    Notify,
    Persist,
    Report,
    RequestorLogic,
    SendTo,
    Stalled,
    Stop,
    Sync,
    hub_counter,
    peers_counter,
)
from services.peer.writer import Outcome, Written
from services.wire import framing
from services.wire.errors import ErrorCode
from tests.unit.patterns import bits

BOOK = MIN_BOOK_SIZE
ME = b"m" * 16
NAMES = {f"tcp://10.0.0.{i}:7000": name for i, name in enumerate("ABCDEFG", start=1)}
ENDPOINT = {name: endpoint for endpoint, name in NAMES.items()}
OK, BAD, DISK = Outcome.WRITTEN, Outcome.BAD_HASH, Outcome.DISK_ERROR


def library(books: int) -> Library:
    size = max(0, books - 1) * BOOK + 100 if books else 0
    data = bytes(i % 251 for i in range(size))
    hashes = b"".join(hash_bytes(HashAlgorithm.BLAKE3, data[i : i + BOOK]) for i in range(0, size, BOOK))
    return make_library(name="data.bin", size=size, book_size=BOOK, hash_algorithm=HashAlgorithm.BLAKE3,
                        book_hashes=hashes, hubs=("tcp://hub:7070",), created_at=0, creator="test")


def line(action: Action) -> str | None:
    """One action as a short line (None for a log)."""
    if isinstance(action, SendTo):
        message = framing.decode(action.frame)
        kind = message.WhichOneof("body")
        book = {"request": f" {message.request.book}", "cancel": f" {message.cancel.book}"}.get(str(kind), "")
        return f"{kind} {NAMES[action.endpoint]}{book}"
    if isinstance(action, Connect | Drop):
        return f"{type(action).__name__.lower()} {NAMES[action.endpoint]}"
    if isinstance(action, Land):
        return f"land {NAMES[action.endpoint]} {action.book}"
    if isinstance(action, Notify):
        return " ".join(["notify", *map(str, action.books)])
    if isinstance(action, Persist):
        return " ".join(["persist", *map(str, action.have.indices())])
    if isinstance(action, Stop):
        return " ".join(["stop", action.reason, *map(str, action.have.indices())])
    if isinstance(action, Report):
        return f"report {NAMES[action.endpoint]}"
    if isinstance(action, Stalled):
        return f"stalled {action.books}"
    if isinstance(action, AskHub):
        return "ask hub"
    if isinstance(action, Sync | Finish | Fail):
        return type(action).__name__.lower()
    return None


def lines(actions: list[Action]) -> list[str]:
    return [text for text in map(line, actions) if text is not None]


def events(actions: list[Action]) -> list[str]:
    return [action.event for action in actions if isinstance(action, Log)]


def requested(found: list[str]) -> set[str]:
    return {text for text in found if text.startswith("request ")}


class Scene:
    """One library of ``books`` books being downloaded, ``have`` of them durable already."""

    def __init__(self, books: int = 4, have: str = "") -> None:
        self.lib = library(books)
        self.now = 0.0
        self.logic = RequestorLogic(player_id=ME, download_rate=0, now=0.0, rng=random.Random(7))
        self.started = lines(self.logic.add(self.lib, bits(have or "." * books), 0.0))
        self.actions: list[Action] = []  # what the last step returned, logs included

    @property
    def download(self):
        return self.logic.downloads[self.lib.id]

    def at(self, now: float) -> Scene:
        self.now = now
        return self

    def _out(self, actions: list[Action]) -> list[str]:
        self.actions = actions
        return lines(actions)

    def tick(self, hub: bool = False) -> list[str]:
        return [text for text in self._out(self.logic.tick(self.now)) if hub or text != "ask hub"]

    def hub(self, *names: str, ok: bool = True) -> list[str]:
        peers = [PeerInfo(f"player-{name}".encode(), ENDPOINT[name], False) for name in names]
        return self._out(self.logic.hub_answer(self.lib.id, peers, ok, self.now))

    def receive(self, name: str, frame: bytes, payload: object = None) -> list[Action]:
        return self.logic.received(ENDPOINT[name], framing.decode(frame), payload, self.now)

    def bitfield(self, name: str, pattern: str, slots: int = 8) -> list[str]:
        books = bits(pattern)
        return self._out(self.receive(name, framing.bitfield(self.lib.id, books.size, books.to_bytes(), slots)))

    def connect(self, name: str, pattern: str, slots: int = 8) -> None:
        """The hub names ``name`` and it answers the handshake with ``pattern``."""
        assert self.hub(name)[-1] == f"handshake {name}"
        self.bitfield(name, pattern, slots)

    def have(self, name: str, *books: int) -> list[str]:
        return self._out(self.receive(name, framing.have(self.lib.id, list(books))))

    def busy(self, name: str, book: int, retry_ms: int, book_only: bool = False) -> list[str]:
        return self._out(self.receive(name, framing.busy(self.lib.id, book, retry_ms, book_only)))

    def error(self, name: str, code: ErrorCode.ValueType, book: int = 0) -> list[str]:
        return self._out(self.receive(name, framing.error(code, "no", self.lib.id, book)))

    def book(self, name: str, book: int, outcome: Outcome = OK) -> list[str]:
        """Book ``book`` arrives from ``name``; what the loop lands comes out as ``outcome``."""
        length = self.lib.book_span(book)[1]
        out = self.receive(name, framing.book_header(self.lib.id, book, length), b"x" * length)
        for action in list(out):
            if isinstance(action, Land):
                error = "cannot write book: No space left on device" if outcome is DISK else ""
                result = Written(self.lib.id, action.book, action.endpoint, length, outcome, error)
                out += self.logic.written(result, self.now)
        return self._out(out)

    def synced(self, error: str = "") -> list[str]:
        return self._out(self.logic.synced(self.lib.id, error, self.now))


# --- getting started ------------------------------------------------------------------------------


def test_a_download_asks_the_hub_handshakes_and_fills_the_window() -> None:
    s = Scene(books=8)
    assert s.started == ["notify"]
    assert s.tick(hub=True) == ["ask hub"]
    assert s.hub("A") == ["connect A", "handshake A"]
    assert s.tick() == []  # nothing to ask before the bitfield
    assert s.bitfield("A", "********", slots=3) == []
    assert len(requested(s.tick())) == 3  # the window follows A's upload slots
    assert s.logic.counters()[peers_counter(s.lib.id_hex)] == 1


def test_the_hub_answer_skips_this_player_its_own_endpoint_and_nobody_twice() -> None:
    s = Scene()
    s.logic.own_endpoint = ENDPOINT["B"]
    peers = [PeerInfo(ME, ENDPOINT["C"], True), PeerInfo(b"b" * 16, ENDPOINT["B"], True),
             PeerInfo(b"a" * 16, ENDPOINT["A"], True)]
    assert lines(s.logic.hub_answer(s.lib.id, peers, True, 0.0)) == ["connect A", "handshake A"]
    assert lines(s.logic.hub_answer(s.lib.id, peers, True, 0.1)) == []  # A is handshaking already


def test_resume_from_a_persisted_bitfield_never_asks_for_a_verified_book() -> None:
    s = Scene(books=6, have="**.*..")
    s.connect("A", "******")
    assert requested(s.tick()) == {"request A 2", "request A 4", "request A 5"}
    assert s.book("A", 4) == ["land A 4", "notify 4"]
    assert s.tick() == []


def test_a_download_resumed_complete_finishes_at_once() -> None:
    s = Scene(books=2, have="**")
    assert s.started == ["notify", "finish"]
    assert s.lib.id not in s.logic.downloads


# --- busy, refusals, errors -----------------------------------------------------------------------


def test_busy_then_retry_after_the_hint_and_other_books_first() -> None:
    s = Scene(books=2)
    s.connect("A", "**")
    assert requested(s.tick()) == {"request A 0", "request A 1"}
    assert s.busy("A", 1, retry_ms=200) == []
    assert s.at(0.1).tick() == []  # A said wait 200 ms
    assert s.at(0.3).tick() == []  # and book 1 is not asked of A again at once
    assert s.at(0.6).tick() == ["request A 1"]


def test_a_pause_ends_on_time_with_nothing_else_happening() -> None:
    """A turn with no event looks at the remotes only when a pause or a refusal ends (or on the expiry
    schedule, every 0.25 s): the request after a 50 ms busy goes out at 50 ms, not at the next expiry."""
    s = Scene(books=4)
    s.connect("A", "****", slots=1)
    [first] = requested(s.tick())
    assert s.busy("A", int(first.split()[-1]), retry_ms=50) == []
    assert s.at(0.02).tick() == []  # still paused
    assert s.at(0.03).tick() == []  # nothing happened: nothing to look at
    [again] = requested(s.at(0.06).tick())
    assert again.startswith("request A ") and again != first  # another book: that one was refused at A


def test_a_busy_for_one_book_only_asks_for_it_elsewhere_and_other_books_at_once() -> None:
    s = Scene(books=3)
    s.connect("A", "***", slots=2)
    first = sorted(int(text.split()[-1]) for text in requested(s.tick()))
    [third] = {0, 1, 2} - set(first)
    assert s.busy("A", first[0], retry_ms=2000, book_only=True) == []
    assert s.tick() == [f"request A {third}"]  # the window is not halved and A is not paused
    s.connect("B", "***")
    assert s.tick() == [f"request B {first[0]}"]
    assert s.logic.remotes[ENDPOINT["A"]].window.size == 2  # its advertised slots, not halved to 1


def test_a_refused_handshake_forgets_the_library_at_that_peer_without_a_report() -> None:
    s = Scene(books=2)
    s.tick()
    assert s.hub("A", "B") == ["connect A", "handshake A", "connect B", "handshake B"]
    assert s.error("A", ErrorCode.NOT_FOUND) == []
    assert events(s.actions) == ["peer_error"]
    s.bitfield("B", "**")
    found = s.at(0.3).tick()
    assert "drop A" in found and "report A" not in found
    assert requested(found) == {"request B 0", "request B 1"}


def test_a_remote_that_forgot_us_is_asked_again_and_its_books_go_back() -> None:
    s = Scene(books=2)
    s.connect("A", "**")
    assert sorted(s.tick()) == ["request A 0", "request A 1"]
    again = s.error("A", ErrorCode.FORBIDDEN, book=0)  # "handshake first": A restarted
    assert again == ["cancel A 1", "handshake A"]
    assert s.error("A", ErrorCode.FORBIDDEN, book=1) == []  # the other refusal changes nothing
    assert s.tick() == []  # nothing is asked of A until it answers the new handshake
    s.bitfield("A", "**")
    assert sorted(s.tick()) == ["request A 0", "request A 1"]


def test_an_error_for_a_request_puts_the_book_back() -> None:
    s = Scene(books=1)
    s.connect("A", "*")
    assert s.tick() == ["request A 0"]
    s.connect("B", "*")
    assert s.error("A", ErrorCode.NOT_FOUND, book=0) == []
    assert s.tick() == ["request B 0"]  # not from A, which said it does not hold it
    assert s.at(ERROR_SECONDS + 0.1).tick() == ["request A 0"]  # later A may: endgame asks it again


def test_a_peer_that_answered_once_then_ignores_handshakes_is_dropped_and_reported_after_three_tries() -> None:
    s = Scene()
    s.tick()
    s.hub("A")
    s.have("A", 0)  # a word from it, out of place: it is there
    assert s.at(5.3).tick() == ["handshake A"]
    assert s.at(10.6).tick() == ["handshake A"]
    assert s.at(15.9).tick() == ["report A", "drop A"]


def test_an_endpoint_that_never_says_a_word_is_dropped_within_seconds_and_kept_out_for_a_while() -> None:
    s = Scene()
    s.tick()
    assert s.hub("F", "G", "A") == ["connect F", "handshake F", "connect G", "handshake G", "connect A",
                                    "handshake A"]
    s.bitfield("A", "****")
    dropped = s.at(FIRST_CONTACT + 0.3).tick()
    assert [a for a in dropped if not a.startswith("request")] == ["report F", "drop F", "report G", "drop G"]
    assert s.hub("F", "G", "A") == []  # the fakes are not tried again at once, A is kept
    assert s.at(FIRST_CONTACT + 0.3 + DEAD_FIRST + 0.1).hub("F") == ["connect F", "handshake F"]
    again = s.at(2 * FIRST_CONTACT + DEAD_FIRST + 1).tick()
    assert "drop F" in again
    assert s.at(2 * FIRST_CONTACT + 2 * DEAD_FIRST).hub("F") == []  # the second time it stays out longer


def test_while_no_peer_serves_the_hub_is_asked_for_as_many_as_it_gives() -> None:
    s = Scene()
    assert [a.numwant for a in s.logic.tick(0.0) if isinstance(a, AskHub)] == [NUMWANT]  # the first ask
    s.hub("F")  # the hub answered, with a peer that will never say a word
    assert [a.numwant for a in s.logic.tick(0.6) if isinstance(a, AskHub)] == [NUMWANT_SEARCHING]
    s.at(1.0).hub("A")
    s.bitfield("A", "****")
    assert [a.numwant for a in s.logic.tick(30.0) if isinstance(a, AskHub)] == [NUMWANT]  # a source: as usual


def test_a_download_uses_at_most_max_peers_remotes_and_another_once_one_is_gone(
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(requestor_logic, "MAX_PEERS", 2)
    s = Scene()
    assert s.hub("A", "B", "C") == ["connect A", "handshake A", "connect B", "handshake B"]
    s.bitfield("A", "****")
    assert s.hub("C", "D") == []  # two in use already
    s.logic.peer_lost(ENDPOINT["B"], s.now)
    assert s.hub("C", "D") == ["connect C", "handshake C"]


def test_while_no_peer_serves_a_hub_answer_is_tried_beyond_max_peers(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(requestor_logic, "MAX_PEERS", 1)
    s = Scene()
    assert s.hub("F") == ["connect F", "handshake F"]  # silent so far
    assert s.hub("G", "A") == ["connect G", "handshake G", "connect A", "handshake A"]  # a search: all of them


def test_a_download_whose_only_candidates_were_dead_asks_the_hub_again_soon() -> None:
    s = Scene()
    s.tick()
    s.hub("F")
    assert "ask hub" in s.at(0.6).tick(hub=True)  # the next ask is out; its answer never comes
    assert "drop F" in s.at(FIRST_CONTACT + 0.3).tick()
    assert "ask hub" in s.at(FIRST_CONTACT + 0.3 + STARVED_FIRST + 0.01).tick(hub=True)


def test_messages_out_of_place_are_logged_and_change_nothing() -> None:
    s = Scene(books=2)
    s.connect("A", "**")
    s.tick()
    header = framing.book_header(s.lib.id, 0, BOOK)
    assert lines(s.receive("A", header)) == []  # a book without its payload
    assert events(s.receive("A", framing.request(s.lib.id, 0))) == ["bad_peer_message"]
    assert events(s.receive("A", framing.have(s.lib.id, [0]), b"payload")) == ["bad_peer_message"]
    wrong = framing.bitfield(s.lib.id, 3, b"\xe0", 4)
    assert events(s.receive("A", wrong)) == ["bad_peer_message"]
    assert events(s.receive("E", framing.have(s.lib.id, [0]))) == []  # nobody we know: ignored


# --- bad books and bans ---------------------------------------------------------------------------


def test_bad_books_strike_their_sender_and_a_ban_cancels_every_request_in_flight_to_it() -> None:
    s = Scene(books=6)
    s.connect("A", "******")
    first = sorted(int(text.split()[-1]) for text in requested(s.tick()))
    assert len(first) == 4
    s.connect("B", "******")
    assert s.book("A", first[0], BAD) == [f"land A {first[0]}"]
    assert s.book("A", first[1], BAD) == [f"land A {first[1]}"]
    assert s.book("A", first[2], BAD) == [f"land A {first[2]}", f"cancel A {first[3]}"]
    assert events(s.actions) == ["bad_book"] and s.download.banned == {ENDPOINT["A"]}
    assert s.book("A", first[3]) == []  # on its way when the ban came: never hashed
    found = s.tick()
    assert found and all(text.startswith("request B") for text in found)
    assert s.hub("A") == []  # the hub naming it again changes nothing


def test_bad_books_from_two_peers_are_counted_apart() -> None:
    s = Scene(books=4)
    s.connect("A", "****", slots=1)
    s.connect("B", "****", slots=1)
    [a_book] = [int(text.split()[-1]) for text in requested(s.tick()) if " A " in text]
    s.book("A", a_book, BAD)
    assert s.download.strikes == {ENDPOINT["A"]: 1} and not s.download.banned


# --- endgame and expiry ---------------------------------------------------------------------------


def test_endgame_asks_a_second_peer_for_the_last_book_and_cancels_the_loser() -> None:
    s = Scene(books=1)
    s.connect("A", "*")
    assert s.tick() == ["request A 0"]
    s.connect("B", "*")
    assert s.tick() == ["request B 0"]  # every missing book is in flight: endgame duplicates it
    assert s.book("B", 0) == ["land B 0", "cancel A 0", "notify 0", "sync"]
    assert "download_verified" in events(s.actions)
    assert s.book("A", 0) == []  # the loser's copy, if it still comes, is not hashed
    assert s.synced() == ["persist 0", "finish"]


def test_an_expired_request_goes_back_and_the_silent_peer_is_dropped_and_reported() -> None:
    s = Scene(books=2)
    s.connect("A", "**")
    s.connect("B", "..")
    assert requested(s.tick()) == {"request A 0", "request A 1"}
    s.at(10.0).have("B", 0, 1)
    found = s.at(15.5).tick()
    assert found[:2] == ["report A", "drop A"]
    assert requested(found) == {"request B 0", "request B 1"}
    assert events(s.actions).count("request_timeout") == 2


def test_an_expired_request_at_a_peer_that_still_talks_is_asked_again_without_a_report() -> None:
    s = Scene(books=1)
    s.connect("A", "*")
    assert s.tick() == ["request A 0"]
    s.at(10.0).have("A", 0)  # A is alive, only slow
    assert s.at(15.5).tick() == ["request A 0"]
    assert "request_timeout" in events(s.actions)


# --- the hub schedule -----------------------------------------------------------------------------


def test_the_hub_ask_schedule_backs_off_while_nobody_answers_and_recovers() -> None:
    s = Scene()
    gaps = []
    for answer in [False, False, False, False, False, False, True, False]:
        assert "ask hub" in s.tick(hub=True)
        if answer:
            s.hub("A", ok=True)
        else:
            s.hub(ok=False)
        gaps.append(s.download.next_ask - s.now)
        assert "ask hub" not in s.at(s.download.next_ask - 0.01).tick(hub=True)  # not before it is due
        s.at(s.download.next_ask)
    assert gaps == [0.5, 1.0, 2.0, 4.0, PEERS_EVERY, PEERS_EVERY, PEERS_EVERY, 0.5]


def test_the_hub_counter_says_not_yet_answered_since_when_it_fails_and_answered() -> None:
    s = Scene()
    key = hub_counter(s.lib.id_hex)
    assert key not in s.logic.counters()  # not asked yet
    s.at(12.5).hub(ok=False)
    assert s.logic.counters()[key] == 12_500  # unreachable since then (monotonic ms)
    s.at(14.0).hub(ok=False)
    assert s.logic.counters()[key] == 12_500  # since the first failure in a row
    s.at(15.0).hub(ok=True)
    assert s.logic.counters()[key] == HUB_NAMED_NOBODY  # answered: it knows no other player
    s.at(16.0).hub("A", ok=True)
    assert s.logic.counters()[key] == HUB_NAMED


def test_an_empty_hub_answer_counts_as_no_answer() -> None:
    s = Scene()
    s.tick()
    s.hub(ok=True)
    assert s.download.next_ask == 0.5


def test_a_forming_swarm_is_asked_about_again_soon() -> None:
    s = Scene()
    s.tick()
    s.hub("A")
    assert s.download.next_ask == 0.5  # fewer peers than asked for: the swarm is still forming


# --- pause, resume, remove ------------------------------------------------------------------------


def test_pause_mid_flight_cancels_requests_and_stops_with_what_was_written() -> None:
    s = Scene(books=4)
    s.connect("A", "****")
    first = sorted(int(text.split()[-1]) for text in requested(s.tick()))
    s.book("A", first[0])
    stopped = lines(s.logic.remove(s.lib.id, "paused", s.now))
    assert sorted(stopped[:-1]) == [f"cancel A {book}" for book in first[1:]]
    assert stopped[-1] == f"stop paused {first[0]}"
    assert s.book("A", first[1]) == []  # on its way when the pause came
    assert s.at(0.3).tick() == ["drop A"]  # nothing left to fetch from A

    assert lines(s.logic.add(s.lib, bits("".join("*" if b == first[0] else "." for b in range(4))), s.now)) == [
        "notify"]
    assert s.tick(hub=True) == ["ask hub"]
    s.connect("A", "****")
    assert requested(s.tick()) == {f"request A {book}" for book in first[1:]}


def test_remove_of_a_library_not_downloading_does_nothing() -> None:
    s = Scene()
    assert s.logic.remove(b"x" * 32, "removed", 0.0) == []
    assert lines(s.logic.remove(s.lib.id, "removed", 0.0)) == ["stop removed"]
    assert s.logic.remove(s.lib.id, "removed", 0.0) == []


# --- writing, syncing, finishing ------------------------------------------------------------------


def test_written_books_are_synced_in_batches_and_persisted_after_the_sync() -> None:
    s = Scene(books=3)
    s.connect("A", "***")
    s.tick()
    s.book("A", 0)
    s.book("A", 2)
    assert s.at(0.5).tick() == ["sync"]
    s.book("A", 1)  # complete, but a batch runs: the next waits for it
    assert s.synced() == ["persist 0 2", "sync"]
    assert s.synced() == ["persist 0 1 2", "finish"]


def test_a_failed_sync_persists_nothing_and_is_tried_again() -> None:
    s = Scene(books=2)
    s.connect("A", "**")
    s.tick()
    s.book("A", 0)
    assert s.at(0.5).tick() == ["sync"]
    assert s.synced(error="fdatasync failed: Input/output error") == []
    assert events(s.actions) == ["sync_failed"]
    assert s.at(1.0).tick() == ["sync"]
    assert s.synced() == ["persist 0"]


def test_a_disk_error_fails_the_download_and_stops_it() -> None:
    s = Scene(books=2)
    s.connect("A", "**")
    s.tick()
    assert s.book("A", 0, DISK) == ["land A 0", "fail", "cancel A 1", "stop disk error"]
    failed = [action for action in s.actions if isinstance(action, Fail)]
    assert "No space left" in failed[0].reason
    assert s.lib.id not in s.logic.downloads


# --- stalled --------------------------------------------------------------------------------------


def test_books_no_source_holds_make_the_download_stalled_until_a_source_appears() -> None:
    s = Scene(books=4)
    s.tick()
    s.connect("A", "**..")
    s.at(0.5).tick()  # the check (every EXPIRE_SECONDS) first finds books 2 and 3 without a source
    assert s.at(0.5 + STALL_GRACE - 0.25).tick() == []  # a moment without a source is not a stall
    assert s.at(0.5 + STALL_GRACE).tick() == ["stalled 2"]
    assert events(s.actions) == ["download_stalled"]
    assert s.at(3.0).hub("B") == ["connect B", "handshake B"]
    assert s.at(3.3).tick() == []  # B's answer may be a source: the state holds meanwhile
    s.bitfield("B", "..*.")
    assert s.at(3.6).tick() == ["stalled 1", "request B 2"]
    s.have("B", 3)
    assert s.at(3.9).tick() == ["stalled 0", "request B 3"]
    assert events(s.actions) == ["download_unstalled"]


def test_a_banned_only_source_leaves_the_download_stalled() -> None:
    s = Scene(books=3)
    s.tick()
    s.connect("A", "***")
    sent = sorted(int(text.split()[-1]) for text in requested(s.tick()))
    for book in sent:
        s.book("A", book, BAD)
    assert s.download.banned == {ENDPOINT["A"]}
    assert s.at(0.5).tick() == ["drop A"]  # nothing left to fetch from A
    assert s.at(0.5 + STALL_GRACE).tick() == ["stalled 3"]


def test_a_peer_lost_is_dropped_reported_and_its_books_go_back() -> None:
    s = Scene(books=1)
    s.connect("A", "*")
    assert s.tick() == ["request A 0"]
    s.connect("B", "*")
    assert lines(s.logic.peer_lost(ENDPOINT["A"], s.now)) == ["report A", "drop A"]
    assert s.tick() == ["request B 0"]
    assert s.book("A", 0) == []  # anything still on its way from A is not hashed


def test_a_have_of_a_book_we_may_ask_for_is_requested_at_the_next_tick() -> None:
    s = Scene(books=4)
    s.connect("A", "....")
    assert requested(s.tick()) == set()
    s.have("A", 2)
    assert requested(s.tick()) == {"request A 2"}
    s.have("A", 2, 3)  # 2 again (nothing new) and 3
    assert requested(s.tick()) == {"request A 3"}


def test_in_the_endgame_a_have_of_a_book_in_flight_elsewhere_is_asked_for_twice() -> None:
    s = Scene(books=2, have="*.")
    s.connect("A", ".*")
    assert requested(s.tick()) == {"request A 1"}
    s.connect("B", "..")
    assert requested(s.tick()) == set()
    s.have("B", 1)  # every missing book is in flight: the endgame asks B too
    assert requested(s.tick()) == {"request B 1"}


def test_when_memory_allows_only_some_requests_they_go_to_remotes_with_nothing_in_flight_first(
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(requestor_logic, "IN_FLIGHT_BYTES", 2 * BOOK)
    s = Scene(books=8)
    s.connect("A", "********")
    s.connect("B", "********")
    first = sorted(requested(s.tick()))
    assert [text.split()[1] for text in first] == ["A", "A"]  # A was met first; its window takes both
    book = int(first[0].split()[-1])
    s.at(0.1).book("A", book)
    assert [text.split()[1] for text in requested(s.tick())] == ["B"]  # not A again: B has nothing in flight


def test_a_player_ahead_of_its_peers_asks_for_fewer_books_at_a_time(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(requestor_logic, "IN_FLIGHT_BYTES", 8 * BOOK)
    level = Scene(books=100, have="*" * 10 + "." * 90)
    level.connect("A", "." * 10 + "*" * 10 + "." * 80)  # as many books as we have: no lead
    assert len(requested(level.tick())) == 4  # A's window
    ahead = Scene(books=100, have="*" * 10 + "." * 90)
    ahead.connect("A", "." * 10 + "*" * 5 + "." * 85)  # we are 5% of the books ahead of A
    assert len(requested(ahead.tick())) == 2  # a quarter of the memory bound
    seed = Scene(books=100, have="*" * 10 + "." * 90)
    seed.connect("A", "*" * 100)  # a complete peer is no one to be ahead of
    assert len(requested(seed.tick())) == 4


def test_a_peer_on_a_slower_link_is_no_one_to_be_ahead_of(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(requestor_logic, "IN_FLIGHT_BYTES", 8 * BOOK)
    for keeps_pace in (False, True):
        s = Scene(books=100, have="*" * 10 + "." * 90)
        s.connect("A", "." * 10 + "*" * 5 + "." * 85)
        sent = sorted(int(text.split()[-1]) for text in requested(s.tick()))
        assert s.logic.budget == 2 * BOOK  # 5% of the books ahead of A
        for book in sent:
            s.at(0.1).book("A", book)  # we gain 2 books in a quarter of a second
        if keeps_pace:
            s.at(0.2).have("A", 20, 21)  # and so does A
        s.at(0.25).tick()
        assert s.logic.budget == (2 * BOOK if keeps_pace else 8 * BOOK)


def test_all_windows_together_hold_at_most_the_memory_bound_and_a_dropped_peer_frees_its_share(
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(requestor_logic, "IN_FLIGHT_BYTES", 3 * BOOK)
    s = Scene(books=8)
    s.connect("A", "****....")
    s.connect("B", "....***.")
    assert len(requested(s.tick()) & {"request A 0", "request A 1", "request A 2", "request A 3"}) == 3  # 3 fit
    assert s.tick() == []
    s.logic.peer_lost(ENDPOINT["A"], s.now)
    assert requested(s.tick()) == {"request B 4", "request B 5", "request B 6"}


def test_a_remote_not_asked_yet_ranks_as_the_measured_ones_average() -> None:
    # Nobody measured yet is ranked below a remote that delivered slower than the average and above
    # one that delivered faster; fewer requests in flight still come first.
    from services.peer.remote import Remote
    from services.peer.window import Window

    def remote(name: str, rate: float, in_flight: int = 0) -> Remote:
        window = Window()
        window.rate = rate
        for book in range(in_flight):
            window.on_send((b"L", book), 0.0, 1)
        return Remote(name, window)

    ready = [remote("slow", 10e6), remote("new", 0.0), remote("fast", 30e6), remote("busy", 20e6, in_flight=1)]
    # measured on average: 20e6
    requestor_logic._by_promise(ready)
    assert [r.endpoint for r in ready] == ["fast", "new", "slow", "busy"]
