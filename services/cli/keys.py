"""Key presses without Enter, for the console's live views.

``key_reader()`` puts a terminal stdin in cbreak mode (no echo, no line
buffering, Ctrl-C still interrupts) and restores it afterwards, dropping any
keys typed ahead; it yields None when stdin is not a terminal, so callers
print once instead of refreshing.
"""

from __future__ import annotations

import os
import select
import sys
import termios
import tty
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager
from typing import Protocol, TextIO


class Keys(Protocol):
    def pressed(self, timeout: float) -> bool:
        """Wait up to ``timeout`` seconds; True if a key was pressed (and consume it)."""
        ...

    def key(self, timeout: float) -> str | None:
        """Wait up to ``timeout`` seconds for a key: what it typed ("" for end of input), or None if none came."""
        ...


KeyReader = Callable[[], AbstractContextManager[Keys | None]]


class TerminalKeys:
    def __init__(self, fd: int) -> None:
        self.fd = fd

    def pressed(self, timeout: float) -> bool:
        return self.key(timeout) is not None

    def key(self, timeout: float) -> str | None:
        ready, _, _ = select.select([self.fd], [], [], timeout)
        if not ready:
            return None
        # the key (or an escape sequence); end of input counts as a key too
        return os.read(self.fd, 64).decode("utf-8", "replace")


@contextmanager
def key_reader(stream: TextIO | None = None) -> Iterator[Keys | None]:
    stream = stream or sys.stdin
    if not stream.isatty():
        yield None
        return
    fd = stream.fileno()
    saved = termios.tcgetattr(fd)
    tty.setcbreak(fd)
    try:
        yield TerminalKeys(fd)
    finally:
        termios.tcsetattr(fd, termios.TCSAFLUSH, saved)
