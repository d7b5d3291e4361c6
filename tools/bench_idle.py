"""What a player that seeds many libraries costs at rest, and how soon it notices a change.

    python tools/bench_idle.py                      (1,000 libraries, 30 s idle)
    python tools/bench_idle.py --libraries 200 --idle 10

Starts a hub and two players under their Maestros on 127.0.0.1: ``busy`` seeds
``--libraries`` small libraries (one 1 KiB file each), ``empty`` seeds none (the
reference: what a player costs with nothing to do). It measures:

- serving: from ``busy``'s Maestro being started to the hub counting it as a
  seeder of every one of its libraries (scrapes); the time its Distributor
  logged the last announce is printed too;
- idle CPU: for ``--idle`` seconds after that, the CPU time (user + system, from
  ``/proc/<pid>/stat``) of each process of each player, as a share of one core;
  no process may have been restarted meanwhile;
- drop to download: ``--drops`` times, a library nobody holds is written into
  ``busy``'s ``libs/`` folder (atomically, as ``write_library`` does); the time
  from the rename to the Requestor's ``download_started`` event.

Targets: ``busy`` idles under 2% of one core in all; it serves every library
within 5 s of its start; each dropped library starts within 0.5 s. Each figure
is printed with its ratio to its target, and the idle CPU also with its ratio to
the ``empty`` player's (how much the libraries add to a player's rest). A missed
target or a missing measurement exits 1.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import sys
import tempfile
import time
from collections.abc import Callable
from datetime import datetime
from pathlib import Path

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from services.peer import catalog, signing
from services.peer.librarifier import librarify
from services.peer.library import Library, write_library
from services.runtime import config as config_mod
from services.runtime.rundir import SERVICES
from tools.swarm import Player, Swarm

TARGET_IDLE_CPU = 0.02  # share of one core, the whole player
TARGET_SERVING = 5.0  # seconds from the Maestro's start to every library announced
TARGET_DROP = 0.5  # seconds from a .lib landing in libs/ to its download starting
STUFF_BYTES = 1024
CLOCK_TICKS = os.sysconf("SC_CLK_TCK")
SAMPLE = 0.5  # seconds between two looks at the processes' CPU time
SCRAPE_BATCH = 100  # library ids in one scrape (the hub's limit)


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of ``pid`` so far (fields 14 and 15 of /proc/<pid>/stat)."""
    stat = Path(f"/proc/{pid}/stat").read_text()
    fields = stat[stat.rindex(")") + 2:].split()  # after "pid (comm) ": field 3 is fields[0]
    return (int(fields[11]) + int(fields[12])) / CLOCK_TICKS


def events(log: Path, name: str) -> list[dict[str, object]]:
    """Every ``name`` event in a JSON-lines log (an unfinished last line is skipped)."""
    if not log.exists():
        return []
    found = []
    for line in log.read_text().splitlines():
        try:
            record = json.loads(line)
        except json.JSONDecodeError:
            continue
        if record.get("event") == name:
            found.append(record)
    return found


class LogTail:
    """The records of a JSON-lines log, read as it grows: each poll parses only the lines added since the last
    (the measuring must not take the CPU from the player it measures)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.offset = 0
        self.records: list[dict[str, object]] = []

    def poll(self) -> list[dict[str, object]]:
        """Every record so far."""
        try:
            with open(self.path, "rb") as handle:
                handle.seek(self.offset)
                data = handle.read()
        except FileNotFoundError:
            return self.records
        complete = data[:data.rfind(b"\n") + 1]  # an unfinished last line waits for the next poll
        self.offset += len(complete)
        for line in complete.splitlines():
            try:
                self.records.append(json.loads(line))
            except json.JSONDecodeError:
                continue
        return self.records


def stamp(record: dict[str, object]) -> float:
    return datetime.fromisoformat(str(record["timestamp"]).replace("Z", "+00:00")).timestamp()


def make_libraries(swarm: Swarm, player: Player, root: Path, count: int) -> list[Library]:
    """``count`` one-file libraries shared by ``player``, each of its own 1 KiB of bytes."""
    stuff = root / "stuff"
    stuff.mkdir()
    libraries = []
    publisher = signing.load_publisher(player.data_dir)
    for n in range(count):
        path = stuff / f"item{n:05d}.bin"
        path.write_bytes(n.to_bytes(4, "big") * (STUFF_BYTES // 4))
        libraries.append(swarm_share(swarm, player, path, publisher))
    return libraries


def swarm_share(swarm: Swarm, player: Player, path: Path, publisher: signing.Publisher) -> Library:
    """As ``Swarm.share``, with the publisher key loaded once for all the libraries."""
    config = config_mod.load(player.data_dir)
    hubs = (swarm.hub_endpoint,)
    keys = (swarm.hub_key.decode(),) if swarm.hub_key else ()
    library = librarify(path, hubs=hubs, hub_keys=keys, publisher=publisher)
    target = config.libs_dir / library.file_name
    write_library(library, target)
    catalog.record_shared(config, library, target, path)
    return library


def wait_until(what: str, done: Callable[[], bool], timeout: float) -> float:
    """Poll ``done()`` until true; the time.time() it was first seen true. SystemExit on timeout."""
    deadline = time.monotonic() + timeout
    while not done():
        if time.monotonic() > deadline:
            raise SystemExit(f"FAIL: {what} not seen within {timeout:.0f} s")
        time.sleep(0.01)
    return time.time()


def serving_time(swarm: Swarm, player: Player, libraries: list[Library], started: float) -> float:
    """Seconds from ``started`` to the Distributor's announce of the last of ``libraries`` (as it logged it)."""
    wanted = {library.id_hex for library in libraries}
    log = LogTail(player.data_dir / "logs" / "events.log")
    announced: dict[str, float] = {}
    seen = 0

    def all_announced() -> bool:
        nonlocal seen
        records = log.poll()
        for record in records[seen:]:
            if record.get("event") == "announce" and record.get("kind") == "started" and (
                    record.get("library") in wanted):
                announced.setdefault(str(record["library"]), stamp(record))
        seen = len(records)
        return len(announced) == len(wanted)

    wait_until(f"an announce of all {len(wanted)} libraries", all_announced, timeout=120)
    return max(announced.values()) - started


def processes(maestro: int) -> dict[int, str]:
    """A Maestro and its children now: pid -> name (``maestro`` or the service it runs), from /proc."""
    found = {maestro: "maestro"}
    try:
        children = Path(f"/proc/{maestro}/task/{maestro}/children").read_text().split()
    except FileNotFoundError:
        raise SystemExit(f"FAIL: the Maestro (pid {maestro}) ended while measured") from None
    for child in map(int, children):
        try:
            argv = Path(f"/proc/{child}/cmdline").read_bytes().split(b"\0")
        except FileNotFoundError:
            continue
        module = next((arg.decode() for arg in argv if arg.startswith(b"services.")), "")
        found[child] = next((name for name, path in SERVICES.items() if path == module), module or "?")
    return found


def hub_knows_all(swarm: Swarm, player: Player, libraries: list[Library]) -> float:
    """time.time() at which the hub first counts ``player`` as a seeder of every one of ``libraries``."""
    waiting = {library.id for library in libraries}
    with swarm.hub_client(player) as client:
        def known() -> bool:
            ids = sorted(waiting)
            for start in range(0, len(ids), SCRAPE_BATCH):
                for stats in client.scrape(ids[start:start + SCRAPE_BATCH]):
                    if stats.seeders:
                        waiting.discard(stats.library_id)
            return not waiting

        return wait_until(f"the hub counting {player.name} as a seeder of all {len(libraries)}", known,
                          timeout=300)


def idle_cpu(players: list[Player], seconds: float) -> tuple[dict[str, dict[str, float]], dict[str, int]]:
    """Share of one core each process of each player used over ``seconds`` at rest, and how many processes
    were started meanwhile (a restarted service: a hang noticed, a crash). Sampled every SAMPLE seconds, so a
    process that ends is counted up to its last sample."""
    first: dict[int, float] = {}
    last: dict[int, float] = {}
    owner: dict[int, tuple[str, str]] = {}
    started = time.monotonic()
    while True:
        for player in players:
            for pid, name in processes(player.procs[0].pid).items():
                try:
                    used = cpu_seconds(pid)
                except FileNotFoundError:
                    continue
                first.setdefault(pid, used)
                last[pid] = used
                owner[pid] = (player.name, name)
        if time.monotonic() - started >= seconds:
            break
        time.sleep(SAMPLE)
    span = time.monotonic() - started
    shares: dict[str, dict[str, float]] = {player.name: {} for player in players}
    pids: dict[str, int] = {player.name: 0 for player in players}
    for pid, (player_name, name) in owner.items():
        shares[player_name][name] = shares[player_name].get(name, 0.0) + (last[pid] - first[pid]) / span
        pids[player_name] += 1
    restarts = {name: count - len(SERVICES) - 1 for name, count in pids.items()}
    return shares, restarts


def drop_latencies(player: Player, root: Path, hubs: tuple[str, ...], keys: tuple[str, ...],
                   drops: int) -> list[float]:
    """Seconds from writing each of ``drops`` new libraries into libs/ to its download_started event."""
    config = config_mod.load(player.data_dir)
    log = player.data_dir / "logs" / "events.log"
    latencies = []
    for n in range(drops):
        path = root / f"dropped{n}.bin"
        path.write_bytes(b"dropped %d " % n * 100)
        library = librarify(path, hubs=hubs, hub_keys=keys)
        staged = root / library.file_name
        write_library(library, staged)
        dropped = time.time()
        os.replace(staged, config.libs_dir / library.file_name)  # the .lib appears whole, as a user's mv does

        def started(library_id: str = library.id_hex) -> bool:
            return any(r.get("library") == library_id for r in events(log, "download_started"))

        wait_until(f"download_started of dropped library {n}", started, timeout=30)
        record = next(r for r in events(log, "download_started") if r.get("library") == library.id_hex)
        latencies.append(stamp(record) - dropped)
        time.sleep(0.3)  # drops land at no particular phase of any loop
    return latencies


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--libraries", type=int, default=1000, help="libraries the busy player seeds")
    parser.add_argument("--idle", type=float, default=30.0, help="seconds measured at rest")
    parser.add_argument("--drops", type=int, default=5, help="libraries dropped into libs/ one after another")
    parser.add_argument("--dir", type=Path, default=None, help="work (and keep the logs) here")
    args = parser.parse_args(argv)
    if args.libraries < 1 or args.idle <= 0 or args.drops < 1:
        parser.error("--libraries and --drops must be at least 1, --idle above 0")
    with contextlib.ExitStack() as stack:
        root = args.dir or Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="emma-idle-")))
        root.mkdir(parents=True, exist_ok=True)
        print(f"working in {root}", flush=True)
        with Swarm(root, maestro=True) as swarm:
            swarm.start_hub()
            busy, empty = swarm.add_player("busy"), swarm.add_player("empty")
            prepared = time.monotonic()
            libraries = make_libraries(swarm, busy, root, args.libraries)
            print(f"{args.libraries} libraries made in {time.monotonic() - prepared:.1f} s", flush=True)
            swarm.start_player(empty)  # first, so that its start does not compete with the busy one's
            swarm.wait_serving([empty])
            started = time.time()
            swarm.start_player(busy)
            announced = serving_time(swarm, busy, libraries, started)
            serving = hub_knows_all(swarm, busy, libraries) - started
            swarm.wait_serving([busy])
            print(f"all {args.libraries} announced {announced:.2f} s after start, all known to the hub as served "
                  f"{serving:.2f} s after start; idle {args.idle:.0f} s ...", flush=True)
            cpu, restarts = idle_cpu([busy, empty], args.idle)
            hubs = (swarm.hub_endpoint,)
            keys = (swarm.hub_key.decode(),) if swarm.hub_key else ()
            drops = drop_latencies(busy, root, hubs, keys, args.drops)
    return report(args.libraries, serving, cpu, restarts, drops)


def report(count: int, serving: float, cpu: dict[str, dict[str, float]], restarts: dict[str, int],
           drops: list[float]) -> int:
    busy, empty = sum(cpu["busy"].values()), sum(cpu["empty"].values())
    for name, procs in cpu.items():
        shown = ", ".join(f"{proc} {share:.2%}" for proc, share in procs.items())
        print(f"idle CPU of {name}: {sum(procs.values()):.2%} of one core ({shown})")
    ratio = f"{busy / empty:.1f}x" if empty > 0 else "n/a (the empty player used no CPU)"
    print(f"  {count} libraries cost {ratio} the CPU of a player with none")
    worst = max(drops)
    rows = [
        (f"idle CPU, {count} libraries (share of one core)", busy, TARGET_IDLE_CPU),
        (f"start to serving all {count} (s)", serving, TARGET_SERVING),
        (f"drop to download started, worst of {len(drops)} (s)", worst, TARGET_DROP),
    ]
    print(f"drop to download started: {', '.join(f'{d:.3f}' for d in drops)} s")
    missed = False
    for name, count_restarted in restarts.items():
        if count_restarted:
            missed = True
            print(f"{name}: {count_restarted} service restart(s) while idle (hung or crashed): MISSED; "
                  f"see service_failed in its services.log")
    for label, value, target in rows:
        ok = value == value and value < target  # NaN is a miss
        missed |= not ok
        print(f"{label}: {value:.4f}  target < {target}  ratio to target {value / target:.2f}  "
              f"{'ok' if ok else 'MISSED'}")
    return 1 if missed else 0


if __name__ == "__main__":
    raise SystemExit(main())
