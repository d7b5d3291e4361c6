"""The Distributor over real ZMQ: a DEALER on 127.0.0.1 talks to ``Distributor.run()`` in a thread.

The player shares one small library (three 16 KiB books and a short tail).
The library lists no hub, so announces fail at once in the hub-link thread
and never delay a test. Fixtures are local to this file: sockets are tracked
and closed with linger 0, the context is terminated with a deadline, and
``recv`` fails the test instead of blocking.
"""

from __future__ import annotations

import random
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import pytest
import zmq

from services.peer.bitfield import Bitfield
from services.peer.catalog import record_shared
from services.peer.distributor import Distributor
from services.peer.library import MIN_BOOK_SIZE, HashAlgorithm, Library, hash_bytes, make_library, write_library
from services.runtime.config import Config
from services.wire import framing
from services.wire.curve import KeyPair, connect_curve
from services.wire.errors import ErrorCode
from services.wire.pb import wire_pb2
from tests.contract.conftest import dropped_by_peer

BOOK = MIN_BOOK_SIZE
SLOTS = 3
TIMEOUT = 5.0

Socket = zmq.Socket[bytes]
Context = zmq.Context[Socket]


@dataclass
class Player:
    distributor: Distributor
    library: Library
    data: bytes


def shared_library(folder: Path) -> tuple[Library, Path, bytes]:
    data = random.Random(3).randbytes(3 * BOOK + 1234)
    stuff = folder / "movie.mkv"
    stuff.write_bytes(data)
    hashes = b"".join(hash_bytes(HashAlgorithm.BLAKE3, data[i : i + BOOK]) for i in range(0, len(data), BOOK))
    library = make_library(name="movie.mkv", size=len(data), book_size=BOOK, hash_algorithm=HashAlgorithm.BLAKE3,
                           book_hashes=hashes, hubs=(), created_at=0, creator="test")
    return library, stuff, data


def distributor_config(root: Path) -> Config:
    """A player's config on 127.0.0.1 with a free port, its folders made."""
    config = Config(data_dir=root / "data", values={})
    config.set("distributor.ip", "127.0.0.1")
    config.set("distributor.port", 0)
    config.set("hub.port", 9)  # nothing listens there; the libraries list no hub anyway
    return config


@contextmanager
def running(config: Config) -> Iterator[Distributor]:
    """``Distributor(config).run()`` in a thread, stopped and joined on the way out. Built in the thread that
    runs it: its sockets and its state.db connection belong to that thread."""
    built: list[Distributor] = []
    errors: list[BaseException] = []
    ready = threading.Event()

    def run() -> None:
        try:
            built.append(Distributor(config))
            ready.set()
            built[0].run()
        except BaseException as exc:  # reported by the test, not lost in the thread
            errors.append(exc)
        finally:
            ready.set()

    thread = threading.Thread(target=run, name="test-distributor", daemon=True)
    thread.start()
    if not ready.wait(TIMEOUT) or not built:
        pytest.fail(f"distributor did not start: {errors}")
    yield built[0]
    built[0].stop()
    thread.join(TIMEOUT)
    if thread.is_alive():
        pytest.fail("distributor loop did not stop")
    assert errors == []


@pytest.fixture
def player(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Player]:
    """A Distributor serving one shared library, its loop in a thread, stopped at teardown."""
    root = tmp_path_factory.mktemp("dist")  # short: the notify socket is an ipc path
    config = distributor_config(root)
    config.set("limits.upload_slots", SLOTS)
    config.ensure_dirs()
    library, stuff, data = shared_library(root)
    lib_path = config.libs_dir / library.file_name
    write_library(library, lib_path)
    record_shared(config, library, lib_path, stuff)
    with running(config) as distributor:
        yield Player(distributor, library, data)


@pytest.fixture
def zctx() -> Iterator[Context]:
    context: Context = zmq.Context()
    yield context
    done = threading.Thread(target=context.term, daemon=True)
    done.start()
    done.join(TIMEOUT)
    if done.is_alive():
        pytest.fail("zmq context did not terminate: a socket was left open")


@pytest.fixture
def dealer(zctx: Context, player: Player) -> Iterator[Callable[[], Socket]]:
    """Make DEALERs connected to the player's distributor, handshaken for its library as a Requestor
    would be (its bitfield read) unless ``handshake`` is False; all closed with linger 0."""
    made: list[Socket] = []

    def make(handshake: bool = True) -> Socket:
        sock = zctx.socket(zmq.DEALER)
        sock.linger = 0
        made.append(sock)
        connect_curve(sock, KeyPair.generate(), player.distributor.keys.public)  # a new setup encrypts
        sock.connect(player.distributor.endpoint)
        if handshake:
            sock.send(framing.handshake(player.library.id, b"p" * 16))
            assert recv_message(sock).WhichOneof("body") == "bitfield"
        return sock

    yield make
    for sock in made:
        sock.close(linger=0)


def recv(sock: Socket, timeout: float = TIMEOUT) -> list[bytes]:
    """One multipart message, or fail the test."""
    if not sock.poll(int(timeout * 1000)):
        pytest.fail(f"no reply within {timeout}s")
    return sock.recv_multipart()


def recv_message(sock: Socket) -> wire_pb2.PeerMessage:
    frames = recv(sock)
    assert len(frames) == 1, f"expected one frame, got {len(frames)}"
    return framing.decode(frames[0])


def expect_error(sock: Socket, code: int) -> wire_pb2.PeerError:
    message = recv_message(sock)
    assert message.WhichOneof("body") == "error", message
    assert message.error.error.code == code, ErrorCode.Name(message.error.error.code)
    return message.error


def expect_book(sock: Socket, player: Player, book: int) -> bytes:
    frames = recv(sock)
    assert len(frames) == 2, f"a book is a header and a payload, got {len(frames)} frames"
    header, payload = framing.decode(frames[0]), frames[1]
    assert header.WhichOneof("body") == "book", header
    offset, length = player.library.book_span(book)
    assert (header.book.library_id, header.book.book, header.book.length) == (player.library.id, book, length)
    assert hash_bytes(player.library.hash_algorithm, payload) == player.library.book_hash(book)
    assert payload == player.data[offset : offset + length]
    return payload


# --- the happy path -----------------------------------------------------------------------------------


def test_handshake_answers_a_bitfield_of_every_book(player: Player, dealer: Callable[[], Socket]) -> None:
    sock = dealer()
    sock.send(framing.handshake(player.library.id, b"p" * 16))
    message = recv_message(sock)
    assert message.WhichOneof("body") == "bitfield"
    body = message.bitfield
    assert body.library_id == player.library.id
    assert body.book_count == player.library.books == 4
    assert body.bits == Bitfield.full(4).to_bytes()
    assert body.upload_slots == SLOTS


def test_every_book_comes_back_as_header_and_payload(player: Player, dealer: Callable[[], Socket]) -> None:
    sock = dealer()
    for book in range(player.library.books):
        sock.send(framing.request(player.library.id, book))
        expect_book(sock, player, book)


def test_requests_in_flight_together_are_all_answered(player: Player, dealer: Callable[[], Socket]) -> None:
    sock = dealer()
    for book in (3, 0, 2, 1):
        sock.send(framing.request(player.library.id, book))
    got = []
    for _ in range(4):
        frames = recv(sock)
        got.append(framing.decode(frames[0]).book.book)
    assert sorted(got) == [0, 1, 2, 3]


def test_two_players_are_answered_separately(player: Player, dealer: Callable[[], Socket]) -> None:
    first, second = dealer(), dealer()
    first.send(framing.request(player.library.id, 1))
    second.send(framing.request(player.library.id, 2))
    expect_book(second, player, 2)
    expect_book(first, player, 1)


# --- refusals ------------------------------------------------------------------------------------------


def test_unknown_library_is_not_found(player: Player, dealer: Callable[[], Socket]) -> None:
    sock = dealer()
    unknown = bytes(32)
    sock.send(framing.handshake(unknown, b"p" * 16))
    assert expect_error(sock, ErrorCode.NOT_FOUND).library_id == unknown
    sock.send(framing.request(unknown, 0))
    expect_error(sock, ErrorCode.NOT_FOUND)


@pytest.mark.parametrize("book", [4, 5000])
def test_a_book_out_of_range_is_refused(player: Player, dealer: Callable[[], Socket], book: int) -> None:
    sock = dealer()
    sock.send(framing.request(player.library.id, book))
    error = expect_error(sock, ErrorCode.NOT_FOUND)
    assert (error.library_id, error.book) == (player.library.id, book)


def test_a_cancel_gets_no_reply(player: Player, dealer: Callable[[], Socket]) -> None:
    sock = dealer()
    sock.send(framing.cancel(player.library.id, 0))
    sock.send(framing.request(player.library.id, 1))
    expect_book(sock, player, 1)  # the next thing on this socket is the book, not a reply to the cancel


# --- garbage -------------------------------------------------------------------------------------------


def garbage_cases() -> list[tuple[str, list[bytes], int]]:
    request = framing.request(bytes(32), 0)
    wrong_version = wire_pb2.PeerMessage(version=0, request=wire_pb2.Request(library_id=bytes(32))).SerializeToString()
    return [
        ("random bytes", [random.Random(1).randbytes(200)], ErrorCode.MALFORMED),
        ("empty frame", [b""], ErrorCode.UNSUPPORTED_VERSION),
        ("three frames", [request, request, request], ErrorCode.MALFORMED),
        ("truncated protobuf", [request[:-4]], ErrorCode.MALFORMED),
        ("too old a version", [wrong_version], ErrorCode.UNSUPPORTED_VERSION),
        ("no body", [wire_pb2.PeerMessage(version=1).SerializeToString()], ErrorCode.UNKNOWN_REQUEST),
        ("a bitfield", [framing.bitfield(bytes(32), 1, b"\x80", 1)], ErrorCode.UNKNOWN_REQUEST),
    ]


@pytest.mark.parametrize(("frames", "code"), [c[1:] for c in garbage_cases()], ids=[c[0] for c in garbage_cases()])
def test_garbage_gets_an_error_and_the_next_request_is_served(
    player: Player, dealer: Callable[[], Socket], frames: list[bytes], code: int
) -> None:
    sock = dealer()
    sock.send_multipart(frames)
    expect_error(sock, code)
    sock.send(framing.request(player.library.id, 0))
    expect_book(sock, player, 0)


def test_an_oversized_frame_drops_that_connection_only(player: Player, dealer: Callable[[], Socket]) -> None:
    bystander = dealer()
    bystander.send(framing.handshake(player.library.id, b""))
    assert recv_message(bystander).WhichOneof("body") == "bitfield"

    offender = dealer()
    dropped_by_peer(offender, [b"\x00" * (framing.MAX_CONTROL_FRAME + 1)])  # and so never answered

    bystander.send(framing.request(player.library.id, 3))
    expect_book(bystander, player, 3)
    fresh = dealer()
    fresh.send(framing.request(player.library.id, 2))
    expect_book(fresh, player, 2)


def test_no_book_before_a_handshake(player: Player, dealer: Callable[..., Socket]) -> None:
    stranger = dealer(handshake=False)
    stranger.send(framing.request(player.library.id, 1))
    error = expect_error(stranger, ErrorCode.FORBIDDEN)
    assert "handshake" in error.error.message
    stranger.send(framing.handshake(player.library.id, b""))
    assert recv_message(stranger).WhichOneof("body") == "bitfield"
    stranger.send(framing.request(player.library.id, 1))
    expect_book(stranger, player, 1)
