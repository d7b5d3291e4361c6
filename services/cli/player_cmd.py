"""Commands that talk to a running player: ``peer``, ``services``, ``downloads``, ``get``,
``pause``, ``resume``, ``remove``."""

from __future__ import annotations

import json
import logging
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, TypeVar

import typer

from services.cli.context import cli_context, fail
from services.peer.library import LibraryError, read_library
from services.runtime.logs import setup_logging
from services.supervisor.control_client import ControlClient, ControlError, MaestroNotRunning
from services.supervisor.maestro import AlreadyRunning, Maestro
from services.wire.pb import control_pb2

peer_app = typer.Typer(help="Run or stop this data directory's player (Maestro + services).",
                       invoke_without_command=True)

T = TypeVar("T")
START_HINT = "start one with `emma peer --detach`"


def _client(ctx: typer.Context) -> ControlClient:
    return ControlClient(cli_context(ctx).config().run_dir)


def _call(ctx: typer.Context, action: str, fn: Callable[[], T]) -> T:
    try:
        return fn()
    except MaestroNotRunning as exc:
        fail(f"{exc}; {START_HINT}")
    except ControlError as exc:
        fail(f"{action}: {exc}")


@peer_app.callback()
def peer(
    ctx: typer.Context,
    detach: Annotated[bool, typer.Option("--detach", help="Run in the background; return once it serves.")] = False,
) -> None:
    """Start the player (Maestro, Distributor, Requestor) in the foreground."""
    if ctx.invoked_subcommand is not None:
        return
    config = cli_context(ctx).config()
    config.ensure_dirs()
    if detach:
        _detach(config.data_dir, config.run_dir)
        return
    setup_logging(config.data_dir, process="maestro", console_level=logging.INFO)
    try:
        maestro = Maestro(config)
    except AlreadyRunning as exc:
        fail(str(exc))
    signal.signal(signal.SIGTERM, maestro.stop)
    signal.signal(signal.SIGINT, maestro.stop)
    typer.echo(f"player running for {config.data_dir} (pid {os.getpid()}); Ctrl-C stops it")
    maestro.run()


def _detach(data_dir: Path, run_dir: Path) -> None:
    client = ControlClient(run_dir, timeout=1.0)
    try:
        client.services()
        fail(f"a player already runs for {data_dir}; stop it with `emma peer stop`")
    except MaestroNotRunning:
        pass
    log = open(data_dir / "logs" / "maestro.out", "ab")  # noqa: SIM115 - handed to the child
    proc = subprocess.Popen([sys.executable, "-m", "services.supervisor.maestro", "--data-dir", str(data_dir)],
                            stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    log.close()
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            fail(f"the player exited at start (status {proc.returncode}); see {data_dir / 'logs' / 'maestro.out'}")
        try:
            states = {s.name: s.state for s in client.services()}
            if all(states.get(n) == control_pb2.RUNNING for n in ("distributor", "requestor")):
                typer.echo(f"player running for {data_dir} (pid {proc.pid})")
                return
        except MaestroNotRunning:
            pass
        time.sleep(0.1)
    fail(f"the player did not report its services running within 20 s; see {data_dir / 'logs'}")


@peer_app.command("stop")
def peer_stop(ctx: typer.Context) -> None:
    """Stop the player: services announce `stopped` and flush their state."""
    client = _client(ctx)
    pid_file = client.run_dir / "maestro.pid"
    pid = int(pid_file.read_text()) if pid_file.exists() else 0
    _call(ctx, "stop", client.shutdown)
    deadline = time.monotonic() + 20
    while pid and time.monotonic() < deadline:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            break
        time.sleep(0.05)
    typer.echo("player stopped")


@peer_app.command("status")
def peer_status(ctx: typer.Context, json_out: Annotated[bool, typer.Option("--json")] = False) -> None:
    """Whether a player runs for this data directory, and its services."""
    services(ctx, json_out=json_out, start=None, stop=None)


def _state_name(state: int) -> str:
    return control_pb2.ServiceState.Name(state)  # type: ignore[arg-type]


def services(
    ctx: typer.Context,
    json_out: Annotated[bool, typer.Option("--json", help="Print as JSON.")] = False,
    start: Annotated[str | None, typer.Option(help="Start a service that is OFF or FATAL.")] = None,
    stop: Annotated[str | None, typer.Option(help="Stop one service.")] = None,
) -> None:
    """The Maestro, Distributor and Requestor: state, pid, uptime, restarts."""
    client = _client(ctx)
    if start:
        typer.echo(_call(ctx, "start", lambda: client.service(start, True)))
    if stop:
        typer.echo(_call(ctx, "stop", lambda: client.service(stop, False)))
    rows: list[control_pb2.ServiceStatus] = _call(ctx, "services", client.services)
    if json_out:
        typer.echo(json.dumps([{"name": s.name, "state": _state_name(s.state), "pid": s.pid,
                                "uptime": round(s.uptime, 2), "restarts": s.restarts,
                                "heartbeat_age": round(s.heartbeat_age, 3), "detail": s.detail} for s in rows]))
        return
    typer.echo(f"{'service':12} {'state':9} {'pid':>7} {'uptime':>9} {'restarts':>8}  detail")
    for s in rows:
        pid = s.pid or "-"
        typer.echo(f"{s.name:12} {_state_name(s.state):9} {pid:>7} {s.uptime:8.1f}s {s.restarts:>8}  {s.detail}")


def _human(n: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if abs(n) < 1024 or unit == "TiB":
            return f"{n:.1f} {unit}" if unit != "B" else f"{int(n)} B"
        n /= 1024
    return f"{n:.1f} TiB"


def download_rows(items: list[control_pb2.Download]) -> list[dict[str, object]]:
    return [{"id": d.library_id, "name": d.name, "size": d.size, "books": d.books_total, "have": d.books_have,
             "progress": round(100.0 * d.books_have / d.books_total, 1) if d.books_total else 100.0,
             "download_rate": round(d.download_rate), "upload_rate": round(d.upload_rate), "peers": d.peers,
             "state": d.state, "path": d.path} for d in items]


def downloads(
    ctx: typer.Context,
    json_out: Annotated[bool, typer.Option("--json", help="Print as JSON.")] = False,
) -> None:
    """Libraries this player downloads or seeds, with progress and rates."""
    client = _client(ctx)
    rows = download_rows(_call(ctx, "downloads", client.downloads))
    if json_out:
        typer.echo(json.dumps(rows))
        return
    if not rows:
        typer.echo("no libraries yet: `emma get LIB` or `emma share FILE`")
        return
    typer.echo(f"{'id':12} {'name':24} {'size':>10} {'progress':>8} {'down/s':>10} {'up/s':>10} {'peers':>5}  state")
    for r in rows:
        typer.echo(f"{str(r['id'])[:12]:12} {str(r['name'])[:24]:24} {_human(float(str(r['size']))):>10} "
                   f"{r['progress']:>7}% {_human(float(str(r['download_rate']))):>10} "
                   f"{_human(float(str(r['upload_rate']))):>10} {r['peers']:>5}  {r['state']}")


def get(
    ctx: typer.Context,
    lib: Annotated[Path, typer.Argument(help="A .lib file to download.")],
    wait: Annotated[bool, typer.Option("--wait", help="Show a progress bar until the download completes.")] = False,
    timeout: Annotated[float, typer.Option(help="With --wait: give up after this many seconds.")] = 0.0,
) -> None:
    """Download LIB with the running player."""
    try:
        library = read_library(lib)
    except LibraryError as exc:
        fail(str(exc))
    client = _client(ctx)
    typer.echo(_call(ctx, "get", lambda: client.add(lib.absolute())))
    if wait:
        _wait(ctx, client, library.id_hex, library.size, timeout)


def _wait(ctx: typer.Context, client: ControlClient, library_id: str, size: int, timeout: float) -> None:
    from rich.progress import BarColumn, DownloadColumn, Progress, TextColumn, TransferSpeedColumn

    deadline = time.monotonic() + timeout if timeout else float("inf")
    with Progress(TextColumn("{task.description}"), BarColumn(), DownloadColumn(), TransferSpeedColumn(),
                  disable=not sys.stderr.isatty()) as bar:
        task = bar.add_task(library_id[:12], total=max(size, 1))
        while time.monotonic() < deadline:
            found = [d for d in _call(ctx, "downloads", client.downloads) if d.library_id == library_id]
            if not found:
                fail("the library was removed while waiting")
            item = found[0]
            done = size if item.state == "seeding" else size * item.books_have // max(item.books_total, 1)
            bar.update(task, completed=done)
            if item.state == "seeding":
                break
            if item.state == "error":
                fail(f"download failed; see {cli_context(ctx).data_dir / 'logs' / 'errors.log'}")
            time.sleep(0.2)
        else:
            fail(f"not complete after {timeout} s; it goes on in the background")
    typer.echo(f"complete: {item.path}")


def _library_action(ctx: typer.Context, library_id: str, action: control_pb2.LibraryAction.Action.ValueType) -> None:
    client = _client(ctx)
    typer.echo(_call(ctx, "library", lambda: client.library(library_id, action)))


def pause(ctx: typer.Context, library_id: Annotated[str, typer.Argument(help="Library id or unique prefix.")]) -> None:
    """Pause a download."""
    _library_action(ctx, library_id, control_pb2.LibraryAction.PAUSE)


def resume(ctx: typer.Context, library_id: Annotated[str, typer.Argument(help="Library id or unique prefix.")]) -> None:
    """Resume a paused download."""
    _library_action(ctx, library_id, control_pb2.LibraryAction.RESUME)


def remove(ctx: typer.Context, library_id: Annotated[str, typer.Argument(help="Library id or unique prefix.")]) -> None:
    """Forget a library (downloaded files are kept)."""
    _library_action(ctx, library_id, control_pb2.LibraryAction.REMOVE)
