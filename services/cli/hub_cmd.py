"""``emma hub``: run the hub (tracker) in the foreground until Ctrl-C or SIGTERM."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Annotated

import typer

from services.cli.context import cli_context, fail
from services.hub.serve import HubStartError, build_options, run_hub
from services.hub.store import DEFAULT_STORE, STORES
from services.runtime.logs import setup_logging


def hub(
    ctx: typer.Context,
    bind: Annotated[
        str | None,
        typer.Option(help="ZMQ endpoint to listen on (default tcp://0.0.0.0:<hub.port>; port 0 = random)."),
    ] = None,
    db: Annotated[Path | None, typer.Option(help="SQLite database file (default <data>/hub.db).")] = None,
    store: Annotated[str, typer.Option(help=f"Peer store backend: {', '.join(STORES)}.")] = DEFAULT_STORE,
    redis: Annotated[
        str, typer.Option(help="With --store redis: the server every hub of the fleet shares, redis://HOST:PORT/0.")
    ] = "",
    allowlist: Annotated[
        Path | None, typer.Option(help="File of library ids (64 hex a line) this hub serves; default all.")
    ] = None,
    interval: Annotated[int, typer.Option(help="Seconds between announces; players expire after two.")] = 60,
    rate: Annotated[float, typer.Option(help="Requests per second allowed per client (0 = unlimited).")] = 200.0,
    log_requests: Annotated[bool, typer.Option(help="Log every routine request (costs throughput).")] = False,
    metrics: Annotated[
        str, typer.Option(help="Serve Prometheus metrics at http://HOST:PORT/metrics (off unless set).")
    ] = "",
    metrics_library_label: Annotated[
        bool, typer.Option(help="Export seeders and leechers per library (one series per library).")
    ] = True,
    ping_allow: Annotated[
        list[str] | None,
        typer.Option(help="A network (CIDR) whose players the hub may check even when they announce an address "
                     "other than the one they connect from (e.g. 10.0.0.0/8); repeat for more."),
    ] = None,
    encryption: Annotated[
        bool, typer.Option(help="CURVE on every connection (off: in clear, for an open swarm in a trusted network).")
    ] = True,
    players: Annotated[
        str | None, typer.Option(help="Player keys admitted: a file of keys (one a line, # comments) or 'any' "
                                 "(default: the security.players setting).")
    ] = None,
) -> None:
    """Run the hub: answers announces, peer lists, scrapes and reports on one ROUTER socket."""
    context = cli_context(ctx)
    config = context.config()
    if store not in STORES:
        fail(f"unknown store {store!r}; choose one of: {', '.join(STORES)}")
    try:
        setup_logging(context.data_dir, process="hub", console_level=logging.INFO)
        options = build_options(
            data_dir=context.data_dir,
            hub_port=int(config.get("hub.port")),
            bind=bind,
            db=db,
            store=store,
            redis=redis,
            allowlist=allowlist,
            interval=interval,
            rate=rate,
            log_requests=log_requests,
            ping_networks=tuple(ping_allow or ()),
            metrics=metrics,
            metrics_library_label=metrics_library_label,
            encryption=encryption,
            players=players if players is not None else str(config.get("security.players")),
        )
        run_hub(options)
    except HubStartError as exc:
        fail(str(exc))
    except OSError as exc:
        fail(f"cannot write logs in {context.data_dir}: {exc.strerror or exc}")
