"""The simulation: players, the hub and the links on one event queue; what happened, recorded.

``Simulation(scenario).run()`` builds every player with the services' own
logic classes, lets the leechers join, the churners and seeds leave as the
scenario says, and stops once every leecher that stays has finished (or
failed, or the horizon passed). It returns a ``report.Result``.

Sockets as ZeroMQ has them: a Requestor's connection to a Distributor has an
identity (the ROUTER's name for it); closing it is noticed by that Distributor
one latency later (``gone``), and what it was still sending on it is dropped.
A player that crashes is simply silent: its remotes notice as their loops do,
by timeouts, and report it to the hub, whose ping finds it gone.
"""

from __future__ import annotations

import random
from collections.abc import Callable

from services.hub.client_types import AnnounceEvent
from services.peer.bitfield import Bitfield
from services.peer.distributor_logic import DistributorLogic, SendBook
from services.peer.library import HashAlgorithm, Library, make_library
from services.peer.requestor_logic import RequestorLogic
from services.wire import framing
from services.wire.pb import wire_pb2
from tools.simulator.events import EventQueue
from tools.simulator.hub import SimHub
from tools.simulator.network import Links
from tools.simulator.player import Payload, Player
from tools.simulator.report import Result, Sample, Seeds
from tools.simulator.scenario import Scenario

HUB_TICK = 0.5
DECODED_MAX = 100_000  # control frames kept decoded (a have for a book is the same frame from everyone)
SAMPLES = 200  # idle-capacity samples over the bound


class Simulation:
    def __init__(self, scenario: Scenario, progress: Callable[[float, int, int], None] | None = None) -> None:
        """``progress(simulated seconds, finished, events)`` is called each simulated second, if given."""
        self.scenario = s = scenario
        self.progress = progress
        self.queue = EventQueue()
        self.bound = s.bound()
        self.library = _library(s)
        self.hub = SimHub(random.Random(f"hub-{s.seed}"), 0.0)
        self.hub_node = s.seeds + s.players
        classes = s.leecher_classes()
        uploads = [float(s.seed_link())] * s.seeds + [float(c.upload) for c in classes]
        downloads = [float(s.seed_link())] * s.seeds + [float(c.download) for c in classes]
        shares = [s.payload_shares(index < s.seeds) for index in range(len(uploads))]
        self.links = Links(self.queue, [rate * share[0] for rate, share in zip(uploads, shares, strict=True)],
                           [rate * share[1] for rate, share in zip(downloads, shares, strict=True)])
        jitter = random.Random(f"jitter-{s.seed}")
        self.delay = [s.latency / 2 + jitter.random() * s.jitter for _ in uploads]  # each player's half of a hop
        self.players: list[Player] = []
        for index, upload in enumerate(uploads):
            rng = random.Random(f"player-{s.seed}-{index}")
            requestor = RequestorLogic(player_id=(index + 1).to_bytes(16, "big"), download_rate=0, now=0.0, rng=rng)
            distributor = DistributorLogic(slots=s.slots, upload_rate=int(upload) if s.capped else 0, now=0.0)
            self.players.append(Player(index, self, requestor, distributor, s.turn))
        self.by_endpoint = {p.endpoint: p for p in self.players}
        self.routes: dict[bytes, tuple[Player, Player]] = {}  # identity -> (requester, distributor's player)
        self.closed: set[bytes] = set()
        self.connections = 0
        self._decoded: dict[bytes, wire_pb2.PeerMessage] = {}
        self.joined: dict[int, float] = {}
        self.done_at: dict[int, float] = {}
        self.left_at: dict[int, float] = {}
        self.first_copies: dict[int, int] = {}  # seed -> first copies of books still on their way
        self.stayers = {s.seeds + i for i in s.stayers()}
        self.waiting = len(self.stayers)
        self.samples: list[Sample] = []
        self.messages = 0
        self.books_delivered = 0

    # -- the run -----------------------------------------------------------------------------------------
    def run(self) -> Result:
        s = self.scenario
        joins = random.Random(f"joins-{s.seed}")
        leave = random.Random(f"leave-{s.seed}")
        churners = {s.seeds + i for i in s.churners()}
        for seed in self.players[: s.seeds]:
            self.queue.at(0.0, seed.index, self._join, seed, True)
            if s.seeds_leave not in ("never", "copy"):
                self.queue.at(float(s.seeds_leave), seed.index, self._leave, seed, True)
        for player in self.players[s.seeds:]:
            at = joins.random() * s.join_spread
            self.queue.at(at, player.index, self._join, player, False)
            if player.index in churners:
                self.queue.at(at + leave.random() * self.bound, player.index, self._leave, player, False)
        self.queue.at(0.0, self.hub_node, self._hub_tick)
        if self.progress:
            self.queue.at(1.0, self.hub_node, self._progress)
        self.queue.at(0.0, self.hub_node, self._sample, self.bound / SAMPLES, 0.0)
        self.queue.run(s.end(), lambda: self.waiting == 0)
        return self._result()

    def _join(self, player: Player, seed: bool) -> None:
        now = self.queue.now
        books = self.library.books
        have = Bitfield.full(books) if seed else Bitfield(books)
        if not seed:
            self.joined[player.index] = now
        player.start(self.library, have, now)
        self._announce(player, AnnounceEvent.STARTED)

    def _leave(self, player: Player, graceful: bool) -> None:
        """The player stops: a seed says so to the hub; a churner crashes and says nothing."""
        if not player.alive:
            return
        if graceful:
            self._announce(player, AnnounceEvent.STOPPED)
        player.alive = False
        self.left_at[player.index] = self.queue.now
        self.links.abort(player.index)
        for endpoint, identity in player.conns.items():
            self._close(player, self.by_endpoint[endpoint], identity)

    # -- sockets -------------------------------------------------------------------------------------------
    def hop(self, a: Player, b: Player) -> float:
        return self.delay[a.index] + self.delay[b.index]

    def wake(self, player: Player, when: float) -> None:
        if when < player.next_turn:
            player.next_turn = when
            self.queue.at(when, player.index, player.turn, when)

    def connect(self, player: Player, endpoint: str) -> bytes:
        identity = b"c%d" % self.connections
        self.connections += 1
        self.routes[identity] = (player, self.by_endpoint[endpoint])
        return identity

    def disconnect(self, player: Player, endpoint: str, identity: bytes) -> None:
        self._close(player, self.by_endpoint[endpoint], identity)

    def _close(self, player: Player, remote: Player, identity: bytes) -> None:
        self.closed.add(identity)
        self.queue.at(self.queue.now + self.hop(player, remote), remote.index, self._gone, remote, identity)

    def _gone(self, remote: Player, identity: bytes) -> None:
        self.links.close(identity)
        if remote.alive:
            remote.distributor.gone(identity)

    def to_distributor(self, player: Player, endpoint: str, identity: bytes, frame: bytes) -> None:
        remote = self.by_endpoint[endpoint]
        self.messages += 1
        self.queue.at(self.queue.now + self.hop(player, remote), remote.index, self._at_distributor, remote,
                      identity, frame)

    def _at_distributor(self, remote: Player, identity: bytes, frame: bytes) -> None:
        if remote.alive and identity not in self.closed:
            remote.dist_in.append((identity, frame))
            remote.arrived(self.queue.now)

    def to_requestors(self, player: Player, identities: list[bytes], frame: bytes) -> None:
        """One frame to one or more requesters (a ``have`` goes to every subscriber): one event per arrival time."""
        routes, delay, now = self.routes, self.delay, self.queue.now
        mine = delay[player.index]
        arrivals: dict[float, list[tuple[Player, bytes]]] = {}
        for identity in identities:  # a have to each of a few dozen subscribers: the simulator's busiest loop
            route = routes.get(identity)
            if route is not None:
                requester = route[0]
                at = now + (mine + delay[requester.index])  # as hop()
                receivers = arrivals.get(at)
                if receivers is None:
                    arrivals[at] = [(requester, identity)]
                else:
                    receivers.append((requester, identity))
        for at, receivers in arrivals.items():
            self.messages += len(receivers)
            self.queue.at(at, player.index, self._at_requestors, receivers, player.endpoint, frame, None)

    def _at_requestors(self, receivers: list[tuple[Player, bytes]], endpoint: str, frame: bytes,
                       payload: Payload | None) -> None:
        message = self._decoded.get(frame)
        if message is None:
            if len(self._decoded) >= DECODED_MAX:
                self._decoded.clear()
            message = self._decoded[frame] = framing.decode(frame)
        now = self.queue.now
        for requester, identity in receivers:
            if requester.alive and identity not in self.closed:
                requester.req_in.append((endpoint, identity, message, payload))
                requester.arrived(now)

    def send_book(self, player: Player, action: SendBook) -> None:
        route = self.routes.get(action.identity)
        if route is None or action.identity in self.closed or not route[0].alive:
            return  # libzmq drops what is sent to a connection that is gone
        requester = route[0]
        served = player.distributor.served[action.library_id]
        first = player.index < self.scenario.seeds and served.sent[action.book] == 1
        if first:
            self.first_copies[player.index] = self.first_copies.get(player.index, 0) + 1

        def done(now: float) -> None:
            player.drains.append((action.identity, action.length))
            player.arrived(now)
            header = framing.book_header(action.library_id, action.book, action.length)
            self.queue.at(now + self.hop(player, requester), player.index, self._at_requestors,
                          [(requester, action.identity)], player.endpoint, header, Payload(action.length))
            self.books_delivered += 1
            if first:
                self.first_copies[player.index] -= 1
                self._seed_may_leave(player)

        self.links.send(action.identity, player.index, requester.index, action.length, done)

    def _seed_may_leave(self, seed: Player) -> None:
        served = seed.distributor.served[self.library.id]
        if self.scenario.seeds_leave == "copy" and served.unsent == 0 and not self.first_copies[seed.index]:
            self.queue.at(self.queue.now, seed.index, self._leave, seed, True)

    # -- the hub ---------------------------------------------------------------------------------------------
    def _to_hub(self, player: Player) -> float:
        return self.queue.now + self.delay[player.index] + self.scenario.latency / 2

    def _announce(self, player: Player, event: AnnounceEvent) -> None:
        self.queue.at(self._to_hub(player), self.hub_node, self._hub_announce, player, event)

    def _hub_announce(self, player: Player, event: AnnounceEvent) -> None:
        served = player.distributor.served[self.library.id]
        library, held = self.library, served.have
        last = library.books - 1
        left = (library.books - len(held)) * library.book_size  # every book but the last is book_size long
        if library.books and last not in held:
            left -= library.book_size - library.book_span(last)[1]
        interval = self.hub.announce(player.hub_identity, player.host, self.library.id, player.player_id,
                                     player.endpoint, event, left, self.queue.now)
        if interval and event is not AnnounceEvent.STOPPED:
            self.queue.at(self.queue.now + interval, player.index, self._periodic, player)

    def _periodic(self, player: Player) -> None:
        if player.alive:
            self._announce(player, AnnounceEvent.PERIODIC)

    def finished(self, player: Player) -> None:
        self.done_at[player.index] = self.queue.now
        if player.index in self.stayers:
            self.waiting -= 1
        self._announce(player, AnnounceEvent.COMPLETED)

    def ask_hub(self, player: Player, library_id: bytes, numwant: int) -> None:
        self.queue.at(self._to_hub(player), self.hub_node, self._hub_peers, player, library_id, numwant)

    def _hub_peers(self, player: Player, library_id: bytes, numwant: int) -> None:
        ok, peers = self.hub.get_peers(player.hub_identity, player.host, library_id, player.player_id, numwant,
                                       self.queue.now)
        self.queue.at(self._to_hub(player), player.index, self._hub_answer, player, library_id, ok, peers, numwant)

    def _hub_answer(self, player: Player, library_id: bytes, ok: bool, peers: list[object], numwant: int) -> None:
        if player.alive:
            player.hub_in.append((library_id, ok, peers, numwant))  # type: ignore[arg-type]
            player.arrived(self.queue.now)

    def report(self, player: Player, library_id: bytes, endpoint: str) -> None:
        self.queue.at(self._to_hub(player), self.hub_node, self._hub_report, player, library_id, endpoint)

    def _hub_report(self, player: Player, library_id: bytes, endpoint: str) -> None:
        self._ping(self.hub.report(player.hub_identity, player.host, library_id, player.player_id, endpoint,
                                   self.queue.now))

    def _ping(self, endpoints: list[str]) -> None:
        """The broker's pinger: a connection to each endpoint, answered if its player is still there."""
        for endpoint in endpoints:
            target = self.by_endpoint.get(endpoint)
            back = self.queue.now + 2 * (self.delay[target.index] + self.scenario.latency / 2) if target else 0.0
            self.queue.at(back, self.hub_node, self.hub.ping_done, endpoint, bool(target and target.alive), back)

    def _hub_tick(self) -> None:
        self._ping(self.hub.tick(self.queue.now))
        self.queue.at(self.queue.now + HUB_TICK, self.hub_node, self._hub_tick)

    def _progress(self) -> None:
        assert self.progress is not None
        self.progress(self.queue.now, len(self.done_at), self.queue.handled)
        self.queue.at(self.queue.now + 1.0, self.hub_node, self._progress)

    # -- what happened ------------------------------------------------------------------------------------------
    def _sample(self, every: float, moved: float) -> None:
        now = self.queue.now
        total = self.links.uploaded(now)
        capacity = sum(self.links.up_rate[p.index] for p in self.players
                       if p.alive and (p.index < self.scenario.seeds or p.index in self.joined))
        self.samples.append(Sample(now, (total - moved) / every if self.samples else 0.0, capacity))
        self.queue.at(now + every, self.hub_node, self._sample, every, total)

    def _result(self) -> Result:
        s = self.scenario
        completions = []
        unfinished = 0
        for index in sorted(self.stayers):
            if index in self.done_at:
                completions.append(self.done_at[index] - self.joined[index])
            else:
                unfinished += 1
        seeds = [Seeds(**p.distributor.served[self.library.id].redundancy()) for p in self.players[: s.seeds]]
        logs: dict[str, int] = {}
        for player in self.players:
            for event, count in player.logs.items():
                logs[event] = logs.get(event, 0) + count
        churned = [i for i in self.left_at if i >= s.seeds]
        return Result(
            scenario=s, bound=self.bound, books=self.library.books, completions=sorted(completions),
            unfinished=unfinished, failed=sum(1 for p in self.players if p.failed),
            churned=len(churned), churned_finished=sum(1 for i in churned if i in self.done_at),
            seeds=seeds, samples=self.samples, end=self.queue.now, events=self.queue.handled,
            messages=self.messages, books_delivered=self.books_delivered, hub_requests=self.hub.requests,
            turns=sum(p.turns for p in self.players), logs=dict(sorted(logs.items())),
        )


def _library(s: Scenario) -> Library:
    """The stuff's library; the hashes are never checked (every book is taken as verified)."""
    books = -(-s.size // s.book_size)
    return make_library(name="stuff.bin", size=s.size, book_size=s.book_size, hash_algorithm=HashAlgorithm.BLAKE3,
                        book_hashes=bytes(32 * books), hubs=("tcp://10.255.255.254:6000",), created_at=0,
                        creator=f"simulate --seed {s.seed}")


def run(scenario: Scenario, progress: Callable[[float, int, int], None] | None = None) -> Result:
    return Simulation(scenario, progress).run()

