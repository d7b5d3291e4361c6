"""First-run setup: ask for the hub (address and key), the distributor port and who may connect; save config.toml."""

from __future__ import annotations

import sys
from collections.abc import Callable

from services.runtime.config import Config, ConfigError

# (key, question) in the order they are asked.
QUESTIONS = (
    ("hub.ip", "Hub IP"),
    ("hub.port", "Hub port"),
    ("distributor.port", "Distributor port (0 = random)"),
    ("hub.key", "Hub key (the line `hub key ...` that `emma hub` prints; empty = the hub runs in clear)"),
    ("security.players", "Who may download from this player: any (an open swarm) or a file of player keys"),
)

Ask = Callable[[str], str]


def interactive() -> bool:
    return sys.stdin.isatty() and sys.stdout.isatty()


def run_setup(config: Config, ask: Ask, say: Callable[[str], None], order: tuple[str, ...] | None = None) -> None:
    """Ask each question until the answer validates; ``skip`` or empty keeps the default."""
    questions = dict(QUESTIONS)
    for key in order or tuple(questions):
        while True:
            answer = ask(f"{questions[key]} [{config.get(key)}] (type 'skip' to keep): ").strip()
            if answer in {"", "skip"}:
                break
            try:
                config.set(key, answer)
                break
            except ConfigError as exc:
                say(f"  {exc}; try again")
    config.save()
    say(f"Saved settings to {config.path}")
