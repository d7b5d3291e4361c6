"""Answers that cost the Distributor more than the request did: bitfields and library files.

A client may ask again and again without reading; each answer must then be a reference to one
buffer (never a copy built per request), and a library file must take its turn in the
requester's share of the pipe and in the upload budget, as a book does. Fake clock, no sockets.
"""

from __future__ import annotations

from services.peer.distributor_logic import DistributorLogic, Send, SendBook
from services.wire import framing
from tests.unit.patterns import bits
from tests.unit.test_distributor_logic import ALICE, BOB, LIB, logic


def answer(actions: list[Send | SendBook]) -> Send:
    [action] = actions
    assert isinstance(action, Send)
    return action


def handshake(dist: DistributorLogic, who: bytes, now: float = 0.0) -> Send:
    return answer(dist.handle(who, [framing.handshake(LIB.id, b"")], now))


def ask_library(dist: DistributorLogic, who: bytes, now: float = 0.0) -> Send:
    return answer(dist.handle(who, [framing.library_request(LIB.id)], now))


def test_every_handshake_shares_one_bitfield_until_a_book_lands() -> None:
    dist = logic("**..")
    first, again, other = handshake(dist, ALICE), handshake(dist, ALICE), handshake(dist, BOB)
    assert first.shared and first.frame is again.frame is other.frame
    dist.books_landed(LIB.id, [2], 0.0)
    fresh = handshake(dist, ALICE)
    assert fresh.frame is not first.frame
    message = framing.decode(fresh.frame)
    assert message.bitfield.bits == bits("***.").to_bytes()


def test_every_library_request_shares_one_library_file() -> None:
    dist = logic()
    first = ask_library(dist, ALICE)
    dist.drained(ALICE, len(first.payload), 0.0)
    again = ask_library(dist, ALICE)
    assert again.payload is first.payload and first.payload == LIB.to_bytes()


def test_a_library_file_waits_for_the_requesters_share_of_the_pipe() -> None:
    dist = logic()
    dist.pipe.put(int(dist.pipe.share), 0.0, ALICE)  # ALICE has its share handed over, unread
    busy = framing.decode(ask_library(dist, ALICE).frame)
    assert busy.WhichOneof("body") == "busy" and busy.busy.library_id == LIB.id
    assert framing.decode(ask_library(dist, BOB).frame).WhichOneof("body") == "library_file"  # others unaffected
    dist.drained(ALICE, int(dist.pipe.share), 0.0)
    assert framing.decode(ask_library(dist, ALICE).frame).WhichOneof("body") == "library_file"


def test_a_library_file_is_counted_against_the_upload_cap() -> None:
    size = len(LIB.to_bytes())
    dist = logic(rate=1000)  # bytes a second: the burst (64 KiB) holds some files, never hundreds more
    most = int(dist.bucket.burst) // size + 1
    files = 0
    for _ in range(10 * most):
        reply = ask_library(dist, ALICE, 0.0)
        if not reply.payload:
            break
        files += 1
        dist.drained(ALICE, size, 0.0)
    assert 0 < files <= most
    assert framing.decode(reply.frame).WhichOneof("body") == "busy"
    assert not ask_library(dist, BOB, 0.0).payload  # the cap is the player's, not one requester's
    assert ask_library(dist, ALICE, 60.0).payload  # the budget came back
