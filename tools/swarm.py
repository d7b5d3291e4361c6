"""A real local swarm: one hub and N players on 127.0.0.1, each its own processes.

    python tools/swarm.py --peers 4 --size 32M
    python tools/swarm.py --peers 4 --dir --files 200 --size 32M   (a tree library: nested folders, empty files)
    python tools/swarm.py --netns --peers 9 --rates 0.5:100mbit,0.5:20mbit   (as root)

Creates (or takes with --file, a file or a folder) a stuff, shares it from --seeds
players, makes every other player download it, shows live progress, checks every
copy is byte-identical (of a tree: the same folders, the same files, the same
bytes), prints a summary and stops every process it started. The
``Swarm`` class is what the swarm tests and benchmarks use.

With ``--netns`` the hub and every player run on hosts of their own (network
namespaces on a bridge, see netns.py), each player's upload shaped by tc tbf
(``--rates``), and each player is set up with the first-run answers alone (hub
IP, hub port, distributor port), as a user on separate hosts would leave it.

Links run CURVE as a new setup does (the hub's key made before it starts and set as
every player's ``hub.key``; libraries signed by their sharer). ``--clear`` runs the
open swarm with encryption off; ``--private`` runs a private one: the hub and every
player admit only the swarm's player keys (``players.keys`` in the working
directory) and trust only its publishers (``publishers.keys``).
"""

from __future__ import annotations

import argparse
import contextlib
import os
import random
import shutil
import signal
import sqlite3
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import blake3

from services.cli import launch
from services.hub.client import HubClient, HubClientError
from services.peer import catalog, identity, signing
from services.peer.librarifier import librarify, librarify_tree
from services.peer.library import Library, write_library
from services.peer.state import LibraryRecord, State, StateVersionError
from services.runtime import config as config_mod
from services.runtime.rundir import distributor_endpoint_file, run_dir
from services.runtime.units import parse_size
from services.supervisor.control_client import ControlClient, ControlError, MaestroNotRunning
from services.wire import curve
from tools.netns import Host, Network, parse_rate
from tools.procs import Proc, ProcessGroup
from tools.redis_server import RedisServer, missing_reason
from tools.simulator.scenario import kumar_ross_bound as simulator_bound

HUB_PORT = 7070  # the first-run answers of a player on its own host
DISTRIBUTOR_PORT = 7000


def make_stuff(path: Path, size: int, seed: int = 0) -> None:
    """Write ``size`` pseudo-random bytes quickly (BLAKE3 XOF, 4 MiB at a time)."""
    hasher = blake3.blake3(seed.to_bytes(8, "little"))
    with open(path, "wb") as out:
        offset = 0
        while offset < size:
            n = min(4 << 20, size - offset)
            out.write(hasher.digest(length=n, seek=offset))
            offset += n


def make_tree(root: Path, files: int, size: int, seed: int = 0) -> None:
    """A tree of ``files`` files holding about ``size`` bytes in all: nested folders, sizes from 0 to a few
    books and one large file, unicode names, an empty file and an empty folder."""
    rng = random.Random(seed)
    root.mkdir(parents=True, exist_ok=True)
    (root / "empty folder" / "nested empty").mkdir(parents=True, exist_ok=True)
    weights = [rng.random() ** 3 for _ in range(files)]
    scale = size / max(sum(weights), 1e-9)
    for index in range(files):
        folder = root / f"d{index % 7}" / f"sub-{index % 3}" if index % 4 else root
        name = ("café-ü-😀-" if index % 5 == 1 else "file-") + f"{index:05d}.bin"
        folder.mkdir(parents=True, exist_ok=True)
        make_stuff(folder / name, 0 if index % 11 == 3 else int(weights[index] * scale), seed * 100_003 + index)


def make_sized_tree(root: Path, files: int, smallest: int, largest: int, seed: int = 0) -> int:
    """``files`` files in folders of 100, sizes log-uniform from ``smallest`` to ``largest`` bytes (the
    benchmarks' trees); returns the bytes written."""
    rng = random.Random(seed)
    total = 0
    for index in range(files):
        folder = root / f"part-{index // 100:04d}"
        folder.mkdir(parents=True, exist_ok=True)
        size = int(smallest * (largest / smallest) ** rng.random())
        make_stuff(folder / f"shard-{index:06d}.bin", size, seed * 1_000_003 + index)
        total += size
    return total


def tree_digest(root: Path) -> dict[str, str]:
    """Every folder (as "/") and every file (its BLAKE3) under ``root``, by relative path: equal trees, equal dicts."""
    out: dict[str, str] = {}
    for folder, dirs, names in os.walk(root):
        rel = os.path.relpath(folder, root)
        for name in dirs:
            out[os.path.normpath(os.path.join(rel, name))] = "/"
        for name in names:
            out[os.path.normpath(os.path.join(rel, name))] = file_digest(Path(folder) / name)
    return out


def stuff_digest(path: Path) -> str | dict[str, str]:
    """A file's digest, or a folder's tree_digest."""
    return tree_digest(path) if path.is_dir() else file_digest(path)


def file_digest(path: Path) -> str:
    hasher = blake3.blake3(max_threads=blake3.blake3.AUTO)
    hasher.update_mmap(path) if path.stat().st_size else None
    return hasher.hexdigest()


@dataclass
class Player:
    name: str
    data_dir: Path
    procs: list[Proc] = field(default_factory=list)
    done_at: float | None = None
    host: Host | None = None  # its own network namespace, in a swarm across namespaces

    def record(self, library_id: str) -> LibraryRecord | None:
        """The player's record of a library in state.db, read-only; None while there is none."""
        try:
            state = State.reader(config_mod.load(self.data_dir).state_db)
            if state is None:
                return None
            try:
                return state.get(library_id)
            finally:
                state.close()
        except (sqlite3.Error, StateVersionError):  # not created (or migrated) by the player yet
            return None

    def progress(self, library_id: str) -> tuple[int, int, str]:
        """(books held, books, status) from state.db, read-only; (0, 0, '') if unknown yet."""
        record = self.record(library_id)
        return (len(record.have), record.books, record.status.value) if record else (0, 0, "")

    def fetched(self, library_id: str) -> int:
        """Books this player fetched from peers for the library (state.db's count; not those found locally)."""
        record = self.record(library_id)
        return record.fetched if record else 0

    def stuff_path(self, library_id: str) -> Path | None:
        record = self.record(library_id)
        return record.stuff_path if record else None


class Swarm:
    """A hub and players in ``root``; use as a context manager so every process ends."""

    def __init__(self, root: Path, *, upload_limit: int = 0, hub_args: tuple[str, ...] = (),
                 maestro: bool = False, network: Network | None = None, hubs: int = 1, store: str = "",
                 encryption: bool = True, private: bool = False) -> None:
        if network is not None and (hubs != 1 or store == "redis"):
            raise ValueError("a namespace swarm runs one hub on SQLite")
        self.root = root
        if private and not encryption:
            raise ValueError("a private swarm always encrypts")
        self.encryption = encryption
        self.private = private
        self.players_file = root / "players.keys"  # the allowlist of a private swarm
        self.publishers_file = root / "publishers.keys"
        self.hub_key = b""
        self.hub_count = hubs
        self.store = store
        self.redis: RedisServer | None = RedisServer(root / "redis") if store == "redis" else None
        self.hub_procs: list[Proc] = []
        self.hub_endpoints: list[str] = []
        self.killed: list[Proc] = []  # processes ended on purpose with SIGKILL (not a failure)
        self.frozen: list[Proc] = []  # hubs stopped with SIGSTOP, continued before the swarm stops
        self.network = network
        self.maestro = maestro or network is not None
        self.group = ProcessGroup(root / "logs")
        self.upload_limit = upload_limit
        self.hub_args = hub_args
        self.hub: Proc | None = None
        self.hub_endpoint = ""
        self.players: list[Player] = []

    def __enter__(self) -> Swarm:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def _hub_args(self, n: int) -> list[str]:
        """The options every hub gets: its data directory (holding the swarm's one hub key pair), the trust mode."""
        data = self.root / f"hubdata{n}"
        data.mkdir(parents=True, exist_ok=True)
        if not self.encryption:
            return ["--data-dir", str(data), "--no-encryption", *self.hub_args]
        first = curve.key_path(self.root / "hubdata0")
        self.hub_key = curve.load_or_create(first.parent).public  # hubs on one Redis share one key pair
        if n:
            shutil.copy2(first, curve.key_path(data))
        private = ["--players", str(self.players_file)] if self.private else []
        if self.private and not self.players_file.exists():
            self.players_file.write_text("# the players of this swarm\n")
        return ["--data-dir", str(data), *private, *self.hub_args]

    def start_hub(self) -> str:
        """Start the hub (or ``hubs`` hubs, on one Redis with ``store="redis"``); return the first's endpoint."""
        if self.redis is not None or self.hub_count > 1:
            return self._start_hubs()
        if self.network is not None:
            host = self.network.hosts[0] if self.network.hosts else self.network.add_host("hub")
            self.hub = self.group.start("hub", ["-m", "services.hub", "--bind", f"tcp://0.0.0.0:{HUB_PORT}",
                                                "--db", str(self.root / "hub.db"), *self._hub_args(0)],
                                        prefix=tuple(host.command([])))
            self.group.wait_for_endpoint(self.hub)
            self.hub_endpoint = f"tcp://{host.address}:{HUB_PORT}"
            return self.hub_endpoint
        bind = self.hub_endpoint or "tcp://127.0.0.1:0"
        self.hub = self.group.start("hub", ["-m", "services.hub", "--bind", bind, "--db",
                                            str(self.root / "hub.db"), *self._hub_args(0)])
        self.hub_endpoint = self.group.wait_for_endpoint(self.hub)
        return self.hub_endpoint

    def _start_hubs(self) -> str:
        store: list[str] = []
        if self.redis is not None:
            self.redis.start()
            store = ["--store", "redis", "--redis", self.redis.url]
        for n in range(self.hub_count):
            db = [] if self.redis is not None else ["--db", str(self.root / f"hub{n}.db")]
            proc = self.group.start(f"hub{n}", ["-m", "services.hub", "--bind", "tcp://127.0.0.1:0", *store, *db,
                                                *self._hub_args(n)])
            self.hub_procs.append(proc)
            self.hub_endpoints.append(self.group.wait_for_endpoint(proc))
        self.hub = self.hub_procs[0]
        self.hub_endpoint = self.hub_endpoints[0]
        return self.hub_endpoint

    def kill_hub(self, index: int) -> None:
        """SIGKILL one hub (a crashed machine): its players must fail over to the others."""
        proc = self.hub_procs[index]
        proc.popen.kill()
        proc.popen.wait(10)
        self.killed.append(proc)

    def freeze_hub(self, index: int) -> None:
        """SIGSTOP one hub (a machine gone silent: its connections stay open, nothing answers)."""
        proc = self.hub_procs[index]
        os.kill(proc.pid, signal.SIGSTOP)
        self.frozen.append(proc)

    def restart_redis(self) -> None:
        """Stop the shared Redis and start it again, empty (it keeps nothing): hubs must recover by themselves."""
        assert self.redis is not None, "this swarm has no Redis"
        self.redis.stop()
        self.redis.start()

    def stop_hub(self) -> None:
        if self.hub is not None:
            self.group.stop(self.hub)

    def add_player(self, name: str, upload_limit: int | None = None, rate: str | None = None,
                   admitted: bool = True) -> Player:
        """A player in ``root/name``; across namespaces on a host of its own whose upload is ``rate``."""
        data_dir = self.root / name
        config = config_mod.load(data_dir)
        host, port = self.hub_endpoint.removeprefix("tcp://").rsplit(":", 1)
        config.set("hub.ip", host)
        config.set("hub.port", port)
        config.set("hub.more", ",".join(self.hub_endpoints[1:]))
        if self.network is None:
            config.set("distributor.ip", "127.0.0.1")  # a local swarm: everything on loopback
            config.set("distributor.port", 0)
        else:
            config.set("distributor.port", DISTRIBUTOR_PORT)  # the first-run answers, nothing more
        limit = self.upload_limit if upload_limit is None else upload_limit
        if limit:
            config.set("limits.upload_rate", limit)
        config.set("hub.key", self.hub_key.decode())
        config.set("security.encryption", self.encryption)
        if self.private:
            config.set("security.players", str(self.players_file))
            config.set("security.publishers", str(self.publishers_file))
        if self.private and admitted:  # an outsider is set up alike, its keys left out of the swarm's lists
            with self.players_file.open("a") as keys:
                keys.write(f"{curve.load_or_create(data_dir).public.decode()}  # {name}\n")
            with self.publishers_file.open("a") as keys:
                keys.write(f"{signing.load_publisher(data_dir).public.hex()}  # {name}\n")
        config.ensure_dirs()
        config.save()
        player = Player(name, data_dir, host=self.network.add_host(name, rate) if self.network else None)
        self.players.append(player)
        return player

    def share(self, player: Player, stuff: Path, book_size: int | None = None) -> Library:
        """Share a file, or a folder (a tree library), from ``player``."""
        config = config_mod.load(player.data_dir)
        hubs = tuple(self.hub_endpoints or [self.hub_endpoint])
        keys = (self.hub_key.decode(),) * len(hubs) if self.hub_key else ()
        make = librarify_tree if stuff.is_dir() else librarify
        library = make(stuff, hubs=hubs, book_size=book_size, hub_keys=keys,
                       publisher=signing.load_publisher(player.data_dir))
        target = config.libs_dir / library.file_name
        write_library(library, target)
        catalog.record_shared(config, library, target, stuff)
        return library

    def seed_with(self, player: Player, library: Library, stuff: Path) -> None:
        """Make ``player`` a seed of an existing library (its own copy of the stuff)."""
        config = config_mod.load(player.data_dir)
        target = config.libs_dir / library.file_name
        write_library(library, target)
        catalog.record_shared(config, library, target, stuff)

    def give(self, player: Player, library: Library, only: tuple[str, ...] = ()) -> None:
        """Drop the library into the player's libs/ folder: it downloads it. With ``only`` (globs of a tree's
        files), record it to download with that selection, as `emma get --only` does."""
        config = config_mod.load(player.data_dir)
        if not only:
            write_library(library, config.libs_dir / library.file_name)
            return
        given = self.root / f"{player.name}-{library.file_name}"  # the .lib as a user has it, outside libs/
        write_library(library, given)
        target = catalog.import_library(config, library, given)
        state = State(config.state_db)
        try:
            catalog.record_download(state, config, library, target, only)
        finally:
            state.close()

    def start_player(self, player: Player, services: tuple[str, ...] = ("distributor", "requestor")) -> None:
        """Start the player's processes: its Maestro, or (without one) the named services directly."""
        if self.maestro:
            prefix = tuple(player.host.command([])) if player.host else ()
            proc = self.group.start(f"{player.name}-maestro",
                                    ["-m", "services.supervisor.maestro", "--data-dir", str(player.data_dir)],
                                    prefix=prefix)
            player.procs.append(proc)
            return
        for service in services:
            proc = self.group.start(f"{player.name}-{service}",
                                    ["-m", f"services.peer.{service}", "--data-dir", str(player.data_dir)])
            player.procs.append(proc)

    def hub_client(self, player: Player) -> HubClient:
        """A client of the swarm's hubs speaking as ``player`` (its key pair, when the swarm encrypts)."""
        hubs = self.hub_endpoints or [self.hub_endpoint]
        keys = {hub: self.hub_key for hub in hubs} if self.hub_key else {}
        me = curve.load_or_create(player.data_dir) if self.hub_key else None
        return HubClient(hubs, keys=keys, identity=me, timeout=2.0)

    def wait_announced(self, library: Library, players: list[Player], timeout: float = 60.0) -> float:
        """Wait until the hub hands out every one of ``players`` for ``library`` (a private hub admits a player
        only once it re-read its allowlist, and a refused announce is retried 2 s later). Returns the seconds."""
        start = time.monotonic()
        wanted = {identity.player_id(p.data_dir) for p in players}
        with self.hub_client(players[0]) as client:
            while True:
                try:
                    known = {peer.player_id for peer in client.get_peers(library.id, numwant=200).peers}
                    if wanted <= known:
                        return time.monotonic() - start
                except HubClientError:
                    pass  # not admitted yet
                if time.monotonic() - start > timeout:
                    raise TimeoutError(f"the hub does not hand out every player within {timeout}s; logs in "
                                       f"{self.group.logs}")
                self._raise_if_died()
                time.sleep(0.05)

    def wait_serving(self, players: list[Player], timeout: float = 120.0) -> float:
        """Wait until every player serves: under a Maestro its services are RUNNING, else its
        Distributor has bound its port (and so announced at its first loop turn). Returns the seconds."""
        start = time.monotonic()
        waiting = list(players)
        while waiting:
            if time.monotonic() - start > timeout:
                names = ", ".join(p.name for p in waiting)
                raise TimeoutError(f"{names} not serving within {timeout}s; logs in {self.group.logs}")
            self._raise_if_died()
            waiting = [p for p in waiting if not self._serving(p)]
            time.sleep(0.05)
        return time.monotonic() - start

    def _serving(self, player: Player) -> bool:
        if not self.maestro:
            return distributor_endpoint_file(run_dir(player.data_dir)).exists()
        return launch.services_running(ControlClient(run_dir(player.data_dir), timeout=1.0))

    def _raise_if_died(self) -> None:
        for proc in self.group.procs:
            if not proc.alive() and proc.popen.returncode not in (0, -15) and proc not in self.killed:
                raise RuntimeError(f"{proc.name} died with {proc.popen.returncode}: see {proc.log_path}")

    def child_pids(self, player: Player) -> dict[str, int]:
        """Pids of a Maestro's running children, from its control socket."""
        client = ControlClient(run_dir(player.data_dir), timeout=2.0)
        return {s.name: s.pid for s in client.services() if s.name != "maestro" and s.pid}

    def kill_service(self, player: Player, service: str) -> Proc | None:
        """SIGKILL one of a player's processes (a crash). Directly started ones are no longer tracked;
        under a Maestro the child is killed by pid and the Maestro respawns it."""
        if self.maestro:
            pid = self.child_pids(player).get(service)
            if pid:
                os.kill(pid, signal.SIGKILL)
            return None
        proc = next(p for p in player.procs if p.name.endswith(service))
        proc.popen.kill()
        proc.popen.wait(10)
        player.procs.remove(proc)
        self.group.procs.remove(proc)
        return proc

    def stop_player(self, player: Player) -> None:
        for proc in player.procs:
            self.group.stop(proc)
        player.procs.clear()

    def wait_complete(self, library: Library, players: list[Player], timeout: float,
                      on_tick: object = None, every: float = 0.05) -> None:
        """Until every player seeds ``library``, reading each one's state.db ``every`` seconds (each player's
        ``done_at`` as seen here; a benchmark that times players from their logs may look seldom, leaving the
        machine's CPU to them)."""
        deadline = time.monotonic() + timeout
        start = time.monotonic()
        while time.monotonic() < deadline:
            pending = False
            for player in players:
                if player.done_at is None:
                    _, _, status = player.progress(library.id_hex)
                    if status == "seeding":
                        player.done_at = time.monotonic() - start
                    else:
                        pending = True
            if callable(on_tick):
                on_tick()
            if not pending:
                return
            self._raise_if_died()
            time.sleep(every)
        raise TimeoutError(f"not every player completed within {timeout}s; logs in {self.group.logs}")

    def stop(self) -> None:
        for proc in self.frozen:
            if proc.alive():
                os.kill(proc.pid, signal.SIGCONT)
        try:
            self.group.stop_all()
        finally:
            if self.redis is not None:
                self.redis.stop()


class Chaos:
    """Kills a random child of a random player now and then (every 0.3-1.5 s)."""

    def __init__(self, swarm: Swarm, players: list[Player], rng: random.Random, enabled: bool) -> None:
        self.swarm, self.players, self.rng, self.enabled = swarm, players, rng, enabled
        self.next_at = time.monotonic() + 1.0
        self.kills: list[str] = []

    def tick(self) -> None:
        if not self.enabled or time.monotonic() < self.next_at:
            return
        self.next_at = time.monotonic() + self.rng.uniform(0.3, 1.5)
        player = self.rng.choice(self.players)
        service = self.rng.choice(("distributor", "requestor"))
        try:
            self.swarm.kill_service(player, service)
        except (MaestroNotRunning, ControlError, ProcessLookupError):
            return
        self.kills.append(f"{player.name}/{service}")


def rate_classes(spec: str, count: int) -> list[str]:
    """``0.5:100mbit,0.5:20mbit`` (fractions of the players, in order) or ``20mbit`` -> a rate per player."""
    classes: list[tuple[float, str]] = []
    for part in spec.split(","):
        fraction, _, link = part.rpartition(":")
        parse_rate(link)
        classes.append((float(fraction) if fraction else 1.0, link))
    total = sum(share for share, _ in classes)
    out: list[str] = []
    for index, (share, rate) in enumerate(classes):
        wanted = count - len(out) if index == len(classes) - 1 else round(count * share / total)
        out += [rate] * max(0, min(wanted, count - len(out)))
    return out


def kumar_ross_bound(size: int, seed_upload: float, uploads: list[float], download: float = float("inf")) -> float:
    """The least time one seed can get ``size`` bytes to every leecher (see the simulator's, which this is)."""
    return simulator_bound(size, [seed_upload], uploads, [download] * len(uploads))


def _summary(swarm: Swarm, library: Library, leechers: list[Player], source_digest: str | dict[str, str]) -> bool:
    ok = True
    print(f"\n{'player':12} {'seconds':>8} {'MiB/s':>8}  copy")
    for player in leechers:
        path = player.stuff_path(library.id_hex)
        same = path is not None and path.exists() and stuff_digest(path) == source_digest
        ok &= same
        seconds = player.done_at or 0.0
        rate = library.size / (1 << 20) / seconds if seconds else 0.0
        print(f"{player.name:12} {seconds:8.2f} {rate:8.1f}  {'identical' if same else 'DIFFERENT'}")
    last = max(p.done_at or 0.0 for p in leechers) if leechers else 0.0
    total = library.size * len(leechers)
    print(f"\n{len(leechers)} leechers got {library.size} bytes each; last done after {last:.2f}s;"
          f" aggregate {total / (1 << 20) / max(last, 1e-9):.1f} MiB/s")
    print("all copies byte-identical" if ok else "SOME COPIES DIFFER")
    return ok


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Run a real local swarm on 127.0.0.1.")
    parser.add_argument("--peers", type=int, default=4, help="players in all, seeds included")
    parser.add_argument("--seeds", type=int, default=1)
    parser.add_argument("--size", default="32M", help="size of the generated stuff (K/M/G)")
    parser.add_argument("--file", type=Path, default=None,
                        help="share this file (or folder) instead of generating one")
    parser.add_argument("--dir", action="store_true",
                        help="generate a folder (a tree library: nested folders, empty files, unicode names)")
    parser.add_argument("--files", type=int, default=100, help="with --dir: files in the generated tree")
    parser.add_argument("--upload-limit", default="0", help="per-player upload cap in bytes/s (K/M/G; 0 = none)")
    parser.add_argument("--book-size", default=None, help="book size (default: automatic)")
    parser.add_argument("--timeout", type=float, default=300.0)
    parser.add_argument("--keep", action="store_true", help="keep the working directory and its logs")
    parser.add_argument("--chaos", action="store_true",
                        help="SIGKILL random Distributors/Requestors while the swarm runs (Maestros respawn them)")
    parser.add_argument("--no-maestro", action="store_true", help="start services directly, without a Maestro")
    parser.add_argument("--netns", action="store_true",
                        help="the hub and each player on a host of its own (network namespaces; needs root)")
    parser.add_argument("--private", action="store_true",
                        help="a private swarm: only its players' keys admitted, only its publishers trusted")
    parser.add_argument("--clear", action="store_true", help="an open swarm with encryption off")
    parser.add_argument("--hubs", type=int, default=1, help="hubs the library lists (more than one: --store redis)")
    parser.add_argument("--store", choices=("sqlite", "redis"), default="sqlite",
                        help="the hubs' store; redis starts a redis-server the hubs share (needs redis-server)")
    parser.add_argument("--rates", default="20mbit",
                        help="with --netns: each player's upload link, e.g. 20mbit or 0.5:100mbit,0.5:20mbit")
    args = parser.parse_args(argv)
    if args.seeds < 1 or args.peers <= args.seeds:
        parser.error("need at least one seed and one leecher (--peers > --seeds >= 1)")
    if args.hubs < 1 or (args.hubs > 1 and args.store != "redis"):
        parser.error("--hubs N > 1 needs --store redis (hubs share their players through one Redis)")
    if args.netns and (args.hubs > 1 or args.store == "redis"):
        parser.error("--netns runs one hub on SQLite")
    if args.store == "redis" and missing_reason():
        parser.error(missing_reason())
    try:
        rates = rate_classes(args.rates, args.peers) if args.netns else [None] * args.peers
    except ValueError as exc:
        parser.error(str(exc))
    root = Path(tempfile.mkdtemp(prefix="emma-swarm-"))
    from rich.progress import BarColumn, Progress, TextColumn

    ok = False
    try:
        stuff = args.file.absolute() if args.file else root / ("stuff" if args.dir else "stuff.bin")
        if args.file is None and args.dir:
            make_tree(stuff, args.files, parse_size(args.size))
        elif args.file is None:
            make_stuff(stuff, parse_size(args.size))
        with contextlib.ExitStack() as stack:
            network = stack.enter_context(Network()) if args.netns else None
            swarm = stack.enter_context(Swarm(root, upload_limit=parse_size(args.upload_limit),
                                              maestro=not args.no_maestro, network=network, hubs=args.hubs,
                                              store="redis" if args.store == "redis" else "",
                                              encryption=not args.clear, private=args.private))
            swarm.start_hub()
            where = f" sharing Redis {swarm.redis.url}" if swarm.redis is not None else ""
            print(f"hub{'s' if args.hubs > 1 else ''} on {', '.join(swarm.hub_endpoints or [swarm.hub_endpoint])}"
                  f"{where}; working in {root}")
            players = [swarm.add_player(f"player{i}", rate=rates[i]) for i in range(args.peers)]
            seeds, leechers = players[: args.seeds], players[args.seeds :]
            book = parse_size(args.book_size) if args.book_size else None
            library = swarm.share(seeds[0], stuff, book)
            for seed in seeds[1:]:
                swarm.seed_with(seed, library, stuff)
            files = f" and {len(library.tree)} files" if library.tree is not None else ""
            print(f"library {library.id_hex}: {library.size} bytes in {library.books} books{files}")
            for player in players:
                swarm.start_player(player)
            print(f"{len(players)} players serving after {swarm.wait_serving(players):.2f}s; "
                  "completion times count from here")
            for player in leechers:
                swarm.give(player, library)
            with Progress(TextColumn("{task.description:10}"), BarColumn(), TextColumn("{task.percentage:>5.1f}%"),
                          TextColumn("{task.fields[status]}")) as bar:
                tasks = {p.name: bar.add_task(p.name, total=max(library.books, 1), status="") for p in leechers}

                chaos = Chaos(swarm, players, random.Random(), enabled=args.chaos and swarm.maestro)

                def refresh() -> None:
                    chaos.tick()
                    for p in leechers:
                        have, _, status = p.progress(library.id_hex)
                        full = status == "seeding"
                        bar.update(tasks[p.name], completed=max(library.books, 1) if full else have, status=status)

                swarm.wait_complete(library, leechers, args.timeout, refresh)
            ok = _summary(swarm, library, leechers, stuff_digest(stuff))
            if args.netns:
                per_second = [parse_rate(rate) / 8 for rate in rates if rate]
                bound = kumar_ross_bound(library.size, per_second[0], per_second[args.seeds :])
                last = max(p.done_at or 0.0 for p in leechers)
                print(f"bound {bound:.2f}s (links {args.rates}); last leecher {last / bound:.2f}x the bound")
            if chaos.kills:
                print(f"chaos: {len(chaos.kills)} services killed with SIGKILL: {', '.join(chaos.kills)}")
    finally:
        if args.keep:
            print(f"kept {root}")
        else:
            shutil.rmtree(root, ignore_errors=True)
    return 0 if ok else 1


if __name__ == "__main__":
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    raise SystemExit(main())
