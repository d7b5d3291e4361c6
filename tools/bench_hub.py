"""Benchmark the hub against a bare pyzmq ROUTER echo under the same client load.

Usage: ``python tools/bench_hub.py [--duration 10] [--clients 64] [--procs 2]``

How this works: a SQLite hub database is filled directly with ``--players``
live players spread over ``--libraries`` libraries; the real hub
(``python -m services.hub``) is started on it as a subprocess, on a random
port. ``--procs`` client processes each drive ``clients / procs`` DEALER
sockets from one poller loop, one request in flight per socket: a periodic
announce of a random known player, ``--numwant`` peers wanted. After a warm-up
the run is measured for ``--duration`` seconds. Then the same load, same
request bytes, goes to a bare ROUTER echo server (recv_multipart ->
send_multipart) and the figures are compared. Latency is measured by the
clients, send to reply.
"""

from __future__ import annotations

import argparse
import multiprocessing as mp
import os
import random
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from array import array
from dataclasses import dataclass
from multiprocessing.connection import Connection
from pathlib import Path

import zmq

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from services.hub.encode import peer_field  # noqa: E402
from services.hub.model import PeerRecord  # noqa: E402
from services.hub.store_sqlite import SqliteStore  # noqa: E402
from services.wire.pb import hub_pb2  # noqa: E402
from tools.scrape import Scraper  # noqa: E402

_POOL = 4096  # distinct request payloads per client process


@dataclass
class LoadResult:
    requests: int
    seconds: float
    p50_ms: float
    p99_ms: float
    errors: int
    server_cpu_us: float = 0.0  # server CPU time (user + system) per request


    @property
    def per_second(self) -> float:
        return self.requests / self.seconds


def player(n: int) -> tuple[bytes, bytes, str]:
    """Player n: its library id, player id and endpoint."""
    return b"", n.to_bytes(16, "big"), f"tcp://10.{n >> 16 & 255}.{n >> 8 & 255}.{n & 255}:6881"


def library(n: int, libraries: int) -> bytes:
    return (n % libraries).to_bytes(32, "big")


def populate(db: Path, players: int, libraries: int, now: float) -> None:
    """Insert live players straight into a fresh SQLite hub database."""
    store = SqliteStore.open(db, now)
    try:
        for n in range(players):
            _, player_id, endpoint = player(n)
            seed = n % 5 == 0
            wire = peer_field(player_id, endpoint, seed)
            store.upsert(PeerRecord(library(n, libraries), player_id, endpoint, seed, now + 3600, wire), now)
    finally:
        store.close()


def announce_requests(players: int, libraries: int, numwant: int, seed: int) -> list[bytes]:
    rng = random.Random(seed)
    out = []
    for request_id in range(_POOL):
        n = rng.randrange(players)
        _, player_id, endpoint = player(n)
        body = hub_pb2.Announce(
            library_id=library(n, libraries), player_id=player_id, endpoint=endpoint, left=0 if n % 5 == 0 else 1,
            uploaded=rng.randrange(1 << 30), numwant=numwant,
        )
        out.append(hub_pb2.HubRequest(version=1, request_id=request_id, announce=body).SerializeToString())
    return out


def drive(endpoint: str, sockets: int, warmup: float, duration: float, payloads: list[bytes], check: bool,
          start: mp.synchronize.Barrier, results: Connection) -> None:
    """One client process: ``sockets`` DEALERs, one request in flight each, until the deadline."""
    ctx: zmq.Context[zmq.Socket[bytes]] = zmq.Context()
    socks = [ctx.socket(zmq.DEALER) for _ in range(sockets)]
    poller = zmq.Poller()
    for sock in socks:
        sock.linger = 0
        sock.connect(endpoint)
        poller.register(sock, zmq.POLLIN)
    latencies = array("d")
    errors = 0
    sent_at: dict[zmq.Socket[bytes], float] = {}
    start.wait()
    begin = time.perf_counter()
    measure_from, end = begin + warmup, begin + warmup + duration
    count = 0
    for sock in socks:
        sock.send(payloads[count % _POOL])
        sent_at[sock] = time.perf_counter()
        count += 1
    while time.perf_counter() < end:
        for sock, _ in poller.poll(100):
            reply = sock.recv()
            now = time.perf_counter()
            if now >= measure_from:
                latencies.append(now - sent_at[sock])
                if check and len(latencies) % 997 == 0:
                    errors += hub_pb2.HubReply.FromString(reply).WhichOneof("body") != "announce"
            sock.send(payloads[count % _POOL])
            sent_at[sock] = time.perf_counter()
            count += 1
    for sock in socks:
        sock.close(linger=0)
    ctx.term()
    results.send((latencies.tobytes(), errors))
    results.close()


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process so far (Linux /proc)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def run_load(endpoint: str, args: argparse.Namespace, check: bool, server_pid: int) -> LoadResult:
    """Drive ``args.clients`` sockets from ``args.procs`` processes; merge their latencies."""
    spawn = mp.get_context("spawn")
    barrier = spawn.Barrier(args.procs)
    procs, pipes = [], []
    for index in range(args.procs):
        share = args.clients // args.procs + (index < args.clients % args.procs)
        payloads = announce_requests(args.players, args.libraries, args.numwant, seed=index)
        receiver, sender = spawn.Pipe(duplex=False)
        proc = spawn.Process(
            target=drive, args=(endpoint, share, args.warmup, args.duration, payloads, check, barrier, sender)
        )
        proc.start()
        sender.close()
        procs.append(proc)
        pipes.append(receiver)
    time.sleep(args.warmup)  # the clients' own warm-up: CPU is counted over the measured part only
    cpu_before = cpu_seconds(server_pid)
    latencies = array("d")
    errors = 0
    cpu_after = 0.0
    for receiver, proc in zip(pipes, procs, strict=True):
        raw, errs = receiver.recv()
        cpu_after = cpu_after or cpu_seconds(server_pid)
        latencies.frombytes(raw)
        errors += errs
        receiver.close()
        proc.join(30)
    ordered = sorted(latencies)
    if not ordered:
        raise SystemExit(f"no replies from {endpoint}: is the server up?")
    return LoadResult(
        requests=len(ordered),
        seconds=args.duration,
        p50_ms=statistics.median(ordered) * 1000,
        p99_ms=ordered[int(len(ordered) * 0.99)] * 1000,
        errors=errors,
        server_cpu_us=(cpu_after - cpu_before) / len(ordered) * 1e6,
    )


def echo_server() -> None:
    """A bare pyzmq ROUTER echo: the ceiling for one Python process on one socket."""
    ctx: zmq.Context[zmq.Socket[bytes]] = zmq.Context()
    router = ctx.socket(zmq.ROUTER)
    router.linger = 0
    port = router.bind_to_random_port("tcp://127.0.0.1")
    print(f"echo listening on tcp://127.0.0.1:{port}", flush=True)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    try:
        while True:
            router.send_multipart(router.recv_multipart())
    finally:
        router.close()
        ctx.term()


def start_server(cmd: list[str]) -> tuple[subprocess.Popen[str], str]:
    proc = subprocess.Popen(cmd, cwd=ROOT, stdout=subprocess.PIPE, text=True)
    assert proc.stdout is not None
    line = proc.stdout.readline()
    if "listening on" not in line:
        proc.kill()
        raise SystemExit(f"server did not start: {' '.join(cmd)}: {line!r}")
    return proc, line.rsplit(" ", 1)[-1].strip()


def stop_server(proc: subprocess.Popen[str]) -> None:
    os.kill(proc.pid, signal.SIGTERM)
    try:
        proc.wait(30)
    except subprocess.TimeoutExpired:
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(10)
    if proc.stdout is not None:
        proc.stdout.close()


def bench_hub(args: argparse.Namespace, tmp: Path, metrics: bool = False) -> LoadResult:
    """The hub under load; with ``metrics``, serving /metrics and scraped ``args.scrapes`` times a second."""
    tmp = Path(tempfile.mkdtemp(dir=tmp))  # a fresh database and data folder for every run
    db = tmp / "hub.db"
    started = time.perf_counter()
    populate(db, args.players, args.libraries, time.time())
    print(f"populated {args.players} players over {args.libraries} libraries in {time.perf_counter() - started:.1f}s")
    cmd = [sys.executable, "-m", "services.hub", "--data-dir", str(tmp), "--db", str(db),
           "--bind", "tcp://127.0.0.1:0", "--rate", "1000000", "--interval", "1800"]
    if metrics:
        cmd += ["--metrics", "127.0.0.1:0"]
    if args.profile:
        cmd[1:3] = ["-m", "cProfile", "-o", str(Path(args.profile).absolute()), "-m", "services.hub"]
    proc, endpoint = start_server(cmd)
    scraper = None
    if metrics:
        assert proc.stdout is not None
        scraper = Scraper(proc.stdout.readline().rsplit(" ", 1)[-1].strip(), args.scrapes)
        if args.scrapes > 0:
            scraper.start()
    try:
        return run_load(endpoint, args, check=True, server_pid=proc.pid)
    finally:
        if scraper is not None and scraper.is_alive():
            scraper.stop()
            print(f"metrics scraped {scraper.scrapes} times ({scraper.failures} failed) during the load")
        stop_server(proc)


def bench_echo(args: argparse.Namespace) -> LoadResult:
    proc, endpoint = start_server([sys.executable, str(Path(__file__).resolve()), "--echo-server"])
    try:
        return run_load(endpoint, args, check=False, server_pid=proc.pid)
    finally:
        stop_server(proc)


def compare_metrics(args: argparse.Namespace, tmp: Path, first: LoadResult) -> bool:
    """The hub with /metrics on and scraped against it off, in alternating runs (this machine's run-to-run
    spread is larger than the cost measured): the median of each."""
    off, on = [first.per_second], []
    for round_ in range(args.rounds):
        measured = bench_hub(args, tmp, metrics=True)
        report("hub+m", measured)
        on.append(measured.per_second)
        if round_ + 1 < args.rounds:
            plain = bench_hub(args, tmp)
            report("hub", plain)
            off.append(plain.per_second)
    cost = statistics.median(on) / statistics.median(off)
    print(f"with metrics on and scraped {args.scrapes:g}/s: {cost:.1%} of the throughput without, medians of "
          f"{len(on)} and {len(off)} alternating runs (target >= 97%)")
    return cost >= 0.97


def report(name: str, result: LoadResult) -> None:
    print(
        f"{name:5} {result.per_second:9.0f} req/s  p50 {result.p50_ms:6.3f} ms  p99 {result.p99_ms:6.3f} ms"
        f"  server CPU {result.server_cpu_us:5.1f} us/req"
        f"  ({result.requests} replies in {result.seconds:g}s, errors in sampled replies: {result.errors})"
    )


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--players", type=int, default=100_000)
    parser.add_argument("--libraries", type=int, default=1_000)
    parser.add_argument("--clients", type=int, default=64, help="DEALER sockets, one request in flight each")
    parser.add_argument("--procs", type=int, default=2, help="client processes sharing those sockets")
    parser.add_argument("--duration", type=float, default=10.0, help="measured seconds per server")
    parser.add_argument("--warmup", type=float, default=1.0)
    parser.add_argument("--numwant", type=int, default=50)
    parser.add_argument("--metrics", action="store_true",
                        help="also run the hub with /metrics on (scraped --scrapes times a second) and compare")
    parser.add_argument("--rounds", type=int, default=3, help="runs with metrics on (and as many off) to compare")
    parser.add_argument("--scrapes", type=float, default=0.2,
                        help="scrapes per second with --metrics (default: every 5 s, as Prometheus would)")
    parser.add_argument("--profile", default="", help="write a cProfile of the hub to this file")
    parser.add_argument("--echo-server", action="store_true", help=argparse.SUPPRESS)
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.echo_server:
        echo_server()
        return 0
    print(f"{args.clients} clients in {args.procs} processes, {args.duration:g}s measured, numwant {args.numwant}")
    echo = bench_echo(args)
    report("echo", echo)
    with tempfile.TemporaryDirectory(prefix="bench-hub-") as tmp:
        hub = bench_hub(args, Path(tmp))
        report("hub", hub)
        ratio = hub.per_second / echo.per_second
        ok = ratio >= 0.5 and hub.p99_ms < 5
        print(f"hub/echo {ratio:.0%} (target >= 50%), hub p99 {hub.p99_ms:.2f} ms (target < 5 ms)")
        if args.metrics:
            ok = compare_metrics(args, Path(tmp), hub) and ok
    print("targets met" if ok else "TARGET MISSED")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
