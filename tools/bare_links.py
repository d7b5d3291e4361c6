"""The reference for bench_swarm --netns: the same bytes over the same links, with no application.

``bench_swarm --netns`` runs every host of a swarm on one machine, so their
kernels share its cores: each packet a shaped link carries costs a tbf timer,
a veth and bridge crossing and a wakeup of its receiver. The bare run moves the
same bytes between the same hosts over the same links as if every byte were
already where it is sent from: every leecher receives F bytes, a fixed share
from each other host (the seed included), the shares balanced so that every
host would send for the bound's time at its link's rate. Each host runs one
process that sends with sendfile(2) over one TCP connection to each other host
and receives into one buffer, discarding: no protocol, no hashing, no disk. Its
time shows what TCP over these links gives a fixed plan (it is no lower bound:
a swarm can move work away from a lagging connection, a fixed plan cannot), and
its CPU what the links alone cost this machine, which every host shares.

    python tools/bare_links.py --host ADDRESS   (what run() starts on each host; it reads its orders on stdin)
"""

from __future__ import annotations

import json
import select
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from tools.lt_swarm import Node
from tools.machine import busy_since, cpu_times
from tools.procs import end_piped

RECEIVE_BUFFER = 1 << 20
BALANCING_ROUNDS = 200


@dataclass(frozen=True)
class Bare:
    seconds: float  # from "go" to every host done
    hosts: list[float]  # each host's seconds from "go" to done, in order
    busy: float  # the share of the machine's CPU busy meanwhile
    cpu_seconds: float  # CPU-seconds its cores spent busy meanwhile


def plan(uploads: list[float], size: int) -> list[list[int]]:
    """``plan[i][j]``: bytes host ``i`` sends host ``j``. Host 0 is the seed and receives nothing; every other host
    receives ``size`` (within rounding) from the others, and where it can be, every host sends for the same time at
    its upload, ``(len(uploads) - 1) * size / sum(uploads)``: the shares are balanced by alternately scaling what
    each host sends and what each receives (iterative proportional fitting)."""
    count = len(uploads)
    spend = (count - 1) * size / sum(uploads)
    share = [[0.0 if j in (0, i) else up for j in range(count)] for i, up in enumerate(uploads)]
    for _ in range(BALANCING_ROUNDS):
        for i in range(count):
            sent = sum(share[i])
            if sent:  # a lone leecher sends to no one
                share[i] = [value * uploads[i] * spend / sent for value in share[i]]
        for j in range(1, count):  # last, so every host receives ``size`` even where balance cannot be had
            got = sum(share[i][j] for i in range(count))
            for i in range(count):
                share[i][j] *= size / got
    return [[round(value) for value in row] for row in share]


def run(nodes: Sequence[Node], uploads: list[float], stuff: Path, size: int, timeout: float) -> Bare:
    """The bare run on ``nodes`` (the seed first), its links ``uploads`` (bytes/s) apart: the seconds from "go" to
    every host having sent and received its share of ``stuff``'s first ``size`` bytes, and the machine's busy
    share meanwhile. RuntimeError when a host fails, receives less than planned, or is not done in ``timeout``."""
    orders = plan(uploads, size)
    procs: list[subprocess.Popen[str]] = []
    try:
        for host in nodes:
            args = [sys.executable, __file__, "--host", host.address]
            procs.append(subprocess.Popen(host.command(args), stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True))
        ports = [int(json.loads(_line(proc, timeout, "listening"))["port"]) for proc in procs]
        for i, proc in enumerate(procs):
            sends = [[nodes[j].address, ports[j], count] for j, count in enumerate(orders[i]) if count]
            expect = [orders[k][i] for k in range(len(nodes)) if orders[k][i]]
            _write(proc, {"stuff": str(stuff), "sends": sends, "expect": sorted(expect)})
        for proc in procs:
            _line(proc, timeout, "connected")
        ticks, started = cpu_times(), time.monotonic()
        for proc in procs:
            _write(proc, {"go": True})
        hosts = []
        for proc in procs:
            report = json.loads(_line(proc, timeout, "done"))
            if report["error"]:
                raise RuntimeError(f"a bare host failed: {report['error']}")
            hosts.append(float(report["seconds"]))
        return Bare(time.monotonic() - started, hosts, *busy_since(ticks))
    finally:
        end_piped(procs)


def _write(proc: subprocess.Popen[str], message: dict[str, object]) -> None:
    assert proc.stdin is not None
    proc.stdin.write(json.dumps(message) + "\n")
    proc.stdin.flush()


def _line(proc: subprocess.Popen[str], timeout: float, what: str) -> str:
    assert proc.stdout is not None
    ready, _, _ = select.select([proc.stdout], [], [], timeout)
    line = proc.stdout.readline() if ready else ""
    if not line:
        raise RuntimeError(f"a bare host was not {what} within {timeout:g} s (exit {proc.poll()})")
    return line


def host(address: str) -> None:
    """One host: listen, take orders, connect, and on "go" send and receive; print what came of it."""
    listener = socket.create_server((address, 0), backlog=128)
    print(json.dumps({"port": listener.getsockname()[1]}), flush=True)
    orders = json.loads(sys.stdin.readline())
    outgoing = [(socket.create_connection((peer, port)), count) for peer, port, count in orders["sends"]]
    incoming = [listener.accept()[0] for _ in orders["expect"]]
    print(json.dumps({"connected": True}), flush=True)
    json.loads(sys.stdin.readline())  # go
    started = time.monotonic()
    received: list[int] = []
    errors: list[str] = []

    def send(sock: socket.socket, count: int) -> None:
        try:
            with open(orders["stuff"], "rb") as stuff, sock:
                sock.sendfile(stuff, 0, count)
        except OSError as exc:
            errors.append(f"send: {exc}")

    def receive(sock: socket.socket) -> None:
        buffer, got = bytearray(RECEIVE_BUFFER), 0
        with sock:
            while chunk := sock.recv_into(buffer):
                got += chunk
        received.append(got)

    threads = [threading.Thread(target=send, args=pair) for pair in outgoing]
    threads += [threading.Thread(target=receive, args=(sock,)) for sock in incoming]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    if sorted(received) != orders["expect"]:
        errors.append(f"received {sorted(received)} bytes, expected {orders['expect']}")
    print(json.dumps({"error": "; ".join(errors), "seconds": time.monotonic() - started}), flush=True)
    sys.stdin.readline()  # until the parent closes stdin


if __name__ == "__main__":
    if len(sys.argv) == 3 and sys.argv[1] == "--host":
        host(sys.argv[2])
        raise SystemExit(0)
    raise SystemExit(__doc__)
