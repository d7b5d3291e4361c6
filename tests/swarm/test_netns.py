"""Players on hosts of their own (network namespaces), set up with the first-run answers alone.

Needs root (``.ci/run`` runs as root); skipped with the reason otherwise. The test makes
every namespace and link it uses and must leave none behind, also when it fails.
"""

from __future__ import annotations

import functools
import subprocess
from pathlib import Path

import pytest

from services.hub.addresses import is_loopback
from services.runtime import config as config_mod
from services.runtime.rundir import run_dir
from services.supervisor.control_client import ControlClient
from services.wire.ids import parse_endpoint
from tests.polling import wait_for
from tests.swarm.test_swarm import assert_identical
from tools import netns
from tools.swarm import Player, Swarm

pytestmark = [pytest.mark.slow, pytest.mark.skipif(bool(netns.unavailable()), reason=netns.unavailable() or "-")]
FIRST_RUN_ANSWERS = {"hub.ip", "hub.port", "distributor.port", "hub.key", "security.players"}


def reached_at(player: Player, expected: str) -> bool:
    return distributor_detail(player) == expected


def distributor_detail(player: Player) -> str:
    return next(s.detail for s in ControlClient(run_dir(player.data_dir)).services() if s.name == "distributor")


def links(tag: str) -> list[str]:
    out = subprocess.run(["ip", "-o", "link"], capture_output=True, text=True, check=True).stdout
    return [line for line in out.splitlines() if tag in line]


def bridge_filters(network: netns.Network) -> list[str]:
    """The switch's br_netfilter settings, one value per table ([] when the machine has no br_netfilter)."""
    if not Path("/proc/sys/net/bridge").exists():
        return []
    tables = [f"net.bridge.{table}" for table in netns.BRIDGE_FILTERS]
    command = ["ip", "netns", "exec", network.switch, "sysctl", "-n", *tables]
    return subprocess.run(command, capture_output=True, text=True, check=True).stdout.split()


def test_players_on_separate_hosts_with_the_first_run_answers_alone_get_identical_copies(tmp_path, stuff):
    source = stuff("across.bin", 3 * 1024 * 1024 + 77)
    before = set(netns.namespaces())
    with netns.Network() as network, Swarm(tmp_path / "swarm", network=network) as swarm:
        tag = network.tag
        assert bridge_filters(network) in ([], ["0"] * len(netns.BRIDGE_FILTERS))  # our links skip the firewall
        swarm.start_hub()
        players = [swarm.add_player(f"p{i}", rate="100mbit") for i in range(4)]
        seed, leechers = players[0], players[1:]
        for player in players:
            values = config_mod.load(player.data_dir).values
            assert {key for key, value in values.items() if value != config_mod.SETTINGS[key].default} <= (
                FIRST_RUN_ANSWERS)
        library = swarm.share(seed, source)
        for player in players:
            swarm.start_player(player)
        swarm.wait_serving(players)
        for player in leechers:
            swarm.give(player, library)
        swarm.wait_complete(library, leechers, timeout=120)
        assert_identical(swarm, leechers, library, source)
        for player in players:  # each is reached at its own host's address, as the hub saw and checked it
            assert player.host is not None
            expected = f"reachable at tcp://{player.host.address}:7000"
            wait_for(functools.partial(reached_at, player, expected), 60, f"{player.name}: {expected}")
            assert not is_loopback(parse_endpoint(expected.removeprefix("reachable at "))[0])
    assert set(netns.namespaces()) == before
    assert links(tag) == []
