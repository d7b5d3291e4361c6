"""libtorrent as the reference of the benchmarks: one seed and its leechers, one session per process.

bench_pair runs a pair on loopback, bench_swarm the 1 + N swarm on loopback
(``--against libtorrent``, every upload capped) or on hosts of their own
(``--netns --against libtorrent``, the links shaped). Every session is TCP
only (uTP, DHT, LSD, UPnP off) with the high-performance-seed settings; each
listens on a port of the system's choice at its node's address.

With an upload cap, the cap is really applied between local peers: libtorrent
puts peers on a local network (127.0.0.0/8 included) in its local peer class,
which no rate limit applies to, so every address is mapped to the global class
(the one ``upload_rate_limit`` sets) instead.

How a run goes: each node process prints its port once its session is up (a
seed: once it has checked its copy). The parent then tells every node to go,
with every other node's address and port; at that moment a leecher adds the
torrent (it is told to download) and starts its clock, and it stops the clock
when it holds every piece verified and written. The seed and the leechers
connect to every other node, and keep seeding until the parent closes their
stdin, as Emma's players do.

    python tools/lt_swarm.py --node ROLE TORRENT SAVE LISTEN_IP UPLOAD   (what the parent runs, per node)
"""

from __future__ import annotations

import importlib
import json
import select
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from tools.procs import end_piped

LT_SETTINGS: dict[str, object] = {
    "enable_outgoing_utp": False,
    "enable_incoming_utp": False,
    "enable_dht": False,
    "enable_lsd": False,
    "enable_upnp": False,
    "enable_natpmp": False,
    "alert_mask": 0,
    "allow_multiple_connections_per_ip": True,  # on loopback every session has the same address
}


def load_libtorrent() -> Any:
    """The libtorrent module, untyped (its stubs are not installed with the project)."""
    try:
        return importlib.import_module("libtorrent")
    except ImportError as exc:
        raise SystemExit("libtorrent is not installed: pip install -e '.[bench]' (or use --no-libtorrent)") from exc


class Node(Protocol):
    """Where a session runs: its address, and how to run a command there (a netns Host is one)."""

    @property
    def address(self) -> str: ...

    def command(self, args: list[str]) -> list[str]: ...


@dataclass(frozen=True)
class Loopback:
    """A session on this host, on 127.0.0.1."""

    address: str = "127.0.0.1"

    def command(self, args: list[str]) -> list[str]:
        return args


LOOPBACK = Loopback()


def make_torrent(stuff: Path, piece_size: int, target: Path) -> Path:
    """A torrent of ``stuff`` (a file or a folder) with pieces of ``piece_size`` bytes (a power of two)."""
    if piece_size < 16 * 1024 or piece_size & (piece_size - 1):
        raise SystemExit(f"libtorrent needs a power-of-two piece size of at least 16 KiB, not {piece_size}")
    lt = load_libtorrent()
    storage = lt.file_storage()
    lt.add_files(storage, str(stuff))
    creator = lt.create_torrent(storage, piece_size)
    lt.set_piece_hashes(creator, str(stuff.parent))
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_bytes(lt.bencode(creator.generate()))
    return target


def session(listen: str, upload: int) -> Any:
    """A session listening on ``listen`` (a port of the system's choice); ``upload`` > 0 caps its upload, local
    peers included."""
    lt = load_libtorrent()
    settings = lt.high_performance_seed()
    settings.update(LT_SETTINGS)
    settings["listen_interfaces"] = f"{listen}:0"
    if upload:
        settings["upload_rate_limit"] = upload
    made = lt.session(settings)
    if upload:
        everyone = lt.ip_filter()
        everyone.add_rule("0.0.0.0", "255.255.255.255", 1 << lt.session.global_peer_class_id)
        everyone.add_rule("::", "ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff", 1 << lt.session.global_peer_class_id)
        made.set_peer_class_filter(everyone)
    return made


def node(role: str, torrent: Path, save: Path, listen: str, upload: int) -> None:
    """One session: print its port when ready, wait for the peers, print a leecher's seconds to complete."""
    lt = load_libtorrent()
    running = session(listen, upload)
    params = {"ti": lt.torrent_info(str(torrent)), "save_path": str(save)}
    handle = running.add_torrent(params) if role == "seed" else None
    while handle is not None and not handle.status().is_seeding:
        time.sleep(0.01)
    print(json.dumps({"port": running.listen_port()}), flush=True)
    peers = json.loads(sys.stdin.readline())["peers"]
    started = time.monotonic()  # told to download
    if handle is None:
        handle = running.add_torrent(params)
    for address, port in peers:
        handle.connect_peer((address, port))
    if role != "seed":
        while not handle.status().is_seeding:
            time.sleep(0.005)
        print(json.dumps({"seconds": time.monotonic() - started}), flush=True)
    sys.stdin.readline()  # seed on until the parent closes stdin


def run(nodes: list[Node], stuff: Path, torrent: Path, saves: list[Path], timeout: float,
        upload: int = 0) -> list[float]:
    """``nodes[0]`` seeds ``stuff``, ``nodes[1:]`` leech into ``saves``: each leecher's seconds from being told to
    download to a complete copy, in order. ``upload`` > 0 caps every session's upload. A leecher that does not
    finish within ``timeout`` fails the run (RuntimeError): there is no fast result without a finish."""
    procs: list[subprocess.Popen[str]] = []
    try:
        for index, host in enumerate(nodes):
            save = stuff.parent if index == 0 else saves[index - 1]
            save.mkdir(parents=True, exist_ok=True)
            args = [sys.executable, "-W", "ignore::DeprecationWarning", __file__, "--node",
                    "seed" if index == 0 else "leech", str(torrent), str(save), host.address, str(upload)]
            procs.append(subprocess.Popen(host.command(args), stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                          text=True))
        ports = []
        for proc in procs:
            assert proc.stdout is not None
            line = proc.stdout.readline()
            if not line:
                raise RuntimeError(f"a libtorrent session ended before it was ready (exit {proc.wait()})")
            ports.append(int(json.loads(line)["port"]))
        for index, proc in enumerate(procs):
            assert proc.stdin is not None
            peers = [[other.address, ports[i]] for i, other in enumerate(nodes) if i != index]
            proc.stdin.write(json.dumps({"peers": peers}) + "\n")
            proc.stdin.flush()
        deadline = time.monotonic() + timeout
        seconds = []
        for proc in procs[1:]:
            assert proc.stdout is not None
            ready, _, _ = select.select([proc.stdout], [], [], max(0.0, deadline - time.monotonic()))
            line = proc.stdout.readline() if ready else ""
            if not line:
                raise RuntimeError(f"a libtorrent leecher did not finish within {timeout:g} s (exit {proc.poll()})")
            seconds.append(float(json.loads(line)["seconds"]))
        return seconds
    finally:
        end_piped(procs)


if __name__ == "__main__":
    if len(sys.argv) == 7 and sys.argv[1] == "--node":
        node(sys.argv[2], Path(sys.argv[3]), Path(sys.argv[4]), sys.argv[5], int(sys.argv[6]))
        raise SystemExit(0)
    raise SystemExit(__doc__)
