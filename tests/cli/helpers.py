"""Shared helpers for the CLI tests: the typer runner, one-line errors, real processes ended by pid."""

from __future__ import annotations

import json
import os
import re
import signal
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from typer.testing import CliRunner, Result

from services.cli.app import app
from services.cli.launch import alive
from services.runtime import config as config_mod
from services.runtime.rundir import maestro_pid, run_dir
from services.wire import curve
from tools.procs import ProcessGroup

runner = CliRunner()
ANSI = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]|\x1b[()][A-Z0-9]|\r")


def emma(data: Path, *args: str, stdin: str | None = None) -> Result:
    return runner.invoke(app, ["--data-dir", str(data), *args], input=stdin)


def ctrl_c_reaches_it() -> None:
    """A pty child's preexec: Ctrl-C interrupts it, as it would a person's. A suite started from a background
    job inherits SIGINT ignored, and Python leaves an ignored SIGINT ignored."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def assert_one_line_error(result: Result, text: str, code: int = 2) -> None:
    assert result.exit_code == code, result.output
    assert result.exception is None or isinstance(result.exception, SystemExit), result.exception
    lines = result.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), result.stderr
    assert text in lines[0], lines[0]
    assert "Traceback" not in result.output


def assert_json_error(result: Result, text: str, code: int = 2) -> None:
    """The ``--json`` form of a one-line error: one JSON object ``{"error": ...}`` on stdout, nothing on stderr."""
    assert result.exit_code == code, result.output
    assert result.stderr == "", result.stderr
    lines = result.stdout.splitlines()
    assert len(lines) == 1, result.stdout
    assert text in json.loads(lines[0])["error"], lines[0]


def configure(data: Path, **values: object) -> config_mod.Config:
    """Write a config for ``data`` (keys with '_' for '.', e.g. hub_port=7071)."""
    config = config_mod.load(data)
    for key, value in values.items():
        config.set(key.replace("_", ".", 1), value)
    config.ensure_dirs()
    config.save()
    return config


def stop_maestro(data: Path, timeout: float = 60.0) -> None:
    """End the Maestro of ``data`` (started in the background by a test or a console) by its pid."""
    pid = maestro_pid(run_dir(data))
    if not pid or not alive(pid):
        return
    os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + timeout
    while alive(pid):
        if time.monotonic() > deadline:
            os.kill(pid, signal.SIGKILL)
            break
        time.sleep(0.05)


@contextmanager
def detached_player(data: Path) -> Iterator[Path]:
    """A player of ``data`` running in the background (`emma peer --detach`), its hub unreachable so that its
    announces fail quietly; its Maestro is ended by pid afterwards."""
    configure(data, hub_port=9)
    try:
        started = emma(data, "peer", "--detach")
        assert started.exit_code == 0, started.output
        yield data
    finally:
        stop_maestro(data)


class Hub:
    """``python -m services.hub`` on a random loopback port with a memory store; ended by pid in ``stop``."""

    def __init__(self, root: Path) -> None:
        self.group = ProcessGroup(root)
        proc = self.group.start("hub", ["-m", "services.hub", "--bind", "tcp://127.0.0.1:0", "--db",
                                        str(root / "hub.db"), "--store", "memory", "--data-dir", str(root)])
        try:
            self.endpoint = self.group.wait_for_endpoint(proc)  # from its "hub listening on tcp://..." line
        except (RuntimeError, TimeoutError):
            self.stop()
            raise
        self.ip, port = self.endpoint.removeprefix("tcp://").rsplit(":", 1)
        self.port = int(port)
        self.key = curve.load_or_create(root).public.decode()  # the key pair it made in its data directory

    def stop(self) -> None:
        self.group.stop_all()
