"""`emma get --on-complete CMD`: a command run with the path of a download once it is complete, like
transmission's done script.

The command is split as a shell would split words (``shlex``) but never run by a shell: the
path is one more argument, whatever characters it holds. It runs in the background with
no input, its output in ``logs/on-complete.out``; the Requestor's loop never waits for it
(``reap`` each turn collects those that ended). A command that cannot start or that exits
non-zero is logged with what to do.
"""

from __future__ import annotations

import shlex
import shutil
import subprocess
from dataclasses import dataclass, field
from pathlib import Path

from services.runtime.logs import get_logger

log = get_logger("events")
MAX_COMMAND_CHARS = 4096


class CommandError(ValueError):
    """An --on-complete command that cannot be run: the message says why."""


def parse(command: str) -> list[str]:
    """The words of ``command``; CommandError if it is empty, malformed or names no program found."""
    if len(command) > MAX_COMMAND_CHARS or not command.isprintable():
        raise CommandError(f"give a command of at most {MAX_COMMAND_CHARS} printable characters")
    try:
        words = shlex.split(command)
    except ValueError as exc:
        raise CommandError(f"cannot read the command {command[:80]!r}: {exc}") from exc
    if not words:
        raise CommandError("the command is empty")
    if shutil.which(words[0]) is None:
        raise CommandError(f"no program {words[0][:80]!r} found (give its path, or one on PATH)")
    return words


def argv(command: str, path: Path) -> list[str]:
    """What runs: the command's words, then the download's path as one argument."""
    return [*parse(command), str(path)]


@dataclass
class Hooks:
    """The commands started and not yet ended."""

    out: Path
    running: list[tuple[subprocess.Popen[bytes], str, str]] = field(default_factory=list)

    def start(self, library_hex: str, command: str, path: Path) -> None:
        try:
            words = argv(command, path)
            self.out.parent.mkdir(parents=True, exist_ok=True)
            with open(self.out, "ab") as sink:
                process = subprocess.Popen(words, stdin=subprocess.DEVNULL, stdout=sink, stderr=sink,
                                           start_new_session=True)
        except (CommandError, OSError) as exc:
            log.error("on_complete_failed", library=library_hex, command=command, error=str(exc),
                      hint="fix it and run it by hand; `emma get LIB --on-complete CMD` sets another")
            return
        log.info("on_complete_started", library=library_hex, command=command, path=str(path), pid=process.pid)
        self.running.append((process, library_hex, command))

    def reap(self) -> None:
        """Log each command that ended since the last call (never waits)."""
        still = []
        for process, library_hex, command in self.running:
            status = process.poll()
            if status is None:
                still.append((process, library_hex, command))
            elif status:
                log.error("on_complete_failed", library=library_hex, command=command, status=status,
                          hint=f"its output is in {self.out}")
            else:
                log.info("on_complete_done", library=library_hex, command=command)
        self.running = still
