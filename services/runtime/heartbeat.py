"""Child side of supervision: beat from the main loop, and die with the parent.

A service calls ``tick(now, counters)`` from its own main loop, so a wedged
loop stops beating and the Maestro sees it hung. ``tick`` also checks that
the parent is still there; if the Maestro is gone (we were re-parented), the
child exits instead of living on as an orphan.

A service dying of an exception says why in one last beat (``last_words``),
so the Maestro keeps the cause even when the disk its logs go to is full.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import Any

import zmq

from services.runtime import faults
from services.wire.pb import control_pb2

LAST_WORDS = "crashed: "  # a beat whose detail starts so is the child's last: why it is about to exit
LAST_WORDS_WAIT = 0.5  # seconds a dying child waits for its last beat to leave
# A larger heartbeat frame drops the connection it came on. A Requestor's beat carries up to four counters of
# about 80 bytes for each download (peers, hub, stalled, refused): 1 MiB holds them for more than 3,000 downloads,
# three times the hub's 1,000 libraries per player.
MAX_BEAT_BYTES = 1024 * 1024


class ParentGone(SystemExit):
    """Raised from ``tick`` when the Maestro that started us has died."""


class HeartbeatSender:
    def __init__(self, ctx: zmq.Context[Any], endpoint: str, service: str, interval: float = 0.5) -> None:
        self.socket = ctx.socket(zmq.PUSH)
        self.socket.setsockopt(zmq.LINGER, 0)
        self.socket.setsockopt(zmq.SNDHWM, 4)
        self.socket.setsockopt(zmq.IMMEDIATE, 1)
        self.socket.connect(endpoint)
        self.service = service
        self.interval = interval
        self.parent = os.getppid()
        self.sequence = 0
        self.next_beat = 0.0
        self.detail = "running"

    def tick(self, now: float, counters: Callable[[], dict[str, int]]) -> None:
        if now < self.next_beat:
            return
        if os.getppid() != self.parent:
            raise ParentGone(0)
        self.next_beat = now + self.interval
        self._send(self.detail, counters())
        faults.crash_in_loop(self.service, self.sequence)

    def last_words(self, error: BaseException) -> bool:
        """Say why the process is about to exit; True once that beat has left (waits up to LAST_WORDS_WAIT)."""
        tracker = self._send(f"{LAST_WORDS}{type(error).__name__}: {error}", {})
        if tracker is None:
            return False
        try:
            tracker.wait(LAST_WORDS_WAIT)
        except zmq.NotDone:
            return False
        return True

    def _send(self, detail: str, counters: dict[str, int]) -> zmq.MessageTracker | None:
        self.sequence += 1
        beat = control_pb2.Heartbeat(
            service=self.service, pid=os.getpid(), state=detail,
            counters=[control_pb2.Counter(name=k, value=max(0, v)) for k, v in counters.items()],
        )
        try:
            # tracked (libzmq lets go of the frame once written), so last_words can wait for it to leave
            tracker: zmq.MessageTracker = self.socket.send(beat.SerializeToString(), zmq.NOBLOCK, copy=False,
                                                           track=True)
            return tracker
        except zmq.Again:
            return None

    def close(self) -> None:
        self.socket.close(linger=0)
