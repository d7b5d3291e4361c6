"""The Distributor against a client that asks and never reads, over real ZMQ on 127.0.0.1.

Each such client makes the Distributor queue answers for it: before a bound, a few
bytes of ``library_request`` queued a whole library file each (6 MB for 200,000
books: 200 requests grew the process by 1.2 GB), and a flood of small requests
queued an error each, without end. The client here sets a one-message receive
queue and a small kernel buffer, so what it does not read stays with the
Distributor; it reads only once it has sent everything.
"""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest
import zmq

from services.peer.catalog import record_shared
from services.peer.distributor import QUEUED_PER_REQUESTER, Distributor
from services.peer.library import MIN_BOOK_SIZE, HashAlgorithm, Library, make_library, write_library
from services.peer.pipe import PIPE_MAX, PIPE_MIN
from services.wire import framing
from services.wire.curve import KeyPair, connect_curve
from services.wire.errors import ErrorCode
from tests.contract.conftest import dropped_by_peer
from tests.contract.test_distributor_wire import (
    TIMEOUT,
    Context,
    Socket,
    distributor_config,
    recv,
    recv_message,
    running,
    zctx,
)
from tests.polling import wait_for

__all__ = ["zctx"]  # the fixture, imported for pytest

BOOKS = 100_000  # a library file of 3.2 MB: well over one requester's share of the pipe (PIPE_MIN)


@pytest.fixture
def big(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Distributor, Library]]:
    """A Distributor serving a library of BOOKS books (its stuff a sparse file), its loop in a thread."""
    root = tmp_path_factory.mktemp("unread")
    config = distributor_config(root)
    config.ensure_dirs()
    size = BOOKS * MIN_BOOK_SIZE
    stuff = root / "big.bin"
    with open(stuff, "wb") as handle:
        handle.truncate(size)
    library = make_library(name="big.bin", size=size, book_size=MIN_BOOK_SIZE, hash_algorithm=HashAlgorithm.BLAKE3,
                           book_hashes=os.urandom(32 * BOOKS), hubs=(), created_at=0, creator="test")
    assert len(library.to_bytes()) > PIPE_MIN
    lib_path = config.libs_dir / library.file_name
    write_library(library, lib_path)
    record_shared(config, library, lib_path, stuff)
    with running(config) as distributor:
        yield distributor, library


@pytest.fixture
def reluctant(zctx: Context, big: tuple[Distributor, Library]) -> Iterator[Socket]:
    """A DEALER that holds one message and a few KiB in its kernel buffer: past that, it reads nothing."""
    sock = zctx.socket(zmq.DEALER)
    sock.linger = 0
    sock.setsockopt(zmq.RCVHWM, 1)
    sock.setsockopt(zmq.RCVBUF, 4096)
    connect_curve(sock, KeyPair.generate(), big[0].keys.public)
    sock.connect(big[0].endpoint)
    yield sock
    sock.close(linger=0)


def read_all(sock: Socket, count: int) -> list[list[bytes]]:
    return [recv(sock) for _ in range(count)]



def test_library_requests_unread_cost_one_library_file(big: tuple[Distributor, Library], reluctant: Socket) -> None:
    _, library = big
    asks = 50
    for _ in range(asks):
        reluctant.send(framing.library_request(library.id))
    answers = [framing.decode(frames[0]) for frames in read_all(reluctant, asks)]
    kinds = [answer.WhichOneof("body") for answer in answers]
    file_size = len(library.to_bytes())
    # At most the client's own buffers and one requester's share of the pipe (PIPE_MAX) went out.
    assert kinds.count("library_file") <= 3 + PIPE_MAX // file_size, f"{kinds.count('library_file')} files of {asks}"
    assert kinds.count("busy") == asks - kinds.count("library_file")
    assert all(a.busy.library_id == library.id for a in answers if a.WhichOneof("body") == "busy")
    # Once it reads, it gets the file.
    reluctant.send(framing.library_request(library.id))
    frames = recv(reluctant)
    assert framing.decode(frames[0]).WhichOneof("body") == "library_file"
    assert bytes(frames[1]) == library.to_bytes()


def test_a_flood_never_read_is_dropped_and_its_sender_forgotten(
    big: tuple[Distributor, Library], reluctant: Socket
) -> None:
    distributor, library = big
    reluctant.send(framing.handshake(library.id, b""))
    assert recv_message(reluctant).WhichOneof("body") == "bitfield"
    flood = 10 * QUEUED_PER_REQUESTER  # each one answered NOT_FOUND: far more than the queue and kernel hold
    for _ in range(flood):
        reluctant.send(framing.request(library.id, BOOKS + 7))
    wait_for(lambda: getattr(distributor, "unread_dropped", 0), TIMEOUT, "answers to a client not reading dropped")
    # It reads now: what was kept for it, then the answer to a request for book 0 (asked until one is answered:
    # an ask that came while its queue was still full was dropped too).
    not_found = 0
    while True:
        if not reluctant.poll(100):
            reluctant.send(framing.request(library.id, 0))
            continue
        reply = recv_message(reluctant)
        assert reply.WhichOneof("body") == "error", reply
        if reply.error.book == 0:
            break
        not_found += reply.error.error.code == ErrorCode.NOT_FOUND
    assert reply.error.error.code == ErrorCode.FORBIDDEN  # forgotten: it must handshake again
    assert not_found < flood
    reluctant.send(framing.handshake(library.id, b""))
    while (message := recv_message(reluctant)).WhichOneof("body") != "bitfield":
        assert message.error.book == 0  # answers to the asks above
    reluctant.send(framing.request(library.id, 1))
    frames = recv(reluctant)
    assert len(frames) == 2 and len(frames[1]) == MIN_BOOK_SIZE


def test_a_frame_larger_than_any_request_drops_the_connection(
    big: tuple[Distributor, Library], zctx: Context
) -> None:
    """Requests are under 100 bytes: a connection's queue of unread frames holds 1 KiB each at most."""
    distributor, library = big
    sock = zctx.socket(zmq.DEALER)
    sock.linger = 0
    connect_curve(sock, KeyPair.generate(), distributor.keys.public)
    sock.connect(distributor.endpoint)
    try:
        padded = framing.handshake(library.id, b"p" * 16) + b"\x00" * (framing.MAX_REQUEST_FRAME + 1)
        dropped_by_peer(sock, [padded])
    finally:
        sock.close(linger=0)
