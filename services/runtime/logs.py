"""Structured logging: one setup function every Emma process calls.

Events go to the console (human-readable, to stderr) and, when a data
directory is given, to JSON lines under ``<data>/logs/``:

- ``events.log``   what happened to libraries and transfers (logger ``emma.events``)
- ``services.log`` process lifecycle, heartbeats, supervision (logger ``emma.services``)
- ``debug.log``    everything, at debug level
- ``errors.log``   warnings and errors from every logger
"""

from __future__ import annotations

import logging
import logging.handlers
import os
import sys
from pathlib import Path
from typing import Any

import structlog

LOG_KINDS = ("events", "services", "debug", "errors")
_MAX_BYTES = 20 * 1024 * 1024


def log_path(data_dir: Path, kind: str) -> Path:
    return data_dir / "logs" / f"{kind}.log"


def _file_handler(path: Path, level: int, logger_prefix: str | None) -> logging.Handler:
    handler = logging.handlers.RotatingFileHandler(path, maxBytes=_MAX_BYTES, backupCount=3, encoding="utf-8")
    handler.setLevel(level)
    if logger_prefix is not None:
        handler.addFilter(logging.Filter(logger_prefix))
    handler.setFormatter(
        structlog.stdlib.ProcessorFormatter(
            processor=structlog.processors.JSONRenderer(), foreign_pre_chain=_shared_processors()
        )
    )
    return handler


def _shared_processors() -> list[Any]:
    return [
        structlog.contextvars.merge_contextvars,
        structlog.stdlib.add_logger_name,
        structlog.stdlib.add_log_level,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
    ]


def setup_logging(
    data_dir: Path | None = None,
    *,
    process: str = "cli",
    console_level: int = logging.WARNING,
) -> None:
    """Configure structlog and stdlib logging for this process.

    Call once at process start. ``process`` is bound to every event so the
    shared log files say which service wrote a line.
    """
    root = logging.getLogger()
    for handler in list(root.handlers):
        root.removeHandler(handler)
        handler.close()
    root.setLevel(logging.DEBUG)
    console = logging.StreamHandler(sys.stderr)
    console.setLevel(console_level)
    console.setFormatter(
        structlog.stdlib.ProcessorFormatter(
            processor=structlog.dev.ConsoleRenderer(colors=sys.stderr.isatty()),
            foreign_pre_chain=_shared_processors(),
        )
    )
    root.addHandler(console)
    if data_dir is not None:
        logs = data_dir / "logs"
        logs.mkdir(parents=True, exist_ok=True)
        root.addHandler(_file_handler(log_path(data_dir, "events"), logging.INFO, "emma.events"))
        root.addHandler(_file_handler(log_path(data_dir, "services"), logging.INFO, "emma.services"))
        root.addHandler(_file_handler(log_path(data_dir, "debug"), logging.DEBUG, None))
        root.addHandler(_file_handler(log_path(data_dir, "errors"), logging.WARNING, None))
    structlog.configure(
        processors=[
            *_shared_processors(),
            structlog.processors.StackInfoRenderer(),
            structlog.processors.format_exc_info,
            structlog.stdlib.ProcessorFormatter.wrap_for_formatter,
        ],
        logger_factory=structlog.stdlib.LoggerFactory(),
        wrapper_class=structlog.stdlib.BoundLogger,
        cache_logger_on_first_use=False,
    )
    structlog.contextvars.clear_contextvars()
    structlog.contextvars.bind_contextvars(process=process, pid=os.getpid())


def get_logger(kind: str = "events") -> Any:
    """A structlog logger writing to ``emma.<kind>`` (events, services, debug)."""
    return structlog.get_logger(f"emma.{kind}")
