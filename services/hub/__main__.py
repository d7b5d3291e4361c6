"""``python -m services.hub``: the hub without the ``emma`` launcher.

Same options and defaults as ``emma hub``. Prints ``hub listening on
<endpoint>`` once bound; exits 0 on SIGINT/SIGTERM, 2 when it cannot start.
"""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

from services.hub.serve import HubStartError, build_options, run_hub
from services.hub.store import DEFAULT_STORE, STORES
from services.runtime import config as config_mod
from services.runtime.logs import setup_logging


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m services.hub", description="Run the Emma hub (tracker).")
    parser.add_argument("--data-dir", type=Path, default=None, help="data directory (config, logs, default db)")
    parser.add_argument("--bind", default=None, help="ZMQ endpoint to listen on; tcp://HOST:0 = random port")
    parser.add_argument("--db", type=Path, default=None, help="SQLite database (default <data>/hub.db)")
    parser.add_argument("--store", choices=sorted(STORES), default=DEFAULT_STORE, help="peer store backend")
    parser.add_argument("--redis", default="", metavar="URL",
                        help="with --store redis: the server the hubs share, redis://HOST:PORT/0")
    parser.add_argument("--allowlist", type=Path, default=None, help="file of library ids to serve, one a line")
    parser.add_argument("--interval", type=int, default=60, help="seconds between announces players are told")
    parser.add_argument("--rate", type=float, default=200.0, help="requests/s per client (0 = unlimited)")
    parser.add_argument("--log-requests", action="store_true", help="log every routine request (slow)")
    parser.add_argument("--metrics", default="", metavar="HOST:PORT",
                        help="serve Prometheus metrics at http://HOST:PORT/metrics (off unless set)")
    parser.add_argument("--no-metrics-library-label", action="store_true",
                        help="leave out the per-library series (one per library)")
    parser.add_argument("--ping-allow", action="append", default=[], metavar="CIDR",
                        help="a network whose announced endpoints the hub may check (repeatable)")
    parser.add_argument("--no-encryption", action="store_true",
                        help="serve in clear (open swarm inside a trusted network only; default: CURVE)")
    parser.add_argument("--players", default=None, metavar="FILE|any",
                        help="player keys admitted: a file of keys, one a line, or any (default: security.players)")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    data_dir = config_mod.given_path(args.data_dir or config_mod.default_data_dir())
    try:
        config = config_mod.load(data_dir)
        setup_logging(data_dir, process="hub", console_level=logging.INFO)
        options = build_options(
            data_dir=data_dir,
            hub_port=int(config.get("hub.port")),
            bind=args.bind,
            db=args.db,
            store=args.store,
            redis=args.redis,
            allowlist=args.allowlist,
            interval=args.interval,
            rate=args.rate,
            log_requests=args.log_requests,
            ping_networks=tuple(args.ping_allow),
            metrics=args.metrics,
            metrics_library_label=not args.no_metrics_library_label,
            encryption=not args.no_encryption,
            players=args.players if args.players is not None else str(config.get("security.players")),
        )
        run_hub(options)
    except (HubStartError, config_mod.ConfigError, OSError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
