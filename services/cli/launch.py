"""Starting a player in the background and stopping it: shared by ``emma peer`` and the console.

``start_in_background`` spawns ``python -m services.supervisor.maestro`` in its
own session (it outlives the command that started it) and returns once the
Maestro reports both services RUNNING. ``stop`` asks the Maestro to shut down
and waits until its process is gone.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

from services.runtime import config as config_mod
from services.runtime.config import Config
from services.runtime.rundir import SERVICES, maestro_pid
from services.supervisor.control_client import ControlClient, ControlError, MaestroNotRunning
from services.wire.pb import control_pb2

START_TIMEOUT = 20.0
STOP_TIMEOUT = 20.0  # past the stop grace: the Maestro has killed its services by then, and exits


class PlayerError(RuntimeError):
    """The player could not be started or stopped; the message says what to do."""


def is_running(run_dir: Path) -> bool:
    """Whether a Maestro answers on this data directory's control socket."""
    try:
        ControlClient(run_dir, timeout=1.0).services()
    except MaestroNotRunning:
        return False
    except ControlError:
        return True  # it answered, if with an error
    return True


def start_in_background(config: Config, timeout: float = START_TIMEOUT) -> int:
    """Start this data directory's player detached; return the Maestro's pid once its services run."""
    data_dir, run_dir = config.data_dir, config.run_dir
    if is_running(run_dir):
        raise PlayerError(f"a player already runs for {data_dir}; stop it with `emma peer stop`")
    config.ensure_dirs()
    out_path = data_dir / "logs" / "maestro.out"
    try:
        with out_path.open("ab") as out:  # what the Maestro prints goes there: the folder must take it
            said_from = out.tell()
    except OSError as exc:
        raise PlayerError(f"cannot write {out_path}: {exc.strerror or exc}; the player needs its data folder "
                          "writable") from exc
    pid = _spawn_detached(out_path, [sys.executable, "-m", "services.supervisor.maestro", "--data-dir", str(data_dir)])
    client = ControlClient(run_dir, timeout=1.0)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not alive(pid):
            raise PlayerError(_exit_reason(out_path, said_from))
        if maestro_pid(run_dir) != pid:
            time.sleep(0.1)  # what answers may be another Maestro, started at the same moment, that ours loses to
            continue
        if services_running(client):
            return pid
        fatal = fatal_services(client)
        if fatal:
            raise PlayerError(f"the player runs (pid {pid}), but {'; '.join(fatal)}; fix that, then "
                              f"`emma services --start NAME` (or `emma peer stop`)")
        time.sleep(0.1)
    raise PlayerError(f"the player did not report its services running within {timeout:g} s; "
                      f"see {data_dir / 'logs'}")


def _exit_reason(out_path: Path, said_from: int) -> str:
    """Why the Maestro exited at start: the ``error:`` line it printed into ``out_path`` past ``said_from`` (another
    player runs, state.db cannot be used), else where to look."""
    try:
        with out_path.open("rb") as out:
            out.seek(said_from)
            said = out.read(64 * 1024).decode("utf-8", "replace").splitlines()
    except OSError:
        said = []
    errors = [line.removeprefix("error: ") for line in said if line.startswith("error: ")]
    return errors[-1] if errors else f"the player exited at start; see {out_path}"


# A throwaway parent: it starts the Maestro in a new session and exits, so the Maestro is
# nobody's child here (no zombie, no Popen left to reap) and outlives this command.
_LAUNCHER = """
import subprocess, sys
with open(sys.argv[1], "ab") as out:
    proc = subprocess.Popen(sys.argv[2:], stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT,
                            start_new_session=True)
print(proc.pid)
"""


def _spawn_detached(out_path: Path, argv: list[str]) -> int:
    try:
        done = subprocess.run([sys.executable, "-c", _LAUNCHER, str(out_path), *argv], capture_output=True,
                              text=True, timeout=30, stdin=subprocess.DEVNULL, check=True)
        return int(done.stdout.strip())
    except (OSError, subprocess.SubprocessError, ValueError) as exc:
        raise PlayerError(f"cannot start the player: {exc}") from exc


def fatal_services(client: ControlClient) -> list[str]:
    """Of the Maestro behind ``client``, each service that gave up (FATAL), with why."""
    try:
        statuses = client.services()
    except MaestroNotRunning:
        return []
    return [f"its {s.name} cannot run: {s.detail}" for s in statuses if s.state == control_pb2.FATAL]


def services_running(client: ControlClient) -> bool:
    """The Maestro behind ``client`` has its Distributor and Requestor RUNNING."""
    try:
        states = {s.name: s.state for s in client.services()}
    except MaestroNotRunning:
        return False
    return all(states.get(name) == control_pb2.RUNNING for name in SERVICES)


def stop(run_dir: Path) -> None:
    """Ask the Maestro to shut down and wait until its process has exited.

    Raises MaestroNotRunning when no player runs, PlayerError when it outlives its services' stop grace
    (``maestro.stop_grace``, after which it kills them) by STOP_TIMEOUT.
    """
    timeout = config_mod.load(run_dir.parent).get("maestro.stop_grace") + STOP_TIMEOUT
    pid = maestro_pid(run_dir)
    ControlClient(run_dir).shutdown()
    deadline = time.monotonic() + timeout
    while pid and alive(pid):
        if time.monotonic() > deadline:
            raise PlayerError(f"the player (pid {pid}) still runs after {timeout:g} s; end it with `kill {pid}`")
        time.sleep(0.05)


def alive(pid: int) -> bool:
    """Whether ``pid`` is a live process (a zombie waiting to be reaped counts as gone)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except (OSError, IndexError):
        return True
