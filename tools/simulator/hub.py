"""The hub in the simulation: ``HubLogic`` over the memory store, asked as a ``HubClient`` asks it.

Requests are the protobuf messages a player's HubClient sends and replies are
decoded the same way, so peer lists, expiry, rate limits and unreachable
reports are the hub's own. The one thing the simulator supplies is the
hub's ping of a reported endpoint (the broker's pinger thread): it answers
with whether that player is still there.
"""

from __future__ import annotations

import random

from services.hub.client_types import AnnounceEvent, PeerInfo
from services.hub.logic import HubLogic
from services.hub.model import HubLimits
from services.hub.store_memory import MemoryStore
from services.wire.pb import hub_pb2

VERSION = 1


class SimHub:
    def __init__(self, rng: random.Random, now: float) -> None:
        self.logic = HubLogic(MemoryStore(rng=rng), HubLimits(), started_at=now, rng=rng)
        self.requests = 0

    def _ask(self, identity: bytes, source: str, request: hub_pb2.HubRequest, now: float) -> hub_pb2.HubReply:
        request.version = VERSION
        self.requests += 1
        return hub_pb2.HubReply.FromString(self.logic.handle(identity, request.SerializeToString(), now, source))

    def announce(self, identity: bytes, source: str, library_id: bytes, player_id: bytes, endpoint: str,
                 event: AnnounceEvent, left: int, now: float) -> float:
        """Announce as a Distributor does (numwant 0); returns the interval to announce again (0: refused)."""
        body = hub_pb2.Announce(library_id=library_id, player_id=player_id, endpoint=endpoint,
                                event=hub_pb2.AnnounceEvent.ValueType(event.value), left=left, numwant=0)
        reply = self._ask(identity, source, hub_pb2.HubRequest(announce=body), now)
        return float(reply.announce.interval) if reply.WhichOneof("body") == "announce" else 0.0

    def get_peers(self, identity: bytes, source: str, library_id: bytes, player_id: bytes, numwant: int,
                  now: float) -> tuple[bool, list[PeerInfo]]:
        body = hub_pb2.GetPeers(library_id=library_id, player_id=player_id, numwant=numwant)
        reply = self._ask(identity, source, hub_pb2.HubRequest(get_peers=body), now)
        if reply.WhichOneof("body") != "peers":
            return False, []
        return True, [PeerInfo(p.player_id, p.endpoint, p.seed) for p in reply.peers.peers]

    def report(self, identity: bytes, source: str, library_id: bytes, reporter: bytes, endpoint: str,
               now: float) -> list[str]:
        """Report ``endpoint`` unreachable; returns the endpoints the hub now wants to ping."""
        body = hub_pb2.ReportUnreachable(library_id=library_id, reporter_id=reporter, endpoint=endpoint)
        self._ask(identity, source, hub_pb2.HubRequest(report=body), now)
        return self.logic.take_pings()

    def ping_done(self, endpoint: str, reachable: bool, now: float) -> None:
        self.logic.ping_done(endpoint, reachable, now)

    def tick(self, now: float) -> list[str]:
        self.logic.tick(now)
        return self.logic.take_pings()
