"""The run folder, ``<data>/run/``: where a player's processes meet, and the names of its services.

Every file and socket in the run folder is named here and nowhere else; every process
(the Maestro, the Distributor, the Requestor, the CLI, the tools) reaches them through
these functions.

- ``control.sock``         the Maestro's control socket (ROUTER; the CLI asks, the Maestro answers)
- ``heartbeat.sock``       the Maestro's heartbeat socket (PULL; each service beats)
- ``notify.sock``          the Distributor's notice socket (PULL; the Requestor says what changed)
- ``requestor.sock``       the Requestor's command socket (ROUTER; the Maestro forwards what a CLI asked that
                           changes the player's libraries: get, pause, resume, remove, share)
- ``maestro.pid``          the running Maestro's pid
- ``maestro.lock``         held (flock) by the one Maestro of this data folder
- ``distributor.endpoint`` the endpoint the Distributor bound (tcp://host:port)
- ``metrics.url``          where a Maestro serving /metrics serves it
"""

from __future__ import annotations

import os
from pathlib import Path

RUN_FOLDER = "run"  # in the data folder
DISTRIBUTOR = "distributor"
REQUESTOR = "requestor"
MAESTRO = "maestro"
# The services a Maestro runs, each with the module it runs (``python -m MODULE``), in start order.
SERVICES = {DISTRIBUTOR: "services.peer.distributor", REQUESTOR: "services.peer.requestor"}

CONTROL_SOCKET = "control.sock"
HEARTBEAT_SOCKET = "heartbeat.sock"
NOTIFY_SOCKET = "notify.sock"
REQUESTOR_SOCKET = "requestor.sock"
MAESTRO_PID = "maestro.pid"
MAESTRO_LOCK = "maestro.lock"
DISTRIBUTOR_ENDPOINT = "distributor.endpoint"
METRICS_URL = "metrics.url"
# What a Maestro removes as it stops (the lock file stays: it is only ever locked, never trusted for content).
MAESTRO_LEFTOVERS = (CONTROL_SOCKET, HEARTBEAT_SOCKET, MAESTRO_PID)


def run_dir(data_dir: Path) -> Path:
    return data_dir / RUN_FOLDER


def make(run_dir: Path) -> None:
    """Make the run folder, for its owner alone whatever the umask: its sockets take commands (add a library,
    change a setting, "this book landed"), and the folder's mode is what keeps the machine's other users from
    them. A folder left open by an older version or a loose umask is closed again (when it is ours)."""
    run_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
    try:
        if run_dir.stat().st_mode & 0o077:
            os.chmod(run_dir, 0o700)
    except OSError:
        pass  # not ours to change: whoever owns it chose


def control_endpoint(run_dir: Path) -> str:
    return f"ipc://{run_dir / CONTROL_SOCKET}"


def heartbeat_endpoint(run_dir: Path) -> str:
    return f"ipc://{run_dir / HEARTBEAT_SOCKET}"


def notify_endpoint(run_dir: Path) -> str:
    return f"ipc://{run_dir / NOTIFY_SOCKET}"


def requestor_endpoint(run_dir: Path) -> str:
    return f"ipc://{run_dir / REQUESTOR_SOCKET}"


def control_socket(run_dir: Path) -> Path:
    return run_dir / CONTROL_SOCKET


def pid_file(run_dir: Path) -> Path:
    return run_dir / MAESTRO_PID


def lock_file(run_dir: Path) -> Path:
    return run_dir / MAESTRO_LOCK


def distributor_endpoint_file(run_dir: Path) -> Path:
    return run_dir / DISTRIBUTOR_ENDPOINT


def metrics_url_file(run_dir: Path) -> Path:
    """Where a Maestro serving /metrics writes its URL (the port may have been chosen by the system)."""
    return run_dir / METRICS_URL


def maestro_pid(run_dir: Path) -> int:
    """The pid in ``maestro.pid``, or 0 when there is none."""
    try:
        return int(pid_file(run_dir).read_text().strip())
    except (OSError, ValueError):
        return 0


def distributor_endpoint(run_dir: Path) -> str:
    """The endpoint the Distributor bound, or "" before it has."""
    try:
        return distributor_endpoint_file(run_dir).read_text().strip()
    except OSError:
        return ""
