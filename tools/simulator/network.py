"""Simulated links: each player's upload and download, shared by the books crossing them.

How it works. A control frame (handshake, request, have, busy...) arrives one
latency after it is sent and uses no bandwidth (it is under 100 bytes; a book is
megabytes). Books on one connection go one after the other, as a TCP stream
carries them; the book at the head of each connection is a flow from the
sender's upload to the receiver's download. Whenever a flow starts or ends, the
flows sharing either of its links are re-rated, as TCP shares a link: each link's
capacity is water-filled over its flows, a flow taking no more than its other end
leaves free (what that end's other flows do not use), the rest shared equally by
the others, so a flow held back at one end leaves its share to the flows it
shares the other end with (max-min fairness, worked out at the two links that
changed; a link further away takes up what was freed at its own next change).
Before, a flow moved at min(upload / n, download / m) and a share one end could
not use was lost to both: on the same flows, that carried 78-86% of the upload
that max-min fair rates carry 88-92% of (Kraken's case, 64 hosts).
A flow's end is when its last byte left the sender; the receiver has it one
latency later.

A flow keeps one pending end event: a re-rate that brings its end closer
schedules another; one that pushes it later leaves the event, which then finds
bytes left and schedules the new end (most re-rates slow flows down, so most
schedule nothing).

The bytes moved are integrated over time for the idle-capacity figures. Rates here
are what a link carries of payload: a scenario whose links also carry TCP/IP's
headers and ACKs gives each link that share of its rate (``Scenario.payload_shares``).
"""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Callable

from tools.simulator.events import EventQueue

FINISH_SLACK = 1e-7  # a flow with less than this many seconds of bytes left is done (float rounding)


class Flow:
    __slots__ = ("done", "dst", "due", "left", "live", "number", "rate", "src", "stamp")

    def __init__(self, number: int, src: int, dst: int, size: int, done: Callable[[float], None], now: float) -> None:
        self.number, self.src, self.dst, self.left, self.done = number, src, dst, float(size), done
        self.live = True
        self.rate = 0.0
        self.stamp = now
        self.due = math.inf  # when its next end-of-flow event fires (at or before its end)


class Links:
    """Every player's upload and download, and the books in flight over them."""

    def __init__(self, queue: EventQueue, uploads: list[float], downloads: list[float]) -> None:
        self.queue = queue
        self.up_rate, self.down_rate = uploads, downloads
        self.up: list[dict[int, Flow]] = [{} for _ in uploads]  # flows leaving each player, by flow number
        self.down: list[dict[int, Flow]] = [{} for _ in downloads]
        self._next_id = 0
        self.total_rate = 0.0  # bytes/s moving now, over every link
        self.up_used = [0.0] * len(uploads)  # bytes/s each link carries now
        self.down_used = [0.0] * len(downloads)
        self.moved = 0.0  # bytes moved since the start
        self._stamp = 0.0
        self.flows_started = 0
        self.streams: dict[bytes, deque[tuple[int, Callable[[float], None]]]] = {}  # connection -> books waiting
        self.active: dict[bytes, Flow] = {}  # connection -> the book it is carrying
        self.ends: dict[bytes, tuple[int, int]] = {}  # connection -> (sender, receiver)
        self.by_player: list[dict[bytes, None]] = [{} for _ in uploads]  # connections at each player

    def _advance(self, now: float) -> None:
        self.moved += self.total_rate * (now - self._stamp)
        self._stamp = now

    def uploaded(self, now: float) -> float:
        """Bytes moved by every upload since the start, up to ``now``."""
        self._advance(now)
        return self.moved

    def send(self, connection: bytes, src: int, dst: int, size: int, done: Callable[[float], None]) -> None:
        """A book of ``size`` bytes for ``dst`` is handed to ``src``'s ``connection``; ``done(t)`` once its
        last byte left ``src`` (after the books before it on that connection)."""
        if connection in self.active:
            self.streams[connection].append((size, done))
            return
        if connection not in self.ends:
            self.ends[connection] = (src, dst)
            self.by_player[src][connection] = None
            self.by_player[dst][connection] = None
            self.streams[connection] = deque()
        self.active[connection] = self._start(connection, src, dst, size, done)

    def close(self, connection: bytes) -> None:
        """The connection is gone: its book stops where it is, the books behind it are dropped."""
        ends = self.ends.pop(connection, None)
        if ends is None:
            return
        del self.streams[connection]
        self.by_player[ends[0]].pop(connection, None)
        self.by_player[ends[1]].pop(connection, None)
        flow = self.active.pop(connection, None)
        if flow is not None:
            self._advance(self.queue.now)
            if self._remove(flow, self.queue.now):
                self._rerate(flow.src, flow.dst, self.queue.now)

    def _start(self, connection: bytes, src: int, dst: int, size: int, done: Callable[[float], None]) -> Flow:
        now = self.queue.now
        self._advance(now)

        def finished(at: float) -> None:
            queued = self.streams.get(connection)
            if queued:
                self.active[connection] = self._start(connection, src, dst, *queued.popleft())
            else:
                self.active.pop(connection, None)
            done(at)

        flow = Flow(self._next_id, src, dst, size, finished, now)
        self._next_id += 1
        self.up[src][flow.number] = flow
        self.down[dst][flow.number] = flow
        self.flows_started += 1
        self._rerate(src, dst, now)
        return flow

    def abort(self, player: int) -> None:
        """``player`` is gone: every connection to or from it closes (its books are lost)."""
        for connection in list(self.by_player[player]):
            self.close(connection)

    def _remove(self, flow: Flow, now: float) -> bool:
        if not flow.live:
            return False
        flow.live = False
        del self.up[flow.src][flow.number]
        del self.down[flow.dst][flow.number]
        self.total_rate -= flow.rate
        self.up_used[flow.src] = self.up_used[flow.src] - flow.rate if self.up[flow.src] else 0.0
        self.down_used[flow.dst] = self.down_used[flow.dst] - flow.rate if self.down[flow.dst] else 0.0
        flow.rate = 0.0
        return True

    def _rerate(self, src: int, dst: int, now: float) -> None:
        """Water-fill ``src``'s upload over its flows, then ``dst``'s download over its flows."""
        down_rate, down_used = self.down_rate, self.down_used
        self._fill(list(self.up[src].values()), self.up_rate[src],
                   [down_rate[f.dst] - down_used[f.dst] + f.rate for f in self.up[src].values()], now)
        up_rate, up_used = self.up_rate, self.up_used
        self._fill(list(self.down[dst].values()), self.down_rate[dst],
                   [up_rate[f.src] - up_used[f.src] + f.rate for f in self.down[dst].values()], now)

    def _fill(self, flows: list[Flow], capacity: float, room: list[float], now: float) -> None:
        """Share ``capacity`` among ``flows``: none above its ``room`` at the other end, the rest equally."""
        if not flows:
            return
        order = sorted(range(len(flows)), key=room.__getitem__)
        left, count = capacity, len(flows)
        for index in order:
            rate = min(max(0.0, room[index]), left / count)
            left -= rate
            count -= 1
            self._set(flows[index], rate, now)

    def _set(self, flow: Flow, rate: float, now: float) -> None:
        if rate == flow.rate:
            return
        flow.left -= flow.rate * (now - flow.stamp)
        flow.stamp = now
        change = rate - flow.rate
        self.total_rate += change
        self.up_used[flow.src] += change
        self.down_used[flow.dst] += change
        flow.rate = rate
        if rate <= 0.0:
            return  # held at its other end: its end is scheduled when it moves again
        end = now + max(0.0, flow.left) / rate
        if end < flow.due:  # a later end is found by the event already due (see _end)
            flow.due = end
            self.queue.at(end, flow.src, self._end, flow, end)

    def _end(self, flow: Flow, due: float) -> None:
        """The flow's end as last scheduled: it ends now, or (slowed since) it is looked at again at its new end."""
        if not flow.live or due != flow.due:
            return  # aborted, or an earlier end was scheduled since
        now = self.queue.now
        left = flow.left - flow.rate * (now - flow.stamp)
        if left > flow.rate * FINISH_SLACK or flow.rate <= 0.0:
            flow.left, flow.stamp = left, now
            flow.due = now + left / flow.rate if flow.rate > 0.0 else math.inf
            if flow.due < math.inf:
                self.queue.at(flow.due, flow.src, self._end, flow, flow.due)
            return
        self._advance(now)
        self._remove(flow, now)
        self._rerate(flow.src, flow.dst, now)
        flow.done(now)

    def busy_uploads(self) -> int:
        return sum(1 for flows in self.up if flows)
