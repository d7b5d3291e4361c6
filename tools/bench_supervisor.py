"""How fast the Maestro notices a crash or a hang and has the service back.

    python tools/bench_supervisor.py --trials 10

Each trial starts a real player (Maestro + Distributor + Requestor) in a
temporary data directory, SIGKILLs one child (crash) and SIGSTOPs the other
(hang), and measures: detection = the Maestro's ``service_failed`` log event
minus the moment of the signal; back to serving = the moment the control
socket reports a new pid RUNNING (it has sent a heartbeat from its main loop)
minus the SIGKILL. Prints median and worst of each against the targets:
crash <= 0.2 s, hang <= 1.5 s, back to serving <= 1 s. A failure the Maestro
never logged (a missed detection) or a service that is not back within 20 s
is a miss, never a fast result: any miss fails the run.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import datetime
from pathlib import Path
from typing import IO

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from services.runtime import config as config_mod
from services.runtime.rundir import run_dir
from services.supervisor.control_client import ControlClient, MaestroNotRunning
from services.wire.pb import control_pb2

TARGETS = {"crash detection": 0.2, "hang detection": 1.5, "back to serving": 1.0}


def running_pid(client: ControlClient, service: str) -> int:
    try:
        for status in client.services():
            if status.name == service and status.state == control_pb2.RUNNING:
                return status.pid
    except MaestroNotRunning:
        pass
    return 0


def failure_time(log: Path, service: str, after: float) -> float | None:
    for line in log.read_text().splitlines():
        record = json.loads(line)
        if record.get("event") in ("service_failed", "service_fatal") and record.get("service") == service:
            stamp = datetime.fromisoformat(record["timestamp"].replace("Z", "+00:00")).timestamp()
            if stamp >= after - 0.01:
                return stamp
    return None


def trial(client: ControlClient, log: Path, service: str, sig: int) -> tuple[float, float]:
    """Returns (detection, back-to-serving) in seconds for one signal to one service."""
    deadline = time.monotonic() + 20
    while not (old := running_pid(client, service)):
        if time.monotonic() > deadline:
            raise SystemExit(f"{service} never became RUNNING")
        time.sleep(0.01)
    sent = time.time()
    os.kill(old, sig)
    while running_pid(client, service) in (0, old):
        if time.monotonic() > deadline:
            raise SystemExit(f"{service} was not replaced within 20 s")
        time.sleep(0.005)
    back = time.time() - sent
    detected = None
    while detected is None and time.monotonic() < deadline:
        detected = failure_time(log, service, sent)
        time.sleep(0.01)
    if sig == signal.SIGSTOP:
        try:
            os.kill(old, signal.SIGCONT)
        except ProcessLookupError:
            pass
    return (detected - sent if detected is not None else float("nan")), back


def report(name: str, values: list[float]) -> bool:
    """Print the median and worst of ``values`` against the target; a NaN is a miss, and fails it."""
    target = TARGETS[name]
    measured = [value for value in values if not math.isnan(value)]
    missed = len(values) - len(measured)
    if not measured:
        print(f"{name:16} no measurement: {missed} of {len(values)} missed   NOT met")
        return False
    median, worst = statistics.median(measured), max(measured)
    ok = worst <= target and not missed
    print(f"{name:16} median {median * 1000:7.1f} ms   worst {worst * 1000:7.1f} ms   target <= {target * 1000:.0f} ms"
          + (f"   {missed} of {len(values)} MISSED" if missed else "") + f"   {'met' if ok else 'NOT met'}")
    return ok


def start_maestro(data: Path) -> tuple[subprocess.Popen[bytes], IO[bytes]]:
    out = open(data / "maestro.out", "ab")  # noqa: SIM115 - closed by stop_maestro
    maestro = subprocess.Popen([sys.executable, "-m", "services.supervisor.maestro", "--data-dir", str(data)],
                               stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
    return maestro, out


def stop_maestro(maestro: subprocess.Popen[bytes], out: IO[bytes]) -> None:
    maestro.send_signal(signal.SIGTERM)
    try:
        maestro.wait(20)
    except subprocess.TimeoutExpired:
        maestro.kill()
        maestro.wait()
    out.close()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Measure the Maestro's crash/hang detection and respawn times.")
    parser.add_argument("--trials", type=int, default=10)
    args = parser.parse_args(argv)
    crash: list[float] = []
    hang: list[float] = []
    back: list[float] = []
    with tempfile.TemporaryDirectory(prefix="emma-bench-sup-") as tmp:
        data = Path(tmp)
        config = config_mod.load(data)
        config.set("hub.port", 9)
        config.ensure_dirs()
        config.save()
        client = ControlClient(run_dir(data), timeout=2.0)
        log = data / "logs" / "services.log"
        for i in range(args.trials):
            # A fresh Maestro per trial, so every failure measured is a first one (backoff 0.1 s).
            crashed, hung = ("distributor", "requestor") if i % 2 == 0 else ("requestor", "distributor")
            maestro, out = start_maestro(data)
            try:
                detected, returned = trial(client, log, crashed, signal.SIGKILL)
                crash.append(detected)
                back.append(returned)
                detected, _ = trial(client, log, hung, signal.SIGSTOP)
                hang.append(detected)
            finally:
                stop_maestro(maestro, out)
    print(f"{args.trials} trials of each, heartbeat interval {config.get('maestro.heartbeat_interval')} s")
    ok = report("crash detection", crash) & report("hang detection", hang)
    ok &= report("back to serving", back)
    print("(back to serving: from the SIGKILL to the new process's first heartbeat from its main loop)")
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
