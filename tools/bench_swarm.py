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
by F/U, and 16 F/U for scale. Target: at most 1.15x the bound. The last
leecher is the max over every leecher's real completion time: a leecher that
never finished (no ``download_verified`` event, or none within the timeout), a
copy that is missing or differs from the source, is a failure, never a time.

    python tools/bench_swarm.py --against libtorrent

Runs the same capped 1 + N swarm (on loopback, the same stuff, books and cap)
with libtorrent sessions too (tools/lt_swarm.py: TCP, every session's upload
capped at U, local peers included), and prints both last leechers as ratios to
the bound. Targets: Emma within 1.15x the bound and at least as fast as
libtorrent; libtorrent sooner than the bound would mean its caps were not
applied, and fails the run.

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
scenario runs with libtorrent on the same hosts, no cap configured either.
Targets: the last leecher within 1.15x the bound, and at least 1.5x faster than
libtorrent. Every --netns run also moves the same bytes over the same links
with no application (tools/bare_links.py) and prints its time and the CPU it
cost: what TCP and this machine's kernel, shared by every host, do on their own.

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
import math
import os
import shutil
import sys
import tempfile
import time
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

import structlog

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from services.peer.library import Library
from services.runtime.units import parse_size
from tools import bare_links, lt_swarm
from tools.machine import busy_since, cpu_times
from tools.netns import Network, parse_rate
from tools.simulator.engine import run as simulate
from tools.simulator.scenario import RateClass, Scenario
from tools.swarm import Player, Swarm, file_digest, kumar_ross_bound, make_stuff, rate_classes

NETNS_TARGET = 1.15
CAPPED_TARGET = 1.15
PRIVATE_TARGET = 1.05  # private (CURVE) swarm against the open one in clear, same run
LIBTORRENT_TARGET = 1.5  # --netns: emma this much faster than libtorrent, both on shaped links
CPU_BOUND = 0.9  # a swarm that kept the machine this busy may have waited on the CPU (hosts here share its cores)
LOOPBACK_LIBTORRENT_TARGET = 1.0  # capped on loopback: emma at least as fast as libtorrent under the same caps
LT_FLOOR = 0.95  # a capped libtorrent swarm done sooner than this fraction of the bound was not capped
SIMULATE_TARGET = 0.10  # the simulator's last completion within this fraction of the real one
LOOPBACK_LATENCY = 0.0001  # seconds one way between players on one host (simulated)
NETNS_LATENCY = 0.0002  # one way across the bridge between namespaces (simulated)
# How often the benchmark reads the leechers' state.db to see whether they are done: their times come from their
# logs, so it may look seldom (every 50 ms it cost 1.1 CPU-seconds of a 17 s namespace swarm the players needed).
COMPLETE_POLL = 0.5


def verified_at(player: Player) -> float | None:
    log = player.data_dir / "logs" / "events.log"
    if not log.exists():
        return None
    for line in log.read_text().splitlines():
        record = json.loads(line)
        if record.get("event") == "download_verified":
            return datetime.fromisoformat(record["timestamp"].replace("Z", "+00:00")).timestamp()
    return None


@dataclass
class Finish:
    """A swarm's result: each leecher's seconds to a complete copy, and what went wrong (nothing, when it counts)."""

    times: list[float] = field(default_factory=list)  # sorted; only leechers that really finished
    problems: list[str] = field(default_factory=list)
    busy: float = math.nan  # the machine's CPU busy, 0..1 of all its cores, while the swarm ran
    cpu_seconds: float = math.nan  # the CPU-seconds its cores spent busy meanwhile (every process)
    started: float = math.nan  # wall clock when the leechers were told to download

    @property
    def last(self) -> float:
        """The max over the real completion times; NaN when any leecher has none (no fast result without one)."""
        return self.times[-1] if self.times and not self.problems else math.nan

    def report(self, label: str, bound: float) -> None:
        print(f"{label} completion times (s): " + " ".join(f"{t:.2f}" for t in self.times))
        for problem in self.problems:
            print(f"{label}: FAILED: {problem}")
        if not self.problems:
            print(f"{label}'s last leecher {self.last:.2f} s = {self.last / bound:.3f}x the bound")
        if not math.isnan(self.busy):
            print(f"{label}: the machine's {os.cpu_count()} cores were {self.busy:.0%} busy while it ran "
                  f"({self.cpu_seconds:.1f} CPU-seconds)"
                  + (" (the CPU, not the links, may be the limit)" if self.busy >= CPU_BOUND else ""))


def copy_problems(name: str, copy: Path | None, stuff: Path, digest: str) -> list[str]:
    """What is wrong with one leecher's copy of ``stuff``: nothing, or that it is missing or differs."""
    if copy is None or not copy.exists():
        return [f"{name} has no copy ({copy})"]
    if copy.resolve() == stuff.resolve():
        return [f"{name}'s copy is the source itself"]
    if file_digest(copy) != digest:
        return [f"{name}'s copy differs from the source"]
    return []


def timed_swarm(swarm: Swarm, seed: Player, leechers: list[Player], library: Library, stuff: Path,
                timeout: float) -> Finish:
    """Start every player, hand the library to the leechers at once: each one's seconds to every book
    verified and written, and every leecher that did not finish or whose copy is missing or differs."""
    for player in [seed, *leechers]:
        swarm.start_player(player)
    swarm.wait_serving([seed, *leechers])
    if swarm.network is None:  # the seed is handed out (a private hub admits it once it re-read its list)
        swarm.wait_announced(library, [seed])
    time.sleep(2.0)  # every first announce is in; start-up CPU has settled
    started, ticks = time.time(), cpu_times()
    for player in leechers:
        swarm.give(player, library)
    finish = Finish(started=started)
    try:
        swarm.wait_complete(library, leechers, timeout=timeout, every=COMPLETE_POLL)
    except TimeoutError as exc:
        finish.problems.append(str(exc))
    finish.busy, finish.cpu_seconds = busy_since(ticks)
    digest = file_digest(stuff)
    for player in leechers:
        at = verified_at(player)
        if at is None:
            finish.problems.append(f"{player.name} never verified its copy (no download_verified event)")
        else:
            finish.times.append(at - started)
        finish.problems += copy_problems(player.name, player.stuff_path(library.id_hex), stuff, digest)
    finish.times.sort()
    return finish


def libtorrent_swarm(nodes: list[lt_swarm.Node], stuff: Path, piece_size: int, work: Path, timeout: float,
                     upload: int = 0) -> Finish:
    """The same swarm with libtorrent sessions on ``nodes`` (the seed first), each copy checked as Emma's are."""
    torrent = lt_swarm.make_torrent(stuff, piece_size, work / "stuff.torrent")
    saves = [work / f"leech{i:02}" for i in range(1, len(nodes))]
    finish = Finish()
    ticks = cpu_times()
    try:
        finish.times = sorted(lt_swarm.run(nodes, stuff, torrent, saves, timeout, upload))
    except RuntimeError as exc:
        finish.problems.append(str(exc))
        return finish
    finish.busy, finish.cpu_seconds = busy_since(ticks)  # its sessions' start and end included
    digest = file_digest(stuff)
    for save in saves:
        finish.problems += copy_problems(f"libtorrent {save.name}", save / stuff.name, stuff, digest)
    return finish


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--leechers", type=int, default=16)
    parser.add_argument("--size", default="32M", help="F, the stuff size")
    parser.add_argument("--upload", default="2M", help="U, every player's upload cap in bytes/s")
    parser.add_argument("--book-size", default="64K")
    parser.add_argument("--keep", action="store_true", help="keep the working directory")
    parser.add_argument("--netns", action="store_true", help="players on hosts of their own, links shaped, no cap")
    parser.add_argument("--rates", default="20mbit", help="with --netns: the links, e.g. 0.5:100mbit,0.5:20mbit")
    parser.add_argument("--against", choices=["libtorrent"],
                        help="also run the same swarm with libtorrent (capped on loopback, or on the same hosts)")
    parser.add_argument("--private", action="store_true",
                        help="run the capped swarm open in clear and private (CURVE), and compare")
    parser.add_argument("--simulate", action="store_true",
                        help="also run the same scenario in the simulator (tools/simulate.py) and compare")
    args = parser.parse_args(argv)
    if args.netns:
        return run_netns(args)
    if args.private and args.against:
        parser.error("--private compares two Emma swarms; run --against libtorrent on its own")
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
    """One capped swarm (and libtorrent's, with --against); the last leecher's seconds, or None when a leecher
    did not finish, a copy is missing or differs, or a target is missed."""
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
        finish = timed_swarm(swarm, seed, leechers, library, stuff, timeout=max(120.0, 6 * bound))
    lt_finish = None
    if args.against == "libtorrent":
        lt_finish = libtorrent_swarm([lt_swarm.LOOPBACK] * (args.leechers + 1), stuff, library.book_size,
                                     root / "lt", timeout=max(300.0, 20 * bound), upload=upload)
    print(f"[{label}] F = {size / 2**20:.1f} MiB in {library.books} books, U = {upload / 2**20:.2f} MiB/s per "
          f"player, {args.leechers} leechers; aggregate upload capacity "
          f"{(args.leechers + 1) * upload / 2**20:.1f} MiB/s")
    print(f"Kumar-Ross bound F/U = {bound:.2f} s; client-server {args.leechers} F/U = {args.leechers * bound:.2f} s")
    last, met = emma_against_bound(finish, bound, CAPPED_TARGET)
    if lt_finish is not None:
        lt_finish.report("libtorrent", bound)
        lt_last = lt_finish.last
        capped = lt_last >= LT_FLOOR * bound
        if not capped:
            print(f"libtorrent finished at {lt_last / bound:.3f}x the bound, sooner than its caps allow: they "
                  "were not applied, so this is no comparison")
        faster = lt_last / last if capped else math.nan
        print(f"emma is {faster:.2f}x as fast as libtorrent under the same caps (target >= "
              f"{LOOPBACK_LIBTORRENT_TARGET}x)")
        met = met and faster >= LOOPBACK_LIBTORRENT_TARGET
    if args.simulate and not math.isnan(last):
        met = compare_simulated(last, Scenario(
            players=args.leechers, size=size, book_size=library.book_size,
            classes=(RateClass(1.0, upload, 100 * upload),), latency=LOOPBACK_LATENCY, capped=True)) and met
    if args.keep:
        print(f"kept {root}")
    else:
        shutil.rmtree(root, ignore_errors=True)
    return last if met else None


def emma_against_bound(finish: Finish, bound: float, target: float) -> tuple[float, bool]:
    """Print Emma's completions and whether its last leecher is within ``target`` times the bound; (last, met)."""
    finish.report("emma", bound)
    last = finish.last
    met = last / bound <= target  # False for NaN: a missing measurement fails
    print(f"target: emma's last leecher <= {target}x the bound: {'met' if met else 'NOT met'}")
    return last, met


def run_netns(args: argparse.Namespace) -> int:
    size = parse_size(args.size)
    rates = rate_classes(args.rates, args.leechers + 1)
    uploads = [parse_rate(rate) / 8 for rate in rates]
    bound = kumar_ross_bound(size, uploads[0], uploads[1:])
    root = Path(tempfile.mkdtemp(prefix="emma-bench-netns-"))
    book = parse_size(args.book_size) if args.book_size != "auto" else None
    with Network() as network:
        with Swarm(root, network=network) as swarm:
            swarm.start_hub()
            stuff = root / "stuff.bin"
            make_stuff(stuff, size)
            seed = swarm.add_player("seed", rate=rates[0])
            leechers = [swarm.add_player(f"leecher{i:02}", rate=rates[i + 1]) for i in range(args.leechers)]
            library = swarm.share(seed, stuff, book)
            finish = timed_swarm(swarm, seed, leechers, library, stuff, timeout=max(120.0, 8 * bound))
        seed_sent = seed_sends(seed)
        nodes: list[lt_swarm.Node] = [p.host for p in [seed, *leechers] if p.host is not None]
        lt_finish = None
        if args.against == "libtorrent":
            lt_finish = libtorrent_swarm(nodes, stuff, library.book_size, root / "lt", timeout=max(300.0, 20 * bound))
        bare = bare_links.run(nodes, uploads, stuff, size, timeout=max(120.0, 8 * bound))
    print(f"F = {size / 2**20:.1f} MiB in {library.books} books of {library.book_size // 1024} KiB; "
          f"1 seed + {args.leechers} leechers on hosts of their own, links {args.rates} ({network.congestion} TCP), no "
          f"cap configured; bound {bound:.2f} s; the seed sent {seed_sent.sends} books for {library.books}, "
          f"{seed_sent.early} of them again before every book had gone out once")
    last, met = emma_against_bound(finish, bound, NETNS_TARGET)
    once = seed_sent.once_at - finish.started
    if not math.isnan(once):  # the seed logs it only once every book went out
        payload = size + seed_sent.early * library.book_size  # what the seed had sent by then, at least
        print(f"every book had left the seed once {once:.2f} s after the start ({once / bound:.3f}x the bound; its "
              f"link carried {payload / once / uploads[0]:.0%} of its rate in payload meanwhile); the last leecher "
              f"finished {last - once:.2f} s later")
    print(f"bare TCP (the same bytes over the same links in fixed shares, no application; tools/bare_links.py): "
          f"{bare.seconds:.2f} s = {bare.seconds / bound:.3f}x the bound (hosts {min(bare.hosts):.2f}-"
          f"{max(bare.hosts):.2f} s), {bare.cpu_seconds:.1f} CPU-seconds, the machine's cores {bare.busy:.0%} busy")
    if lt_finish is not None:
        lt_finish.report("libtorrent", bound)
        print(f"emma is {lt_finish.last / last:.2f}x faster than libtorrent (target >= {LIBTORRENT_TARGET}x)")
        met = met and lt_finish.last / last >= LIBTORRENT_TARGET
    if args.simulate and not math.isnan(last):
        met = compare_simulated(last, Scenario(
            players=args.leechers, size=size, book_size=library.book_size, seed_upload=round(uploads[0]),
            classes=link_classes(uploads[1:]), latency=NETNS_LATENCY, tcp_headers=True)) and met
    if args.keep:
        print(f"kept {root}")
    else:
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


@dataclass(frozen=True)
class SeedSends:
    """The seed Distributor's upload summary, logged when it stopped."""

    sends: int = 0  # books it sent
    early: int = 0  # of them, repeats sent while some book had never been sent
    once_at: float = math.nan  # when every book had gone out once (wall clock)


def seed_sends(seed: Player) -> SeedSends:
    log = seed.data_dir / "logs" / "events.log"
    for line in reversed(log.read_text().splitlines() if log.exists() else []):
        record = json.loads(line)
        if record.get("event") == "library_uploaded":
            return SeedSends(int(record["sends"]), int(record["early_repeats"]),
                             float(record.get("sent_once_at", math.nan)))
    return SeedSends()


if __name__ == "__main__":
    raise SystemExit(main())
