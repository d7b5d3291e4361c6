"""The CLI's requests the Maestro forwards to its Requestor, and the answers it owes: plain logic, no sockets.

``emma get``, ``pause``, ``resume``, ``remove`` and ``share`` change what the player holds,
which its Requestor alone writes while it runs. The Maestro never waits for it: ``submit``
turns the request into a ``ChildCommand`` with a fresh ``id`` and keeps the CLI client's
envelope pending; ``answer`` pairs the Requestor's ``ChildReply`` with it; ``expire`` answers
those the Requestor left unanswered for ``timeout`` seconds, and ``abandon`` all of them when
the Requestor stops. A request is refused at once while the Requestor does not run, or when
``limit`` requests are already pending (a client cannot grow the Maestro's memory).
"""

from __future__ import annotations

from dataclasses import dataclass

from google.protobuf.message import DecodeError

from services.runtime.rundir import REQUESTOR
from services.supervisor.policy import ServiceState
from services.wire.errors import ErrorCode, ProtocolError
from services.wire.pb import common_pb2, control_pb2
from services.wire.versions import CONTROL

FORWARD_SECONDS = 10.0  # a forwarded request the Requestor has not answered by then gets an error
MAX_PENDING = 64  # forwarded requests awaiting the Requestor at once; more are refused (BUSY)
FORWARDED = ("add", "library", "seed")  # the ControlRequest bodies the Requestor answers
RETRY = "see `emma downloads` whether it was done, and try again"
NOT_RUNNING = {
    ServiceState.BACKOFF: "it is restarting after a failure; try again in a few seconds (`emma services` says when)",
    ServiceState.FATAL: f"it failed too often: fix the cause (see logs/{REQUESTOR}.out), then "
                        f"`emma services --start {REQUESTOR}`",
    ServiceState.OFF: f"it was stopped: start it with `emma services --start {REQUESTOR}`",
    ServiceState.STOPPING: f"it is stopping: start it again with `emma services --start {REQUESTOR}` once it is off",
}


@dataclass(frozen=True)
class Pending:
    envelope: tuple[bytes, ...]  # the CLI client's routing frames
    deadline: float


@dataclass(frozen=True)
class Answer:
    envelope: tuple[bytes, ...]
    reply: bytes  # an encoded ControlReply


class Forwarder:
    def __init__(self, timeout: float = FORWARD_SECONDS, limit: int = MAX_PENDING) -> None:
        self.timeout = timeout
        self.limit = limit
        self.pending: dict[int, Pending] = {}
        self.last_id = 0
        self.stray = 0  # replies that matched nothing pending (late, or not from our Requestor)

    def submit(self, envelope: tuple[bytes, ...], request: control_pb2.ControlRequest, now: float,
               requestor: ServiceState) -> tuple[bytes, Answer | None]:
        """``(command, None)``: send ``command`` to the Requestor; ``(b"", answer)``: answer the CLI at once."""
        kind = request.WhichOneof("body") or ""
        if requestor not in (ServiceState.STARTING, ServiceState.RUNNING):
            why = NOT_RUNNING.get(requestor, "it does not run")
            return b"", _error(envelope, ErrorCode.UNAVAILABLE,
                               f"the player's {REQUESTOR} does not run ({requestor.value}): {why}; nothing was changed")
        if len(self.pending) >= self.limit:
            return b"", _error(envelope, ErrorCode.BUSY, f"{len(self.pending)} requests already wait for the "
                                                          f"player's {REQUESTOR}; try again once they are answered")
        self.last_id += 1
        command = control_pb2.ChildCommand(version=CONTROL.current, id=self.last_id)
        getattr(command, kind).CopyFrom(getattr(request, kind))
        self.pending[self.last_id] = Pending(envelope, now + self.timeout)
        return command.SerializeToString(), None

    def answer(self, frame: bytes) -> Answer | None:
        """The Requestor's reply, for the CLI client that asked; None if it matches nothing pending."""
        reply = control_pb2.ChildReply()
        try:
            reply.ParseFromString(frame)
        except DecodeError:
            reply.Clear()
        pending = self.pending.pop(reply.id, None)
        if pending is None:
            self.stray += 1
            return None
        out = control_pb2.ControlReply(version=CONTROL.current)
        if reply.WhichOneof("body") == "ok":
            out.ok.CopyFrom(reply.ok)
        elif reply.WhichOneof("body") == "error":
            out.error.CopyFrom(reply.error)
        else:
            out.error.CopyFrom(ProtocolError(ErrorCode.INTERNAL, f"the player's {REQUESTOR} sent an unreadable "
                                                                 f"answer; {RETRY}").to_pb())
        return Answer(pending.envelope, out.SerializeToString())

    def expire(self, now: float) -> list[Answer]:
        """An error for each request the Requestor has not answered in time."""
        late = [command_id for command_id, pending in self.pending.items() if now >= pending.deadline]
        return [self._fail(command_id, ErrorCode.UNAVAILABLE,
                           f"the player's {REQUESTOR} did not answer within {self.timeout:g} s (busy, or hung: "
                           f"`emma services` says); {RETRY}") for command_id in late]

    def abandon(self, why: str) -> list[Answer]:
        """The Requestor stopped (or restarted): an error for every request still pending."""
        return [self._fail(command_id, ErrorCode.UNAVAILABLE,
                           f"the player's {REQUESTOR} {why} before it answered; {RETRY}")
                for command_id in list(self.pending)]

    def next_deadline(self) -> float | None:
        return min((pending.deadline for pending in self.pending.values()), default=None)

    def _fail(self, command_id: int, code: common_pb2.ErrorCode.ValueType, message: str) -> Answer:
        pending = self.pending.pop(command_id)
        return _error(pending.envelope, code, message)


def _error(envelope: tuple[bytes, ...], code: common_pb2.ErrorCode.ValueType, message: str) -> Answer:
    reply = control_pb2.ControlReply(version=CONTROL.current, error=ProtocolError(code, message).to_pb())
    return Answer(envelope, reply.SerializeToString())
