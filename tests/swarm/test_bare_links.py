"""The bare run (tools/bare_links.py) on hosts of their own: every byte planned arrives, nothing is left behind.

Needs root (``.ci/run`` runs as root); skipped with the reason otherwise.
"""

from __future__ import annotations

import subprocess

import pytest

from tools import bare_links, netns
from tools.swarm import make_stuff

pytestmark = [pytest.mark.slow, pytest.mark.skipif(bool(netns.unavailable()), reason=netns.unavailable() or "-")]


def test_the_bare_run_moves_every_planned_byte_and_leaves_no_namespace(tmp_path):
    size = 2 * 1024 * 1024
    stuff = tmp_path / "stuff.bin"
    make_stuff(stuff, size)
    before = set(netns.namespaces())
    rates = ["100mbit", "100mbit", "20mbit", "20mbit"]
    with netns.Network() as network:
        hosts = [network.add_host(f"h{i}", rate) for i, rate in enumerate(rates)]
        bare = bare_links.run(hosts, [netns.parse_rate(rate) / 8 for rate in rates], stuff, size, timeout=120)
    assert len(bare.hosts) == len(rates)  # each host reported receiving exactly its planned bytes, or run raised
    assert 0 < max(bare.hosts) <= bare.seconds
    assert 0 <= bare.busy <= 1 and bare.cpu_seconds >= 0
    assert set(netns.namespaces()) == before


def test_a_host_that_receives_less_than_planned_fails_the_run(tmp_path):
    stuff = tmp_path / "short.bin"
    make_stuff(stuff, 1000)  # the plan asks for more bytes than the file holds: sendfile stops at its end
    with netns.Network() as network:
        hosts = [network.add_host(f"h{i}", "100mbit") for i in range(3)]
        with pytest.raises(RuntimeError, match="received"):
            bare_links.run(hosts, [12.5e6] * 3, stuff, 100_000, timeout=120)


def test_every_host_uses_linux_default_congestion_control_and_the_machine_list_is_put_back():
    allowed = netns.ALLOWED_CONGESTION.read_text()
    with netns.Network() as network:
        host = network.add_host("h0", "20mbit")
        chosen = subprocess.run(host.command(["sysctl", "-n", "net.ipv4.tcp_congestion_control"]),
                                capture_output=True, text=True, check=True).stdout.strip()
        assert chosen == netns.CONGESTION
        assert netns.CONGESTION in netns.ALLOWED_CONGESTION.read_text().split()
    assert netns.ALLOWED_CONGESTION.read_text() == allowed
