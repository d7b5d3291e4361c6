"""Benchmark the hub against a bare pyzmq ROUTER echo under the same client load.

Usage: ``python tools/bench_hub.py [--duration 10] [--clients 64] [--procs 2]``
       ``python tools/bench_hub.py --store redis [--hubs 2]``

Two workloads, each printed with its mix before it runs, on a hub filled with
``--players`` live players spread over ``--libraries`` libraries (one in five
a seed):

- refresh: every request is a periodic re-announce of a random known player
  with ``--numwant`` peers wanted, answered with that many peers and the
  swarm's counts -- the request a hub answers most;
- mixed (``MIX``): refreshes among new players joining (a started announce of
  a player the hub has not seen), completions (a leecher's completed
  announce), scrapes of a few libraries, and players leaving (a stopped
  announce), as a hub of a live swarm sees them.

Every reply is checked against its request: an error reply, or a reply of the
wrong kind, fails the run; so does a run with no reply at all. Targets, for
each workload: the hub answers at least half as many requests per second as
the echo, its p99 latency under 5 ms, and no error reply.

How this works: the real hub (``python -m services.hub``) is started as a
subprocess on a random port, and filled with the players over the wire (a
started announce each, many in flight). ``--procs`` client processes each
drive ``clients / procs`` DEALER sockets from one poller loop, one request in
flight per socket. After a warm-up the run is measured for ``--duration``
seconds. Then the same load, same request bytes, goes to a bare ROUTER echo
server (recv_multipart -> send_multipart) and the figures are compared.
Latency is measured by the clients, send to reply; CPU per request is the
server processes' user + system time over the measured part.

``--store redis`` starts a redis-server, runs the same load on a hub with the
memory store and on one with the Redis store, and prints each one's
throughput and CPU per request (the hub's, and Redis's); target: the Redis hub
answers at least half as many requests per second as the memory hub (the
refresh workload).
``--hubs N`` (with ``--store redis``) also runs N hubs on that one Redis with
the clients' sockets spread over them, and prints the aggregate against one hub.
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

from services.wire.pb import hub_pb2  # noqa: E402
from tools.redis_server import RedisServer, missing_reason  # noqa: E402
from tools.scrape import Scraper  # noqa: E402

_POOL = 4096  # distinct request payloads per client process
SCRAPED = 5  # libraries per scrape request in the mixed workload
MIX = (("refresh", 0.70), ("join", 0.10), ("complete", 0.05), ("scrape", 0.10), ("leave", 0.05))
WORKLOADS = {"refresh": (("refresh", 1.0),), "mixed": MIX}
REPLY_OF = {"refresh": "announce", "join": "announce", "complete": "announce", "leave": "announce",
            "scrape": "scrape"}  # the reply body each request must get


@dataclass
class LoadResult:
    requests: int
    seconds: float
    p50_ms: float
    p99_ms: float
    errors: int
    server_cpu_us: float = 0.0  # server CPU time (user + system) per request, every server process together
    redis_cpu_us: float = 0.0  # the Redis server's, when the hubs use one


    @property
    def per_second(self) -> float:
        return self.requests / self.seconds


def player(n: int) -> tuple[bytes, bytes, str]:
    """Player n: its library id, player id and endpoint."""
    return b"", n.to_bytes(16, "big"), f"tcp://10.{n >> 16 & 255}.{n >> 8 & 255}.{n & 255}:6881"


def library(n: int, libraries: int) -> bytes:
    return (n % libraries).to_bytes(32, "big")


def populate(endpoint: str, players: int, libraries: int, in_flight: int = 32) -> None:
    """Announce every player to the hub once, ``in_flight`` requests at a time (periodic announces, which a
    hub logs only at debug level, as a hub that restarted on an empty store gets them). ``in_flight`` stays
    under the hub's 64 queued replies per connection: past them a ROUTER drops replies."""
    ctx: zmq.Context[zmq.Socket[bytes]] = zmq.Context()
    sock = ctx.socket(zmq.DEALER)
    sock.linger = 0
    sock.sndhwm = sock.rcvhwm = 0
    sock.connect(endpoint)
    sent = answered = refused = 0
    try:
        while answered < players:
            while sent < players and sent - answered < in_flight:
                _, player_id, player_endpoint = player(sent)
                body = hub_pb2.Announce(library_id=library(sent, libraries), player_id=player_id,
                                        endpoint=player_endpoint, left=0 if sent % 5 == 0 else 1)
                sock.send(hub_pb2.HubRequest(version=1, request_id=sent, announce=body).SerializeToString())
                sent += 1
            if not sock.poll(30_000):
                raise SystemExit(f"the hub at {endpoint} stopped answering while being filled")
            refused += hub_pb2.HubReply.FromString(sock.recv()).WhichOneof("body") != "announce"
            answered += 1
    finally:
        sock.close(linger=0)
        ctx.term()
    if refused:
        raise SystemExit(f"the hub refused {refused} of {players} started announces while being filled")


def describe(workload: str) -> str:
    return ", ".join(f"{share:.0%} {kind}" for kind, share in WORKLOADS[workload])


def workload_requests(workload: str, players: int, libraries: int, numwant: int, seed: int
                      ) -> tuple[list[bytes], list[str]]:
    """``_POOL`` requests of ``workload`` for client process ``seed``, and the reply body each one must get.
    Joining players are numbered past the filled ones, apart for each client process."""
    rng = random.Random(seed)
    kinds = [kind for kind, _ in WORKLOADS[workload]]
    shares = [share for _, share in WORKLOADS[workload]]
    payloads, expected = [], []
    for request_id in range(_POOL):
        kind = rng.choices(kinds, shares)[0]
        if kind == "scrape":
            ids = [library(rng.randrange(libraries), libraries) for _ in range(SCRAPED)]
            request = hub_pb2.HubRequest(version=1, request_id=request_id, scrape=hub_pb2.Scrape(library_ids=ids))
        else:
            n = players + seed * _POOL + request_id if kind == "join" else rng.randrange(players)
            _, player_id, endpoint = player(n)
            event = {"join": hub_pb2.STARTED, "complete": hub_pb2.COMPLETED, "leave": hub_pb2.STOPPED}.get(
                kind, hub_pb2.ANNOUNCE_EVENT_UNSPECIFIED)
            seed_now = kind == "complete" or (kind != "join" and n % 5 == 0)
            body = hub_pb2.Announce(
                library_id=library(n, libraries), player_id=player_id, endpoint=endpoint, event=event,
                left=0 if seed_now else 1, uploaded=rng.randrange(1 << 30), numwant=numwant,
            )
            request = hub_pb2.HubRequest(version=1, request_id=request_id, announce=body)
        payloads.append(request.SerializeToString())
        expected.append(REPLY_OF[kind])
    return payloads, expected


def drive(endpoints: list[str], sockets: int, warmup: float, duration: float, payloads: list[bytes],
          expected: list[str], check: bool, start: mp.synchronize.Barrier, results: Connection) -> None:
    """One client process: ``sockets`` DEALERs (spread over ``endpoints``), one request in flight each, until
    the deadline. With ``check``, every reply is decoded, and each that is not the reply its request must get
    (``expected``: an error, or another kind) is an error."""
    ctx: zmq.Context[zmq.Socket[bytes]] = zmq.Context()
    socks = [ctx.socket(zmq.DEALER) for _ in range(sockets)]
    poller = zmq.Poller()
    for index, sock in enumerate(socks):
        sock.linger = 0
        sock.connect(endpoints[index % len(endpoints)])
        poller.register(sock, zmq.POLLIN)
    latencies = array("d")
    errors = 0
    sent_at: dict[zmq.Socket[bytes], float] = {}
    asked: dict[zmq.Socket[bytes], int] = {}
    start.wait()
    begin = time.perf_counter()
    measure_from, end = begin + warmup, begin + warmup + duration
    count = 0
    for sock in socks:
        asked[sock] = count % _POOL
        sock.send(payloads[asked[sock]])
        sent_at[sock] = time.perf_counter()
        count += 1
    while time.perf_counter() < end:
        for sock, _ in poller.poll(100):
            reply = sock.recv()
            now = time.perf_counter()
            if now >= measure_from:
                latencies.append(now - sent_at[sock])
            if check:
                errors += hub_pb2.HubReply.FromString(reply).WhichOneof("body") != expected[asked[sock]]
            asked[sock] = count % _POOL
            sock.send(payloads[asked[sock]])
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


def run_load(endpoints: list[str], args: argparse.Namespace, check: bool, server_pids: list[int],
             redis_pid: int = 0, workload: str = "refresh") -> LoadResult:
    """Drive ``args.clients`` sockets from ``args.procs`` processes with ``workload``; merge their latencies."""
    spawn = mp.get_context("spawn")
    barrier = spawn.Barrier(args.procs)
    procs, pipes = [], []
    for index in range(args.procs):
        share = args.clients // args.procs + (index < args.clients % args.procs)
        payloads, expected = workload_requests(workload, args.players, args.libraries, args.numwant, seed=index)
        receiver, sender = spawn.Pipe(duplex=False)
        proc = spawn.Process(
            target=drive,
            args=(endpoints, share, args.warmup, args.duration, payloads, expected, check, barrier, sender),
        )
        proc.start()
        sender.close()
        procs.append(proc)
        pipes.append(receiver)
    time.sleep(args.warmup)  # the clients' own warm-up: CPU is counted over the measured part only
    cpu_before = sum(map(cpu_seconds, server_pids))
    redis_before = cpu_seconds(redis_pid) if redis_pid else 0.0
    latencies = array("d")
    errors = 0
    cpu_after = redis_after = 0.0
    for receiver, proc in zip(pipes, procs, strict=True):
        raw, errs = receiver.recv()
        if not cpu_after:
            cpu_after = sum(map(cpu_seconds, server_pids))
            redis_after = cpu_seconds(redis_pid) if redis_pid else 0.0
        latencies.frombytes(raw)
        errors += errs
        receiver.close()
        proc.join(30)
    ordered = sorted(latencies)
    if not ordered:
        raise SystemExit(f"no replies from {', '.join(endpoints)}: is the server up?")
    return LoadResult(
        requests=len(ordered),
        seconds=args.duration,
        p50_ms=statistics.median(ordered) * 1000,
        p99_ms=ordered[int(len(ordered) * 0.99)] * 1000,
        errors=errors,
        server_cpu_us=(cpu_after - cpu_before) / len(ordered) * 1e6,
        redis_cpu_us=(redis_after - redis_before) / len(ordered) * 1e6,
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
    proc = subprocess.Popen(cmd, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
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


def bench_hub(args: argparse.Namespace, tmp: Path, metrics: bool = False, store: str = "sqlite", hubs: int = 1,
              redis: RedisServer | None = None, workload: str = "refresh") -> LoadResult:
    """The hub (``hubs`` of them on one Redis) under ``workload``; with ``metrics``, serving /metrics and scraped
    ``args.scrapes`` times a second."""
    tmp = Path(tempfile.mkdtemp(dir=tmp))  # a fresh database and data folder for every run
    if redis is not None:
        redis.stop()
        redis.start()  # empty, as every other store starts
    started_servers: list[subprocess.Popen[str]] = []
    endpoints: list[str] = []
    scraper = None
    try:
        for n in range(hubs):
            cmd = [sys.executable, "-m", "services.hub", "--data-dir", str(tmp / f"hub{n}"), "--store", store,
                   "--bind", "tcp://127.0.0.1:0", "--rate", "1000000", "--interval", "1800",
                   "--no-encryption"]  # the clients below speak in clear: the hub's own work is what is measured
            cmd += ["--redis", redis.url] if redis is not None else ["--db", str(tmp / f"hub{n}.db")]
            if metrics:
                cmd += ["--metrics", "127.0.0.1:0"]
            if args.profile and n == 0:
                cmd[1:3] = ["-m", "cProfile", "-o", str(Path(args.profile).absolute()), "-m", "services.hub"]
            proc, endpoint = start_server(cmd)
            started_servers.append(proc)
            endpoints.append(endpoint)
        begun = time.perf_counter()
        populate(endpoints[0], args.players, args.libraries)
        print(f"filled the {store} hub with {args.players} players over {args.libraries} libraries in "
              f"{time.perf_counter() - begun:.1f}s")
        if metrics:
            proc = started_servers[0]
            assert proc.stdout is not None
            scraper = Scraper(proc.stdout.readline().rsplit(" ", 1)[-1].strip(), args.scrapes)
            if args.scrapes > 0:
                scraper.start()
        return run_load(endpoints, args, check=True, server_pids=[p.pid for p in started_servers],
                        redis_pid=redis.pid if redis is not None else 0, workload=workload)
    finally:
        if scraper is not None and scraper.is_alive():
            scraper.stop()
            print(f"metrics scraped {scraper.scrapes} times ({scraper.failures} failed) during the load")
        for proc in started_servers:
            stop_server(proc)


def bench_echo(args: argparse.Namespace) -> LoadResult:
    proc, endpoint = start_server([sys.executable, str(Path(__file__).resolve()), "--echo-server"])
    try:
        return run_load([endpoint], args, check=False, server_pids=[proc.pid])
    finally:
        stop_server(proc)


def compare_metrics(args: argparse.Namespace, tmp: Path, first: LoadResult) -> bool:
    """The hub with /metrics on and scraped against it off, in alternating runs (this machine's run-to-run
    spread is larger than the cost measured): the median of each."""
    off, on = [first.per_second], []
    measured_runs = []
    for round_ in range(args.rounds):
        measured = bench_hub(args, tmp, metrics=True)
        report("hub+m", measured)
        on.append(measured.per_second)
        measured_runs.append(measured)
        if round_ + 1 < args.rounds:
            plain = bench_hub(args, tmp)
            report("hub", plain)
            off.append(plain.per_second)
            measured_runs.append(plain)
    errors = sum(result.errors for result in measured_runs)
    cost = statistics.median(on) / statistics.median(off)
    print(f"with metrics on and scraped {args.scrapes:g}/s: {cost:.1%} of the throughput without, medians of "
          f"{len(on)} and {len(off)} alternating runs (target >= 97%); error replies {errors} (target 0)")
    return cost >= 0.97 and errors == 0


def report(name: str, result: LoadResult) -> None:
    redis = f" + Redis {result.redis_cpu_us:5.1f}" if result.redis_cpu_us else ""
    print(
        f"{name:8} {result.per_second:9.0f} req/s  p50 {result.p50_ms:6.3f} ms  p99 {result.p99_ms:6.3f} ms"
        f"  server CPU {result.server_cpu_us:5.1f}{redis} us/req"
        f"  ({result.requests} replies in {result.seconds:g}s, error replies: {result.errors})"
    )


def compare_stores(args: argparse.Namespace, tmp: Path, echo: LoadResult) -> bool:
    """The memory store and the Redis store under the same load, then ``args.hubs`` hubs on the one Redis."""
    with RedisServer(tmp / "redis") as redis:
        memory = bench_hub(args, tmp, store="memory")
        report("memory", memory)
        shared = bench_hub(args, tmp, store="redis", redis=redis)
        report("redis", shared)
        ratio = shared.per_second / memory.per_second
        print(f"redis/memory {ratio:.0%} per hub (target >= 50%); redis/echo {shared.per_second / echo.per_second:.0%}")
        ok = ratio >= 0.5 and memory.errors == 0 and shared.errors == 0
        if args.hubs > 1:
            several = bench_hub(args, tmp, store="redis", hubs=args.hubs, redis=redis)
            report(f"redis x{args.hubs}", several)
            print(f"{args.hubs} hubs on one Redis: {several.per_second / shared.per_second:.2f}x one hub's "
                  f"throughput (this machine has {os.cpu_count()} cores for clients, hubs and Redis together)")
            ok = ok and several.errors == 0
    return ok


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
    parser.add_argument("--store", choices=("sqlite", "memory", "redis"), default="sqlite",
                        help="the hub's store; redis also runs memory for the comparison (needs redis-server)")
    parser.add_argument("--hubs", type=int, default=1, help="with --store redis: also run this many hubs on it")
    parser.add_argument("--profile", default="", help="write a cProfile of the hub to this file")
    parser.add_argument("--echo-server", action="store_true", help=argparse.SUPPRESS)
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.echo_server:
        echo_server()
        return 0
    if args.store == "redis" and missing_reason():
        raise SystemExit(missing_reason())
    if args.hubs > 1 and args.store != "redis":
        raise SystemExit("--hubs N needs --store redis: hubs share one store only through Redis")
    print(f"a hub filled with {args.players} live players over {args.libraries} libraries, numwant "
          f"{args.numwant}; {args.clients} clients in {args.procs} processes, {args.duration:g}s measured")
    echo = bench_echo(args)
    report("echo", echo)
    with tempfile.TemporaryDirectory(prefix="bench-hub-") as tmp:
        if args.store == "redis":
            print(f"workload refresh: {describe('refresh')}")
            ok = compare_stores(args, Path(tmp), echo)
        else:
            ok = True
            for workload in WORKLOADS:
                print(f"workload {workload}: {describe(workload)}")
                hub = bench_hub(args, Path(tmp), store=args.store, workload=workload)
                report(workload, hub)
                ratio = hub.per_second / echo.per_second
                met = ratio >= 0.5 and hub.p99_ms < 5 and hub.errors == 0
                print(f"{workload}: hub/echo {ratio:.0%} (target >= 50%), hub p99 {hub.p99_ms:.2f} ms (target < 5 ms)"
                      f", error replies {hub.errors} (target 0): {'met' if met else 'NOT met'}")
                ok = ok and met
                if args.metrics and workload == "refresh":
                    ok = compare_metrics(args, Path(tmp), hub) and ok
    print("targets met" if ok else "TARGET MISSED")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
