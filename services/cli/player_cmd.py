"""Commands that talk to a running player: ``peer``, ``services``, ``downloads``, ``get``,
``pause``, ``resume``, ``remove``."""

from __future__ import annotations

import json
import os
import signal
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, TypeVar

import typer

from services.cli import launch, quick
from services.cli.context import cli_context, fail
from services.cli.fmt import (
    download_state,
    human_seconds,
    printable,
    state_name,
    state_word,
)
from services.cli.quick import START_HINT
from services.supervisor.control_client import ControlClient, ControlError, MaestroNotRunning
from services.wire.pb import control_pb2

peer_app = typer.Typer(help="Run or stop this data directory's player (Maestro + services).",
                       invoke_without_command=True, rich_markup_mode=None)

T = TypeVar("T")


def _client(ctx: typer.Context) -> ControlClient:
    return ControlClient(cli_context(ctx).config().run_dir)


def _call(ctx: typer.Context, action: str, fn: Callable[[], T]) -> T:
    try:
        return fn()
    except MaestroNotRunning as exc:
        fail(f"{exc}; {exc.hint or START_HINT}")
    except ControlError as exc:
        fail(f"{action}: {exc}")


@peer_app.callback()
def peer(
    ctx: typer.Context,
    detach: Annotated[bool, typer.Option("--detach", help="Run in the background; return once it serves.")] = False,
) -> None:
    """Start the player (Maestro, Distributor, Requestor); `emma peer stop|status` act on a running one."""
    if ctx.invoked_subcommand is None:
        _start(ctx, detach)


@peer_app.command("start")
def peer_start(
    ctx: typer.Context,
    detach: Annotated[bool, typer.Option("--detach", help="Run in the background; return once it serves.")] = False,
) -> None:
    """Start the player in the foreground (Ctrl-C stops it), or in the background with --detach."""
    _start(ctx, detach)


def _start(ctx: typer.Context, detach: bool) -> None:
    config = cli_context(ctx).config()
    config.ensure_dirs()
    if detach:
        try:
            pid = launch.start_in_background(config)
        except launch.PlayerError as exc:
            fail(str(exc))
        typer.echo(f"player running for {config.data_dir} (pid {pid})")
        return
    import logging  # the Maestro's own imports: only when it runs here

    from services.runtime.logs import setup_logging
    from services.supervisor.maestro import AlreadyRunning, Maestro

    setup_logging(config.data_dir, process="maestro", console_level=logging.INFO)
    try:
        maestro = Maestro(config)
    except AlreadyRunning as exc:
        fail(str(exc))
    signal.signal(signal.SIGTERM, maestro.stop)
    signal.signal(signal.SIGINT, maestro.stop)
    typer.echo(f"player running for {config.data_dir} (pid {os.getpid()}); Ctrl-C stops it")
    maestro.run()


@peer_app.command("stop")
def peer_stop(ctx: typer.Context) -> None:
    """Stop the player: services announce `stopped` and flush their state."""
    run_dir = cli_context(ctx).config().run_dir
    try:
        launch.stop(run_dir)
    except MaestroNotRunning as exc:
        fail(f"{exc}; nothing to stop")
    except (ControlError, launch.PlayerError) as exc:
        fail(f"stop: {exc}")
    typer.echo("player stopped")


@peer_app.command("status")
def peer_status(ctx: typer.Context, json_out: Annotated[bool, typer.Option("--json", help="Print as JSON.")] = False
                ) -> None:
    """Whether a player runs for this data directory, and its services."""
    services(ctx, json_out=json_out, start=None, stop=None)


def services(
    ctx: typer.Context,
    json_out: Annotated[bool, typer.Option("--json", help="Print as JSON.")] = False,
    start: Annotated[str | None, typer.Option(help="Start a service that is OFF or FATAL.")] = None,
    stop: Annotated[str | None, typer.Option(help="Stop one service.")] = None,
) -> None:
    """The Maestro, Distributor and Requestor: state, pid, uptime, restarts."""
    client = _client(ctx)
    if start:
        typer.echo(printable(_call(ctx, "start", lambda: client.service(start, True))), err=json_out)
    if stop:
        typer.echo(printable(_call(ctx, "stop", lambda: client.stop_service(
            stop, cli_context(ctx).config().get("maestro.stop_grace")))), err=json_out)
    statuses = _call(ctx, "services", client.services)
    if json_out:
        typer.echo(json.dumps(service_rows(statuses)))
        return
    typer.echo(f"{'service':12} {'state':9} {'pid':>7} {'uptime':>9} {'restarts':>8}  detail")
    for s in statuses:
        typer.echo(f"{printable(s.name):12} {state_name(s.state):9} {s.pid or '-'!s:>7} {human_seconds(s.uptime):>9}"
                   f" {s.restarts:>8}  {printable(s.detail)}")


def service_rows(items: list[control_pb2.ServiceStatus]) -> list[dict[str, object]]:
    return [{"name": s.name, "state": state_name(s.state), "pid": s.pid, "uptime": round(s.uptime, 2),
             "restarts": s.restarts, "heartbeat_age": round(s.heartbeat_age, 3), "detail": s.detail} for s in items]


def metric_rows(text: str) -> list[dict[str, object]]:
    """Samples of a Prometheus text exposition: name, labels, value (histogram buckets left out)."""
    from prometheus_client.parser import text_string_to_metric_families

    rows: list[dict[str, object]] = []
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name.endswith(("_bucket", "_created")):
                continue
            rows.append({"name": sample.name, "labels": dict(sample.labels), "value": sample.value})
    return rows


def metrics(
    ctx: typer.Context,
    json_out: Annotated[bool, typer.Option("--json", help="Print as JSON.")] = False,
) -> None:
    """The player's metrics once, as Prometheus would scrape them (see metrics.bind for the endpoint)."""
    client = _client(ctx)
    rows = metric_rows(_call(ctx, "metrics", client.metrics))
    if json_out:
        typer.echo(json.dumps(rows))
        return
    for row in rows:
        labels = row["labels"]
        shown = "{" + ",".join(f"{k}={printable(str(v))}" for k, v in labels.items()) + "}" \
            if isinstance(labels, dict) and labels else ""
        value = row["value"]
        number = f"{value:.0f}" if isinstance(value, float) and value.is_integer() else f"{value}"
        typer.echo(f"{row['name']}{shown} {number}")


def downloads(
    ctx: typer.Context,
    json_out: Annotated[bool, typer.Option("--json", help="Print as JSON.")] = False,
) -> None:
    """Libraries this player downloads or seeds, with progress and rates."""
    code = quick.downloads(cli_context(ctx).config().run_dir, json_out)  # usually answered there before typer runs
    if code:
        raise typer.Exit(code)


def get(
    ctx: typer.Context,
    lib: Annotated[str, typer.Argument(metavar="LIB", help="A .lib file, or a link (`emma link LIB` prints one).")],
    wait: Annotated[bool, typer.Option("--wait", help="Show a progress bar until the download completes.")] = False,
    timeout: Annotated[float, typer.Option(help="With --wait: give up after this many seconds (0 = never).")] = 0.0,
    json_out: Annotated[bool, typer.Option("--json", help="Print the result as JSON.")] = False,
    only: Annotated[list[str] | None, typer.Option(
        "--only", help="Of a folder's library, fetch only the files whose path (or a folder of it) matches this "
                       "glob; repeatable. Asking again adds to the selection (without --only: every file).")] = None,
    to: Annotated[Path | None, typer.Option(
        "--to", metavar="DIR", help="Download into this folder instead of paths.downloads (made if missing).")
    ] = None,
    on_complete: Annotated[str, typer.Option(
        "--on-complete", metavar="CMD", help="Once complete, run CMD with the download's path as its last argument "
                                             "(no shell; output in logs/on-complete.out).")] = "",
    hub: Annotated[list[str] | None, typer.Option(
        "--hub", metavar="EP", help="Ask this hub instead of those LIB names: tcp://HOST:PORT, or KEY@tcp://HOST:PORT "
                                    "for a hub with keys (KEY: its public key in 64 hex digits, as `emma link` "
                                    "prints it); repeatable.")] = None,
) -> None:
    """Download LIB (a .lib file, or a link from `emma link`) with the running player (of a folder's library,
    with --only, some of its files)."""
    import tempfile

    from services.peer import links
    from services.peer.library import LibraryError, read_library
    from services.runtime.config import given_path

    if not timeout >= 0:  # a negative one, or nan, would end the wait before it starts
        fail(f"--timeout must be 0 (never) or more seconds, got {timeout:g}")
    client = _client(ctx)
    globs = tuple(only or ())
    folder = str(given_path(to)) if to is not None else ""
    with tempfile.TemporaryDirectory(prefix="emma-link-") as fetched:
        given = given_path(lib)
        path = _fetched(ctx, client, lib, Path(fetched)) if links.is_link(lib) else given
        try:
            library = read_library(path)
        except LibraryError as exc:
            fail(str(exc))
        message = _call(ctx, "get", lambda: client.add(path, globs, folder, on_complete, tuple(hub or ())))
    result: dict[str, object] = {"id": library.id_hex, "name": library.name, "message": message}
    if not json_out:
        typer.echo(printable(message))
    if wait:
        item = _wait(ctx, client, library.id_hex, library.size, timeout, bar=not json_out)
        result.update(state=state_word(item.state), path=item.path)
        if not json_out:
            typer.echo(f"complete: {printable(item.path)}")
    if json_out:
        typer.echo(json.dumps(result))


def _fetched(ctx: typer.Context, client: ControlClient, text: str, folder: Path) -> Path:
    """The library of a link, fetched from a player it names and checked against its id, in ``folder``."""
    from services.peer import identity, links
    from services.peer.library import write_library
    from services.runtime.logs import log_to_files
    from services.wire import curve

    _call(ctx, "get", client.services)  # a player runs: nothing is fetched for nobody
    data_dir = cli_context(ctx).data_dir
    log_to_files(data_dir, "cli")  # what asking the link's hubs logs
    try:
        link = links.parse(text)
        library = links.fetch(link, curve.load_or_create(data_dir), identity.player_id(data_dir))
    except links.LinkError as exc:
        fail(str(exc))
    path = folder / library.file_name
    write_library(library, path)
    return path


def _wait(ctx: typer.Context, client: ControlClient, library_id: str, size: int, timeout: float, bar: bool
          ) -> control_pb2.Download:
    from rich.progress import Progress

    from services.cli.progress import columns

    deadline = time.monotonic() + timeout if timeout else float("inf")
    with Progress(*columns(), disable=not (bar and sys.stderr.isatty())) as progress:
        task = progress.add_task(library_id[:12], total=max(size, 1))
        while time.monotonic() < deadline:
            found = [d for d in _call(ctx, "downloads", client.downloads) if d.library_id == library_id]
            if not found:
                fail("the library was removed while waiting")
            item = found[0]
            done = size if item.state == control_pb2.SEEDING else size * item.books_have // max(item.books_total, 1)
            progress.update(task, completed=done, description=f"{library_id[:12]} {download_state(item)}")
            if item.state == control_pb2.SEEDING:
                return item
            if item.state == control_pb2.FAILED:
                fail(f"download failed; see {cli_context(ctx).data_dir / 'logs' / 'errors.log'}")
            time.sleep(0.2)
    fail(f"not complete after {timeout:g} s; it goes on in the background (`emma downloads`)")


def _library_action(ctx: typer.Context, library_id: str, action: control_pb2.LibraryAction.Action.ValueType,
                    json_out: bool) -> None:
    client = _client(ctx)
    if json_out:  # the full id, whatever prefix was typed (the Maestro checks the prefix is one library's)
        known = _call(ctx, "downloads", client.downloads)
        full = [d.library_id for d in known if d.library_id.startswith(library_id.lower())]
        library_id = full[0] if len(full) == 1 else library_id
    message = _call(ctx, "library", lambda: client.library(library_id, action))
    typer.echo(json.dumps({"id": library_id, "message": message}) if json_out else printable(message))


LibraryId = Annotated[str, typer.Argument(help="Library id or unique prefix (see `emma downloads`).")]
JsonFlag = Annotated[bool, typer.Option("--json", help="Print the result as JSON.")]


def pause(ctx: typer.Context, library_id: LibraryId, json_out: JsonFlag = False) -> None:
    """Pause a download."""
    _library_action(ctx, library_id, control_pb2.LibraryAction.PAUSE, json_out)


def resume(ctx: typer.Context, library_id: LibraryId, json_out: JsonFlag = False) -> None:
    """Resume a paused download."""
    _library_action(ctx, library_id, control_pb2.LibraryAction.RESUME, json_out)


def remove(ctx: typer.Context, library_id: LibraryId, json_out: JsonFlag = False) -> None:
    """Forget a library (downloaded files are kept)."""
    _library_action(ctx, library_id, control_pb2.LibraryAction.REMOVE, json_out)
