"""1 seed + N leechers, every player's upload capped at U: how close to the bound?

    python tools/bench_swarm.py --leechers 16 --size 32M --upload 2M

The Kumar-Ross lower bound for distributing F bytes from one seed to N
leechers when every upload is U is max(F/U, N*F/((N+1)*U)) = F/U: no swarm
can finish sooner. A client-server copy takes N*F/U. The clock starts when
every player is up and the library is handed to all leechers at once; each
leecher's time is its ``download_verified`` event (every book verified and
written). U is chosen so the aggregate, (N+1)*U, stays far below what the two
cores can move (a single pair moves several hundred MiB/s here), so the caps,
not the CPU, set the pace. Prints each completion time, the last one divided
by F/U, and 16 F/U for scale. Target: at most 1.15x the bound.

    python tools/bench_swarm.py --private

Runs the same capped swarm twice, open with encryption off and private (CURVE
on every link, allowlists, signed library), and prints both: the private one's
last leecher must finish within 1.05x the open one's (the links, not the
crypto, bound a real swarm), and each within 1.15x the bound.

    python tools/bench_swarm.py --netns --leechers 8 --rates 20mbit --against libtorrent   (as root)

With --netns the hub and each player run on a host of their own (network
namespaces, see netns.py), set up with the first-run answers alone and no
upload cap: each player's link, shaped by tc tbf (--rates, classes such as
0.5:100mbit,0.5:20mbit, the seed taking the first), is the limit. The bound is
max(F/u_seed, N F/(u_seed + sum u_i)). With --against libtorrent the same
scenario runs with libtorrent on the same hosts, unthrottled. Targets: the last
leecher within 1.15x the bound, and at least 1.5x faster than libtorrent.

With --simulate (either mode) the same scenario also runs in the simulator
(tools/simulate.py: the players' own logic over simulated links of the same
rates), and its completions are printed under the real ones. Target: the last
completions agree within 10%; when they do not, the simulator does not yet
model what limits the real swarm (the CPU, say), and its figures for larger
fleets are not to be trusted.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
import tempfile
import time
from datetime import datetime
from pathlib import Path

import structlog

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from services.peer.library import Library
from services.runtime.units import parse_size
from tools import lt_swarm
from tools.netns import Network, parse_rate
from tools.simulator.engine import run as simulate
from tools.simulator.scenario import RateClass, Scenario
from tools.swarm import Player, Swarm, file_digest, kumar_ross_bound, make_stuff, rate_classes

NETNS_TARGET = 1.15
CAPPED_TARGET = 1.15
PRIVATE_TARGET = 1.05  # private (CURVE) swarm against the open one in clear, same run
LIBTORRENT_TARGET = 1.5
SIMULATE_TARGET = 0.10  # the simulator's last completion within this fraction of the real one
LOOPBACK_LATENCY = 0.0001  # seconds one way between players on one host (simulated)
NETNS_LATENCY = 0.0002  # one way across the bridge between namespaces (simulated)


def verified_at(player: Player) -> float | None:
    log = player.data_dir / "logs" / "events.log"
    if not log.exists():
        return None
    for line in log.read_text().splitlines():
        record = json.loads(line)
        if record.get("event") == "download_verified":
            return datetime.fromisoformat(record["timestamp"].replace("Z", "+00:00")).timestamp()
    return None


def timed_swarm(swarm: Swarm, seed: Player, leechers: list[Player], library: Library, stuff: Path,
                timeout: float) -> tuple[list[float], bool]:
    """Start every player, hand the library to the leechers at once: each one's seconds to every book
    verified and written (sorted), and whether every copy is identical."""
    for player in [seed, *leechers]:
        swarm.start_player(player)
    swarm.wait_serving([seed, *leechers])
    if swarm.network is None:  # the seed is handed out (a private hub admits it once it re-read its list)
        swarm.wait_announced(library, [seed])
    time.sleep(2.0)  # every first announce is in; start-up CPU has settled
    started = time.time()
    for player in leechers:
        swarm.give(player, library)
    swarm.wait_complete(library, leechers, timeout=timeout)
    times = sorted((verified_at(p) or float("nan")) - started for p in leechers)
    digest = file_digest(stuff)
    return times, all(file_digest(p.stuff_path(library.id_hex) or stuff) == digest for p in leechers)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--leechers", type=int, default=16)
    parser.add_argument("--size", default="32M", help="F, the stuff size")
    parser.add_argument("--upload", default="2M", help="U, every player's upload cap in bytes/s")
    parser.add_argument("--book-size", default="64K")
    parser.add_argument("--keep", action="store_true", help="keep the working directory")
    parser.add_argument("--netns", action="store_true", help="players on hosts of their own, links shaped, no cap")
    parser.add_argument("--rates", default="20mbit", help="with --netns: the links, e.g. 0.5:100mbit,0.5:20mbit")
    parser.add_argument("--against", choices=["libtorrent"], help="with --netns: run libtorrent on the same hosts")
    parser.add_argument("--private", action="store_true",
                        help="run the capped swarm open in clear and private (CURVE), and compare")
    parser.add_argument("--simulate", action="store_true",
                        help="also run the same scenario in the simulator (tools/simulate.py) and compare")
    args = parser.parse_args(argv)
    if args.netns:
        return run_netns(args)
    if args.private:
        clear = run_capped(args, encryption=False, private=False, label="open, encryption off")
        private = run_capped(args, encryption=True, private=True, label="private, CURVE")
        if clear is None or private is None:
            return 1
        ratio = private / clear
        print(f"private swarm's last leecher {private:.2f} s = {ratio:.3f}x the open one's {clear:.2f} s "
              f"(target <= {PRIVATE_TARGET}x)")
        return 0 if ratio <= PRIVATE_TARGET else 1
    return 0 if run_capped(args, encryption=True, private=False, label="open, CURVE") is not None else 1


def run_capped(args: argparse.Namespace, *, encryption: bool, private: bool, label: str) -> float | None:
    """One capped swarm; the last leecher's seconds, or None when a copy differs or the bound is missed."""
    size, upload = parse_size(args.size), parse_size(args.upload)
    bound = size / upload
    root = Path(tempfile.mkdtemp(prefix="emma-bench-swarm-"))
    with Swarm(root, upload_limit=upload, encryption=encryption, private=private) as swarm:
        swarm.start_hub()
        stuff = root / "stuff.bin"
        make_stuff(stuff, size)
        seed = swarm.add_player("seed")
        leechers = [swarm.add_player(f"leecher{i:02}") for i in range(args.leechers)]
        library = swarm.share(seed, stuff, parse_size(args.book_size))
        times, identical = timed_swarm(swarm, seed, leechers, library, stuff, timeout=max(120.0, 6 * bound))
    print(f"[{label}] F = {size / 2**20:.1f} MiB in {library.books} books, U = {upload / 2**20:.2f} MiB/s per "
          f"player, {args.leechers} leechers; aggregate upload capacity "
          f"{(args.leechers + 1) * upload / 2**20:.1f} MiB/s")
    print("completion times (s): " + " ".join(f"{t:.2f}" for t in times))
    last = times[-1]
    print(f"Kumar-Ross bound F/U = {bound:.2f} s; client-server {args.leechers} F/U = {args.leechers * bound:.2f} s")
    print(f"last leecher done after {last:.2f} s = {last / bound:.3f}x the bound (target <= {CAPPED_TARGET}x); "
          f"copies {'identical' if identical else 'DIFFER'}")
    agrees = True
    if args.simulate:
        agrees = compare_simulated(last, Scenario(
            players=args.leechers, size=size, book_size=library.book_size,
            classes=(RateClass(1.0, upload, 100 * upload),), latency=LOOPBACK_LATENCY, capped=True))
    if args.keep:
        print(f"kept {root}")
    else:
        import shutil

        shutil.rmtree(root, ignore_errors=True)
    return last if identical and last / bound <= CAPPED_TARGET and agrees else None


def run_netns(args: argparse.Namespace) -> int:
    size = parse_size(args.size)
    rates = rate_classes(args.rates, args.leechers + 1)
    uploads = [parse_rate(rate) / 8 for rate in rates]
    bound = kumar_ross_bound(size, uploads[0], uploads[1:])
    root = Path(tempfile.mkdtemp(prefix="emma-bench-netns-"))
    book = parse_size(args.book_size) if args.book_size != "auto" else None
    lt_times: list[float] = []
    with Network() as network:
        with Swarm(root, network=network) as swarm:
            swarm.start_hub()
            stuff = root / "stuff.bin"
            make_stuff(stuff, size)
            seed = swarm.add_player("seed", rate=rates[0])
            leechers = [swarm.add_player(f"leecher{i:02}", rate=rates[i + 1]) for i in range(args.leechers)]
            library = swarm.share(seed, stuff, book)
            times, identical = timed_swarm(swarm, seed, leechers, library, stuff, timeout=max(120.0, 8 * bound))
        sends = seed_sends(seed)
        if args.against == "libtorrent":
            assert seed.host is not None
            hosts = [p.host for p in leechers if p.host is not None]
            lt_times = sorted(lt_swarm.run(seed.host, hosts, stuff, library.book_size, root / "lt",
                                           timeout=max(300.0, 20 * bound)))
    last = times[-1]
    print(f"F = {size / 2**20:.1f} MiB in {library.books} books of {library.book_size // 1024} KiB; "
          f"1 seed + {args.leechers} leechers on hosts of their own, links {args.rates}, no cap configured")
    print("emma completion times (s):       " + " ".join(f"{t:.2f}" for t in times))
    print(f"bound {bound:.2f} s; emma's last leecher {last:.2f} s = {last / bound:.3f}x the bound "
          f"(target <= {NETNS_TARGET}x); copies {'identical' if identical else 'DIFFER'}; "
          f"the seed sent {sends} books for {library.books}")
    met = identical and last / bound <= NETNS_TARGET
    if lt_times:
        lt_last = lt_times[-1]
        print("libtorrent completion times (s): " + " ".join(f"{t:.2f}" for t in lt_times))
        print(f"libtorrent's last leecher {lt_last:.2f} s = {lt_last / bound:.3f}x the bound; emma is "
              f"{lt_last / last:.2f}x faster (target >= {LIBTORRENT_TARGET}x)")
        met = met and lt_last / last >= LIBTORRENT_TARGET
    if args.simulate:
        met = compare_simulated(last, Scenario(
            players=args.leechers, size=size, book_size=library.book_size, seed_upload=round(uploads[0]),
            classes=link_classes(uploads[1:]), latency=NETNS_LATENCY)) and met
    if args.keep:
        print(f"kept {root}")
    else:
        import shutil

        shutil.rmtree(root, ignore_errors=True)
    return 0 if met else 1


def link_classes(uploads: list[float]) -> tuple[RateClass, ...]:
    """The leechers' links (in order) as the simulator's rate classes: one per run of equal rates, its share
    the number of leechers in it. Downloads are not shaped (tc shapes egress): 100x the upload."""
    runs: list[tuple[float, int]] = []
    for upload in uploads:
        if runs and runs[-1][0] == upload:
            runs[-1] = (upload, runs[-1][1] + 1)
        else:
            runs.append((upload, 1))
    return tuple(RateClass(float(count), round(upload), round(100 * upload)) for upload, count in runs)


def compare_simulated(real_last: float, scenario: Scenario) -> bool:
    """Run ``scenario`` in the simulator (the players' own logic over simulated links), print its
    completions beside the real run's, and whether the last ones agree within SIMULATE_TARGET."""
    structlog.configure(wrapper_class=structlog.make_filtering_bound_logger(logging.CRITICAL))
    started = time.perf_counter()
    result = simulate(scenario)
    times = result.times()
    sim_last = times[-1] if times else float("inf")
    gap = abs(sim_last - real_last) / real_last
    print("simulated completion times (s): " + " ".join(f"{t:.2f}" for t in times)
          + f"  ({time.perf_counter() - started:.0f} s to simulate)")
    print(f"simulated last leecher {sim_last:.2f} s = {sim_last / result.bound:.3f}x its bound; the real one "
          f"{real_last:.2f} s: {gap:.1%} apart (target <= {SIMULATE_TARGET:.0%})")
    return gap <= SIMULATE_TARGET


def seed_sends(seed: Player) -> int:
    """How many books the seed's Distributor sent (its upload summary, logged when it stopped)."""
    log = seed.data_dir / "logs" / "events.log"
    for line in reversed(log.read_text().splitlines() if log.exists() else []):
        record = json.loads(line)
        if record.get("event") == "library_uploaded":
            return int(record["sends"])
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
