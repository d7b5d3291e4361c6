"""Structured logging: one setup function every Emma process calls.

Events go to the console (human-readable, to stderr) and, when a data
directory is given, to JSON lines under ``<data>/logs/``:

- ``events.log``   what happened to libraries and transfers (logger ``emma.events``)
- ``services.log`` process lifecycle, heartbeats, supervision (logger ``emma.services``)
- ``debug.log``    everything, at debug level
- ``errors.log``   warnings and errors from every logger

Every one is rotated by size: at MAX_BYTES (10 MiB) it becomes ``<kind>.log.1``
and at most BACKUPS (5) old files are kept, so one kind never takes more than
60 MiB. The Maestro and its services write the same files; a process that
finds a file rotated by another follows it to the new one instead of
rotating again (``SharedRotatingFileHandler``). A line that cannot be written
(disk full) is counted, not printed; once writing works again, one
``log_lines_lost`` line says how many were lost and why.

A supervised service's stdout and stderr go to ``<name>.out`` (crash
tracebacks); ``rotate_out`` rolls that over at each start past OUT_MAX_BYTES.
"""

from __future__ import annotations

import fcntl
import logging
import logging.handlers
import os
import stat
import sys
from pathlib import Path
from typing import Any

import structlog

LOG_KINDS = ("events", "services", "debug", "errors")
MAX_BYTES = 10 * 1024 * 1024  # a log file rotates at this size
BACKUPS = 5  # rotated files kept per kind: <kind>.log.1 .. <kind>.log.5
OUT_MAX_BYTES = 1024 * 1024  # a service's .out file rotates at its next start past this size
OUT_BACKUPS = 3  # <name>.out.1 .. <name>.out.3
_LOST_FIELDS = ("lines", "file", "error")


class SharedRotatingFileHandler(logging.handlers.RotatingFileHandler):
    """RotatingFileHandler for a file several processes write.

    Before each line it checks that its file is still the one at ``baseFilename`` and follows a
    rotation done by another process; rotations take a lock on the log directory, so two
    processes never rotate the same file twice. A line that cannot be written (disk full, I/O
    error) is counted instead of printed to stderr, and reported in one line once writing works.
    """

    lost = 0
    lost_error = ""
    _formatted: tuple[logging.LogRecord, str] | None = None  # the last record formatted, and its line
    _mine: tuple[int, int] = (-1, -1)  # (device, inode) of the file open for writing

    def shouldRollover(self, record: logging.LogRecord) -> int:
        """As RotatingFileHandler's (never a file that is not a regular one; roll before the line would pass
        ``maxBytes``), after following another process's rotation: one ``stat`` a line for both."""
        try:
            here: os.stat_result | None = os.stat(self.baseFilename)
        except OSError:
            here = None
        self._follow(here)
        if here is not None and not stat.S_ISREG(here.st_mode):
            return False
        if self.stream is None:
            self.stream = self._open()
        if self.maxBytes > 0:
            line = f"{self.format(record)}\n"
            self.stream.seek(0, 2)
            if self.stream.tell() + len(line) >= self.maxBytes:
                return True
        return False

    def format(self, record: logging.LogRecord) -> str:
        """The line of ``record``, formatted once: ``shouldRollover`` and ``emit`` both ask for it."""
        if self._formatted is not None and self._formatted[0] is record:
            return self._formatted[1]
        line = super().format(record)
        self._formatted = (record, line)
        return line

    def doRollover(self) -> None:
        lock = os.open(os.path.dirname(self.baseFilename), os.O_RDONLY)
        try:
            fcntl.flock(lock, fcntl.LOCK_EX)
            if not self._follow(_stat(self.baseFilename)):  # else another process rotated it while we waited
                super().doRollover()
        finally:
            os.close(lock)

    def emit(self, record: logging.LogRecord) -> None:
        if self.lost:
            lost, self.lost = self.lost, 0
            super().emit(_lost_record(lost, self.baseFilename, self.lost_error))
            if self.lost:  # the note could not be written either: still lost, all of them
                self.lost = lost
        super().emit(record)

    def handleError(self, record: logging.LogRecord) -> None:
        self.lost += 1
        error = sys.exc_info()[1]
        self.lost_error = str(error) if error is not None else "unknown error"

    def _open(self) -> Any:
        stream = super()._open()
        mine = os.fstat(stream.fileno())
        self._mine = (mine.st_dev, mine.st_ino)
        return stream

    def _follow(self, here: os.stat_result | None) -> bool:
        """If ``baseFilename`` (``here``: its stat) is no longer the file we write (another process rotated it),
        reopen it."""
        if self.stream is None:
            return False
        if here is not None and (here.st_dev, here.st_ino) == self._mine:
            return False
        stream, self.stream = self.stream, None  # stays None if the open fails: the next line tries again
        try:
            stream.close()
        except OSError:
            pass  # what it could not write is already counted as lost
        self.stream = self._open()
        return True


def _stat(path: str) -> os.stat_result | None:
    try:
        return os.stat(path)
    except OSError:
        return None


def _lost_record(lines: int, file: str, error: str) -> logging.LogRecord:
    return logging.makeLogRecord({"name": "emma.services", "levelno": logging.WARNING, "levelname": "WARNING",
                                  "msg": "log_lines_lost", "lines": lines, "file": file, "error": error})


def rotate_out(path: Path, max_bytes: int = OUT_MAX_BYTES, backups: int = OUT_BACKUPS) -> None:
    """Roll ``path`` over to ``path.1`` (keeping ``backups`` old ones) if it is larger than ``max_bytes``."""
    try:
        if path.stat().st_size <= max_bytes:
            return
        for index in range(backups - 1, 0, -1):
            older = path.with_name(f"{path.name}.{index}")
            if older.exists():
                older.replace(path.with_name(f"{path.name}.{index + 1}"))
        path.replace(path.with_name(f"{path.name}.1"))
    except OSError:
        pass  # no file yet, or it cannot be moved: appending to it is still right


def log_path(data_dir: Path, kind: str) -> Path:
    return data_dir / "logs" / f"{kind}.log"


def _file_handler(path: Path, level: int, logger_prefix: str | None, shared: list[Any]) -> logging.Handler:
    handler = SharedRotatingFileHandler(path, maxBytes=MAX_BYTES, backupCount=BACKUPS, encoding="utf-8")
    handler.setLevel(level)
    if logger_prefix is not None:
        handler.addFilter(logging.Filter(logger_prefix))
    handler.setFormatter(
        structlog.stdlib.ProcessorFormatter(
            processor=structlog.processors.JSONRenderer(),
            foreign_pre_chain=[*shared, structlog.stdlib.ExtraAdder(_LOST_FIELDS)],
        )
    )
    return handler


class _Names:
    """Adds which service (``process``) and pid wrote a line, to every line, from any thread (a context
    variable bound at start reaches only the main thread: the hub client's thread wrote lines without)."""

    def __init__(self, process: str) -> None:
        self.process, self.pid = process, os.getpid()

    def __call__(self, _logger: Any, _method: str, event: dict[str, Any]) -> dict[str, Any]:
        event.setdefault("process", self.process)
        event.setdefault("pid", self.pid)
        return event


def _shared_processors(process: str) -> list[Any]:
    return [
        structlog.contextvars.merge_contextvars,
        _Names(process),
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
    shared = _shared_processors(process)
    console = logging.StreamHandler(sys.stderr)
    console.setLevel(console_level)
    console.setFormatter(
        structlog.stdlib.ProcessorFormatter(
            processor=structlog.dev.ConsoleRenderer(colors=sys.stderr.isatty()),
            foreign_pre_chain=shared,
        )
    )
    root.addHandler(console)
    if data_dir is not None:
        logs = data_dir / "logs"
        logs.mkdir(parents=True, exist_ok=True)
        root.addHandler(_file_handler(log_path(data_dir, "events"), logging.INFO, "emma.events", shared))
        root.addHandler(_file_handler(log_path(data_dir, "services"), logging.INFO, "emma.services", shared))
        root.addHandler(_file_handler(log_path(data_dir, "debug"), logging.DEBUG, None, shared))
        root.addHandler(_file_handler(log_path(data_dir, "errors"), logging.WARNING, None, shared))
    structlog.configure(
        processors=[
            *shared,
            structlog.processors.StackInfoRenderer(),
            structlog.processors.format_exc_info,
            structlog.stdlib.ProcessorFormatter.wrap_for_formatter,
        ],
        logger_factory=structlog.stdlib.LoggerFactory(),
        wrapper_class=structlog.stdlib.BoundLogger,
        cache_logger_on_first_use=False,
    )
    structlog.contextvars.clear_contextvars()


def log_to_files(data_dir: Path, process: str) -> None:
    """For a command a person runs: what it logs goes to ``data_dir``'s log files, never onto the screen (where it
    would break a one-line error, or the JSON a script reads); to nowhere when those files cannot be written."""
    try:
        setup_logging(data_dir, process=process, console_level=logging.CRITICAL + 1)
    except OSError:
        setup_logging(None, process=process, console_level=logging.CRITICAL + 1)


def get_logger(kind: str = "events") -> Any:
    """A structlog logger writing to ``emma.<kind>`` (events, services, debug)."""
    return structlog.get_logger(f"emma.{kind}")
