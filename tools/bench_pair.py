"""One seeder to one leecher on loopback: Emma against libtorrent, in one run.

    python tools/bench_pair.py --size 1G
    python tools/bench_pair.py --dir            # a tree of 10,000 files of 4 KiB to 1 MiB

Emma: a hub and two players (Distributor + Requestor processes each); the
clock starts when the leecher is handed the library and stops when its
state.db says seeding (every book verified and written). libtorrent (the
``libtorrent`` package, installed with ``pip install -e '.[bench]'``): two
sessions in two processes, TCP only, uTP off, the high-performance-seed
settings; the clock starts after the seeder has finished checking. Also, as
the machine's reference, a bare pyzmq pread/send/recv/BLAKE3/pwrite pipeline
(tools/bare_pipeline.py), and how fast this machine writes a new file at all
(page cache, no sync). Prints MiB/s for each, the ratios, and the peak RSS of
each Emma process. Emma is timed twice: until every book is verified and
written (libtorrent's finish line) and until the copy is durable (fdatasync).

Emma runs in both link modes: in clear (encryption off, what an open swarm in a
trusted network may choose) and with CURVE (the default). ``--private`` adds a
private pair (allowlists, trusted publishers) and makes the CURVE target count:
the CURVE pair at least as fast as libtorrent in clear, until every book is
verified and written. libzmq's CURVE moves roughly 0.5 GB/s per connection here
against several GB/s in clear: where the pair falls short, the time goes to
encrypting on the seed's I/O thread and decrypting on the leecher's.
With ``--dir`` the stuff is a tree (``--files`` files of 4 KiB to 1 MiB in folders of
100): Emma shares it as one tree library, libtorrent as one multi-file torrent of the
same folder; both copies are compared with the source tree, file by file (the generated
tree is synced to disk first, so its write-back slows neither copy). Target: Emma at least
as fast as libtorrent (until every book is verified and written); exits 1 if not.
"""

from __future__ import annotations

import argparse
import importlib
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import datetime
from pathlib import Path
from typing import Any

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from services.runtime import config as config_mod
from services.runtime.units import parse_size
from services.supervisor.control_client import metrics_url_file
from tools import bare_pipeline
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
    """Timestamps (epoch seconds) of the first occurrence of each event in events.log."""
    found: dict[str, float] = {}
    for line in (data_dir / "logs" / "events.log").read_text().splitlines():
        record = json.loads(line)
        if record.get("event") in events and record["event"] not in found:
            stamp = record["timestamp"].replace("Z", "+00:00")
            found[record["event"]] = datetime.fromisoformat(stamp).timestamp()
    return [found[e] for e in events if e in found]


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
             private: bool = False) -> tuple[float, float | None, dict[str, float]]:
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
        if maestro:
            swarm.wait_serving([seed, leecher])
        time.sleep(1.0)  # let both players start and announce before the clock starts
        scraper = Scraper(metrics_url_file(leecher.data_dir / "run").read_text(), scrapes) if scrapes else None
        if scraper is not None:
            scraper.start()
        started = time.monotonic()
        swarm.give(leecher, library)
        swarm.wait_complete(library, [leecher], timeout=600)
        elapsed = time.monotonic() - started
        if scraper is not None:
            scraper.stop()
            print(f"leecher metrics scraped {scraper.scrapes} times ({scraper.failures} failed) in {elapsed:.1f} s")
        phases = event_times(leecher.data_dir, ("download_started", "download_verified", "download_complete"))
        to_verified = None
        if len(phases) == 3:
            start, verified, durable = phases
            to_verified = verified - start
            print(f"emma phases: start->verified {to_verified:.2f}s, verified->durable {durable - verified:.2f}s")
        rss = {} if maestro else {p.name: peak_rss_mib(p.pid) for p in seed.procs + leecher.procs}
        path = leecher.stuff_path(library.id_hex)
        if path is None or stuff_digest(path) != stuff_digest(stuff):
            raise SystemExit("emma: the leecher's copy differs from the source")
    return elapsed, to_verified, rss


LT_SETTINGS: dict[str, object] = {
    "enable_outgoing_utp": False,
    "enable_incoming_utp": False,
    "enable_dht": False,
    "enable_lsd": False,
    "enable_upnp": False,
    "enable_natpmp": False,
    "alert_mask": 0,
}


def load_libtorrent() -> Any:
    """The libtorrent module, untyped (its stubs are not installed with the project)."""
    try:
        return importlib.import_module("libtorrent")
    except ImportError as exc:
        raise SystemExit("libtorrent is not installed: pip install -e '.[bench]' (or use --no-libtorrent)") from exc


def lt_role(role: str, torrent: Path, save: Path, port: int, peer_port: int) -> None:
    """Run one libtorrent session (seed or leech); prints JSON lines for the parent."""
    lt = load_libtorrent()
    settings = lt.high_performance_seed()
    settings.update(LT_SETTINGS)
    settings["listen_interfaces"] = f"127.0.0.1:{port}"
    session = lt.session(settings)
    info = lt.torrent_info(str(torrent))
    handle = session.add_torrent({"ti": info, "save_path": str(save)})
    if role == "seed":
        while not handle.status().is_seeding:
            time.sleep(0.01)
        print(json.dumps({"ready": True, "port": session.listen_port()}), flush=True)
        sys.stdin.readline()  # the parent closes stdin when done
        return
    started = time.monotonic()
    handle.connect_peer(("127.0.0.1", peer_port))
    while not handle.status().is_seeding:
        time.sleep(0.005)
    print(json.dumps({"seconds": time.monotonic() - started}), flush=True)


def run_libtorrent(root: Path, stuff: Path) -> float:
    lt = load_libtorrent()
    work = root / "lt"
    (work / "leech").mkdir(parents=True)
    storage = lt.file_storage()
    lt.add_files(storage, str(stuff))
    creator = lt.create_torrent(storage, 512 * 1024)
    lt.set_piece_hashes(creator, str(stuff.parent))
    torrent = work / "stuff.torrent"
    torrent.write_bytes(lt.bencode(creator.generate()))
    me = [sys.executable, __file__, "--lt-role"]
    seed = subprocess.Popen([*me, "seed", str(torrent), str(stuff.parent), "0", "0"],
                            stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        assert seed.stdout is not None and seed.stdin is not None
        port = json.loads(seed.stdout.readline())["port"]
        leech = subprocess.run([*me, "leech", str(torrent), str(work / "leech"), "0", str(port)],
                               capture_output=True, text=True, timeout=900, check=True)
        seconds = float(json.loads(leech.stdout.strip().splitlines()[-1])["seconds"])
        seed.stdin.close()
        seed.wait(30)
    finally:
        if seed.poll() is None:
            seed.kill()
            seed.wait()
    if stuff_digest(work / "leech" / stuff.name) != stuff_digest(stuff):
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
    parser.add_argument("--lt-role", nargs=5, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.lt_role:
        role, torrent, save, port, peer = args.lt_role
        lt_role(role, Path(torrent), Path(save), int(port), int(peer))
        return 0
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
        verified: dict[str, float | None] = {}
        durable: dict[str, float] = {}
        for label, mode in modes:
            emma_seconds, to_verified, rss = run_emma(root, stuff, **mode)
            durable[label] = emma_rate = mib / emma_seconds
            versus = f"{emma_rate / bare_rate:.2f}x the bare pipeline"
            print(f"{label:13} {emma_seconds:7.2f} s  {emma_rate:8.1f} MiB/s  ({versus}; until durable on disk)")
            verified[label] = verified_rate = mib / to_verified if to_verified else None
            if verified_rate:
                print(f"{label:13} {to_verified:7.2f} s  {verified_rate:8.1f} MiB/s  (until every book verified, "
                      "written)")
            for name, peak in rss.items():
                print(f"  peak RSS {name:22} {peak:7.1f} MiB")
        clear_rate, curve_rate = durable["emma clear"], durable["emma curve"]
        print(f"ratio curve/clear: {curve_rate / clear_rate:.2f}x (durable)")
        met = True
        if not args.no_libtorrent:
            lt_seconds = run_libtorrent(root, stuff)
            lt_rate = mib / lt_seconds
            print(f"libtorrent    {lt_seconds:7.2f} s  {lt_rate:8.1f} MiB/s  (in clear)")
            for label, _ in modes:
                rate = verified[label]
                print(f"ratio {label}/libtorrent: {durable[label] / lt_rate:.2f}x (durable, libtorrent does not sync)"
                      + (f", {rate / lt_rate:.2f}x (both until all verified, written)" if rate else ""))
            curve_verified = verified["emma curve"] or curve_rate
            met = curve_verified >= lt_rate
            print(f"target CURVE pair >= libtorrent in clear: {'met' if met else 'NOT met'}")
        target = clear_rate >= 1024
        print(f"target >= 1024 MiB/s (in clear): {'met' if target else 'NOT met'}")
        if args.metrics and not compare_metrics(root, stuff, mib, args.rounds):
            return 1
        if args.private and not met:
            return 1
    return 0


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
        emma_seconds, to_verified, rss = run_emma(root, stuff)
        print(f"emma        {emma_seconds:7.2f} s  {mib / emma_seconds:8.1f} MiB/s  (until durable on disk)")
        if to_verified:
            print(f"emma        {to_verified:7.2f} s  {mib / to_verified:8.1f} MiB/s  (until every book verified, "
                  "written)")
        for name, peak in rss.items():
            print(f"  peak RSS {name:22} {peak:7.1f} MiB")
        if no_libtorrent:
            return 0
        lt_seconds = run_libtorrent(root, stuff)
        print(f"libtorrent  {lt_seconds:7.2f} s  {mib / lt_seconds:8.1f} MiB/s  (a multi-file torrent of the tree)")
        emma_best = to_verified or emma_seconds
        ratio = lt_seconds / emma_best
        print(f"ratio emma/libtorrent: {ratio:.2f}x (both until all verified, written; target >= 1.0: "
              f"{'met' if ratio >= 1.0 else 'NOT met'})")
        return 0 if ratio >= 1.0 else 1


def compare_metrics(root: Path, stuff: Path, mib: float, rounds: int) -> bool:
    """Pairs under Maestros, the leecher's /metrics scraped 20 times a second or not, alternating: the medians."""
    off: list[float] = []
    on: list[float] = []
    for _ in range(rounds):
        for scrapes, rates in ((0.0, off), (20.0, on)):
            _, verified, _ = run_emma(root, stuff, maestro=True, scrapes=scrapes)
            if verified:
                rates.append(mib / verified)
                print(f"  pair under Maestros, scraped {scrapes:g}/s: {rates[-1]:.1f} MiB/s")
    cost = float(statistics.median(on) / statistics.median(off))
    print(f"metrics on and scraped 20/s: {cost:.1%} of the rate without, medians of {rounds} alternating pairs "
          "(target >= 97%)")
    return cost >= 0.97


if __name__ == "__main__":
    raise SystemExit(main())
