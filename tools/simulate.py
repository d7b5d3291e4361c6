"""How will a swarm behave on a fleet? The players' own logic over simulated links, from 16 players to 10,000.

    python tools/simulate.py --players 2600 --seeds 5 --size 3G --classes 300M --book-size 16M

Every decision (which peers, which books, what to serve, when to refuse) is made
by the classes the services run: RequestorLogic, DistributorLogic, the picker,
the windows, the token buckets and the hub's logic. The simulator only moves
their messages over links with a rate and a latency (see tools/simulator/).
Same options and --seed, same figures, bit for bit.

Prints p50, p90, p99, p99.9 and the last completion (seconds from joining) and
each as a ratio to the Kumar-Ross bound max{F/u_seed, F/d_min, N F/(u_seed +
sum u_i)}, the seeds' upload redundancy, idle upload capacity over time, and
the simulator's own cost (events per second, wall time, peak memory). A
leecher that stays and never finishes counts as never: it fails every target.
Exit status 1 when a --target-* given is missed.
"""

from __future__ import annotations

import argparse
import json
import logging
import math
import resource
import sys
import time
from pathlib import Path

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import structlog

from services.runtime.units import parse_size
from tools.simulator.engine import run
from tools.simulator.report import PlotUnavailable, Result, check_plotting, plot
from tools.simulator.scenario import Scenario, parse_classes


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--players", type=int, default=16, help="leechers (default 16)")
    parser.add_argument("--seeds", type=int, default=1, help="players holding the whole stuff at the start")
    parser.add_argument("--size", default="64M", help="the stuff's size, e.g. 3G (K, M, G binary)")
    parser.add_argument("--book-size", default="1M", help="book size (16K..64M)")
    parser.add_argument("--classes", default="20M",
                        help="leechers' links as share:rate, e.g. 0.5:100M,0.5:20M; rate up/down as 100M/400M")
    parser.add_argument("--seed-upload", default="", help="each seed's link (default: the first class's upload)")
    parser.add_argument("--capped", action="store_true",
                        help="set every player's upload cap to its link (else no cap: the link is the limit)")
    parser.add_argument("--tcp-headers", action="store_true",
                        help="links carry TCP/IP's headers and ACKs too, as a shaped real link (else payload only)")
    parser.add_argument("--slots", type=int, default=8, help="each Distributor's upload slots (default 8)")
    parser.add_argument("--latency", type=float, default=0.001, help="one-way latency between players, seconds")
    parser.add_argument("--jitter", type=float, default=0.0, help="each player's extra one-way latency, up to this")
    parser.add_argument("--join-spread", type=float, default=0.0, help="leechers join over this many seconds")
    parser.add_argument("--churn", type=float, default=0.0, help="fraction of leechers that crash before finishing")
    parser.add_argument("--seeds-leave", default="never", help="never, copy (once each book left the seeds), or "
                        "a time in seconds")
    parser.add_argument("--turn", type=float, default=0.002, help="a player's loop turn, seconds (default 0.002)")
    parser.add_argument("--horizon", type=float, default=0.0, help="give up at this simulated time")
    parser.add_argument("--seed", type=int, default=1, help="the run's random seed")
    parser.add_argument("--json", action="store_true", help="print the figures as JSON")
    parser.add_argument("--progress", action="store_true", help="print each simulated second's progress to stderr")
    parser.add_argument("--plot", type=Path, help="write the completion CDF and aggregate upload to this PNG")
    parser.add_argument("--target-p99", type=float, help="exit 1 unless p99 <= this x the bound")
    parser.add_argument("--target-last", type=float, help="exit 1 unless the last completion <= this x the bound")
    return parser.parse_args(argv)


def scenario(args: argparse.Namespace) -> Scenario:
    if args.seeds_leave not in ("never", "copy"):
        float(args.seeds_leave)  # a ValueError names it
    return Scenario(
        players=args.players, seeds=args.seeds, size=parse_size(args.size), book_size=parse_size(args.book_size),
        classes=tuple(parse_classes(args.classes)),
        seed_upload=parse_size(args.seed_upload) if args.seed_upload else 0,
        latency=args.latency, jitter=args.jitter, join_spread=args.join_spread, churn=args.churn,
        seeds_leave=args.seeds_leave, capped=args.capped, tcp_headers=args.tcp_headers, slots=args.slots,
        turn=args.turn, horizon=args.horizon, seed=args.seed,
    )


def missed(result: Result, args: argparse.Namespace) -> list[str]:
    out = []
    for name, target in (("p99", args.target_p99), ("last", args.target_last)):
        if target is not None:
            ratio = result.ratio(name)
            if not ratio <= target:
                out.append(f"{name} is {'never' if math.isinf(ratio) else f'{ratio:.3f}x'} the bound; "
                           f"the target is {target:g}x")
    if result.unfinished and not out and (args.target_p99 is not None or args.target_last is not None):
        out.append(f"{result.unfinished} leecher(s) never finished")
    return out


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    try:
        chosen = scenario(args)
        chosen.bound()
    except ValueError as exc:
        print(f"simulate: {exc}", file=sys.stderr)
        return 2
    if args.plot:
        try:
            check_plotting()  # before a run that may take minutes
        except PlotUnavailable as exc:
            print(f"simulate: {exc}", file=sys.stderr)
            return 2
    # The logic classes log what they do; a simulated fleet would print millions of lines.
    structlog.configure(wrapper_class=structlog.make_filtering_bound_logger(logging.CRITICAL))
    started = time.perf_counter()
    cpu = time.process_time()

    def progress(simulated: float, finished: int, events: int) -> None:
        print(f"[{time.perf_counter() - started:7.1f} s] simulated {simulated:5.1f} s, {finished} finished, "
              f"{events:,} events", file=sys.stderr, flush=True)

    result = run(chosen, progress if args.progress else None)
    wall, cpu = time.perf_counter() - started, time.process_time() - cpu
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    cost = {"wall_seconds": wall, "cpu_seconds": cpu, "events_per_second": result.events / cpu if cpu else 0.0,
            "peak_rss_mib": peak}
    if args.json:
        print(json.dumps({**result.to_json(), "host": cost}, indent=1))
    else:
        print(result.text())
        print(f"simulator: {result.events:,} events, {result.messages:,} messages, {result.books_delivered:,} "
              f"books in {cpu:.1f} s of CPU, {wall:.1f} s of wall ({cost['events_per_second']:,.0f} events/s of CPU, "
              f"{result.end:.2f} simulated s); peak memory {peak:.0f} MiB")
    if args.plot:
        try:
            plot(result, args.plot)
        except PlotUnavailable as exc:
            print(f"simulate: {exc}", file=sys.stderr)
            return 2
    problems = missed(result, args)
    for problem in problems:
        print(f"TARGET MISSED: {problem}", file=sys.stderr)
    return 1 if problems else 0


if __name__ == "__main__":
    raise SystemExit(main())
