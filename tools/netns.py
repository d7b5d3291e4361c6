"""Hosts of our own on one machine: network namespaces on a bridge, each egress shaped by tc tbf.

Needs root and iproute2 (``ip``, ``tc``). Everything lives in namespaces this run
creates: a switch namespace holding the bridge, and one namespace per host, joined
to the bridge by a veth pair and addressed in a private /24 that exists only inside
them. Every host's TCP uses Linux's default congestion control (CONGESTION), which
the machine must allow namespaces to choose: the one thing a network changes
outside its namespaces is adding it to that list while it lives. ``Network`` is a
context manager: leaving it, by an exception or a signal too, deletes every
namespace it made, and with them every link and qdisc (end the processes in them
first), and puts the machine's list back.

    with Network() as net:
        hub = net.add_host("hub")
        seed = net.add_host("seed", rate="20mbit")
        subprocess.run(seed.command(["ping", "-c1", hub.address]))
"""

from __future__ import annotations

import os
import secrets
import shutil
import signal
import subprocess
from dataclasses import dataclass, field
from pathlib import Path
from types import FrameType, TracebackType

SUBNET = "10.77.0"  # hosts are SUBNET.2, .3, ...; only inside the namespaces
BRIDGE_FILTERS = ("bridge-nf-call-iptables", "bridge-nf-call-ip6tables", "bridge-nf-call-arptables")
TBF_LATENCY = "50ms"  # how long a packet may wait in a shaped link's queue before it is dropped
# Each host's TCP congestion control: Linux's default, not whatever this machine chose for itself (a namespace
# inherits the machine's choice; BBR, on some, which through these shallow shaped queues loses a fifth of the
# links' time even with no application at all: see tools/bare_links.py).
CONGESTION = "cubic"
AVAILABLE_CONGESTION = Path("/proc/sys/net/ipv4/tcp_available_congestion_control")
ALLOWED_CONGESTION = Path("/proc/sys/net/ipv4/tcp_allowed_congestion_control")  # the machine's, for every namespace


class NetnsUnavailable(RuntimeError):
    """Namespaces cannot be made here (not root, or iproute2 missing)."""


def unavailable() -> str:
    """Why namespaces cannot be made here ("" when they can)."""
    if os.geteuid() != 0:
        return "network namespaces need root"
    missing = [tool for tool in ("ip", "tc") if shutil.which(tool) is None]
    if missing:
        return f"{' and '.join(missing)} not found (Debian package iproute2)"
    if CONGESTION not in AVAILABLE_CONGESTION.read_text().split():
        return f"TCP congestion control {CONGESTION} not available here (modprobe tcp_{CONGESTION})"
    return ""


def namespaces() -> list[str]:
    """Names of the network namespaces on this machine."""
    out = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True, check=False).stdout
    return [line.split()[0] for line in out.splitlines() if line.strip()]


def burst_bytes(rate_bits: int) -> int:
    """A tbf bucket of about 4 ms of the rate, at least a few full-size packets."""
    return max(15_000, rate_bits // 8 // 250)


def parse_rate(text: str) -> int:
    """``20mbit``, ``100Mbit``, ``1gbit``, ``500kbit`` -> bits per second."""
    value = text.strip().lower()
    for suffix, scale in (("gbit", 10**9), ("mbit", 10**6), ("kbit", 10**3), ("bit", 1)):
        if value.endswith(suffix):
            return int(float(value[: -len(suffix)]) * scale)
    raise ValueError(f"not a rate: {text!r} (say 20mbit, 100mbit, 1gbit)")


@dataclass(frozen=True)
class Host:
    name: str  # its namespace
    address: str
    rate: str | None  # its egress cap, tbf; None: the veth's own speed

    def command(self, args: list[str]) -> list[str]:
        """``args`` run inside this host (``ip netns exec`` execs them: the pid is the program's)."""
        return ["ip", "netns", "exec", self.name, *args]


@dataclass
class Network:
    tag: str = field(default_factory=lambda: f"em{secrets.token_hex(3)}")
    hosts: list[Host] = field(default_factory=list)
    made: list[str] = field(default_factory=list)
    congestion: str = CONGESTION
    _old_term: object = None
    _allowed_before: str | None = None  # the machine's allowed congestion controls, when we added ours

    @property
    def switch(self) -> str:
        return f"{self.tag}-sw"

    def __enter__(self) -> Network:
        reason = unavailable()
        if reason:
            raise NetnsUnavailable(reason)
        self._old_term = signal.signal(signal.SIGTERM, _raise_exit)
        try:
            self._netns_add(self.switch)
            self._ip("-n", self.switch, "link", "add", "br0", "type", "bridge")
            self._ip("-n", self.switch, "link", "set", "br0", "up")
            self._no_bridge_filtering()
            self._allow_congestion()
        except BaseException:
            self.close()
            raise
        return self

    def __exit__(self, kind: type[BaseException] | None, error: BaseException | None,
                 trace: TracebackType | None) -> None:
        self.close()

    def add_host(self, role: str, rate: str | None = None) -> Host:
        """A host named ``role`` on the bridge; ``rate`` caps what it sends (tbf)."""
        index = len(self.hosts)
        host = Host(f"{self.tag}-{role}", f"{SUBNET}.{index + 2}", rate)
        inside, outside = f"{self.tag}x{index}", f"{self.tag}y{index}"
        self._netns_add(host.name)
        self._ip("link", "add", inside, "netns", host.name, "type", "veth", "peer", "name", outside,
                 "netns", self.switch)
        self._ip("-n", self.switch, "link", "set", outside, "master", "br0", "up")
        self._ip("-n", host.name, "link", "set", inside, "name", "eth0")
        self._ip("-n", host.name, "addr", "add", f"{host.address}/24", "dev", "eth0")
        self._ip("-n", host.name, "link", "set", "eth0", "up")
        self._ip("-n", host.name, "link", "set", "lo", "up")
        _run(host.command(["sysctl", "-q", "-w", f"net.ipv4.tcp_congestion_control={self.congestion}"]))
        if rate is not None:
            bits = parse_rate(rate)
            _run(["tc", "-n", host.name, "qdisc", "add", "dev", "eth0", "root", "tbf", "rate", str(bits),
                  "burst", str(burst_bytes(bits)), "latency", TBF_LATENCY])
        self.hosts.append(host)
        return host

    def close(self) -> None:
        """Delete every namespace this network made (their links and qdiscs go with them)."""
        for name in reversed(self.made):
            subprocess.run(["ip", "netns", "del", name], capture_output=True, check=False)
        self.made.clear()
        if self._allowed_before is not None:
            ALLOWED_CONGESTION.write_text(self._allowed_before)
            self._allowed_before = None
        if self._old_term is not None:
            signal.signal(signal.SIGTERM, self._old_term)  # type: ignore[arg-type]
            self._old_term = None

    def _no_bridge_filtering(self) -> None:
        """Frames crossing our bridge skip the firewall (br_netfilter, when the machine loaded it, sends
        them through iptables; per namespace, so this touches only our switch). Real hosts' links do
        not pass a firewall on the way, and its rules cost CPU that every shaped link shares here."""
        for table in BRIDGE_FILTERS:
            if Path(f"/proc/sys/net/bridge/{table}").exists():
                _run(["ip", "netns", "exec", self.switch, "sysctl", "-q", "-w", f"net.bridge.{table}=0"])

    def _allow_congestion(self) -> None:
        """A namespace may choose only a congestion control the machine allows (one list for all): add ours to it
        while this network lives, when it is missing, and put the list back on close."""
        allowed = ALLOWED_CONGESTION.read_text().split()
        if self.congestion not in allowed:
            self._allowed_before = " ".join(allowed)
            ALLOWED_CONGESTION.write_text(" ".join([*allowed, self.congestion]))

    def _netns_add(self, name: str) -> None:
        self._ip("netns", "add", name)
        self.made.append(name)
        self._ip("-n", name, "link", "set", "lo", "up")

    @staticmethod
    def _ip(*args: str) -> None:
        _run(["ip", *args])


def _run(command: list[str]) -> None:
    done = subprocess.run(command, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise RuntimeError(f"{' '.join(command)} failed: {done.stderr.strip() or done.returncode}")


def _raise_exit(signum: int, frame: FrameType | None) -> None:
    raise SystemExit(128 + signum)
