"""Run a hub in the foreground: what ``emma hub`` and ``python -m services.hub`` share.

Opens the store, binds the ROUTER, prints one line ``hub listening on
<endpoint>`` (flushed, so a parent process can read the port it got), then,
with encryption on (the default), ``hub key <Z85 public key>``: what players
put in ``hub.key`` so that the libraries they share name it. Serves until
SIGINT or SIGTERM, then flushes the store and exits cleanly.
"""

from __future__ import annotations

import errno
import gc
import signal
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from types import FrameType
from typing import TextIO

import zmq

from services.hub import addresses
from services.hub.broker import Broker
from services.hub.logic import HubLogic
from services.hub.metrics import HubCollector
from services.hub.model import MAX_LIBRARIES_PER_PLAYER, HubLimits
from services.hub.store import open_store
from services.hub.store_errors import StoreError
from services.runtime.logs import get_logger
from services.runtime.metrics_http import MetricsEndpoint
from services.wire import curve
from services.wire.ids import InvalidEndpoint, parse_host_port, parse_library_id

log = get_logger("services")


class HubStartError(RuntimeError):
    """The hub cannot start; the message says why and what to change."""


@dataclass
class HubOptions:
    """Everything a hub process needs, already resolved from options and config."""

    bind: str
    db: Path | None
    store: str = "sqlite"
    redis: str = ""  # the Redis server's URL, for the redis store
    limits: HubLimits = field(default_factory=HubLimits)
    log_requests: bool = False
    metrics: str = ""  # HOST:PORT of the /metrics endpoint; empty = none
    metrics_library_label: bool = True
    key_dir: Path | None = None  # where the hub's CURVE key pair lives; None = encryption off
    players: str = curve.ANY  # the allowlist of player keys: "any" or a file


def build_options(
    *,
    data_dir: Path,
    hub_port: int,
    bind: str | None = None,
    db: Path | None = None,
    store: str = "sqlite",
    redis: str = "",
    allowlist: Path | None = None,
    interval: int = 60,
    rate: float = 200.0,
    log_requests: bool = False,
    ping_networks: tuple[str, ...] = (),
    metrics: str = "",
    metrics_library_label: bool = True,
    encryption: bool = True,
    players: str = curve.ANY,
) -> HubOptions:
    """Resolve command-line values against the defaults: bind on all interfaces, db in the data dir."""
    if not 1 <= interval <= 86_400:
        raise HubStartError(f"--interval must be between 1 and 86400 seconds, got {interval}")
    if redis and store != "redis":
        raise HubStartError(f"--redis is for --store redis (this hub uses --store {store})")
    if store == "redis" and not redis:
        raise HubStartError("--store redis needs --redis redis://HOST:PORT/0, the server every hub shares")
    if rate < 0:
        raise HubStartError(f"--rate must be 0 (unlimited) or more, got {rate}")
    try:
        addresses.networks(ping_networks)
    except ValueError as exc:
        raise HubStartError(f"--ping-allow: {exc}") from None
    players = players.strip() or curve.ANY
    if players != curve.ANY and not encryption:
        raise HubStartError("a private hub (--players FILE) must encrypt: drop --no-encryption, or use --players any")
    if players != curve.ANY:
        try:
            curve.Allowlist(players)
        except curve.CurveKeyError as exc:
            raise HubStartError(f"--players: {exc}") from None
    if metrics:
        try:
            parse_host_port(metrics)
        except InvalidEndpoint as exc:
            raise HubStartError(f"--metrics: {exc}") from None
    limits = HubLimits(
        interval=interval,
        min_interval=max(1, interval // 2),
        rate=rate,
        burst=max(1.0, 2 * rate, float(MAX_LIBRARIES_PER_PLAYER)),  # a player's start announces all it holds
        allowlist=load_allowlist(allowlist) if allowlist is not None else None,
        ping_networks=ping_networks,
    )
    if bind is not None:
        check_bind(bind)
    return HubOptions(
        bind=bind or f"tcp://0.0.0.0:{hub_port}",
        db=None if store == "redis" else db if db is not None else data_dir / "hub.db",
        store=store,
        redis=redis,
        limits=limits,
        log_requests=log_requests,
        metrics=metrics,
        metrics_library_label=metrics_library_label,
        key_dir=data_dir if encryption else None,
        players=players,
    )


def check_bind(bind: str) -> None:
    """HubStartError for a TCP ``--bind`` libzmq would take wrongly: a port past 65535 is taken modulo 65536
    (70000 listened on 4464). Other transports (ipc://, for tests on one host) are libzmq's to check."""
    if not bind.startswith("tcp://"):
        return
    host, sep, port = bind.removeprefix("tcp://").rpartition(":")
    if not sep or not host:
        raise HubStartError(f"--bind must be tcp://HOST:PORT (tcp://0.0.0.0:7070 listens on every address), "
                            f"got {bind!r}")
    if port != "*" and not (port.isascii() and port.isdigit() and len(port) <= 5 and int(port) <= 65535):
        raise HubStartError(f"--bind: the port must be 1 to 65535, or 0 for any free one, got {port!r} in {bind!r}")


def load_allowlist(path: Path) -> frozenset[bytes]:
    """Read library ids (64 hex characters a line; blank lines and ``#`` comments skipped)."""
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as exc:
        raise HubStartError(f"cannot read allowlist {path}: {exc}") from exc
    ids = set()
    for number, line in enumerate(lines, start=1):
        text = line.split("#", 1)[0].strip()
        if not text:
            continue
        try:
            ids.add(parse_library_id(text))
        except ValueError as exc:
            raise HubStartError(f"{path}:{number}: not a library id ({exc}); one 64-hex id per line") from exc
    return frozenset(ids)


@contextmanager
def _stop_on_signals(broker: Broker) -> Iterator[None]:
    def handler(signum: int, frame: FrameType | None) -> None:
        log.info("hub_signal", signal=signal.Signals(signum).name)
        broker.request_stop()

    previous = {sig: signal.signal(sig, handler) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield
    finally:
        for sig, old in previous.items():
            signal.signal(sig, old)


def _serve_metrics(options: HubOptions, logic: HubLogic, context: zmq.Context[zmq.Socket[bytes]],
                   now: float) -> MetricsEndpoint | None:
    if not options.metrics:
        return None
    logic.publish(now)
    collector = HubCollector(lambda: logic.snapshot, options.metrics_library_label)
    try:
        return MetricsEndpoint(context, options.metrics, collector)
    except zmq.ZMQError as exc:
        raise HubStartError(f"cannot serve metrics on {options.metrics}: {exc}; "
                            "choose another --metrics address") from exc


def run_hub(options: HubOptions, out: TextIO = sys.stdout) -> None:
    """Serve until SIGINT/SIGTERM. Raises :class:`HubStartError` when it cannot start."""
    now = time.time()
    try:
        store = open_store(options.store, options.db, now, refresh_slack=options.limits.refresh_slack,
                           url=options.redis)
    except (StoreError, ValueError) as exc:
        raise HubStartError(str(exc)) from exc
    try:
        keys = curve.load_or_create(options.key_dir) if options.key_dir is not None else None
        allowlist = curve.Allowlist(options.players)
    except (curve.CurveKeyError, OSError) as exc:
        store.close()
        raise HubStartError(str(exc)) from exc
    logic = HubLogic(store, options.limits, started_at=now, log_requests=options.log_requests,
                     local_address=addresses.route_source)
    gc.freeze()  # the loaded store is long-lived: keep full collections from walking it (tens of ms)
    try:
        with zmq.Context() as context:
            broker = Broker(logic, context, keys=keys, allowlist=allowlist)
            try:
                endpoint = broker.bind(options.bind)
            except zmq.ZMQError as exc:
                broker.close()
                why = "no address of this host has that name" if exc.errno == errno.ENODEV else exc
                raise HubStartError(f"cannot listen on {options.bind}: {why}; choose another --bind") from exc
            print(f"hub listening on {endpoint}", file=out, flush=True)
            if keys is not None:
                print(f"hub key {keys.public.decode()}", file=out, flush=True)
            log.info("hub_started", endpoint=endpoint, store=store.name, db=str(options.db or ""),
                     encryption=keys is not None, players=options.players,
                     key=keys.public.decode() if keys is not None else "")
            try:
                metrics = broker.metrics = _serve_metrics(options, logic, context, now)
            except HubStartError:
                broker.close()
                raise
            if metrics is not None:
                print(f"hub metrics on {metrics.url}", file=out, flush=True)
            try:
                with _stop_on_signals(broker):
                    broker.run()
            finally:
                broker.close()
                if metrics is not None:
                    metrics.close()
    finally:
        store.close()
