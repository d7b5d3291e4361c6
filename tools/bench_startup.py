"""How fast the CLI answers: ``emma --help`` and ``emma downloads`` against ``python -c pass``.

    python tools/bench_startup.py --runs 10

Starts a real player (in a temporary data directory, its hub unreachable) so that ``emma
downloads`` does what a person's does: asks the Maestro and prints the list. Each command runs
``--runs`` times, interleaved with the reference ``python -c pass`` (the interpreter's own start,
which no change of ours can shorten), and the median of each is printed with its time over the
reference. Exits 1 when a command's median over the reference is above the target (0.2 s). The
player is stopped by pid at the end. To see what a command imports: ``python -X importtime -m
services.cli --help``.
"""

from __future__ import annotations

import argparse
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from services.cli.launch import alive
from services.runtime import config as config_mod
from services.runtime.rundir import maestro_pid, run_dir

TARGET = 0.2  # seconds over the interpreter's own start
REPO = Path(__file__).resolve().parent.parent


# As a user's shell runs them: Python caches each module's bytecode (an environment that says not to, as a CI job's
# may, would make every run compile every module of ours again, which no user's start pays).
ENV = {name: value for name, value in os.environ.items() if name != "PYTHONDONTWRITEBYTECODE"}


def timed(argv: list[str]) -> float:
    started = time.perf_counter()
    done = subprocess.run(argv, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, cwd=REPO, env=ENV, check=False)
    took = time.perf_counter() - started
    if done.returncode != 0:
        raise SystemExit(f"{' '.join(argv)} failed ({done.returncode}): {done.stderr.decode(errors='replace')}")
    return took


def stop(data: Path) -> None:
    pid = maestro_pid(run_dir(data))
    if not pid or not alive(pid):
        return
    os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + 20
    while alive(pid) and time.monotonic() < deadline:
        time.sleep(0.05)
    if alive(pid):
        os.kill(pid, signal.SIGKILL)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=10, help="runs of each command (default 10)")
    args = parser.parse_args(argv)
    emma = [sys.executable, "-m", "services.cli"]  # what the `emma` console script runs
    with tempfile.TemporaryDirectory(prefix="emma-startup-") as tmp:
        data = Path(tmp) / "data"
        config = config_mod.load(data)
        config.set("hub.port", 9)  # nothing listens there: the player runs, its announces fail quietly
        config.ensure_dirs()
        config.save()
        commands = {
            "python -c pass": [sys.executable, "-c", "pass"],
            "emma --help": [*emma, "--help"],
            "emma downloads": [*emma, "--data-dir", str(data), "downloads"],
        }
        try:
            timed([*emma, "--data-dir", str(data), "peer", "--detach"])
            times: dict[str, list[float]] = {name: [] for name in commands}
            for command in commands.values():
                timed(command)  # warm the file cache and the bytecode
            for _ in range(args.runs):
                for name, command in commands.items():
                    times[name].append(timed(command))
        finally:
            stop(data)
    reference = statistics.median(times["python -c pass"])
    print(f"{'command':16} {'median':>8} {'over python -c pass':>20}   ({args.runs} runs each, interleaved)")
    missed = []
    for name, runs in times.items():
        median = statistics.median(runs)
        over = median - reference
        print(f"{name:16} {median:7.3f}s {over:19.3f}s")
        if name != "python -c pass" and over > TARGET:
            missed.append(f"{name} {over:.3f}s")
    print(f"target: each command within {TARGET} s of python -c pass: " + ("MISSED: " + ", ".join(missed)
                                                                          if missed else "met"))
    return 1 if missed else 0


if __name__ == "__main__":
    raise SystemExit(main())
