"""libtorrent on the same hosts as a namespace swarm: the reference for bench_swarm --netns.

One libtorrent session per host (network namespace), unthrottled, uTP/DHT/LSD off
(as in bench_pair): the seed and every leecher connect to every other host, peer
exchange spreads the rest. The clock of each leecher starts when the parent says
go (all sessions are up by then) and stops when it holds every piece verified and
written. Leechers keep seeding until the parent ends them, as Emma's players do.

    python tools/lt_swarm.py --node ROLE TORRENT SAVE LISTEN_IP PEER_IP...   (inside a namespace)
"""

from __future__ import annotations

import json
import select
import subprocess
import sys
import time
from pathlib import Path

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from tools.bench_pair import LT_SETTINGS, load_libtorrent
from tools.netns import Host

PORT = 6881


def make_torrent(stuff: Path, piece_size: int, target: Path) -> Path:
    lt = load_libtorrent()
    storage = lt.file_storage()
    lt.add_files(storage, str(stuff))
    creator = lt.create_torrent(storage, piece_size)
    lt.set_piece_hashes(creator, str(stuff.parent))
    target.write_bytes(lt.bencode(creator.generate()))
    return target


def node(role: str, torrent: Path, save: Path, listen: str, peers: list[str]) -> None:
    """One session: print ``ready``, wait for ``go``, connect to ``peers``, print the seconds to complete."""
    lt = load_libtorrent()
    settings = lt.high_performance_seed()
    settings.update(LT_SETTINGS)
    settings["listen_interfaces"] = f"{listen}:{PORT}"
    session = lt.session(settings)
    handle = session.add_torrent({"ti": lt.torrent_info(str(torrent)), "save_path": str(save)})
    while role == "seed" and not handle.status().is_seeding:
        time.sleep(0.01)
    print(json.dumps({"ready": True}), flush=True)
    sys.stdin.readline()
    started = time.monotonic()
    for peer in peers:
        handle.connect_peer((peer, PORT))
    if role != "seed":
        while not handle.status().is_seeding:
            time.sleep(0.005)
        print(json.dumps({"seconds": time.monotonic() - started}), flush=True)
    sys.stdin.readline()  # seed on until the parent closes stdin


def run(seed: Host, leechers: list[Host], stuff: Path, piece_size: int, work: Path, timeout: float) -> list[float]:
    """Each leecher's seconds to a complete copy, libtorrent on ``seed`` and ``leechers``."""
    work.mkdir(parents=True, exist_ok=True)
    torrent = make_torrent(stuff, piece_size, work / "stuff.torrent")
    hosts = [seed, *leechers]
    procs = []
    try:
        for index, host in enumerate(hosts):
            save = stuff.parent if host is seed else work / f"leech{index}"
            save.mkdir(parents=True, exist_ok=True)
            peers = [other.address for other in hosts if other is not host]
            role = "seed" if host is seed else "leech"
            args = [sys.executable, "-W", "ignore::DeprecationWarning", __file__, "--node", role, str(torrent),
                    str(save), host.address, *peers]
            procs.append(subprocess.Popen(host.command(args), stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                          text=True))
        for proc in procs:
            assert proc.stdout is not None
            json.loads(proc.stdout.readline())  # ready
        for proc in procs:
            assert proc.stdin is not None
            proc.stdin.write("go\n")
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
        for proc in procs:
            if proc.stdin is not None:
                proc.stdin.close()
        for proc in procs:
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


if __name__ == "__main__":
    if len(sys.argv) >= 7 and sys.argv[1] == "--node":
        node(sys.argv[2], Path(sys.argv[3]), Path(sys.argv[4]), sys.argv[5], sys.argv[6:])
        raise SystemExit(0)
    raise SystemExit(__doc__)
