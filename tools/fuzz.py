"""A bounded fuzzer: hostile traffic at a hub, a Distributor and a Maestro, then a real download.

    python tools/fuzz.py                     # 1,000,000 messages (a few minutes)
    python tools/fuzz.py --messages 20000    # the short run the test suite does

How this works. It starts a hub and a seed player (a Maestro with its Distributor
and Requestor) on 127.0.0.1, each a process of its own, the seed sharing a
small file. Then one loop sends ``--messages`` messages round-robin to five
targets, never blocking (a full queue moves on to the next target):

- the hub's ROUTER: random bytes, valid requests with bits flipped or cut,
  valid envelopes with hostile fields (absurd numwant, ids of every length, announce
  batches empty, oversized, or of other players' and hostile ids,
  endpoints of every shape, reports, scrapes of many ids, wrong versions),
  messages of many frames, and 300 fake players announcing the real library
  at endpoints where nothing listens; new connections with new identities every
  few hundred messages;
- the Distributor's ROUTER: the same kinds for the peer protocol (requests
  before a handshake, books out of range, oversized frames), and slow
  readers: connections that handshake, ask for every book again and again
  and never read;
- the Maestro's control socket: garbage and hostile-but-decodable requests
  (anything that would really pause, remove, stop or shut down is not sent: the
  local control socket trusts its user);
- the Requestor's command socket (``run/requestor.sock``, as if not from the
  Maestro): garbage, wrong versions, hostile paths to add or share, library
  actions on ids that name nothing;
- the Maestro's heartbeat socket: garbage and forged beats.

A sampler reads each service's resident memory and CPU time from /proc. After
the flood it checks that no service restarted (same pids, no restarts counted),
that no log holds a traceback, and that a new player still downloads the
library from the seed, identical. It prints the figures and exits 1 when a
target is missed: 0 crashes, 0 restarts, 0 tracebacks, every service below
``--rss-limit`` MiB throughout, the download identical.
"""

from __future__ import annotations

import argparse
import os
import random
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import zmq

from services.hub.client import HubClient
from services.hub.client_types import HubClientError
from services.hub.model import HubLimits
from services.peer.commands import MAX_COMMAND_BYTES
from services.peer.library import Library
from services.runtime.heartbeat import MAX_BEAT_BYTES
from services.runtime.rundir import (
    control_endpoint,
    distributor_endpoint,
    heartbeat_endpoint,
    requestor_endpoint,
    run_dir,
)
from services.supervisor.control_client import ControlClient
from services.supervisor.control_logic import MAX_CONTROL_BYTES
from services.wire import framing
from services.wire.pb import control_pb2, hub_pb2, wire_pb2
from tools.swarm import Player, Swarm, file_digest, make_stuff

MIB = 1 << 20
FAKE_SEEDS = 300  # fake players announcing the real library where nothing listens
SLOW_READERS = 16
CHURN_EVERY = 400  # messages per connection before it is replaced by one with a new identity
GIVE_UP = 1.0  # seconds a connection may refuse more before it is taken for dropped and replaced
HOSTILE_INTS = (0, 1, 2**31 - 1, 2**31, 2**32 - 1, 2**53, 2**63 - 1, 2**64 - 1)


# -- what is sent ---------------------------------------------------------------------------------
def mutate(rng: random.Random, data: bytes) -> bytes:
    """A valid message with bits flipped, bytes cut, repeated or inserted."""
    raw = bytearray(data or b"\x00")
    for _ in range(rng.randint(1, 4)):
        choice = rng.random()
        spot = rng.randrange(len(raw) or 1)
        if choice < 0.4:
            raw[spot % len(raw)] ^= 1 << rng.randrange(8)
        elif choice < 0.6:
            del raw[spot:]
        elif choice < 0.8:
            raw[spot:spot] = rng.randbytes(rng.randint(1, 16))
        else:
            raw += raw[: rng.randint(1, len(raw))]
        if not raw:
            raw = bytearray(b"\x08")
    return bytes(raw)


def garbage(rng: random.Random) -> bytes:
    """Random bytes; now and then more than any service takes in one frame (it drops that connection)."""
    size = 70_000 if rng.random() < 0.01 else rng.choice((0, 1, 2, 7, 64, 1000, 16_000))
    return rng.randbytes(size)


def hostile_id(rng: random.Random) -> bytes:
    return rng.randbytes(rng.choice((0, 1, 15, 16, 31, 32, 33, 64, 1000)))


def hostile_endpoint(rng: random.Random) -> str:
    return rng.choice((
        "", "tcp://", "tcp://0.0.0.0:0", f"tcp://127.0.0.1:{rng.randint(1, 65535)}", "tcp://256.1.1.1:80",
        "ipc:///etc/passwd", "tcp://[::1]:22", "tcp://example.invalid:99999", "tcp://10.0.0.1:" + "9" * 50,
        "tcp://\x1b[31mred:1", "x" * rng.choice((10, 300, 5000)), f"tcp://192.0.2.{rng.randint(0, 255)}:22",
    ))


def hub_message(rng: random.Random, library_id: bytes, fakes: list[bytes]) -> list[bytes]:
    kind = rng.random()
    if kind < 0.15:
        return [garbage(rng)]
    if kind < 0.2:
        return [garbage(rng) for _ in range(rng.randint(2, 12))]
    request = hub_pb2.HubRequest(version=rng.choice((1, 1, 1, 0, 2, 2**32 - 1)), request_id=rng.randrange(2**64))
    body = rng.random()
    lib = library_id if rng.random() < 0.3 else hostile_id(rng) if rng.random() < 0.5 else rng.randbytes(32)
    if body < 0.45:
        fake = len(fakes) < FAKE_SEEDS and rng.random() < 0.05
        player = rng.randbytes(16)
        if fake:
            fakes.append(player)
            lib, endpoint = library_id, f"tcp://127.0.0.1:{rng.randint(20000, 60000)}"
        else:
            endpoint = hostile_endpoint(rng) if rng.random() < 0.5 else f"tcp://0.0.0.0:{rng.randint(1, 65535)}"
            player = player if rng.random() < 0.8 else hostile_id(rng)
        announce = hub_pb2.Announce(
            library_id=lib, player_id=player, endpoint=endpoint,
            event=hub_pb2.AnnounceEvent.ValueType(rng.choice((0, 1, 2, 3, 1, 99))),
            left=0 if fake else rng.choice(HOSTILE_INTS), numwant=rng.choice(HOSTILE_INTS[:5]),
            uploaded=rng.choice(HOSTILE_INTS), downloaded=rng.choice(HOSTILE_INTS))
        if fake or rng.random() < 0.75:
            request.announce.CopyFrom(announce)
        else:  # a batch: empty, too many, its announces of hostile ids and other players
            for _ in range(rng.choice((0, 1, 7, 100, 101, 150))):
                item = request.announce_batch.announces.add()
                item.CopyFrom(announce)
                item.library_id = hostile_id(rng) if rng.random() < 0.3 else rng.randbytes(32)
                item.player_id = player if rng.random() < 0.9 else rng.randbytes(16)
    elif body < 0.65:
        request.get_peers.CopyFrom(hub_pb2.GetPeers(library_id=lib, player_id=hostile_id(rng),
                                                    numwant=rng.choice(HOSTILE_INTS[:5])))
    elif body < 0.75:
        request.scrape.CopyFrom(hub_pb2.Scrape(library_ids=[hostile_id(rng) for _ in range(rng.choice((0, 1, 100,
                                                                                                       101, 500)))]))
    elif body < 0.9:
        request.report.CopyFrom(hub_pb2.ReportUnreachable(library_id=lib, reporter_id=rng.randbytes(16),
                                                          endpoint=hostile_endpoint(rng)))
    else:
        request.health.CopyFrom(hub_pb2.Health())
    data = request.SerializeToString()
    if rng.random() < 0.3:
        data = mutate(rng, data)
    return [b"", data] if rng.random() < 0.2 else [data]


def peer_message(rng: random.Random, library: Library) -> list[bytes]:
    kind = rng.random()
    if kind < 0.15:
        return [garbage(rng)]
    if kind < 0.2:
        return [garbage(rng) for _ in range(rng.randint(2, 8))]
    lib = library.id if rng.random() < 0.6 else hostile_id(rng)
    book = rng.choice((0, 1, library.books - 1, library.books, 2**31, 2**32 - 1))
    frame = rng.choice((
        lambda: framing.handshake(lib, hostile_id(rng)),
        lambda: framing.request(lib, book),
        lambda: framing.cancel(lib, book),
        lambda: framing.have(lib, [rng.randrange(2**32) for _ in range(rng.randint(0, 50))]),
        lambda: framing.bitfield(lib, rng.randrange(2**32), rng.randbytes(rng.randint(0, 100)), 5),
        lambda: framing.busy(lib, book, rng.randrange(2**32)),
        lambda: wire_pb2.PeerMessage(version=rng.randrange(2**32)).SerializeToString(),
    ))()
    if rng.random() < 0.3:
        frame = mutate(rng, frame)
    return [frame]


_HARMLESS_CONTROL = ("services", "downloads", "add", "rates")


def control_message(rng: random.Random) -> list[bytes] | None:
    """A hostile control request, or None for one that would really change the player (not sent)."""
    kind = rng.random()
    if kind < 0.3:
        frames = [garbage(rng) for _ in range(rng.randint(1, 4))]
    else:
        request = control_pb2.ControlRequest(version=rng.choice((1, 1, 0, 2**32 - 1)))
        body = rng.random()
        if body < 0.3:
            request.services.SetInParent()
        elif body < 0.5:
            request.downloads.SetInParent()
        elif body < 0.75:
            request.add.path = rng.choice(("", "/dev/zero", "/proc/self/mem", "relative.lib", "/" + "a" * 5000,
                                           "/tmp/\x1b]0;title\x07.lib", "/nonexistent/x.lib"))
        else:
            request.rates.upload_rate = rng.choice((2**64 - 1, 2**63, 17 * 2**30))
            request.rates.download_rate = rng.choice((2**64 - 1, 2**40))
        data = request.SerializeToString()
        if rng.random() < 0.3:
            data = mutate(rng, data)
        frames = [b"", data]
    try:
        decoded = control_pb2.ControlRequest.FromString(frames[-1])
    except Exception:
        return frames
    which = decoded.WhichOneof("body")
    if which not in (None, *_HARMLESS_CONTROL):
        return None
    if which == "rates" and max(decoded.rates.upload_rate, decoded.rates.download_rate) < 2**40:
        return None  # a value in range would really be set
    if which == "add" and decoded.add.path.endswith(".lib") and Path(decoded.add.path).is_file():
        return None
    return frames


def command_message(rng: random.Random) -> list[bytes] | None:
    """A hostile command straight to the Requestor's socket (as if not from the Maestro), or None for one that
    would really change the player (not sent)."""
    if rng.random() < 0.3:
        return [garbage(rng) for _ in range(rng.randint(1, 3))]
    command = control_pb2.ChildCommand(version=rng.choice((1, 2, 0, 2**32 - 1)), id=rng.randrange(2**64))
    body = rng.random()
    if body < 0.4:
        command.add.path = rng.choice(("", "/dev/zero", "/proc/self/mem", "relative.lib", "/" + "a" * 5000,
                                       "/nonexistent/x.lib"))
    elif body < 0.7:
        command.library.library_id = rng.choice(("", "zz" * 40, "%", "ab" * 33))
        command.library.action = rng.choice((0, 1, 2, 3, 99))  # type: ignore[assignment]
    else:
        command.seed.path, command.seed.stuff_path = "/nonexistent/x.lib", rng.choice(("", "/", "relative"))
    data = command.SerializeToString()
    if rng.random() < 0.3:
        data = mutate(rng, data)
    try:
        decoded = control_pb2.ChildCommand.FromString(data)
    except Exception:
        return [data]
    if decoded.WhichOneof("body") == "add" and decoded.add.path.endswith(".lib") and Path(decoded.add.path).is_file():
        return None
    if decoded.WhichOneof("body") == "library" and _could_name_a_library(decoded.library.library_id):
        return None
    return [data]


def _could_name_a_library(prefix: str) -> bool:
    return 0 < len(prefix) <= 64 and all(c in "0123456789abcdefABCDEF" for c in prefix)


def heartbeat_message(rng: random.Random) -> list[bytes]:
    if rng.random() < 0.5:
        return [garbage(rng)]
    beat = control_pb2.Heartbeat(service=rng.choice(("distributor", "requestor", "maestro", "x" * 300, "")),
                                 pid=rng.choice((0, 1, 2**32 - 1, rng.randrange(2**32))),
                                 state="\x1b[2J" * rng.randint(0, 50))
    data = beat.SerializeToString()
    return [mutate(rng, data) if rng.random() < 0.3 else data]


# -- where it is sent -------------------------------------------------------------------------------
@dataclass
class Target:
    name: str
    endpoint: str
    kind: int
    make: Callable[[random.Random], list[bytes] | None]
    max_frame: int  # bytes of a frame past which the service drops the connection it came on
    connections: int = 4
    sent: int = 0
    sockets: list[zmq.Socket[bytes]] = field(default_factory=list)
    uses: int = 0
    replaced: int = 0  # connections given up on because they would not take more
    blocked: dict[int, float] = field(default_factory=dict)  # socket index -> since when it would not take more


class Flood:
    """Sends the messages round-robin over the targets; never blocks."""

    def __init__(self, context: zmq.Context[zmq.Socket[bytes]], rng: random.Random) -> None:
        self.context = context
        self.rng = rng
        self.targets: list[Target] = []
        self.slow: list[zmq.Socket[bytes]] = []

    def add(self, target: Target) -> None:
        target.sockets = [self._socket(target) for _ in range(target.connections)]
        self.targets.append(target)

    def _socket(self, target: Target) -> zmq.Socket[bytes]:
        sock = self.context.socket(target.kind)
        sock.linger = 0
        sock.sndhwm = 200
        sock.rcvhwm = 1  # replies are not read: this is a reader that never reads, too
        if target.kind == zmq.DEALER:
            sock.setsockopt(zmq.ROUTING_ID, self.rng.randbytes(self.rng.randint(1, 32)).lstrip(b"\x00") or b"x")
        sock.connect(target.endpoint)
        return sock

    def _replace(self, target: Target, index: int, linger: int) -> None:
        """Close a connection (what it queued gets ``linger`` ms to go out) and open one with a new identity."""
        target.sockets[index].close(linger=linger)
        target.sockets[index] = self._socket(target)
        target.blocked.pop(index, None)

    def slow_readers(self, endpoint: str, library: Library) -> None:
        """Connections that handshake and ask for every book, and never read what comes back."""
        for _ in range(SLOW_READERS):
            sock = self.context.socket(zmq.DEALER)
            sock.linger = 0
            sock.rcvhwm = 1
            sock.setsockopt(zmq.RCVBUF, 4096)
            sock.connect(endpoint)
            sock.send(framing.handshake(library.id, self.rng.randbytes(16)))
            self.slow.append(sock)

    def ask_slowly(self, library: Library) -> None:
        for sock in self.slow:
            for book in range(library.books):
                try:
                    sock.send(framing.request(library.id, book), zmq.NOBLOCK)
                except zmq.Again:
                    break

    def run(self, total: int, library: Library, progress: Callable[[int], None]) -> int:
        sent = 0
        turn = 0
        while sent < total:
            target = self.targets[turn % len(self.targets)]
            turn += 1
            frames = target.make(self.rng)
            if frames is None:
                continue
            if max(map(len, frames)) > target.max_frame:  # the service drops the connection: a throwaway one
                sock = self._socket(target)
                sock.send_multipart(frames, zmq.NOBLOCK)
                sock.close(linger=200)
                target.sent += 1
                sent += 1
                continue
            index = self.rng.randrange(len(target.sockets))
            sock = target.sockets[index]
            try:
                sock.send_multipart(frames, zmq.NOBLOCK)
            except zmq.Again:  # the service is behind (wait), or dropped or refused the connection (give up on it)
                now = time.monotonic()
                since = target.blocked.setdefault(index, now)
                if now - since > GIVE_UP:
                    self._replace(target, index, linger=0)
                    target.replaced += 1
                elif all(i in target.blocked for i in range(len(target.sockets))):
                    sock.poll(1, zmq.POLLOUT)
                continue
            target.blocked.pop(index, None)
            target.sent += 1
            sent += 1
            target.uses += 1
            if target.uses >= CHURN_EVERY:  # a new connection, a new identity
                target.uses = 0
                self._replace(target, index, linger=500)
            if sent % 5000 == 0:
                self.ask_slowly(library)
                progress(sent)
        return sent

    def close(self) -> None:
        for target in self.targets:
            for sock in target.sockets:
                sock.close(linger=0)
        for sock in self.slow:
            sock.close(linger=0)


# -- watching the services --------------------------------------------------------------------------
@dataclass
class Watched:
    name: str
    pid: int
    peak_rss: int = 0
    cpu_start: float = 0.0
    cpu_end: float = 0.0


def rss_of(pid: int) -> int:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    except OSError:
        pass
    return 0


def cpu_of(pid: int) -> float:
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


class Sampler(threading.Thread):
    def __init__(self, watched: list[Watched]) -> None:
        super().__init__(name="fuzz-sampler", daemon=True)
        self.watched = watched
        self.stopped = threading.Event()
        for w in watched:
            w.cpu_start = cpu_of(w.pid)

    def run(self) -> None:
        while not self.stopped.wait(0.1):
            self.sample()

    def sample(self) -> None:
        for w in self.watched:
            w.peak_rss = max(w.peak_rss, rss_of(w.pid))

    def stop(self) -> None:
        self.stopped.set()
        self.join()
        self.sample()
        for w in self.watched:
            w.cpu_end = cpu_of(w.pid)


def tracebacks(root: Path) -> list[str]:
    found = []
    for path in sorted(root.rglob("*")):
        logs = path.suffix in (".log", ".out") or ".log." in path.name or ".out." in path.name
        if logs and path.is_file():
            try:
                text = path.read_text(errors="replace")
            except OSError:
                continue
            if "Traceback" in text:
                found.append(str(path))
    return found


def hub_requests(endpoint: str) -> tuple[int, int]:
    """Requests the hub received (rate-limited ones included) and those it refused; (-1, -1) if it does
    not answer."""
    client = HubClient(endpoint, timeout=10.0, attempts=3)
    try:
        counts = client.health().requests
        received = sum(count for kind, count in counts.items() if kind != "rejected")  # rate_limited included
        return received, counts.get("rejected", 0)
    except HubClientError:
        return -1, -1
    finally:
        client.close()


def restarts(player: Player) -> dict[str, int]:
    return {s.name: s.restarts for s in ControlClient(run_dir(player.data_dir), timeout=5.0).services()}


# -- the run ----------------------------------------------------------------------------------------
def run(args: argparse.Namespace, root: Path) -> bool:
    rng = random.Random(args.seed)
    stuff = root / "stuff.bin"
    make_stuff(stuff, args.size, seed=args.seed)
    # The hub's rates are raised so that the flood reaches its handlers, not only its rate limiter.
    # In clear: the hostile clients below must reach the handlers, not be refused at the CURVE handshake.
    with Swarm(root / "swarm", maestro=True, hub_args=("--rate", str(args.hub_rate)), encryption=False) as swarm:
        hub_endpoint = swarm.start_hub()
        seed = swarm.add_player("seed")
        library = swarm.share(seed, stuff)
        swarm.start_player(seed)
        swarm.wait_serving([seed])
        assert swarm.hub is not None
        children = swarm.child_pids(seed)
        watched = [Watched("hub", swarm.hub.pid), Watched("maestro", seed.procs[0].pid),
                   *(Watched(name, pid) for name, pid in sorted(children.items()))]
        run = run_dir(seed.data_dir)
        distributor = distributor_endpoint(run)
        sampler = Sampler(watched)
        sampler.start()
        fakes: list[bytes] = []
        started = time.monotonic()
        with zmq.Context() as context:
            flood = Flood(context, rng)
            flood.add(Target("hub", hub_endpoint, zmq.DEALER, lambda r: hub_message(r, library.id, fakes),
                             HubLimits().max_message_bytes, 8))
            flood.add(Target("distributor", distributor, zmq.DEALER, lambda r: peer_message(r, library),
                             framing.MAX_REQUEST_FRAME, 8))
            flood.add(Target("control", control_endpoint(run), zmq.DEALER, control_message, MAX_CONTROL_BYTES, 2))
            flood.add(Target("requestor", requestor_endpoint(run), zmq.DEALER, command_message, MAX_COMMAND_BYTES, 2))
            flood.add(Target("heartbeat", heartbeat_endpoint(run), zmq.PUSH, heartbeat_message,
                             MAX_BEAT_BYTES, 2))
            flood.slow_readers(distributor, library)

            def progress(sent: int) -> None:
                if sent % 100_000 == 0 or sent == args.messages:
                    rss = ", ".join(f"{w.name} {w.peak_rss / MIB:.0f}" for w in watched)
                    print(f"  {sent:>9,} sent, {time.monotonic() - started:6.1f} s; peak RSS MiB: {rss}", flush=True)

            sent = flood.run(args.messages, library, progress)
            flood.close()
        elapsed = time.monotonic() - started
        hub_counted = hub_requests(hub_endpoint)
        alive = {w.name: Path(f"/proc/{w.pid}").exists() for w in watched}
        sampler.stop()
        now_children = swarm.child_pids(seed)
        counted = restarts(seed)
        restarted = sorted({name for name, pid in children.items() if now_children.get(name) != pid}
                           | {name for name, count in counted.items() if count})

        leecher = swarm.add_player("leecher")
        swarm.give(leecher, library)
        swarm.start_player(leecher)
        download_started = time.monotonic()
        identical = False
        try:
            swarm.wait_complete(library, [leecher], timeout=args.download_timeout)
            copy = leecher.stuff_path(library.id_hex)
            identical = copy is not None and file_digest(copy) == file_digest(stuff)
        except TimeoutError as exc:
            print(f"download: {exc}")
        download_seconds = time.monotonic() - download_started
        traces = tracebacks(root / "swarm")

    print(f"\nsent {sent:,} messages in {elapsed:.1f} s ({sent / elapsed:,.0f}/s):",
          ", ".join(f"{t.name} {t.sent:,} ({t.replaced:,} connections refused or full)" for t in flood.targets),
          f"; {len(fakes)} fake seeds; {SLOW_READERS} slow readers")
    print(f"the hub received {hub_counted[0]:,} requests and refused {hub_counted[1]:,} of them; what it did not "
          "receive died with a connection it dropped (an oversized frame) or refused")
    limit = args.rss_limit * MIB
    for w in watched:
        print(f"  {w.name:<12} peak RSS {w.peak_rss / MIB:6.1f} MiB (limit {args.rss_limit}), "
              f"CPU {w.cpu_end - w.cpu_start:6.1f} s, {'alive' if alive[w.name] else 'DEAD'}")
    crashed = [name for name, up in alive.items() if not up]
    over = [w.name for w in watched if w.peak_rss >= limit]
    print(f"crashes: {len(crashed)} {crashed or ''}")
    print(f"restarts: {len(restarted)} {restarted or ''}")
    print(f"tracebacks: {len(traces)} {traces or ''}")
    print(f"services over {args.rss_limit} MiB: {len(over)} {over or ''}")
    print(f"download after the flood: {'identical' if identical else 'FAILED'} in {download_seconds:.1f} s")
    ok = not crashed and not restarted and not traces and not over and identical
    print("targets met" if ok else "TARGET MISSED")
    return ok


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--messages", type=int, default=1_000_000, help="messages to send in all")
    parser.add_argument("--seed", type=int, default=1, help="random seed of the run")
    parser.add_argument("--size", type=int, default=4 * MIB, help="bytes in the shared file")
    parser.add_argument("--hub-rate", type=float, default=5000.0, help="the hub's --rate (requests/s per client)")
    parser.add_argument("--rss-limit", type=int, default=256, help="MiB no service may reach")
    parser.add_argument("--download-timeout", type=float, default=300.0, help="seconds the last download may take")
    parser.add_argument("--keep", action="store_true", help="keep the run's folder (logs) and print where")
    args = parser.parse_args(argv)
    if args.keep:
        root = Path(tempfile.mkdtemp(prefix="emma-fuzz-"))
        print(f"run folder: {root}")
        return 0 if run(args, root) else 1
    with tempfile.TemporaryDirectory(prefix="emma-fuzz-") as tmp:
        return 0 if run(args, Path(tmp)) else 1


if __name__ == "__main__":
    raise SystemExit(main())
