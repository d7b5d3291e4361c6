"""What the Distributor answers, message by message, on a fake clock.

Libraries are small real ones (16 KiB books); ``have`` patterns are strings,
``*`` for a book held and ``.`` for one not yet held.
"""

from __future__ import annotations

from collections import deque

import pytest

from services.peer.bitfield import Bitfield
from services.peer.distributor_logic import (
    HAVE_BOOKS,
    HAVE_HOLD,
    SPREAD_HOLD,
    DistributorLogic,
    Send,
    SendBook,
    Served,
)
from services.peer.library import MAX_BOOKS, MIN_BOOK_SIZE, HashAlgorithm, Library, hash_bytes, make_library
from services.peer.pipe import LINK_HOLD, PIPE_MIN
from services.wire import framing
from services.wire.errors import ErrorCode
from services.wire.pb import wire_pb2
from tests.unit.patterns import bits

BOOK = MIN_BOOK_SIZE
ALICE, BOB, CAROL = b"alice", b"bob", b"carol"


def library(name: str = "movie.mkv", books: int = 4, tail: int = 100) -> Library:
    """A library of ``books`` books, the last one ``tail`` bytes long."""
    size = (books - 1) * BOOK + tail
    data = bytes((i * 7 + len(name)) % 251 for i in range(size))
    hashes = b"".join(hash_bytes(HashAlgorithm.BLAKE3, data[i : i + BOOK]) for i in range(0, size, BOOK))
    return make_library(name=name, size=size, book_size=BOOK, hash_algorithm=HashAlgorithm.BLAKE3,
                        book_hashes=hashes, hubs=(), created_at=0, creator="test")


LIB = library()


def logic(have: str = "****", *, slots: int = 2, rate: int = 0, lib: Library = LIB) -> DistributorLogic:
    result = DistributorLogic(slots=slots, upload_rate=rate, now=0.0)
    result.serve_library(lib, bits(have), 0.0)
    return result


def one_reply(actions: list[Send | SendBook], identity: bytes) -> wire_pb2.PeerMessage:
    assert len(actions) == 1
    [action] = actions
    assert isinstance(action, Send) and action.identity == identity
    return framing.decode(action.frame)


def error_code(actions: list[Send | SendBook], identity: bytes = ALICE) -> int:
    message = one_reply(actions, identity)
    assert message.WhichOneof("body") == "error"
    return message.error.error.code


def request(
    dist: DistributorLogic, who: bytes, book: int, now: float = 0.0, lib: Library = LIB
) -> list[Send | SendBook]:
    """A request from ``who``, after its handshake for ``lib`` if it had none (as a Requestor does)."""
    served = dist.served.get(lib.id)
    if served is not None and who not in served.subscribers:
        dist.handle(who, [framing.handshake(lib.id, b"p" * 16)], now)
    return dist.handle(who, [framing.request(lib.id, book)], now)


def sent_books(actions: list[Send | SendBook]) -> list[tuple[bytes, int]]:
    assert all(isinstance(a, SendBook) for a in actions)
    return [(a.identity, a.book) for a in actions if isinstance(a, SendBook)]


# --- handshake ---------------------------------------------------------------------------------


def test_handshake_answers_the_bitfield_and_slots() -> None:
    dist = logic("*.*.", slots=3)
    reply = one_reply(dist.handle(ALICE, [framing.handshake(LIB.id, b"p" * 16)], 0.0), ALICE)
    assert reply.WhichOneof("body") == "bitfield"
    assert reply.bitfield.library_id == LIB.id
    assert (reply.bitfield.book_count, reply.bitfield.bits, reply.bitfield.upload_slots) == (4, b"\xa0", 3)


def test_handshake_for_an_unknown_library_is_not_found_and_names_it() -> None:
    dist = logic()
    other = library("other.iso")
    reply = one_reply(dist.handle(ALICE, [framing.handshake(other.id, b"p" * 16)], 0.0), ALICE)
    assert reply.error.error.code == ErrorCode.NOT_FOUND
    assert reply.error.library_id == other.id


@pytest.mark.parametrize("library_id", [b"", b"short", b"x" * 33])
def test_a_library_id_of_the_wrong_length_is_invalid(library_id: bytes) -> None:
    dist = logic()
    assert error_code(dist.handle(ALICE, [framing.handshake(library_id, b"")], 0.0)) == ErrorCode.INVALID_ARGUMENT
    assert error_code(dist.handle(ALICE, [framing.request(library_id, 0)], 0.0)) == ErrorCode.INVALID_ARGUMENT


# --- requests and serving ----------------------------------------------------------------------


def test_request_is_queued_then_served_with_its_span() -> None:
    dist = logic()
    assert request(dist, ALICE, 1) == []
    assert dist.wait(0.0) == 0.0
    assert dist.serve(0.0) == [SendBook(ALICE, LIB.id, 1, BOOK, BOOK)]
    assert dist.wait(0.0) is None
    assert dist.counts["requests"] == 1 and dist.counts["books_sent"] == 1


def test_the_last_book_is_short() -> None:
    dist = logic()
    request(dist, ALICE, 3)
    assert dist.serve(0.0) == [SendBook(ALICE, LIB.id, 3, 3 * BOOK, 100)]


def test_unlimited_serving_is_first_come_first_served() -> None:
    dist = logic(slots=4)
    for who, book in [(ALICE, 2), (BOB, 0), (ALICE, 1), (CAROL, 3)]:
        request(dist, who, book)
    assert sent_books(dist.serve(0.0)) == [(ALICE, 2), (BOB, 0), (ALICE, 1), (CAROL, 3)]


def test_a_book_not_held_is_not_found_and_names_the_request() -> None:
    dist = logic("**..")
    reply = one_reply(request(dist, ALICE, 2), ALICE)
    assert reply.error.error.code == ErrorCode.NOT_FOUND
    assert (reply.error.library_id, reply.error.book) == (LIB.id, 2)
    assert dist.serve(0.0) == []


@pytest.mark.parametrize("book", [4, 1000, 2**32 - 1])
def test_a_book_out_of_range_is_not_found(book: int) -> None:
    dist = logic()
    assert error_code(request(dist, ALICE, book)) == ErrorCode.NOT_FOUND
    assert dist.serve(0.0) == []


def test_a_request_for_an_unknown_library_is_not_found() -> None:
    dist = logic()
    assert error_code(request(dist, ALICE, 0, lib=library("other.iso"))) == ErrorCode.NOT_FOUND


def test_a_full_queue_answers_busy_with_a_retry_hint() -> None:
    dist = logic("*" * 8, slots=2, lib=library(books=8))  # queue capacity 8
    lib = library(books=8)
    for who in (ALICE, BOB):
        for book in range(4):
            assert request(dist, who, book, lib=lib) == []
    reply = one_reply(request(dist, CAROL, 1, lib=lib), CAROL)
    assert reply.WhichOneof("body") == "busy"
    assert (reply.busy.library_id, reply.busy.book) == (lib.id, 1)
    assert reply.busy.retry_after_ms > 0
    assert dist.counts["busy"] == 1 and len(dist.queue) == 8
    dist.serve(0.0)
    assert request(dist, CAROL, 7, lib=lib) == []  # room again (a book never sent: spreading has no say)


def test_no_requester_holds_more_than_half_the_queue() -> None:
    lib = library(books=8)
    dist = logic("*" * 8, slots=2, lib=lib)  # queue capacity 8
    for book in range(4):
        assert request(dist, ALICE, book, lib=lib) == []
    assert one_reply(request(dist, ALICE, 4, lib=lib), ALICE).WhichOneof("body") == "busy"
    assert request(dist, BOB, 5, lib=lib) == []  # the rest is there for the others
    dist.handle(ALICE, [framing.cancel(lib.id, 0)], 0.0)
    assert request(dist, ALICE, 4, lib=lib) == []  # a cancel gives its place back


def test_a_request_before_a_handshake_is_refused() -> None:
    dist = logic()
    reply = one_reply(dist.handle(ALICE, [framing.request(LIB.id, 1)], 0.0), ALICE)
    assert reply.error.error.code == ErrorCode.FORBIDDEN and "handshake" in reply.error.error.message
    assert dist.queue == deque() and dist.serve(0.0) == []


def test_busy_hint_grows_with_the_backlog_when_rate_limited() -> None:
    dist = logic(slots=1, rate=BOOK)  # capacity 4, a book a second
    for book in range(4):
        request(dist, ALICE, book)
    reply = one_reply(request(dist, BOB, 0), BOB)
    assert reply.busy.retry_after_ms == 2000  # 4 books queued at one a second, halved
    assert 50 <= reply.busy.retry_after_ms <= 5000


def test_cancel_removes_a_queued_request_silently() -> None:
    dist = logic(slots=4)
    request(dist, ALICE, 0)
    request(dist, ALICE, 1)
    request(dist, BOB, 1)
    assert dist.handle(ALICE, [framing.cancel(LIB.id, 1)], 0.0) == []
    assert sent_books(dist.serve(0.0)) == [(ALICE, 0), (BOB, 1)]


def test_cancel_of_nothing_is_silent() -> None:
    dist = logic()
    assert dist.handle(ALICE, [framing.cancel(LIB.id, 3)], 0.0) == []
    assert dist.handle(ALICE, [framing.cancel(b"x", 3)], 0.0) == []
    assert dist.counts["errors"] == 0


# --- rate limiting -------------------------------------------------------------------------------


def test_rate_limited_serving_waits_for_tokens() -> None:
    dist = logic("***.", slots=4, rate=BOOK)  # burst 64 KiB = 4 books, then one a second; queue of 4
    for who, book in [(ALICE, 0), (ALICE, 1), (ALICE, 2), (BOB, 0)]:
        request(dist, who, book)
    assert len(dist.serve(0.0)) == 4  # the burst empties exactly
    request(dist, BOB, 1)
    request(dist, BOB, 2)
    assert len(dist.serve(0.0)) == 1  # a balance of zero may start one more book
    assert dist.serve(0.5) == []
    assert dist.wait(0.5) == pytest.approx(0.5)
    assert len(dist.serve(1.0)) == 1


def test_rate_limited_serving_prefers_books_sent_fewest_times() -> None:
    dist = logic("***.", slots=4, rate=BOOK)  # a partial holder: no spreading, just least-sent first
    request(dist, ALICE, 0)
    dist.serve(0.0)  # book 0 sent once
    dist.bucket.take(10 * BOOK, 0.0)  # spend the burst so one book goes out at a time
    now = dist.bucket.wait(0.0)
    for who, book in [(BOB, 0), (CAROL, 0), (BOB, 2), (CAROL, 1)]:
        request(dist, who, book, now)
    order = []
    while dist.queue:
        now += dist.wait(now) or 0.0
        order += sent_books(dist.serve(now))
    assert order == [(BOB, 2), (CAROL, 1), (BOB, 0), (CAROL, 0)]
    assert dist.served[LIB.id].sent == [3, 1, 1, 0]


def test_a_request_passed_over_for_a_second_is_served_next() -> None:
    dist = logic("***.", slots=4, rate=BOOK)
    request(dist, ALICE, 0)
    dist.serve(0.0)
    dist.bucket.take(10 * BOOK, 0.0)
    request(dist, BOB, 0, 0.0)  # book 0 already sent: normally passed over
    request(dist, CAROL, 1, 0.0)
    now = dist.bucket.wait(0.0)  # six seconds later: Bob has waited long enough
    assert sent_books(dist.serve(now)) == [(BOB, 0)]


def subscribe(dist: DistributorLogic, *who: bytes, lib: Library = LIB) -> None:
    for identity in who:
        dist.handle(identity, [framing.handshake(lib.id, b"p" * 16)], 0.0)


def test_a_seed_spreads_books_no_one_has_before_repeating_any() -> None:
    dist = logic("****", slots=4, rate=4 * BOOK)
    subscribe(dist, ALICE, BOB, CAROL)
    request(dist, ALICE, 0)
    assert sent_books(dist.serve(0.0)) == [(ALICE, 0)]
    reply = one_reply(request(dist, BOB, 0, 1.0), BOB)  # book 0 already went out once; 1..3 never did
    assert reply.WhichOneof("body") == "busy" and reply.busy.book_only  # this book only, not the others
    assert reply.busy.retry_after_ms == int(1000 * (SPREAD_HOLD - 1.0))  # for the rest of its hold
    assert request(dist, BOB, 1) == []  # a never-sent book is queued as usual
    for book in (2, 3):
        request(dist, CAROL, book)
    dist.serve(10.0)
    assert dist.served[LIB.id].unsent == 0
    assert request(dist, BOB, 0, 10.0) == []  # every book went out once: repeats are served again
    assert sent_books(dist.serve(20.0)) == [(BOB, 0)]


def test_a_seed_refuses_a_repeat_only_briefly() -> None:
    dist = logic("****", slots=4, rate=4 * BOOK)
    subscribe(dist, ALICE, BOB)
    request(dist, ALICE, 0)
    dist.serve(0.0)
    assert one_reply(request(dist, BOB, 0, 1.0), BOB).WhichOneof("body") == "busy"
    assert request(dist, BOB, 0, 5.0) == []  # a requester that lost it, or never found another holder
    assert sent_books(dist.serve(5.0)) == [(BOB, 0)]


def test_a_seed_spreads_whatever_limits_its_upload() -> None:
    unlimited = logic("****", slots=4)  # no cap, and no sign yet that the link is the limit
    subscribe(unlimited, ALICE, BOB)
    request(unlimited, ALICE, 0)
    unlimited.serve(0.0)
    reply = one_reply(request(unlimited, BOB, 0), BOB)
    assert reply.WhichOneof("body") == "busy" and reply.busy.book_only


def test_spreading_is_only_for_a_complete_holder_with_more_than_one_requester() -> None:
    partial = logic("***.", slots=4, rate=4 * BOOK)
    subscribe(partial, ALICE, BOB)
    request(partial, ALICE, 0)
    partial.serve(0.0)
    assert request(partial, BOB, 0) == []  # a leecher serves what it has
    alone = logic("****", slots=4, rate=4 * BOOK)
    subscribe(alone, ALICE)
    request(alone, ALICE, 0)
    alone.serve(0.0)
    assert request(alone, ALICE, 0) == []  # the only requester asks again: it lost the book


def test_set_rate_takes_effect_at_once() -> None:
    dist = logic(slots=4, rate=BOOK)
    dist.bucket.take(10 * BOOK, 0.0)
    request(dist, ALICE, 0)
    assert dist.serve(0.0) == []
    dist.set_rate(0, 0.0)
    assert sent_books(dist.serve(0.0)) == [(ALICE, 0)]


# --- news of books written locally -----------------------------------------------------------------


def haves(actions: list[Send | SendBook]) -> list[tuple[bytes, list[int]]]:
    """Who is told of which books, in order."""
    out = []
    for action in actions:
        assert isinstance(action, Send)
        message = framing.decode(action.frame)
        assert message.have.library_id == LIB.id
        out.append((action.identity, list(message.have.books)))
    return out


def test_books_landed_are_told_to_every_subscriber_once_after_the_hold() -> None:
    dist = logic("*...")
    for who in (ALICE, BOB):
        dist.handle(who, [framing.handshake(LIB.id, b"")], 0.0)
    dist.books_landed(LIB.id, [1, 2, 2, 0, 9, -1], 1.0)
    assert dist.wait(1.0) == pytest.approx(HAVE_HOLD)
    assert dist.serve(1.0 + HAVE_HOLD / 2) == []  # held
    dist.books_landed(LIB.id, [3], 1.0 + HAVE_HOLD / 2)  # landed meanwhile: in the same have
    dist.books_landed(LIB.id, [1, 2], 1.0 + HAVE_HOLD / 2)  # old news
    assert dist.wait(1.0 + HAVE_HOLD / 2) == pytest.approx(HAVE_HOLD / 2)
    assert haves(dist.serve(1.0 + HAVE_HOLD)) == [(ALICE, [1, 2, 3]), (BOB, [1, 2, 3])]
    assert dist.serve(2.0) == [] and dist.wait(2.0) is None  # told once
    dist.books_landed(LIB.id, [1, 2, 3], 2.0)
    assert dist.wait(2.0) is None  # nothing new: nothing held


def test_the_hold_starts_at_the_oldest_untold_book() -> None:
    dist = logic("....")
    dist.handle(ALICE, [framing.handshake(LIB.id, b"")], 0.0)
    dist.books_landed(LIB.id, [0], 0.0)
    dist.books_landed(LIB.id, [1], HAVE_HOLD / 2)  # a later book does not put the first one off
    assert haves(dist.serve(HAVE_HOLD)) == [(ALICE, [0, 1])]
    dist.books_landed(LIB.id, [2], 1.5 * HAVE_HOLD)  # the next hold starts with the next book
    assert dist.serve(2 * HAVE_HOLD) == []
    assert dist.wait(2 * HAVE_HOLD) == pytest.approx(HAVE_HOLD / 2)
    assert haves(dist.serve(2.5 * HAVE_HOLD)) == [(ALICE, [2])]


def test_many_books_are_told_in_haves_that_each_fit_a_control_frame(monkeypatch: pytest.MonkeyPatch) -> None:
    most = framing.have(LIB.id, [MAX_BOOKS - 1] * HAVE_BOOKS)  # the largest have: the highest book numbers
    assert len(most) <= framing.MAX_CONTROL_FRAME
    framing.decode(most)  # and a peer reads it
    monkeypatch.setattr("services.peer.distributor_logic.HAVE_BOOKS", 2)
    dist = logic("....")
    dist.handle(ALICE, [framing.handshake(LIB.id, b"")], 0.0)
    dist.books_landed(LIB.id, [0, 1, 2], 0.0)  # as a refresh from state.db can bring a whole library
    assert haves(dist.serve(HAVE_HOLD)) == [(ALICE, [0, 1]), (ALICE, [2])]


def test_a_landed_book_can_be_requested_at_once_and_shows_in_a_new_bitfield() -> None:
    dist = logic("*...")
    assert error_code(request(dist, ALICE, 2)) == ErrorCode.NOT_FOUND
    dist.books_landed(LIB.id, [2], 0.0)
    assert request(dist, ALICE, 2) == []  # served before it is told
    reply = one_reply(dist.handle(BOB, [framing.handshake(LIB.id, b"")], 0.0), BOB)
    assert reply.bitfield.bits == b"\xa0"


def test_books_landed_for_an_unknown_or_dropped_library_are_never_told() -> None:
    dist = logic()
    dist.books_landed(library("other.iso").id, [0], 0.0)
    assert dist.wait(0.0) is None
    dist = logic("*...")
    dist.handle(ALICE, [framing.handshake(LIB.id, b"")], 0.0)
    dist.books_landed(LIB.id, [1], 0.0)
    dist.drop_library(LIB.id)
    assert dist.serve(HAVE_HOLD) == []


def test_subscribers_are_bounded(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("services.peer.distributor_logic.MAX_SUBSCRIBERS", 2)
    dist = logic("....")
    for who in (ALICE, BOB, CAROL, ALICE):
        dist.handle(who, [framing.handshake(LIB.id, b"")], 0.0)
    dist.books_landed(LIB.id, [0], 0.0)
    assert [who for who, _ in haves(dist.serve(HAVE_HOLD))] == [CAROL, ALICE]


# --- the catalogue ---------------------------------------------------------------------------------


def test_serve_library_refresh_never_forgets_books() -> None:
    dist = logic("**..")
    dist.serve_library(LIB, bits("..*."), 0.0)
    assert dist.served[LIB.id].have.indices() == [0, 1, 2]


def test_drop_library_drops_its_queued_requests() -> None:
    other = library("other.iso")
    dist = logic(slots=4)
    dist.serve_library(other, Bitfield.full(other.books), 0.0)
    request(dist, ALICE, 0)
    request(dist, ALICE, 0, lib=other)
    dist.drop_library(LIB.id)
    assert [(a.library_id, a.book) for a in dist.serve(0.0) if isinstance(a, SendBook)] == [(other.id, 0)]
    assert error_code(request(dist, ALICE, 0)) == ErrorCode.NOT_FOUND


# --- garbage ---------------------------------------------------------------------------------------------


def versioned(version: int) -> bytes:
    return wire_pb2.PeerMessage(version=version, request=wire_pb2.Request(library_id=LIB.id)).SerializeToString()


@pytest.mark.parametrize(
    ("frames", "code"),
    [
        ([], ErrorCode.MALFORMED),
        ([framing.request(LIB.id, 0), b""], ErrorCode.MALFORMED),
        ([b"a", b"b", b"c"], ErrorCode.MALFORMED),
        ([b"\xff\xfe\xfd"], ErrorCode.MALFORMED),
        ([framing.request(LIB.id, 0)[:-3]], ErrorCode.MALFORMED),
        ([b""], ErrorCode.UNSUPPORTED_VERSION),
        ([versioned(0)], ErrorCode.UNSUPPORTED_VERSION),  # older than supported (a newer minor is read)
        ([wire_pb2.PeerMessage(version=1).SerializeToString()], ErrorCode.UNKNOWN_REQUEST),
        ([framing.bitfield(LIB.id, 4, b"\xf0", 1)], ErrorCode.UNKNOWN_REQUEST),
        ([framing.book_header(LIB.id, 0, 1)], ErrorCode.UNKNOWN_REQUEST),
        ([b"\x00" * (framing.MAX_CONTROL_FRAME + 1)], ErrorCode.TOO_LARGE),
    ],
)
def test_garbage_gets_an_error_reply_and_nothing_is_queued(frames: list[bytes], code: int) -> None:
    dist = logic()
    assert error_code(dist.handle(ALICE, frames, 0.0)) == code
    assert dist.counts["errors"] == 1
    assert not dist.queue
    assert request(dist, ALICE, 0) == []  # still serving


def test_books_learned_from_a_state_refresh_are_announced_once() -> None:
    dist = logic("*...")
    dist.handle(ALICE, [framing.handshake(LIB.id, b"p" * 16)], 0.0)
    dist.serve_library(LIB, bits("**.*"), 0.0)  # state.db told first
    dist.books_landed(LIB.id, [1, 3], 0.0)  # the Requestor's notice, later: nothing new
    assert haves(dist.serve(HAVE_HOLD)) == [(ALICE, [1, 3])]


# --- the link as the limit (no cap configured) ------------------------------------------------------------


def big_library(books: int = 128) -> Library:
    return library("big.bin", books=books, tail=BOOK)


PIPE_BOOKS = PIPE_MIN // BOOK  # 64 books of 16 KiB


def test_with_no_cap_only_a_short_pipe_of_books_is_handed_to_the_socket() -> None:
    big = big_library()
    dist = logic("*" * 128, slots=128, lib=big)
    for book in range(100):
        request(dist, ALICE, book, lib=big)
    assert len(sent_books(dist.serve(0.0))) == PIPE_BOOKS  # the rest waits in the queue, still choosable
    assert sent_books(dist.serve(0.1)) == []  # nothing drained yet: the link is the limit
    assert dist.upload_limit(0.1) == 0.0  # but no rate is measured yet: nothing to act on
    dist.drained(ALICE, 4 * BOOK, 0.3)
    assert len(sent_books(dist.serve(0.3))) == 4  # what drained makes room


def test_a_distributor_whose_link_is_the_limit_queues_as_under_a_cap_until_the_link_frees() -> None:
    big = big_library()
    dist = logic("*" * 128, slots=128, lib=big)
    for book in range(100):
        request(dist, ALICE, book, lib=big)
    dist.serve(0.0)
    for step in range(1, 5):  # the socket drains 4 books per 0.25 s: the link moves 16 books/s
        dist.drained(ALICE, 4 * BOOK, 0.25 * step)
        dist.serve(0.25 * step)
    assert dist.upload_limit(1.0) == pytest.approx(16 * BOOK)
    reply = one_reply(request(dist, BOB, 120, 1.0, lib=big), BOB)  # about 0.5 s of upload is queued already
    assert reply.WhichOneof("body") == "busy" and not reply.busy.book_only
    assert reply.busy.retry_after_ms > 0
    while dist.queue:  # the link catches up: the queue empties, then the pipe
        dist.drained(ALICE, dist.pipe.queued, 1.5)
        dist.serve(1.5)
    dist.drained(ALICE, dist.pipe.queued, 1.5)
    later = 1.5 + LINK_HOLD
    assert dist.upload_limit(later) == 0.0
    assert request(dist, BOB, 120, later, lib=big) == []  # queued as usual again


def test_a_pipe_that_never_empties_means_the_link_is_the_limit() -> None:
    big = big_library()
    dist = logic("*" * 128, slots=128, lib=big)
    request(dist, ALICE, 0, lib=big)
    dist.serve(0.0)
    for step in range(1, 9):  # one book waits for the kernel all the time, the pipe is never full
        request(dist, ALICE, step, lib=big)
        dist.serve(0.1 * step)
        dist.drained(ALICE, BOOK, 0.1 * step)
    assert dist.pipe.queued == BOOK and dist.pipe.room(ALICE)
    assert dist.pipe.limited(0.8)


def test_a_full_pipe_is_no_reason_to_wake_the_loop_at_once() -> None:
    big = big_library()
    dist = logic("*" * 128, slots=128, lib=big)
    for book in range(100):
        request(dist, ALICE, book, lib=big)
    assert dist.wait(0.0) == 0.0  # queued and room in the pipe: serve now
    dist.serve(0.0)
    assert dist.wait(0.0) is None  # queued, but only a drain makes room: no busy loop
    dist.drained(ALICE, BOOK, 0.1)
    assert dist.wait(0.1) == 0.0


def test_a_requester_that_stops_reading_holds_only_its_own_share_of_the_pipe() -> None:
    big = big_library()
    dist = logic("*" * 128, slots=128, lib=big)
    for book in range(80):
        request(dist, ALICE, book, lib=big)
    assert len(sent_books(dist.serve(0.0))) == PIPE_BOOKS  # Alice's share; she never reads them
    for book in range(80, 90):
        request(dist, BOB, book, lib=big)
    assert sent_books(dist.serve(1.0)) == [(BOB, book) for book in range(80, 90)]  # Bob is served at once
    assert dist.pipe.by_peer == {ALICE: PIPE_MIN, BOB: 10 * BOOK}
    assert dist.wait(1.0) is None  # only Alice's requests wait, for her own drains


def test_a_requester_that_left_is_forgotten_with_its_queue_and_pipe() -> None:
    lib = library(books=8)
    dist = logic("*" * 8, slots=2, lib=lib)
    for book in range(3):
        request(dist, ALICE, book, lib=lib)
    request(dist, BOB, 5, lib=lib)
    sent = dist.serve(0.0)
    assert dist.pipe.queued == sum(a.length for a in sent if isinstance(a, SendBook))
    request(dist, ALICE, 6, lib=lib)
    dist.gone(ALICE)
    assert ALICE not in dist.served[lib.id].subscribers and BOB in dist.served[lib.id].subscribers
    assert all(p.identity != ALICE for p in dist.queue) and ALICE not in dist.queued_by
    assert dist.pipe.queued == BOOK and ALICE not in dist.pipe.by_peer  # only BOB's book is still counted
    dist.drained(ALICE, BOOK, 0.1)  # its sends, dropped by libzmq, finish later: nothing is taken off twice
    assert dist.pipe.queued == BOOK
    assert one_reply(dist.handle(ALICE, [framing.request(lib.id, 1)], 0.2), ALICE).error.error.code \
        == ErrorCode.FORBIDDEN  # back again, it handshakes again


def test_a_library_request_is_answered_with_the_library_file_after_its_header() -> None:
    [action] = logic("....").handle(ALICE, [framing.library_request(LIB.id)], 0.0)
    assert isinstance(action, Send) and action.identity == ALICE
    header = framing.decode(action.frame).library_file
    assert (header.library_id, header.length) == (LIB.id, len(action.payload))
    assert action.payload == LIB.to_bytes()
    assert error_code(logic().handle(ALICE, [framing.library_request(b"\x01" * 32)], 0.0)) == ErrorCode.NOT_FOUND


def test_the_upload_summary_says_when_every_book_had_gone_out_once() -> None:
    served = Served(LIB, Bitfield.full(LIB.books))
    assert LIB.books == 4
    for book, now in [(0, 1.0), (0, 2.0), (1, 3.0), (2, 4.0)]:
        served.record_sent(book, now)
    assert served.sent_once_at is None  # book 3 never went
    served.record_sent(3, 5.0)
    served.record_sent(3, 6.0)
    assert served.sent_once_at == 5.0
    assert served.redundancy()["early_repeats"] == 1  # book 0's second send, while book 3 waited
