"""One simulated player: the Requestor's and the Distributor's logic, driven as their loops drive them.

How it works. Messages, drained books and hub answers for a player wait in its
inboxes until its next loop turn (at most ``turn`` seconds after the first
arrives, so what arrives together is handled together, as a real loop handles
what one poll returned). A turn does what one turn of each service loop does,
in order: the Distributor handles requests and drains, the Requestor handles
messages and hub answers and then ``tick``s, the books it landed become one
``have`` per subscriber (the Distributor's batch of local notices), and the
Distributor ``serve``s. Actions are carried out as ``requestor.py`` and
``distributor.py`` carry them out, except that the disk and the sockets are
the simulation's: a landed book is written at once, a sync returns at once.
"""

from __future__ import annotations

import math
from collections import deque
from typing import Any, Protocol

from services.hub.client_types import PeerInfo
from services.peer import requestor_logic as rl
from services.peer.distributor_logic import DistributorLogic, Send, SendBook
from services.peer.library import Library
from services.peer.requestor_logic import RequestorLogic
from services.peer.writer import Outcome, Written
from services.wire.pb import wire_pb2

IDLE_POLL = 0.1  # the Requestor's loop turns at least this often (its poll timeout in requestor.py)


class Payload:
    """A book's payload frame: only its length matters here."""

    __slots__ = ("length",)

    def __init__(self, length: int) -> None:
        self.length = length

    def __len__(self) -> int:
        return self.length


class World(Protocol):
    """What a player needs from the simulation: sockets, links and the hub."""

    def wake(self, player: Player, when: float) -> None: ...
    def connect(self, player: Player, endpoint: str) -> bytes: ...
    def disconnect(self, player: Player, endpoint: str, identity: bytes) -> None: ...
    def to_distributor(self, player: Player, endpoint: str, identity: bytes, frame: bytes) -> None: ...
    def to_requestors(self, player: Player, identities: list[bytes], frame: bytes) -> None: ...
    def send_book(self, player: Player, action: SendBook) -> None: ...
    def ask_hub(self, player: Player, library_id: bytes, numwant: int) -> None: ...
    def report(self, player: Player, library_id: bytes, endpoint: str) -> None: ...
    def finished(self, player: Player) -> None: ...


class Player:
    def __init__(self, index: int, world: World, requestor: RequestorLogic, distributor: DistributorLogic,
                 turn: float) -> None:
        self.index = index
        self.world = world
        self.host = f"10.{(index + 1) >> 16 & 255}.{(index + 1) >> 8 & 255}.{(index + 1) & 255}"
        self.endpoint = f"tcp://{self.host}:7000"
        self.player_id = (index + 1).to_bytes(16, "big")
        self.hub_identity = b"hub-link-%d" % index
        self.requestor = requestor
        self.requestor.own_endpoint = self.endpoint
        self.distributor = distributor
        self.turn_seconds = turn
        self.alive = True
        self.next_turn = math.inf
        self.conns: dict[str, bytes] = {}  # endpoint -> the identity of our connection to that Distributor
        self.dist_in: list[tuple[bytes, bytes]] = []
        self.drains: list[tuple[bytes, int]] = []
        self.req_in: list[tuple[str, bytes, wire_pb2.PeerMessage, Payload | None]] = []
        self.hub_in: list[tuple[bytes, bool, list[PeerInfo], int]] = []
        self.landed: dict[bytes, list[int]] = {}
        self.logs: dict[str, int] = {}
        self.failed = ""
        self.turns = 0

    # -- the loop ------------------------------------------------------------------------------------
    def arrived(self, now: float) -> None:
        """Something is in an inbox: it is handled at the next turn, at most a turn from now."""
        self.world.wake(self, now + self.turn_seconds)

    def turn(self, now: float) -> None:
        if not self.alive or now != self.next_turn:
            return  # a turn moved earlier since, or the player is gone
        self.next_turn = math.inf
        self.turns += 1
        dist_in, self.dist_in = self.dist_in, []
        for identity, frame in dist_in:
            self._serve(self.distributor.handle(identity, [frame], now))
        drains, self.drains = self.drains, []
        for identity, nbytes in drains:
            self.distributor.drained(identity, nbytes, now)
        req_in, self.req_in = self.req_in, []
        conns, received = self.conns, self.requestor.received
        for endpoint, identity, message, payload in req_in:
            if conns.get(endpoint) == identity:  # else that connection was closed meanwhile
                actions = received(endpoint, message, payload, now)
                if actions:  # most messages (a have) lead to nothing
                    self.do(actions, now)
        hub_in, self.hub_in = self.hub_in, []
        for library_id, ok, peers, numwant in hub_in:
            self.do(self.requestor.hub_answer(library_id, peers, ok, now, numwant), now)
        self.do(self.requestor.tick(now), now)
        landed, self.landed = self.landed, {}
        for library_id, books in landed.items():
            self.distributor.books_landed(library_id, books, now)
        self._serve(self.distributor.serve(now))
        self._schedule(now)

    def _schedule(self, now: float) -> None:
        due = now + IDLE_POLL if self.requestor.downloads or self.requestor.remotes else math.inf
        wait = self.distributor.wait(now)
        if wait is not None:
            due = min(due, now + max(wait, self.turn_seconds))
        if due < math.inf:
            self.world.wake(self, due)

    # -- carrying out what the logic decided ------------------------------------------------------------
    def do(self, actions: list[rl.Action], now: float) -> None:
        """As Requestor.do: in order, what an action leads to before the next one."""
        pending = deque(actions)
        while pending:
            follow = self._act(pending.popleft(), now)
            if follow:
                pending.extendleft(reversed(follow))

    def _act(self, action: rl.Action, now: float) -> list[rl.Action] | None:
        requestor = self.requestor
        if isinstance(action, rl.SendTo):
            identity = self.conns.get(action.endpoint)
            if identity is not None:
                self.world.to_distributor(self, action.endpoint, identity, action.frame)
        elif isinstance(action, rl.Land):
            written = Written(action.library_id, action.book, action.endpoint, len(action.payload), Outcome.WRITTEN)
            return requestor.written(written, now)
        elif isinstance(action, rl.Notify):
            if action.books:
                self.landed.setdefault(action.library_id, []).extend(action.books)
        elif isinstance(action, rl.Log):
            self.logs[action.event] = self.logs.get(action.event, 0) + 1
        elif isinstance(action, rl.Connect):
            self.conns[action.endpoint] = self.world.connect(self, action.endpoint)
        elif isinstance(action, rl.Drop):
            self.world.disconnect(self, action.endpoint, self.conns.pop(action.endpoint))
        elif isinstance(action, rl.Sync):
            return requestor.synced(action.library_id, "", now)
        elif isinstance(action, rl.AskHub):
            self.world.ask_hub(self, action.library_id, action.numwant)
        elif isinstance(action, rl.Report):
            self.world.report(self, action.library_id, action.endpoint)
        elif isinstance(action, rl.Finish):
            self.world.finished(self)
        elif isinstance(action, rl.Fail):
            self.failed = action.reason
        return None  # Persist, Stop, Stalled: state.db and the heartbeat, nothing to simulate

    def _serve(self, actions: list[Send | SendBook]) -> None:
        """Carry out the Distributor's actions in order; a run of sends of one frame (a ``have`` to every
        subscriber) goes out together."""
        frame: bytes | None = None
        identities: list[bytes] = []
        for action in actions:
            if isinstance(action, Send) and action.frame is frame:
                identities.append(action.identity)
                continue
            if frame is not None:
                self.world.to_requestors(self, identities, frame)
                frame, identities = None, []
            if isinstance(action, SendBook):
                self.world.send_book(self, action)
            else:
                frame, identities = action.frame, [action.identity]
        if frame is not None:
            self.world.to_requestors(self, identities, frame)

    # -- what the simulation hands over -------------------------------------------------------------------
    def start(self, library: Library, have: Any, now: float) -> None:
        """The library appears in this player's state.db: the Distributor serves it, the Requestor fetches it."""
        self.distributor.serve_library(library, have, now)
        if not have.complete:
            self.do(self.requestor.add(library, have, now), now)
        self.arrived(now)
