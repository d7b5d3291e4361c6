"""How a supervised service process starts: arguments, fault injection, config, logging, signals.

The Distributor and the Requestor run the same way under the Maestro
(``python -m services.peer.distributor --data-dir D --heartbeat ipc://...``);
this is that way, written once.

A service that dies of an exception says why in a last heartbeat before the
traceback goes to its ``.out`` file: the Maestro shows that cause with the
failure, even when the disk the logs go to is full. One that cannot start with its
settings at all (``Unusable``: a port in use) says why the same way and exits with
EXIT_UNUSABLE, which the Maestro takes as FATAL at once instead of retrying.
"""

from __future__ import annotations

import argparse
import gc
import logging
import signal
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any, Protocol

import zmq

from services.runtime import config as config_mod
from services.runtime import faults
from services.runtime.heartbeat import HeartbeatSender
from services.runtime.logs import setup_logging


class Service(Protocol):
    heartbeat: HeartbeatSender | None

    def run(self) -> None: ...

    def stop(self, *_: object) -> None: ...


GC_YOUNG = 20_000  # allocations between collections of the youngest objects (Python's default: 700)
EXIT_UNUSABLE = 78  # EX_CONFIG: the service cannot run with these settings; the Maestro does not retry it


class Unusable(Exception):
    """The service cannot start with this configuration and retrying will not help (a port another program
    holds, an address not of this host): the message says what is wrong and what to change."""


def key_file_problem(exc: Exception) -> str:
    """Why a service cannot start with the files of keys its settings name (security.players, security.publishers),
    and how to fix it: they are read once at start, and a private swarm never opens up for want of one."""
    return f"{exc}; fix it (or `emma settings set` the key to any, or '' for publishers) and restart the player"


def settle_collector() -> None:
    """The cycle collector, tuned for a loop that moves books: what start-up made (modules, the service)
    lives as long as the process, so it is frozen out of every later collection; and the youngest objects
    are collected after GC_YOUNG allocations instead of 700. A swarm's player used to spend about 5% of its
    CPU in collections that found nothing: each book's messages, tuples and dicts are freed by their
    reference counts."""
    gc.freeze()  # no collection first: it would lengthen every restart, and start-up leaves little garbage
    gc.set_threshold(GC_YOUNG, *gc.get_threshold()[1:])


def service_main(
    name: str, make: Callable[[config_mod.Config, str | None], Service], argv: list[str] | None = None
) -> int:
    """Parse ``--data-dir``/``--heartbeat``, build the service with ``make`` and run it until SIGTERM/SIGINT."""
    parser = argparse.ArgumentParser(prog=f"emma-{name}", description=f"Run a player's {name.capitalize()}.")
    parser.add_argument("--data-dir", type=Path, default=None)
    parser.add_argument("--heartbeat", default=None, help="Maestro heartbeat endpoint (ipc://...)")
    args = parser.parse_args(argv)
    faults.crash_at_start(name)
    data_dir = (args.data_dir or config_mod.default_data_dir()).absolute()
    config = config_mod.load(data_dir)
    config.ensure_dirs()
    setup_logging(data_dir, process=name, console_level=logging.CRITICAL)  # the files have it all; .out: crashes
    try:
        service = make(config, args.heartbeat)
    except Unusable as exc:  # retrying cannot help: say why to the Maestro (and the .out file), exit at once
        if args.heartbeat:
            ctx: zmq.Context[Any] = zmq.Context()
            HeartbeatSender(ctx, args.heartbeat, name).last_words(exc)
            ctx.destroy(linger=0)
        print(f"{name} cannot start: {exc}", file=sys.stderr, flush=True)
        return EXIT_UNUSABLE
    signal.signal(signal.SIGTERM, signal.SIG_IGN if faults.ignores_term(name) else service.stop)
    signal.signal(signal.SIGINT, service.stop)
    settle_collector()
    try:
        service.run()
    except Exception as exc:
        if service.heartbeat is not None:
            service.heartbeat.last_words(exc)
        raise
    return 0
