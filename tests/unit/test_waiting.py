"""services.wire.waiting: what a socket holds, taken whole, in order, at most a limit, never raising Again."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
import zmq

from services.wire.waiting import waiting


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
