"""The simulated clock: one queue of timed events, popped in a fixed order.

Events are ordered by (time, node, sequence of that node). The sequence is
counted per node, so the order in which one handler emits events to several
other nodes (a loop over a set of peers, say) never changes which runs first:
the same run gives the same events in the same order, whatever the process's
hash seed.
"""

from __future__ import annotations

import heapq
from collections.abc import Callable
from typing import Any

Handler = Callable[..., None]


class EventQueue:
    def __init__(self) -> None:
        self.now = 0.0
        self.handled = 0
        self._heap: list[tuple[float, int, int, Handler, tuple[Any, ...]]] = []
        self._seq: dict[int, int] = {}

    def at(self, when: float, node: int, handler: Handler, *args: Any) -> None:
        """Run ``handler(*args)`` at ``when`` (never before now), as an event of ``node``."""
        seq = self._seq.get(node, 0)
        self._seq[node] = seq + 1
        heapq.heappush(self._heap, (max(when, self.now), node, seq, handler, args))

    def run(self, until: float, done: Callable[[], bool]) -> None:
        """Handle events in order until ``done()`` or the clock passes ``until``."""
        heap = self._heap
        while heap and not done():
            when, _, _, handler, args = heap[0]
            if when > until:
                break
            heapq.heappop(heap)
            self.now = when
            self.handled += 1
            handler(*args)

    def __len__(self) -> int:
        return len(self._heap)
