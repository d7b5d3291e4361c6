"""First-run setup: ask for the hub (address and key), the distributor port and who may connect; save config.toml."""

from __future__ import annotations

import sys
from collections.abc import Callable

from services.runtime import usable
from services.runtime.config import Config, ConfigError

# (key, question) in the order they are asked, by the console and by any command's first run alike.
QUESTIONS = (
    ("hub.port", "Hub port"),
    ("hub.ip", "Hub IP"),
    ("distributor.port", "Distributor port (0 = random)"),
    ("hub.key", "Hub key (the line `hub key ...` that `emma hub` prints; empty = the hub runs in clear)"),
    ("security.players", "Who may download from this player: any (an open swarm) or a file of player keys"),
)

Ask = Callable[[str], str]
LEAVE = "exit"


class SetupLeft(Exception):
    """The person typed ``exit`` at a setup question: nothing is saved."""


def interactive() -> bool:
    return sys.stdin.isatty() and sys.stdout.isatty()


def run_setup(config: Config, ask: Ask, say: Callable[[str], None]) -> None:
    """Ask each question until the answer validates and can work here; ``skip`` or empty keeps the default,
    ``exit`` leaves setup (SetupLeft) with nothing saved."""
    for key, question in QUESTIONS:
        while True:
            answer = ask(f"{question} [{config.get(key)}] ('skip' keeps it, 'exit' leaves): ").strip()
            if answer in {"", "skip"}:
                break
            if answer.lower() == LEAVE:
                raise SetupLeft
            try:
                usable.set_checked(config, key, answer)
                break
            except ConfigError as exc:
                say(f"  {exc}; try again")
    config.save()
    say(f"Saved settings to {config.path}")
