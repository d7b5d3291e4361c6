"""One seeder to one leecher on loopback: Emma against libtorrent, in one run.

    python tools/bench_pair.py --size 1G
    python tools/bench_pair.py --dir            # a tree of 10,000 files of 4 KiB to 1 MiB

Both sides start the clock at the same event: the leecher is told to download
(Emma: its library dropped into libs/, both players serving and the seed
announced; libtorrent: the torrent added to a running leecher session, the
seed's session up and checked), and stop it at the leecher's own record of
the finish (Emma: its ``download_verified`` and ``download_complete`` events;
libtorrent: the moment it is seeding). Both use the same book (piece) size,
Emma's choice for the stuff. Nothing is slept through: each wait is for a
condition. A missing measurement (a leecher that never finished, a missing
event, a copy that differs) is a failure, never a fast result.

Emma: a hub and two players (Distributor + Requestor processes each).
libtorrent (the ``libtorrent`` package, installed with ``pip install -e
'.[bench]'``): two sessions in two processes, TCP only, uTP off, the
high-performance-seed settings. Also, as
the machine's reference, a bare pyzmq pread/send/recv/BLAKE3/pwrite pipeline
(tools/bare_pipeline.py), and how fast this machine writes a new file at all
(page cache, no sync). Prints MiB/s for each, the ratios, and the peak RSS of
each Emma process. Emma is timed twice: until every book is verified and
written (libtorrent's finish line) and until the copy is durable (fdatasync).

Emma runs in both link modes: in clear (encryption off, what an open swarm in a
trusted network may choose) and with CURVE (the default); ``--private`` adds a
private pair (allowlists, trusted publishers). Targets: the pair in clear at
least 1024 MiB/s until durable, and the CURVE pair at least as fast as
libtorrent in clear, until every book is verified and written (unless
``--no-libtorrent``); exits 1 if either is missed. libzmq's CURVE moves roughly
0.5 GB/s per connection here against several GB/s in clear: where the pair
falls short, the time goes to encrypting on the seed's I/O thread and
decrypting on the leecher's.
With ``--dir`` the stuff is a tree (``--files`` files of 4 KiB to 1 MiB in folders of
100): Emma shares it as one tree library, libtorrent as one multi-file torrent of the
same folder; both copies are compared with the source tree, file by file (the generated
tree is synced to disk first, so its write-back slows neither copy). Target: Emma at least
as fast as libtorrent (until every book is verified and written); exits 1 if not.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import sys
import tempfile
import time
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from services.runtime import config as config_mod
from services.runtime.rundir import metrics_url_file, run_dir
from services.runtime.units import parse_size
from tools import bare_pipeline, lt_swarm
from tools.scrape import Scraper
from tools.swarm import Swarm, make_sized_tree, make_stuff, stuff_digest


def peak_rss_mib(pid: int) -> float:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return 0.0


def event_times(data_dir: Path, events: tuple[str, ...]) -> list[float]:
    """Timestamps (epoch seconds) of the first occurrence of each event in events.log; a missing one fails."""
    found: dict[str, float] = {}
    for line in (data_dir / "logs" / "events.log").read_text().splitlines():
        record = json.loads(line)
        if record.get("event") in events and record["event"] not in found:
            stamp = record["timestamp"].replace("Z", "+00:00")
            found[record["event"]] = datetime.fromisoformat(stamp).timestamp()
    missing = [e for e in events if e not in found]
    if missing:
        raise SystemExit(f"emma: no {', '.join(missing)} event in {data_dir / 'logs' / 'events.log'}: "
                         "no measurement, the run fails")
    return [found[e] for e in events]


@dataclass
class EmmaRun:
    verified: float  # seconds from the leecher told to download to every book verified and written
    durable: float  # ... to the copy synced to disk
    book_size: int
    rss: dict[str, float]


def new_file_write_seconds(path: Path, size: int) -> float:
    """Seconds to pwrite ``size`` bytes into a new file (no sync): the floor under any leecher here."""
    chunk = os.urandom(bare_pipeline.CHUNK)
    fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_TRUNC, 0o644)
    try:
        os.ftruncate(fd, size)
        started = time.monotonic()
        for offset in range(0, size, len(chunk)):
            os.pwrite(fd, chunk[: size - offset], offset)
        return time.monotonic() - started
    finally:
        os.close(fd)
        path.unlink()


def run_emma(root: Path, stuff: Path, *, maestro: bool = False, scrapes: float = 0.0, encryption: bool = False,
             private: bool = False) -> EmmaRun:
    """One pair (in clear unless ``encryption``; ``private``: allowlists and trusted publishers too); under
    Maestros, and with ``scrapes``, the leecher's /metrics scraped that often meanwhile."""
    shutil.rmtree(root / "emma", ignore_errors=True)
    with Swarm(root / "emma", maestro=maestro, encryption=encryption or private, private=private) as swarm:
        swarm.start_hub()
        seed, leecher = swarm.add_player("seed"), swarm.add_player("leecher")
        if scrapes:
            config = config_mod.load(leecher.data_dir)
            config.set("metrics.bind", "127.0.0.1:0")
            config.save()
        library = swarm.share(seed, stuff)
        swarm.start_player(seed)
        swarm.start_player(leecher)
        swarm.wait_serving([seed, leecher])
        swarm.wait_announced(library, [seed])  # the leecher's first ask finds the seed
        scraper = Scraper(metrics_url_file(run_dir(leecher.data_dir)).read_text(), scrapes) if scrapes else None
        if scraper is not None:
            scraper.start()
        started = time.time()  # the leecher is told to download
        swarm.give(leecher, library)
        swarm.wait_complete(library, [leecher], timeout=600)
        if scraper is not None:
            scraper.stop()
            print(f"leecher metrics scraped {scraper.scrapes} times ({scraper.failures} failed) in "
                  f"{time.time() - started:.1f} s")
        begun, verified, durable = event_times(leecher.data_dir,
                                               ("download_started", "download_verified", "download_complete"))
        print(f"emma phases: told->started {begun - started:.2f}s, started->verified {verified - begun:.2f}s, "
              f"verified->durable {durable - verified:.2f}s")
        rss = {} if maestro else {p.name: peak_rss_mib(p.pid) for p in seed.procs + leecher.procs}
        path = leecher.stuff_path(library.id_hex)
        if path is None or not path.exists() or stuff_digest(path) != stuff_digest(stuff):
            raise SystemExit(f"emma: the leecher's copy ({path}) is missing or differs from the source")
    return EmmaRun(verified - started, durable - started, library.book_size, rss)


def run_libtorrent(root: Path, stuff: Path, piece_size: int) -> float:
    """Seconds from the leecher told to download (its torrent added, the seed up) to its copy complete."""
    work = root / "lt"
    leech = work / "leech"
    leech.mkdir(parents=True)
    torrent = lt_swarm.make_torrent(stuff, piece_size, work / "stuff.torrent")
    seconds = lt_swarm.run([lt_swarm.LOOPBACK, lt_swarm.LOOPBACK], stuff, torrent, [leech], timeout=900)[0]
    if stuff_digest(leech / stuff.name) != stuff_digest(stuff):
        raise SystemExit("libtorrent: the leecher's copy differs from the source")
    return seconds


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", default="1G")
    parser.add_argument("--no-libtorrent", action="store_true", help="measure Emma only")
    parser.add_argument("--metrics", action="store_true",
                        help="also compare pairs under Maestros with the leecher's /metrics scraped and without")
    parser.add_argument("--rounds", type=int, default=3, help="pairs of each kind with --metrics")
    parser.add_argument("--private", action="store_true",
                        help="also a private pair; fail unless the CURVE pair is as fast as libtorrent")
    parser.add_argument("--dir", action="store_true", help="a tree of small files instead of one file")
    parser.add_argument("--files", type=int, default=10_000, help="with --dir: files in the tree")
    args = parser.parse_args(argv)
    if args.dir:
        return main_dir(args.files, args.no_libtorrent)
    size = parse_size(args.size)
    mib = size / (1 << 20)
    with tempfile.TemporaryDirectory(prefix="emma-bench-pair-") as tmp:
        root = Path(tmp)
        stuff = root / "stuff.bin"
        make_stuff(stuff, size)
        bare_seconds = bare_pipeline.run(stuff, root / "bare.bin")
        (root / "bare.bin").unlink()
        bare_rate = mib / bare_seconds
        write_seconds = new_file_write_seconds(root / "write.bin", size)
        print(f"pwrite into a new file (floor)  {write_seconds:7.2f} s  {mib / write_seconds:8.1f} MiB/s")
        print(f"bare pyzmq pipeline (reference) {bare_seconds:7.2f} s  {bare_rate:8.1f} MiB/s")
        modes = [("emma clear", {}), ("emma curve", {"encryption": True})]
        if args.private:
            modes.append(("emma private", {"private": True}))
        verified: dict[str, float] = {}
        durable: dict[str, float] = {}
        book_size = 0
        for label, mode in modes:
            run = run_emma(root, stuff, **mode)
            book_size = run.book_size
            durable[label] = emma_rate = mib / run.durable
            versus = f"{emma_rate / bare_rate:.2f}x the bare pipeline"
            print(f"{label:13} {run.durable:7.2f} s  {emma_rate:8.1f} MiB/s  ({versus}; until durable on disk)")
            verified[label] = mib / run.verified
            print(f"{label:13} {run.verified:7.2f} s  {verified[label]:8.1f} MiB/s  (until every book verified, "
                  "written)")
            for name, peak in run.rss.items():
                print(f"  peak RSS {name:22} {peak:7.1f} MiB")
        clear_rate, curve_rate = durable["emma clear"], durable["emma curve"]
        print(f"ratio curve/clear: {curve_rate / clear_rate:.2f}x (durable); books of {book_size // 1024} KiB")
        met = True
        if not args.no_libtorrent:
            lt_seconds = run_libtorrent(root, stuff, book_size)
            lt_rate = mib / lt_seconds
            print(f"libtorrent    {lt_seconds:7.2f} s  {lt_rate:8.1f} MiB/s  (in clear, pieces of "
                  f"{book_size // 1024} KiB)")
            for label, _ in modes:
                print(f"ratio {label}/libtorrent: {verified[label] / lt_rate:.2f}x (both until all verified, "
                      f"written), {durable[label] / lt_rate:.2f}x (Emma until durable; libtorrent does not sync)")
            met = verified["emma curve"] >= lt_rate
            print(f"target CURVE pair >= libtorrent in clear: {'met' if met else 'NOT met'}")
        target = clear_rate >= 1024
        print(f"target >= 1024 MiB/s (in clear, until durable): {'met' if target else 'NOT met'}")
        if args.metrics and not compare_metrics(root, stuff, mib, args.rounds):
            return 1
        return 0 if met and target else 1


def main_dir(files: int, no_libtorrent: bool) -> int:
    """A tree of ``files`` small files, Emma against libtorrent: True unless Emma is slower."""
    with tempfile.TemporaryDirectory(prefix="emma-bench-pair-dir-") as tmp:
        root = Path(tmp)
        stuff = root / "tree"
        print(f"writing {files} files of 4 KiB to 1 MiB ...", flush=True)
        size = make_sized_tree(stuff, files, 4096, 1 << 20, seed=3)
        os.sync()  # the tree's own dirty pages, flushed now, do not slow whichever copy runs first
        mib = size / (1 << 20)
        print(f"tree: {files} files, {mib:.0f} MiB")
        run = run_emma(root, stuff)
        print(f"emma        {run.durable:7.2f} s  {mib / run.durable:8.1f} MiB/s  (until durable on disk)")
        print(f"emma        {run.verified:7.2f} s  {mib / run.verified:8.1f} MiB/s  (until every book verified, "
              "written)")
        for name, peak in run.rss.items():
            print(f"  peak RSS {name:22} {peak:7.1f} MiB")
        if no_libtorrent:
            return 0
        lt_seconds = run_libtorrent(root, stuff, run.book_size)
        print(f"libtorrent  {lt_seconds:7.2f} s  {mib / lt_seconds:8.1f} MiB/s  (a multi-file torrent of the tree, "
              f"pieces of {run.book_size // 1024} KiB)")
        ratio = lt_seconds / run.verified
        print(f"ratio emma/libtorrent: {ratio:.2f}x (both until all verified, written; target >= 1.0: "
              f"{'met' if ratio >= 1.0 else 'NOT met'})")
        return 0 if ratio >= 1.0 else 1


def compare_metrics(root: Path, stuff: Path, mib: float, rounds: int) -> bool:
    """Pairs under Maestros, the leecher's /metrics scraped 20 times a second or not, alternating: the medians."""
    off: list[float] = []
    on: list[float] = []
    for _ in range(rounds):
        for scrapes, rates in ((0.0, off), (20.0, on)):
            rates.append(mib / run_emma(root, stuff, maestro=True, scrapes=scrapes).verified)
            print(f"  pair under Maestros, scraped {scrapes:g}/s: {rates[-1]:.1f} MiB/s")
    cost = float(statistics.median(on) / statistics.median(off))
    print(f"metrics on and scraped 20/s: {cost:.1%} of the rate without, medians of {rounds} alternating pairs "
          "(target >= 97%)")
    return cost >= 0.97


if __name__ == "__main__":
    raise SystemExit(main())
