"""services.wire.waiting: what a socket holds, taken whole, in order, at most a limit, never raising Again."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
import zmq

from services.wire.waiting import SocketWatch, waiting


@pytest.fixture
def pair() -> Iterator[tuple[zmq.Socket[Any], zmq.Socket[Any]]]:
    ctx: zmq.Context[Any] = zmq.Context()
    sender, receiver = ctx.socket(zmq.PAIR), ctx.socket(zmq.PAIR)
    receiver.bind("inproc://waiting")
    sender.connect("inproc://waiting")
    yield sender, receiver
    ctx.destroy(linger=0)


def taken(socket: zmq.Socket[Any], limit: int) -> list[list[bytes]]:
    return [[frame.bytes for frame in frames] for frames in waiting(socket, limit)]


def test_nothing_waiting_is_an_empty_take(pair: tuple[zmq.Socket[Any], zmq.Socket[Any]]) -> None:
    _, receiver = pair
    assert taken(receiver, 10) == []


def test_messages_come_whole_and_in_order_up_to_the_limit(pair: tuple[zmq.Socket[Any], zmq.Socket[Any]]) -> None:
    sender, receiver = pair
    sender.send(b"one")
    sender.send_multipart([b"two", b"payload"])
    sender.send_multipart([b"three", b"a", b"b"])
    assert receiver.poll(10_000) == zmq.POLLIN  # inproc: there once sent; the poll only guards the test
    assert taken(receiver, 2) == [[b"one"], [b"two", b"payload"]]
    assert taken(receiver, 2) == [[b"three", b"a", b"b"]]  # what the limit left is taken next time
    assert taken(receiver, 2) == []


def test_the_frames_are_not_copied(pair: tuple[zmq.Socket[Any], zmq.Socket[Any]]) -> None:
    sender, receiver = pair
    sender.send_multipart([b"header", b"x" * 100_000])
    assert receiver.poll(10_000) == zmq.POLLIN
    [[header, payload]] = list(waiting(receiver, 1))
    assert isinstance(payload, zmq.Frame) and len(payload.buffer) == 100_000 and header.bytes == b"header"


@pytest.fixture
def pairs() -> Iterator[list[tuple[zmq.Socket[Any], zmq.Socket[Any]]]]:
    ctx: zmq.Context[Any] = zmq.Context()
    out = []
    for i in range(3):
        sender, receiver = ctx.socket(zmq.PAIR), ctx.socket(zmq.PAIR)
        receiver.bind(f"inproc://watch{i}")
        sender.connect(f"inproc://watch{i}")
        out.append((sender, receiver))
    yield out
    ctx.destroy(linger=0)


def test_the_watch_wakes_for_the_socket_that_got_a_message(
        pairs: list[tuple[zmq.Socket[Any], zmq.Socket[Any]]]) -> None:
    watch = SocketWatch()
    for _, receiver in pairs:
        watch.add(receiver)
    assert watch.wait(0) == []  # nothing yet (the sockets just added were asked)
    pairs[1][0].send(b"hello")
    assert watch.wait(10.0) == [pairs[1][1]]  # returns as soon as it is there: the timeout only guards the test
    assert taken(pairs[1][1], 10) == [[b"hello"]]
    watch.touch(pairs[1][1])
    assert watch.wait(0) == []
    watch.close()


def test_a_touched_socket_is_asked_again_and_messages_left_are_found(
        pairs: list[tuple[zmq.Socket[Any], zmq.Socket[Any]]]) -> None:
    watch = SocketWatch()
    sender, receiver = pairs[0]
    watch.add(receiver)
    for i in range(3):
        sender.send(b"%d" % i)
    assert watch.wait(10.0) == [receiver]
    assert taken(receiver, 2) == [[b"0"], [b"1"]]  # one left; the socket's descriptor will not fire for it again
    watch.touch(receiver)
    assert watch.wait(0) == [receiver]  # found at once because the loop said it used the socket
    assert taken(receiver, 2) == [[b"2"]]


def test_a_removed_socket_is_no_longer_watched(pairs: list[tuple[zmq.Socket[Any], zmq.Socket[Any]]]) -> None:
    watch = SocketWatch()
    (first_sender, first), (second_sender, second) = pairs[0], pairs[1]
    watch.add(first)
    watch.add(second)
    watch.remove(first)
    first_sender.send(b"lost")  # before the close: a PAIR with its peer gone may block a send
    first.close(linger=0)
    watch.touch(first)  # a socket no longer watched is ignored
    second_sender.send(b"kept")
    assert watch.wait(10.0) == [second]
