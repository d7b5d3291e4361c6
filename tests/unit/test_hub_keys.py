"""The hub binds player records to keys: ids, endpoints, revocation (HubLogic, no sockets, a fake clock)."""

from __future__ import annotations

import random
from pathlib import Path
from typing import Any

from services.hub.logic import HubLogic
from services.hub.model import HubLimits
from services.hub.store_memory import MemoryStore
from services.wire.curve import Allowlist, KeyPair, player_id_of
from services.wire.pb import common_pb2, hub_pb2

T0 = 1_700_000_000.0
LIB = b"L" * 32
E = common_pb2.ErrorCode
ALICE, BOB, MALLORY = KeyPair.generate(), KeyPair.generate(), KeyPair.generate()


def request(**body: Any) -> bytes:
    return hub_pb2.HubRequest(version=1, request_id=7, **body).SerializeToString()


def announce(pair: KeyPair, endpoint: str, *, player: bytes | None = None, plain: bool = False,
             event: int = hub_pb2.STARTED) -> bytes:
    return request(announce=hub_pb2.Announce(
        library_id=LIB, player_id=player_id_of(pair.public) if player is None else player, endpoint=endpoint,
        event=event, left=10, plain=plain))  # type: ignore[arg-type]


def call(logic: HubLogic, body: bytes, key: KeyPair | None, now: float = T0) -> hub_pb2.HubReply:
    return hub_pb2.HubReply.FromString(logic.handle(b"c", body, now, "10.0.0.1", key.public if key else b""))


def peers(logic: HubLogic, now: float = T0) -> list[hub_pb2.Peer]:
    return list(call(logic, request(get_peers=hub_pb2.GetPeers(library_id=LIB, numwant=50)), ALICE, now).peers.peers)


def make_logic(allowlist: Allowlist | None = None) -> HubLogic:
    return HubLogic(MemoryStore(), HubLimits(rate=0), started_at=T0, rng=random.Random(1), keys=allowlist)


def test_each_peer_is_handed_out_with_the_key_it_announced_with_or_none_in_clear() -> None:
    logic = make_logic()
    call(logic, announce(ALICE, "tcp://10.0.0.1:7000"), ALICE)
    call(logic, announce(BOB, "tcp://10.0.0.2:7000", plain=True), BOB)  # its distributor serves in clear
    got = {peer.endpoint: peer.public_key for peer in peers(logic)}
    assert got == {"tcp://10.0.0.1:7000": ALICE.public.decode(), "tcp://10.0.0.2:7000": ""}


def test_a_player_cannot_announce_report_or_stop_under_another_keys_id() -> None:
    logic = make_logic()
    call(logic, announce(ALICE, "tcp://10.0.0.1:7000"), ALICE)
    alice = player_id_of(ALICE.public)
    for body in (announce(MALLORY, "tcp://10.0.0.9:7000", player=alice),
                 announce(MALLORY, "tcp://10.0.0.9:7000", player=alice, event=hub_pb2.STOPPED),
                 request(report=hub_pb2.ReportUnreachable(library_id=LIB, reporter_id=alice,
                                                         endpoint="tcp://10.0.0.1:7000"))):
        reply = call(logic, body, MALLORY)
        assert reply.error.code == E.FORBIDDEN and "speaks only for itself" in reply.error.message
    assert [(p.endpoint, p.player_id) for p in peers(logic)] == [("tcp://10.0.0.1:7000", alice)]


def test_an_announce_claiming_another_players_endpoint_is_refused() -> None:
    logic = make_logic()
    call(logic, announce(ALICE, "tcp://10.0.0.1:7000"), ALICE)
    reply = call(logic, announce(MALLORY, "tcp://10.0.0.1:7000"), MALLORY)
    assert reply.error.code == E.FORBIDDEN and "announced by another player" in reply.error.message
    assert [p.public_key for p in peers(logic)] == [ALICE.public.decode()]
    assert call(logic, announce(ALICE, "tcp://10.0.0.1:7000"), ALICE).WhichOneof("body") == "announce"


def test_in_clear_nothing_is_bound() -> None:
    logic = make_logic()
    call(logic, announce(ALICE, "tcp://10.0.0.1:7000"), None)
    assert call(logic, announce(BOB, "tcp://10.0.0.1:7000", player=b"b" * 16), None).WhichOneof("body") == "announce"


def test_a_revoked_key_is_refused_and_its_next_announce_removes_it(tmp_path: Path) -> None:
    path = tmp_path / "players.keys"
    path.write_text(f"{ALICE.public.decode()}\n{BOB.public.decode()}\n")
    allowlist = Allowlist(str(path))
    logic = make_logic(allowlist)
    call(logic, announce(ALICE, "tcp://10.0.0.1:7000"), ALICE)
    call(logic, announce(BOB, "tcp://10.0.0.2:7000"), BOB)
    path.write_text(f"{ALICE.public.decode()}\n")
    allowlist.refresh(T0)  # the broker's gate does this on its tick
    again = call(logic, announce(BOB, "tcp://10.0.0.2:7000", event=hub_pb2.ANNOUNCE_EVENT_UNSPECIFIED), BOB, T0 + 30)
    assert again.error.code == E.NOT_AUTHORISED and "emma keys show" in again.error.message
    assert [p.endpoint for p in peers(logic, T0 + 30)] == ["tcp://10.0.0.1:7000"]
    asked = call(logic, request(get_peers=hub_pb2.GetPeers(library_id=LIB)), BOB, T0 + 30)
    assert asked.error.code == E.NOT_AUTHORISED
