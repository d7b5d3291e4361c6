"""A private swarm with real processes: outsiders, revoked keys, claimed endpoints, forged and tampered libraries.

The swarm (tools/swarm.py ``private=True``) runs its hub and players with CURVE, each admitting
only the swarm's player keys (``players.keys``) and trusting only its publishers. Where a test
plays a client by hand, it uses a real socket with the keys of a player's data directory.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import zmq
from zmq.utils.monitor import recv_monitor_message

from services.hub.client import HubClient, HubError, HubRefused
from services.peer import identity, signing
from services.peer.librarifier import librarify
from services.peer.library import MAGIC, Library
from services.runtime import config as config_mod
from services.runtime.rundir import distributor_endpoint, run_dir
from services.wire import curve, framing
from services.wire.errors import ErrorCode
from services.wire.pb import library_pb2, wire_pb2
from tests.polling import wait_for
from tests.swarm.conftest import events_in
from tools.swarm import Player, Swarm

pytestmark = pytest.mark.slow
BOOK = 64 * 1024
WAIT = 60.0


@pytest.fixture
def private(tmp_path: Path) -> Iterator[Swarm]:
    with Swarm(tmp_path / "swarm", private=True) as running:
        running.start_hub()
        yield running


Dealer = Callable[[curve.KeyPair, Player], tuple[zmq.Socket[bytes], zmq.Socket[bytes]]]


@pytest.fixture
def dealer() -> Iterator[Dealer]:
    """Make a DEALER to a player's distributor as the player whose keys are given, with its handshake monitor;
    each is closed at teardown (its monitor first)."""
    context: zmq.Context[zmq.Socket[bytes]] = zmq.Context()
    made: list[tuple[zmq.Socket[bytes], zmq.Socket[bytes]]] = []

    def make(keys: curve.KeyPair, server: Player) -> tuple[zmq.Socket[bytes], zmq.Socket[bytes]]:
        sock = context.socket(zmq.DEALER)
        sock.linger = 0
        curve.connect_curve(sock, keys, curve.load_or_create(server.data_dir).public)
        monitor = sock.get_monitor_socket(zmq.EVENT_HANDSHAKE_FAILED_AUTH | zmq.EVENT_HANDSHAKE_SUCCEEDED)
        sock.connect(distributor_of(server))
        made.append((sock, monitor))
        return sock, monitor

    yield make
    for sock, monitor in made:
        sock.disable_monitor()
        monitor.close(linger=0)
        sock.close(linger=0)
    context.term()


def wait_until(condition: Callable[[], Any], what: str, timeout: float = WAIT) -> Any:
    return wait_for(condition, timeout, what)


def events(player_or_dir: Player | Path, event: str) -> list[dict[str, Any]]:
    """Every log record named ``event`` in a data directory's logs."""
    folder = (player_or_dir.data_dir if isinstance(player_or_dir, Player) else player_or_dir) / "logs"
    return [record for path in sorted(folder.glob("*.log")) for record in events_in(path, event)]


def seeded(swarm: Swarm, stuff: Callable[[str, int], Path]) -> tuple[Player, Library]:
    """A seed serving a library, started after the players the test added before (its allowlist has them)."""
    seed = swarm.add_player("seed")
    library = swarm.share(seed, stuff("data.bin", 6 * BOOK + 77), book_size=BOOK)
    swarm.start_player(seed)
    swarm.wait_serving([seed])
    return seed, library


def distributor_of(player: Player) -> str:
    return distributor_endpoint(run_dir(player.data_dir))


def handshake_result(monitor: zmq.Socket[bytes]) -> int:
    """The handshake's outcome as the socket monitor reports it (the test's timeout bounds the wait)."""
    return int(recv_monitor_message(monitor)["event"])


def reply(sock: zmq.Socket[bytes]) -> wire_pb2.PeerMessage:
    if not sock.poll(int(WAIT * 1000)):
        pytest.fail("no answer from the distributor")
    return framing.decode(sock.recv_multipart()[0])


def wait_admitted_by_hub(swarm: Swarm, player: Player) -> None:
    """The hub re-reads its allowlist file once a second: wait until it took ``player``'s key."""

    def admitted() -> bool:
        with hub_client(swarm, player.data_dir) as client:
            try:
                client.health()
            except HubRefused:
                return False
        return True

    wait_until(admitted, f"the hub to admit {player.name}")


def hub_client(swarm: Swarm, data_dir: Path) -> HubClient:
    """A HubClient speaking as the player of ``data_dir`` (its key pair)."""
    return HubClient(swarm.hub_endpoint, keys={swarm.hub_endpoint: swarm.hub_key},
                     identity=curve.load_or_create(data_dir), timeout=5.0, attempts=2)


def test_a_player_whose_key_is_not_allowed_gets_no_byte_and_cannot_announce(
    private: Swarm, stuff, dealer: Dealer
) -> None:
    seed, library = seeded(private, stuff)
    outsider = private.add_player("outsider", admitted=False)
    private.give(outsider, library)
    private.start_player(outsider)
    refused = wait_until(lambda: events(outsider, "hub_refused"), "the outsider to hear it is refused")
    assert "not authorised by hub" in refused[0]["error"] and "emma keys show" in refused[0]["error"]
    failed = wait_until(lambda: events(outsider, "announce_failed"), "the outsider's announce to fail")
    assert "not authorised by hub" in failed[0]["error"]
    outsider_key = curve.load_or_create(outsider.data_dir).public.decode()
    assert any(e["key"] == outsider_key for e in events(private.root / "hubdata0", "key_refused"))
    with hub_client(private, seed.data_dir) as client:  # what the hub hands out: the seed alone
        peers = client.get_peers(library.id, numwant=50).peers
    assert [(p.endpoint, p.public_key) for p in peers] == [
        (distributor_of(seed), curve.load_or_create(seed.data_dir).public)]
    with hub_client(private, outsider.data_dir) as client, pytest.raises(HubRefused, match="not authorised by hub"):
        client.announce(library.id, identity.player_id(outsider.data_dir), "tcp://127.0.0.1:9", left=0)
    # Knowing the seed's endpoint and key is not enough: the seed refuses the outsider's key at the handshake.
    sock, monitor = dealer(curve.load_or_create(outsider.data_dir), seed)
    sock.send(framing.handshake(library.id, identity.player_id(outsider.data_dir)))
    assert handshake_result(monitor) == zmq.EVENT_HANDSHAKE_FAILED_AUTH
    assert any(e["key"] == outsider_key for e in wait_until(lambda: events(seed, "key_refused"), "the seed's log"))
    assert outsider.progress(library.id_hex)[0] == 0


def test_a_revoked_player_is_cut_off_from_open_connections_new_ones_and_the_hub(
    private: Swarm, stuff, dealer: Dealer
) -> None:
    member = private.add_player("member")  # in the swarm's lists; played by hand here
    seed, library = seeded(private, stuff)
    wait_admitted_by_hub(private, member)
    keys = curve.load_or_create(member.data_dir)
    sock, monitor = dealer(keys, seed)
    sock.send(framing.handshake(library.id, identity.player_id(member.data_dir)))
    assert handshake_result(monitor) == zmq.EVENT_HANDSHAKE_SUCCEEDED
    assert reply(sock).WhichOneof("body") == "bitfield"
    member_endpoint = "tcp://127.0.0.1:9"
    with hub_client(private, member.data_dir) as client:
        client.announce(library.id, identity.player_id(member.data_dir), member_endpoint, left=10)
        with hub_client(private, seed.data_dir) as seed_client:
            assert member_endpoint in [p.endpoint for p in seed_client.get_peers(library.id).peers]
        lines = private.players_file.read_text().splitlines()
        private.players_file.write_text("".join(f"{line}\n" for line in lines if keys.public.decode() not in line))

        def refused_on_the_open_connection() -> bool:
            sock.send(framing.request(library.id, 0))
            message = reply(sock)
            return message.WhichOneof("body") == "error" and message.error.error.code == ErrorCode.NOT_AUTHORISED

        wait_until(refused_on_the_open_connection, "the open connection's requests to be refused")

        def refused_by_the_hub() -> bool:
            try:
                client.announce(library.id, identity.player_id(member.data_dir), member_endpoint, left=10)
            except HubError as exc:
                return exc.code == ErrorCode.NOT_AUTHORISED
            return False

        wait_until(refused_by_the_hub, "the hub to refuse the revoked key")
        with hub_client(private, seed.data_dir) as seed_client:  # its record went with its refused announce
            assert member_endpoint not in [p.endpoint for p in seed_client.get_peers(library.id).peers]
    again, again_monitor = dealer(keys, seed)
    again.send(framing.handshake(library.id, identity.player_id(member.data_dir)))
    assert handshake_result(again_monitor) == zmq.EVENT_HANDSHAKE_FAILED_AUTH


def test_an_announce_claiming_another_players_endpoint_is_refused(private: Swarm, stuff) -> None:
    member = private.add_player("member")
    seed, library = seeded(private, stuff)
    wait_admitted_by_hub(private, member)
    with hub_client(private, member.data_dir) as client:
        with pytest.raises(HubError, match="announced by another player") as refused:
            client.announce(library.id, identity.player_id(member.data_dir), distributor_of(seed), left=0)
        assert refused.value.code == ErrorCode.FORBIDDEN
        with pytest.raises(HubError, match="speaks only for itself"):  # nor under the seed's id
            client.announce(library.id, identity.player_id(seed.data_dir), "tcp://127.0.0.1:9", left=0)


def forged(swarm: Swarm, stuff_path: Path, signer_dir: Path) -> Library:
    """The same stuff and hubs, signed by a publisher the swarm does not trust."""
    hubs = (swarm.hub_endpoint,)
    return librarify(stuff_path, hubs=hubs, book_size=BOOK, hub_keys=(swarm.hub_key.decode(),),
                     publisher=signing.load_publisher(signer_dir))


def test_forged_and_tampered_libraries_are_refused(private: Swarm, stuff, tmp_path: Path) -> None:
    leecher = private.add_player("leecher")
    seed, library = seeded(private, stuff)
    fake = forged(private, stuff("data.bin", 6 * BOOK + 77), tmp_path / "mallory")
    assert fake.id == library.id  # the same stuff: only the signature tells them apart
    private.give(leecher, fake)
    private.start_player(leecher)
    failed = wait_until(lambda: events(leecher, "download_failed"), "the forged library to be refused")
    assert "not one this player trusts" in failed[0]["error"]
    assert leecher.progress(fake.id_hex)[0] == 0
    # A trusted library whose signed bytes were changed (its hub swapped) does not even load.
    real = private.share(seed, stuff("other.bin", 2 * BOOK), book_size=BOOK)
    tampered = library_pb2.LibraryFile.FromString(real.to_bytes()[len(MAGIC):])
    tampered.hubs[0] = "tcp://203.0.113.66:7070"
    (leecher.data_dir / "libs" / real.file_name).write_bytes(MAGIC + tampered.SerializeToString())
    rejected = wait_until(lambda: events(leecher, "library_rejected"), "the tampered library to be rejected")
    assert "signature does not hold" in rejected[0]["error"]
    # Nor does a player serve a library its trusted publishers did not sign.
    third = stuff("third.bin", 2 * BOOK)
    untrusted = forged(private, third, tmp_path / "mallory")
    private.seed_with(seed, untrusted, third)
    refused = wait_until(lambda: events(seed, "library_not_served"), "the seed to refuse the forged library")
    assert refused[0]["library"] == untrusted.id_hex and "not one this player trusts" in refused[0]["error"]


def test_a_peer_that_refuses_our_key_is_named_not_silent(private: Swarm, stuff) -> None:
    leecher = private.add_player("leecher")  # the hub admits it; the seed will not
    seed, library = seeded_without(private, stuff, leecher)
    private.give(leecher, library)
    private.start_player(leecher)
    refused = wait_until(lambda: events(leecher, "peer_refused"), "the leecher to say the seed refused it")
    assert refused[0]["endpoint"] == distributor_of(seed)
    assert refused[0]["reason"].startswith("not authorised by peer") and refused[0]["libraries"] == [library.id_hex]
    assert leecher.progress(library.id_hex)[0] == 0


def seeded_without(swarm: Swarm, stuff: Callable[[str, int], Path], excluded: Player) -> tuple[Player, Library]:
    """A seed whose own allowlist is the swarm's less ``excluded``'s key."""
    seed = swarm.add_player("seed")
    own = swarm.root / "seed.keys"
    key = curve.load_or_create(excluded.data_dir).public.decode()
    own.write_text("".join(f"{line}\n" for line in swarm.players_file.read_text().splitlines() if key not in line))
    config = config_mod.load(seed.data_dir)
    config.set("security.players", str(own))
    config.save()
    library = swarm.share(seed, stuff("data.bin", 6 * BOOK + 77), book_size=BOOK)
    swarm.start_player(seed)
    swarm.wait_serving([seed])
    return seed, library
