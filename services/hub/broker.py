"""The hub's socket loop: one ROUTER, kept thin around :class:`HubLogic`.

How this works: :meth:`Broker.run` polls the ROUTER, the pinger's PAIR socket
and an inproc control socket. Readable ROUTER messages are drained in
batches of up to ``_BATCH``, each with the address it came from (libzmq's
``Peer-Address`` property of its first frame), and answered together by
``logic.handle_batch`` (the batch's periodic announces refresh a remote store
in a few pipelined round trips); replies are sent ``_FLUSH`` at a time (sending each reply at once
woke zmq's I/O thread per message and cost about a third more CPU per
request); sends never block (a ROUTER drops replies to clients that are gone
or full). Each request's latency is its batch's: it waited for all of it. Ping
requests the logic queued go to the pinger thread; its results come back on
the PAIR socket. Every ``tick`` seconds (monotonic) the logic does its
housekeeping with the current ``clock()`` (wall-clock by default; tests pass
a fake one). The loop ends when :meth:`request_stop` was called from the
loop's own thread (a signal handler) or when anything arrives on the control
socket (:func:`stop_broker`, from another thread).

With ``keys`` the ROUTER is a CURVE server and admits the keys of ``allowlist``
(see :mod:`services.wire.admission`); each message is handed to the logic with
its client's key (libzmq's ``User-Id`` of its first frame), which the logic
checks again on every request, so a revoked key stops being answered at once.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable
from time import perf_counter

import zmq

from services.hub import pinger
from services.hub.logic import HubLogic
from services.runtime.logs import get_logger
from services.runtime.metrics_http import MetricsEndpoint
from services.wire.admission import Admission, Gate, key_of, source_of
from services.wire.curve import Allowlist, KeyPair

_BATCH = 256  # messages handled per poll wake-up, at most
_MAX_FRAMES = 4  # frames of one message kept; a request has at most 3 (identity, delimiter, body)
_QUEUE_MESSAGES = 64  # per connection, in each direction: what libzmq holds for a client we have not read
_FLUSH = 8  # replies held back before sending, at most (all are sent before the next poll)
# Plain ints: pyzmq's flag enums cost an enum construction per combined flag.
_NOBLOCK = int(zmq.NOBLOCK)
_MORE = int(zmq.NOBLOCK | zmq.SNDMORE)

log = get_logger("services")


def normalize_bind(endpoint: str) -> str:
    """``tcp://host:0`` means a random free port: zmq spells it ``tcp://host:*``."""
    if endpoint.startswith("tcp://") and endpoint.endswith(":0"):
        return endpoint[:-1] + "*"
    return endpoint


def stop_broker(context: zmq.Context[zmq.Socket[bytes]], control_endpoint: str) -> None:
    """Ask a broker running in another thread of this process to stop."""
    with context.socket(zmq.PUSH) as push:
        push.linger = 1000
        push.connect(control_endpoint)
        push.send(b"stop")


class Broker:
    """Serves :class:`HubLogic` on a ROUTER socket until stopped."""

    def __init__(
        self,
        logic: HubLogic,
        context: zmq.Context[zmq.Socket[bytes]],
        *,
        clock: Callable[[], float] = time.time,
        tick: float = 0.05,
        ping_timeout: float = 2.0,
        keys: KeyPair | None = None,
        allowlist: Allowlist | None = None,
    ) -> None:
        self.logic = logic
        self.context = context
        self.clock = clock
        self.tick = tick
        self.ping_timeout = ping_timeout
        self.endpoint = ""
        self.control_endpoint = f"inproc://emma-hub-control-{uuid.uuid4().hex}"
        self._pinger_endpoint = f"inproc://emma-hub-pinger-{uuid.uuid4().hex}"
        self._stopping = False
        self._router = context.socket(zmq.ROUTER)
        self._router.linger = 0
        self._router.setsockopt(zmq.MAXMSGSIZE, logic.limits.max_message_bytes)
        self._router.setsockopt(zmq.RCVHWM, _QUEUE_MESSAGES)
        self._router.setsockopt(zmq.SNDHWM, _QUEUE_MESSAGES)
        self.gate = Gate(context, Admission(logic.limits.connections_per_address, logic.limits.max_connections), "hub",
                         allowlist)
        self.gate.guard(self._router, keys)
        self.curve = keys is not None
        if self.curve:
            logic.keys = self.gate.allowlist
        self.metrics: MetricsEndpoint | None = None  # set by the caller to serve /metrics from this loop
        self._control = context.socket(zmq.PULL)
        self._control.linger = 0
        self._control.bind(self.control_endpoint)

    def bind(self, endpoint: str) -> str:
        """Bind the ROUTER (``:0`` = random port); return the endpoint actually bound."""
        self._router.bind(normalize_bind(endpoint))
        self.endpoint = self._router.getsockopt_string(zmq.LAST_ENDPOINT)
        return self.endpoint

    def request_stop(self) -> None:
        """Stop after the current poll; safe from a signal handler in the loop's thread."""
        self._stopping = True

    def run(self) -> None:
        """Serve until stopped, then stop the pinger thread. Sockets stay open until :meth:`close`."""
        pair = self.context.socket(zmq.PAIR)
        pair.linger = 0
        pair.bind(self._pinger_endpoint)
        thread = pinger.Pinger(self.context, self._pinger_endpoint, self.ping_timeout).start()
        log.info("hub_serving", endpoint=self.endpoint, store=self.logic.store.name)
        try:
            self._loop(pair)
        finally:
            pair.send(pinger.STOP)
            thread.join(timeout=5)
            pair.close()
            log.info("hub_stopped", endpoint=self.endpoint)

    def close(self) -> None:
        """Close the ROUTER and control sockets (after :meth:`run` returned, or instead of it)."""
        self._router.close()
        self._control.close()
        self.gate.close()

    def _loop(self, pair: zmq.Socket[bytes]) -> None:
        poller = zmq.Poller()
        poller.register(self._router, zmq.POLLIN)
        poller.register(pair, zmq.POLLIN)
        poller.register(self._control, zmq.POLLIN)
        gate = set(self.gate.sockets())
        for sock in gate:
            poller.register(sock, zmq.POLLIN)
        metrics = set(self.metrics.sockets()) if self.metrics is not None else set()
        for sock in metrics:
            poller.register(sock, zmq.POLLIN)
        next_tick = time.monotonic() + self.tick
        while not self._stopping:
            wait_ms = max(0, int((next_tick - time.monotonic()) * 1000))
            events = dict(poller.poll(wait_ms))
            if self._control in events:
                break
            if gate.intersection(events):
                self.gate.handle(time.monotonic())
            if self.metrics is not None and metrics.intersection(events):
                self.metrics.handle()
            if self._router in events:
                self._serve_batch()
            if pair in events:
                self._ping_results(pair)
            for endpoint in self.logic.take_pings():
                pair.send_multipart([pinger.PING, endpoint.encode()])
            if time.monotonic() >= next_tick:
                next_tick = time.monotonic() + self.tick
                self._tick()

    def _serve_batch(self) -> None:
        router, logic = self._router, self.logic
        messages: list[tuple[list[bytes], str]] = []
        keys: list[bytes] | None = [] if self.curve else None
        started = perf_counter()
        for _ in range(_BATCH):
            try:
                first = router.recv(_NOBLOCK, copy=False)
            except zmq.Again:
                break
            frames = [first.bytes]
            while router.rcvmore:  # a message of many frames is read to its end, but only _MAX_FRAMES are kept
                frame = router.recv(_NOBLOCK)
                if len(frames) < _MAX_FRAMES:
                    frames.append(frame)
            messages.append((frames, source_of(first)))
            if keys is not None:
                keys.append(key_of(first))
        if not messages:
            return
        replies = [reply for reply in logic.handle_batch(messages, self.clock(), keys) if reply is not None]
        elapsed = perf_counter() - started  # every request of the batch waited for all of it
        observe = logic.latency.observe
        for _ in messages:
            observe(elapsed)
        for at in range(0, len(replies), _FLUSH):
            self._send(replies[at:at + _FLUSH])

    def _send(self, replies: list[list[bytes]]) -> None:
        router = self._router
        for reply in replies:
            try:
                for frame in reply[:-1]:
                    router.send(frame, _MORE)
                router.send(reply[-1], _NOBLOCK)
            except zmq.Again:
                log.warning("hub_reply_dropped", client=reply[0].hex(), reason="client queue full")

    def _ping_results(self, pair: zmq.Socket[bytes]) -> None:
        while True:
            try:
                frames = pair.recv_multipart(zmq.NOBLOCK)
            except zmq.Again:
                return
            if len(frames) == 3 and frames[0] == pinger.RESULT:
                self.logic.ping_done(frames[1].decode("utf-8", "replace"), frames[2] == b"1", self.clock())

    def _tick(self) -> None:
        self.gate.refresh(time.monotonic())
        try:
            self.logic.tick(self.clock())
        except Exception:
            log.exception("hub_tick_failed")
