"""A player's data directory and its ``config.toml``.

Layout (see DESIGN.md, "On disk")::

    <data>/config.toml   settings below
    <data>/libs/         libraries known to this player
    <data>/downloads/    downloaded stuff
    <data>/state.db      player state (SQLite, WAL)
    <data>/logs/         JSON-lines logs
    <data>/run/          ipc sockets and pid files

The data directory is ``--data-dir``, else ``$EMMA_DATA_DIR``, else
``~/.emma``. Settings are flat dotted keys (``hub.port``) grouped in TOML
tables; every key has a type, a default and a validator in ``SETTINGS``.
"""

from __future__ import annotations

import ipaddress
import os
import tomllib
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from services.wire.ids import is_host, make_endpoint

DEFAULT_HUB_PORT = 7070
ENV_DATA_DIR = "EMMA_DATA_DIR"


class ConfigError(ValueError):
    """A setting that does not validate, or a config file that does not parse."""


def _port(allow_zero: bool) -> Callable[[Any], int]:
    def check(value: Any) -> int:
        port = _as_int(value)
        low = 0 if allow_zero else 1
        if not low <= port <= 65535:
            raise ConfigError(f"port must be between {low} and 65535, got {port}")
        return port

    return check


def _as_int(value: Any) -> int:
    if isinstance(value, bool):
        raise ConfigError(f"expected a whole number, got {value!r}")
    try:
        return int(value)
    except (TypeError, ValueError) as exc:
        raise ConfigError(f"expected a whole number, got {value!r}") from exc


def _non_negative(value: Any) -> int:
    number = _as_int(value)
    if number < 0:
        raise ConfigError(f"expected 0 or more, got {number}")
    return number


def _positive(value: Any) -> int:
    number = _as_int(value)
    if number < 1:
        raise ConfigError(f"expected 1 or more, got {number}")
    return number


def _seconds(value: Any) -> float:
    try:
        number = float(value)
    except (TypeError, ValueError) as exc:
        raise ConfigError(f"expected a number of seconds, got {value!r}") from exc
    if not 0.05 <= number <= 60:
        raise ConfigError(f"expected between 0.05 and 60 seconds, got {number}")
    return number


def _host(value: Any) -> str:
    text = str(value).strip()
    try:
        ipaddress.ip_address(text)
        return text
    except ValueError:
        if is_host(text):
            return text
    raise ConfigError(f"not an IP address or host name: {value!r}")


def _optional_host(value: Any) -> str:
    return "" if not str(value).strip() else _host(value)


def _text(value: Any) -> str:
    return str(value)


@dataclass(frozen=True)
class Setting:
    key: str
    default: Any
    check: Callable[[Any], Any]
    help: str


SETTINGS: dict[str, Setting] = {
    s.key: s
    for s in [
        Setting("hub.ip", "127.0.0.1", _host, "IP address or host name of the hub"),
        Setting("hub.port", DEFAULT_HUB_PORT, _port(False), "TCP port of the hub"),
        Setting("distributor.ip", "0.0.0.0", _host, "address the distributor listens on (0.0.0.0 = all)"),
        Setting("distributor.port", 0, _port(True), "distributor TCP port (0 = a random free port)"),
        Setting("limits.upload_rate", 0, _non_negative, "upload cap in bytes/s (0 = unlimited)"),
        Setting("limits.download_rate", 0, _non_negative, "download cap in bytes/s (0 = unlimited)"),
        Setting("limits.upload_slots", 64, _positive, "book requests served at once"),
        Setting("maestro.heartbeat_interval", 0.5, _seconds, "seconds between service heartbeats"),
        Setting("paths.downloads", "", _text, "where downloads land (empty = <data>/downloads)"),
        Setting("distributor.advertise", "", _optional_host,
                "address others reach the distributor at (empty = as the hub sees it)"),
    ]
}


def default_data_dir() -> Path:
    env = os.environ.get(ENV_DATA_DIR)
    return Path(env).expanduser() if env else Path.home() / ".emma"


@dataclass
class Config:
    """Settings of one data directory, validated on every change."""

    data_dir: Path
    values: dict[str, Any]

    @property
    def path(self) -> Path:
        return self.data_dir / "config.toml"

    def get(self, key: str) -> Any:
        if key not in SETTINGS:
            raise ConfigError(f"unknown setting {key!r}; known: {', '.join(SETTINGS)}")
        return self.values.get(key, SETTINGS[key].default)

    def set(self, key: str, value: Any) -> Any:
        if key not in SETTINGS:
            raise ConfigError(f"unknown setting {key!r}; known: {', '.join(SETTINGS)}")
        checked = SETTINGS[key].check(value)
        self.values[key] = checked
        return checked

    @property
    def hub_endpoint(self) -> str:
        return make_endpoint(self.get("hub.ip"), self.get("hub.port"))

    @property
    def libs_dir(self) -> Path:
        return self.data_dir / "libs"

    @property
    def downloads_dir(self) -> Path:
        custom = self.get("paths.downloads")
        return Path(custom).expanduser() if custom else self.data_dir / "downloads"

    @property
    def run_dir(self) -> Path:
        return self.data_dir / "run"

    @property
    def state_db(self) -> Path:
        return self.data_dir / "state.db"

    def ensure_dirs(self) -> None:
        for folder in (self.data_dir, self.libs_dir, self.downloads_dir, self.run_dir, self.data_dir / "logs"):
            folder.mkdir(parents=True, exist_ok=True)

    def save(self) -> None:
        """Write config.toml atomically (temp file, then rename)."""
        self.data_dir.mkdir(parents=True, exist_ok=True)
        tmp = self.path.with_suffix(".toml.tmp")
        tmp.write_text(render_toml({k: self.get(k) for k in SETTINGS}), encoding="utf-8")
        os.replace(tmp, self.path)

    def as_dict(self) -> dict[str, Any]:
        return {key: self.get(key) for key in SETTINGS}


def render_toml(values: dict[str, Any]) -> str:
    """Render flat dotted keys as TOML tables."""
    tables: dict[str, list[str]] = {}
    for key, value in values.items():
        table, _, name = key.partition(".")
        tables.setdefault(table, []).append(f"{name} = {_toml_value(value)}")
    return "\n".join(f"[{table}]\n" + "\n".join(lines) + "\n" for table, lines in tables.items())


def _toml_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return repr(value)
    return '"' + "".join(_toml_char(ch) for ch in str(value)) + '"'


def _toml_char(ch: str) -> str:
    """One character of a TOML basic string: quote, backslash and control characters escaped."""
    if ch in '"\\':
        return "\\" + ch
    if ch < " " or ch == "\x7f":
        return f"\\u{ord(ch):04x}"
    return ch


def exists(data_dir: Path) -> bool:
    return (data_dir / "config.toml").is_file()


def load(data_dir: Path) -> Config:
    """Read ``<data>/config.toml`` (missing = all defaults), validating every key."""
    config = Config(data_dir=data_dir, values={})
    if not config.path.is_file():
        return config
    try:
        raw = tomllib.loads(config.path.read_text(encoding="utf-8"))
    except (tomllib.TOMLDecodeError, UnicodeDecodeError, OSError) as exc:
        raise ConfigError(f"cannot read {config.path}: {exc}; fix or delete it") from exc
    for table, entries in raw.items():
        if not isinstance(entries, dict):
            raise ConfigError(f"{config.path}: [{table}] must be a table")
        for name, value in entries.items():
            key = f"{table}.{name}"
            if key in SETTINGS:
                try:
                    config.set(key, value)
                except ConfigError as exc:
                    raise ConfigError(f"{config.path}: {key}: {exc}") from exc
    return config


class Watcher:
    """Notices when config.toml changes on disk (the CLI or the Maestro saved it)."""

    def __init__(self, config: Config) -> None:
        self.path = config.path
        self.stamp = self._stamp()

    def _stamp(self) -> int:
        try:
            return self.path.stat().st_mtime_ns
        except OSError:
            return 0

    def changed(self) -> Config | None:
        """The reloaded config if the file changed since the last call, else None."""
        stamp = self._stamp()
        if stamp == self.stamp:
            return None
        self.stamp = stamp
        try:
            return load(self.path.parent)
        except ConfigError:
            return None
