"""The Maestro's table of requests forwarded to the Requestor, on a fake clock: no sockets, no sleeps."""

from __future__ import annotations

import pytest

from services.supervisor.forward import Answer, Forwarder
from services.supervisor.policy import ServiceState
from services.wire.errors import ErrorCode
from services.wire.pb import control_pb2
from services.wire.versions import CONTROL

RUNNING = ServiceState.RUNNING
PAUSE = control_pb2.ControlRequest(version=CONTROL.current, library=control_pb2.LibraryAction(
    library_id="ab", action=control_pb2.LibraryAction.PAUSE))


def client(n: int) -> tuple[bytes, ...]:
    return (f"client-{n}".encode(),)


def sent(forwarder: Forwarder, n: int, now: float = 0.0) -> control_pb2.ChildCommand:
    frame, answer = forwarder.submit(client(n), PAUSE, now, RUNNING)
    assert answer is None
    command = control_pb2.ChildCommand()
    command.ParseFromString(frame)
    return command


def replied(answer: Answer | None) -> control_pb2.ControlReply:
    assert answer is not None
    reply = control_pb2.ControlReply()
    reply.ParseFromString(answer.reply)
    assert reply.version == CONTROL.current
    return reply


def child_reply(command_id: int, message: str) -> bytes:
    return control_pb2.ChildReply(version=CONTROL.current, id=command_id,
                                  ok=control_pb2.Ok(message=message)).SerializeToString()


def test_the_request_goes_with_a_fresh_id_and_its_answer_back_to_the_client_that_asked() -> None:
    forwarder = Forwarder()
    first, second = sent(forwarder, 1), sent(forwarder, 2)
    assert first.id != second.id
    assert first.library == PAUSE.library and first.version == CONTROL.current
    answer = forwarder.answer(child_reply(second.id, "paused movie"))
    assert answer is not None and answer.envelope == client(2)
    assert replied(answer).ok.message == "paused movie"
    assert forwarder.answer(child_reply(second.id, "again")) is None  # answered once
    assert forwarder.stray == 1
    assert list(forwarder.pending) == [first.id]


def test_an_error_from_the_requestor_reaches_the_client_as_it_was() -> None:
    forwarder = Forwarder()
    command = sent(forwarder, 1)
    frame = control_pb2.ChildReply(version=CONTROL.current, id=command.id, error=control_pb2.ControlReply().error)
    frame.error.code, frame.error.message = ErrorCode.NOT_FOUND, "no library with id ab"
    reply = replied(forwarder.answer(frame.SerializeToString()))
    assert (reply.error.code, reply.error.message) == (ErrorCode.NOT_FOUND, "no library with id ab")


@pytest.mark.parametrize("frame", [b"\xff\xfe", b""])
def test_garbage_from_the_requestor_side_matches_nothing(frame: bytes) -> None:
    forwarder = Forwarder()
    sent(forwarder, 1)
    assert forwarder.answer(frame) is None
    assert len(forwarder.pending) == 1


@pytest.mark.parametrize(("state", "says"), [
    (ServiceState.BACKOFF, "restarting"),
    (ServiceState.FATAL, "emma services --start requestor"),
    (ServiceState.OFF, "emma services --start requestor"),
    (ServiceState.STOPPING, "stopping"),
])
def test_a_requestor_that_does_not_run_is_an_answer_at_once_saying_what_to_do(state: ServiceState,
                                                                             says: str) -> None:
    forwarder = Forwarder()
    frame, answer = forwarder.submit(client(1), PAUSE, 0.0, state)
    reply = replied(answer)
    assert frame == b"" and not forwarder.pending
    assert reply.error.code == ErrorCode.UNAVAILABLE
    assert says in reply.error.message and "nothing was changed" in reply.error.message


def test_an_unanswered_request_expires_at_its_deadline_not_before() -> None:
    forwarder = Forwarder(timeout=10.0)
    sent(forwarder, 1, now=100.0)
    sent(forwarder, 2, now=105.0)
    assert forwarder.next_deadline() == 110.0
    assert forwarder.expire(109.9) == []
    [late] = forwarder.expire(110.0)
    assert late.envelope == client(1)
    reply = replied(late)
    assert reply.error.code == ErrorCode.UNAVAILABLE and "did not answer within 10 s" in reply.error.message
    assert forwarder.next_deadline() == 115.0


def test_pending_requests_are_bounded() -> None:
    forwarder = Forwarder(limit=3)
    for n in range(3):
        sent(forwarder, n)
    frame, answer = forwarder.submit(client(9), PAUSE, 0.0, RUNNING)
    assert frame == b"" and replied(answer).error.code == ErrorCode.BUSY
    assert len(forwarder.pending) == 3


def test_a_requestor_that_stops_leaves_no_client_waiting() -> None:
    forwarder = Forwarder()
    commands = [sent(forwarder, n) for n in range(3)]
    answers = forwarder.abandon("stopped (BACKOFF)")
    assert [a.envelope for a in answers] == [client(n) for n in range(3)]
    assert all("stopped (BACKOFF) before it answered" in replied(a).error.message for a in answers)
    assert not forwarder.pending and forwarder.next_deadline() is None
    assert forwarder.answer(child_reply(commands[0].id, "too late")) is None
