"""How long players go without a hub when one of several hubs on one Redis dies.

    python tools/bench_failover.py [--players 32] [--interval 0.5] [--before 5] [--after 10]

Starts ``--hubs`` hubs (``python -m services.hub --store redis``) sharing one
redis-server, and two things that use them at once:

- ``--players`` announcers, each a real ``HubClient`` (the one a Requestor
  uses, library hubs shuffled) in a thread of this process, announcing every
  ``--interval`` seconds and noting the time of every answer;
- a real download: a seed and ``--leechers`` players (Requestor and
  Distributor processes, upload capped at ``--upload`` bytes/s so that it
  runs through the kill), whose libraries list every hub.

After ``--before`` seconds, the hub that most announcers talk to is killed
with SIGKILL (``--freeze``: stopped with SIGSTOP, a machine gone silent whose
connections stay open, which costs a request timeout); the run goes on for ``--after`` seconds and until the download
ends. Printed: for every announcer, the longest time it went without a
successful hub answer (from its last answer before the kill to its first
after, or any longer gap), their p50, p99 and max; and for every leecher,
the longest time its count of books did not grow before it completed.

Targets: p99 under 2 s and max under 3 s without a hub answer, every
download complete and identical, no leecher's progress paused for 2 s or
more. A missing measurement (an announcer that never got an answer, a
leecher that did not finish) fails the run. Exit status 0 when every target
is met.
"""

from __future__ import annotations

import argparse
import itertools
import logging
import os
import shutil
import sys
import tempfile
import threading
import time
from collections import Counter
from pathlib import Path

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import zmq

from services.hub.client import HubClient, HubClientError
from services.runtime.logs import setup_logging
from tools.redis_server import missing_reason
from tools.swarm import Player, Swarm, file_digest, make_stuff

P99_TARGET = 2.0
MAX_TARGET = 3.0
PAUSE_TARGET = 2.0
FAKE_LIBRARY = b"\xfa" * 32  # the announcers' library: not the download's, so no one dials their endpoints


class Announcer(threading.Thread):
    """One player announcing on a schedule; ``answers`` holds the monotonic time of every answer."""

    def __init__(self, index: int, hubs: list[str], context: zmq.Context[zmq.Socket[bytes]], interval: float,
                 stop: threading.Event) -> None:
        super().__init__(name=f"announcer-{index}", daemon=True)
        self.player_id = index.to_bytes(16, "big")
        self.endpoint = f"tcp://10.77.{index // 250}.{index % 250 + 1}:7000"
        self.client = HubClient(hubs, context=context)
        self.interval = interval
        self.stop = stop
        self.answers: list[float] = []
        self.errors: Counter[str] = Counter()

    def run(self) -> None:
        next_at = time.monotonic()
        try:
            while not self.stop.is_set():
                try:
                    self.client.announce(FAKE_LIBRARY, self.player_id, self.endpoint, left=1)
                    self.answers.append(time.monotonic())
                except HubClientError as exc:
                    self.errors[type(exc).__name__] += 1
                next_at += self.interval
                self.stop.wait(max(0.0, next_at - time.monotonic()))
        finally:
            self.client.close()

    def hub(self) -> str:
        return self.client.endpoint

    def longest_gap(self, start: float, end: float) -> float:
        """The longest time between answers in [start, end] (from start to the first, the last to end too)."""
        times = [start, *(t for t in self.answers if start <= t <= end), end]
        return max(b - a for a, b in itertools.pairwise(times))


class Progress:
    """Watches a leecher's count of books; the longest time it stood still before completing."""

    def __init__(self, player: Player, library_id: str) -> None:
        self.player, self.library_id = player, library_id
        self.last_count, self.last_change = -1, time.monotonic()
        self.longest = 0.0
        self.done = False

    def poll(self) -> None:
        if self.done:
            return
        have, _, status = self.player.progress(self.library_id)
        now = time.monotonic()
        if status == "seeding":
            self.done = True
        if have != self.last_count or self.done:
            if self.last_count >= 0:
                self.longest = max(self.longest, now - self.last_change)
            self.last_count, self.last_change = have, now


def percentile(values: list[float], fraction: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(len(ordered) * fraction))]


def run(args: argparse.Namespace, root: Path) -> bool:
    # In clear: the announcers below play thousands of players by id, with no key of their own.
    with Swarm(root / "swarm", hubs=args.hubs, store="redis", hub_args=("--interval", "1"),
               upload_limit=args.upload, encryption=False) as swarm:
        swarm.start_hub()
        print(f"{args.hubs} hubs on one Redis: {', '.join(swarm.hub_endpoints)}")
        seed = swarm.add_player("seed")
        leechers = [swarm.add_player(f"leecher{i}") for i in range(args.leechers)]
        stuff = root / "stuff.bin"
        make_stuff(stuff, args.size)
        library = swarm.share(seed, stuff)
        for player in [seed, *leechers]:
            swarm.start_player(player)
        swarm.wait_serving([seed, *leechers])
        stop = threading.Event()
        context: zmq.Context[zmq.Socket[bytes]] = zmq.Context()
        announcers = [Announcer(i, swarm.hub_endpoints, context, args.interval, stop) for i in range(args.players)]
        for announcer in announcers:
            announcer.start()
        for player in leechers:
            swarm.give(player, library)
        watches = [Progress(player, library.id_hex) for player in leechers]
        try:
            started = time.monotonic()
            while time.monotonic() - started < args.before:
                for watch in watches:
                    watch.poll()
                time.sleep(0.05)
            busiest, users = Counter(a.hub() for a in announcers).most_common(1)[0]
            victim = swarm.hub_endpoints.index(busiest)
            if args.freeze:
                swarm.freeze_hub(victim)
            else:
                swarm.kill_hub(victim)
            killed_at = time.monotonic()
            how = "froze hub (SIGSTOP)" if args.freeze else "killed hub (SIGKILL)"
            print(f"{how} {busiest}, the current hub of {users} of {len(announcers)} announcers")
            deadline = killed_at + args.after + args.timeout
            while (time.monotonic() - killed_at < args.after or not all(w.done for w in watches)) \
                    and time.monotonic() < deadline:
                for watch in watches:
                    watch.poll()
                time.sleep(0.05)
            ended = time.monotonic()
        finally:
            stop.set()
            for announcer in announcers:
                announcer.join(10)
            context.term()
        ok = True
        gaps = []
        for announcer in announcers:
            if not announcer.answers:
                print(f"{announcer.name}: never answered ({dict(announcer.errors)})")
                ok = False
                continue
            gaps.append(announcer.longest_gap(announcer.answers[0], ended))
        if gaps:
            p50, p99, worst = percentile(gaps, 0.5), percentile(gaps, 0.99), max(gaps)
            print("longest time without a hub answer, per announcer (s): "
                  + " ".join(f"{gap:.2f}" for gap in sorted(gaps)))
            print(f"p50 {p50:.2f} s, p99 {p99:.2f} s (target < {P99_TARGET:g}), max {worst:.2f} s "
                  f"(target < {MAX_TARGET:g}); announce interval {args.interval:g} s")
            ok = ok and p99 < P99_TARGET and worst < MAX_TARGET
        digest = file_digest(stuff)
        for watch in watches:
            copy = watch.player.stuff_path(library.id_hex) if watch.done else None
            same = copy is not None and file_digest(copy) == digest
            print(f"{watch.player.name}: {'complete' if watch.done else 'NOT COMPLETE'}, "
                  f"{'identical' if same else 'copy missing or different'}, "
                  f"longest pause in progress {watch.longest:.2f} s (target < {PAUSE_TARGET:g})")
            ok = ok and same and watch.longest < PAUSE_TARGET
        return ok


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--hubs", type=int, default=3)
    parser.add_argument("--players", type=int, default=32, help="announcers (HubClients in threads)")
    parser.add_argument("--interval", type=float, default=0.5, help="seconds between an announcer's announces")
    parser.add_argument("--leechers", type=int, default=2, help="real players downloading through the kill")
    parser.add_argument("--size", type=int, default=32 << 20, help="bytes of the download")
    parser.add_argument("--upload", type=int, default=2 << 20, help="each real player's upload cap, bytes/s")
    parser.add_argument("--before", type=float, default=5.0, help="seconds before the kill")
    parser.add_argument("--after", type=float, default=10.0, help="seconds measured after the kill, at least")
    parser.add_argument("--timeout", type=float, default=300.0, help="seconds the download may take after that")
    parser.add_argument("--freeze", action="store_true", help="SIGSTOP the hub instead of killing it")
    parser.add_argument("--keep", action="store_true", help="keep the working directory and its logs")
    args = parser.parse_args(argv)
    if missing_reason():
        print(missing_reason(), file=sys.stderr)
        return 2
    if args.hubs < 2:
        parser.error("--hubs must be 2 or more: one is killed")
    setup_logging(None, process="bench", console_level=logging.ERROR)  # each failover is a warning: 32 of them
    root = Path(tempfile.mkdtemp(prefix="emma-failover-"))
    try:
        ok = run(args, root)
    finally:
        if args.keep:
            print(f"kept {root}")
        else:
            shutil.rmtree(root, ignore_errors=True)
    print("targets met" if ok else "TARGET MISSED")
    return 0 if ok else 1


if __name__ == "__main__":
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    sys.exit(main())
