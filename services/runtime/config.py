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

Every value goes through its key's validator, whatever path it came by:
``emma settings set``, the console's Settings, first-run setup, a SetRates
request on the Maestro's control socket, a hand-edited config.toml when it
is loaded, and ``Config(values=...)`` itself. Validators bound every number
from both sides (``MAX_RATE``, ``MAX_UPLOAD_SLOTS``, ports, heartbeat
seconds) and raise ConfigError with the rule; a bad file names the key too.
"""

from __future__ import annotations

import ipaddress
import os
import re
import tomllib
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from services.runtime import rundir
from services.runtime.units import UnitError, parse_size
from services.wire.ids import InvalidEndpoint, is_host, make_endpoint, parse_endpoint, parse_host_port

DEFAULT_HUB_PORT = 7070
ENV_DATA_DIR = "EMMA_DATA_DIR"
MAX_RATE = 16 * 1024**3  # bytes/s (about 137 Gbit/s): past any link we run; 0 is "no cap"
MAX_UPLOAD_SLOTS = 1024  # book requests served at once; each may hold a book (up to 64 MiB) in memory
MIN_HEARTBEAT, MAX_HEARTBEAT = 0.05, 60.0  # seconds
MAX_HOST_LEN = 253  # the longest DNS name
MAX_PATH_BYTES = 4096  # PATH_MAX on Linux
MAX_CONFIG_BYTES = 1024 * 1024  # a config.toml is a few hundred bytes
_WHOLE = re.compile(r"[+-]?[0-9]{1,30}")

ANY_PLAYERS = "any"  # curve.ANY, spelled here too so that loading a config imports no zmq (a test checks)


class ConfigError(ValueError):
    """A setting that does not validate, or a config file that does not parse."""


def _shown(value: Any) -> str:
    """A value for an error message: its repr, cut short."""
    text = repr(value)
    return text if len(text) <= 40 else text[:40] + "..."


def _as_int(value: Any) -> int:
    """A whole number: an integer, a float with no fraction, or text of ASCII digits; never a bool."""
    if isinstance(value, int) and not isinstance(value, bool):
        return value
    if isinstance(value, float) and value.is_integer():
        return int(value)
    if isinstance(value, str) and _WHOLE.fullmatch(value.strip()):
        return int(value.strip())
    raise ConfigError(f"expected a whole number, got {_shown(value)}")


def _port(allow_zero: bool) -> Callable[[Any], int]:
    def check(value: Any) -> int:
        port = _as_int(value)
        low = 0 if allow_zero else 1
        if not low <= port <= 65535:
            raise ConfigError(f"port must be between {low} and 65535, got {port}")
        return port

    return check


def _whole(low: int, high: int, what: str) -> Callable[[Any], int]:
    """A whole number in ``low..high``; ``what`` says what the upper bound means."""

    def check(value: Any) -> int:
        number = _as_int(value)
        if number < low:
            raise ConfigError(f"expected {low} or more, got {number}")
        if number > high:
            raise ConfigError(f"expected at most {high} ({what}), got {number}")
        return number

    return check


_rate_bounds = _whole(0, MAX_RATE, "16 GiB/s; 0 means no cap")


def _rate(value: Any) -> int:
    """Bytes per second: a whole number, or text with a unit (``500K``, ``1.5M``, ``2G``)."""
    if isinstance(value, str) and any(ch.isalpha() for ch in value):  # a unit; digits alone stay whole numbers
        try:
            value = parse_size(value)
        except UnitError as exc:
            raise ConfigError(f"{exc} (per second)") from None
    return _rate_bounds(value)

_slots = _whole(1, MAX_UPLOAD_SLOTS, "requests served at once")


def _limit(high: float, what: str) -> Callable[[Any], float]:
    """A number from 0 (no limit) to ``high``."""
    def check(value: Any) -> float:
        try:
            number = float(value) if not isinstance(value, bool) else float("nan")
        except (TypeError, ValueError, OverflowError) as exc:
            raise ConfigError(f"expected a number of {what} (0 = no limit), got {_shown(value)}") from exc
        if not 0 <= number <= high:  # NaN fails too
            raise ConfigError(f"expected between 0 (no limit) and {high:g} {what}, got {_shown(value)}")
        return number
    return check


def _seconds(value: Any) -> float:
    if isinstance(value, bool):
        raise ConfigError(f"expected a number of seconds, got {_shown(value)}")
    try:
        number = float(value)
    except (TypeError, ValueError, OverflowError) as exc:
        raise ConfigError(f"expected a number of seconds, got {_shown(value)}") from exc
    if not MIN_HEARTBEAT <= number <= MAX_HEARTBEAT:
        raise ConfigError(f"expected between {MIN_HEARTBEAT:g} and {MAX_HEARTBEAT:g} seconds, got {number}")
    return number


def _host(value: Any) -> str:
    text = str(value).strip() if isinstance(value, str) else ""
    if text and len(text) <= MAX_HOST_LEN and text.isascii() and text.isprintable() and " " not in text:
        try:
            ipaddress.ip_address(text)
            return text
        except ValueError:
            if is_host(text):
                return text
    raise ConfigError(f"not an IP address or host name: {_shown(value)}")


MAX_MORE_HUBS = 16


def _hub_list(value: Any) -> str:
    """Hub endpoints ``tcp://HOST:PORT``, comma-separated (empty: none)."""
    text = value.strip() if isinstance(value, str) else None
    if text is None:
        raise ConfigError(f"expected hub endpoints separated by commas, got {_shown(value)}")
    hubs = [part.strip() for part in text.split(",") if part.strip()]
    if len(hubs) > MAX_MORE_HUBS:
        raise ConfigError(f"at most {MAX_MORE_HUBS} more hubs, got {len(hubs)}")
    for hub in hubs:
        try:
            parse_endpoint(hub)
        except InvalidEndpoint as exc:
            raise ConfigError(f"{exc}; write each hub as tcp://HOST:PORT") from None
    return ",".join(hubs)


def _optional_host(value: Any) -> str:
    return "" if isinstance(value, str) and not value.strip() else _host(value)


def _optional_bind(value: Any) -> str:
    """Empty (off) or HOST:PORT, as a /metrics endpoint is bound."""
    if isinstance(value, str) and not value.strip():
        return ""
    if not isinstance(value, str):
        raise ConfigError(f"expected HOST:PORT such as 127.0.0.1:9102, got {_shown(value)}")
    try:
        host, port = parse_host_port(value)
    except InvalidEndpoint as exc:
        raise ConfigError(str(exc)) from None
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def _flag(value: Any) -> bool:
    if isinstance(value, bool):
        return value
    text = str(value).strip().lower() if isinstance(value, str | int) else ""
    if text in ("true", "yes", "on", "1"):
        return True
    if text in ("false", "no", "off", "0"):
        return False
    raise ConfigError(f"expected true or false, got {_shown(value)}")


def _path(value: Any) -> str:
    """Text a path can be made of: no NUL (no system call takes one), at most PATH_MAX bytes."""
    if not isinstance(value, str):
        raise ConfigError(f"expected a path as text, got {_shown(value)}")
    if "\x00" in value:
        raise ConfigError("a path cannot contain a NUL character")
    size = len(value.encode(errors="surrogateescape"))
    if size > MAX_PATH_BYTES:
        raise ConfigError(f"a path is at most {MAX_PATH_BYTES} bytes, got {size}")
    return value


def _hub_key(value: Any) -> str:
    """The hubs' CURVE public key (Z85, 40 characters), or empty: the hubs run in clear."""
    if not isinstance(value, str):
        raise ConfigError(f"expected a hub key (40 characters, as `emma hub` prints it), got {_shown(value)}")
    if not value.strip():
        return ""
    from services.wire import curve  # zmq and blake3: only for a key to check, not at every start-up

    try:
        return curve.check_key(value, "hub key").decode("ascii")
    except curve.CurveKeyError as exc:
        raise ConfigError(str(exc)) from None


def _players(value: Any) -> str:
    """``any`` (an open swarm) or the path of a file of player keys (a private swarm)."""
    text = _path(value).strip()
    return ANY_PLAYERS if not text or text.lower() == ANY_PLAYERS else text


def _publishers(value: Any) -> str:
    """Empty (any publisher, or none) or the path of a file of trusted publisher keys."""
    return _path(value).strip()


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
        Setting("hub.more", "", _hub_list,
                "more hubs sharing the first one's Redis, tcp://HOST:PORT comma-separated (named in libraries "
                "you share)"),
        Setting("distributor.ip", "0.0.0.0", _host, "address the distributor listens on (0.0.0.0 = all)"),
        Setting("distributor.port", 0, _port(True), "distributor TCP port (0 = a random free port)"),
        Setting("limits.upload_rate", 0, _rate, "upload cap in bytes/s, 500K, 1.5M, 2G (0 = unlimited)"),
        Setting("limits.download_rate", 0, _rate, "download cap in bytes/s, 500K, 1.5M, 2G (0 = unlimited)"),
        Setting("limits.upload_slots", 64, _slots, "book requests served at once"),
        Setting("maestro.heartbeat_interval", 0.5, _seconds, "seconds between service heartbeats"),
        Setting("maestro.stop_grace", 8.0, _seconds, "seconds a stopping service gets to exit before SIGKILL"),
        Setting("paths.downloads", "", _path, "where downloads land (empty = <data>/downloads)"),
        Setting("distributor.advertise", "", _optional_host,
                "address others reach the distributor at (empty = as the hub sees it)"),
        Setting("metrics.bind", "", _optional_bind, "serve Prometheus metrics at HOST:PORT/metrics (empty = off)"),
        Setting("metrics.library_label", True, _flag, "export per-library series (one per library)"),
        Setting("hub.key", "", _hub_key,
                "the hubs' public key, as `emma hub` prints it (named in libraries you share; empty = in clear)"),
        Setting("security.players", ANY_PLAYERS, _players,
                "who may connect to this player's distributor (and a hub run here): any, or a file of player keys"),
        Setting("security.encryption", True, _flag,
                "CURVE on this player's links (off only in an open swarm, for raw speed in a trusted network)"),
        Setting("security.publishers", "", _publishers,
                "a file of trusted publisher keys: libraries not signed by one are refused (empty = any)"),
        Setting("seeding.ratio", 0.0, _limit(1e6, "times its size"),
                "stop seeding a library once it has sent this many times its size (0 = never stop)"),
        Setting("seeding.hours", 0.0, _limit(1e6, "hours"),
                "stop seeding a library this many hours after it completed (0 = never stop)"),
    ]
}


_TOGETHER = frozenset({"security.players", "security.encryption"})


def _check_together(values: dict[str, Any]) -> None:
    """A private swarm (a players file) cannot turn encryption off."""
    players = values.get("security.players", ANY_PLAYERS)
    if players != ANY_PLAYERS and not values.get("security.encryption", True):
        raise ConfigError("a private swarm (security.players is a file) always encrypts: set security.players to "
                          "any before turning security.encryption off")


def given_path(text: str | Path) -> Path:
    """A path a person gave (an argument, an answer, a setting): ``~`` expanded as a shell expands it (``~user`` of
    no such user stays as typed, where ``Path.expanduser`` raises), made absolute from the folder it was given in."""
    return Path(os.path.expanduser(text)).absolute()


def default_data_dir() -> Path:
    env = os.environ.get(ENV_DATA_DIR)
    return Path(os.path.expanduser(env)) if env else Path.home() / ".emma"


@dataclass
class Config:
    """Settings of one data directory, validated on every change (and the values it is made with)."""

    data_dir: Path
    values: dict[str, Any]

    def __post_init__(self) -> None:
        given, self.values = self.values, {}
        for key, value in given.items():
            self.set(key, value)

    @property
    def path(self) -> Path:
        return self.data_dir / "config.toml"

    def get(self, key: str) -> Any:
        if key not in SETTINGS:
            raise ConfigError(f"unknown setting {key!r}; known: {', '.join(SETTINGS)}")
        return self.values.get(key, SETTINGS[key].default)

    def set(self, key: str, value: Any) -> Any:
        """Validate ``value`` by the rule of ``key`` and keep it; ConfigError says the rule."""
        if key not in SETTINGS:
            raise ConfigError(f"unknown setting {key!r}; known: {', '.join(SETTINGS)}")
        try:
            checked = SETTINGS[key].check(value)
        except ConfigError:
            raise
        except (TypeError, ValueError, OverflowError) as exc:  # a validator surprised: still one line, not a crash
            raise ConfigError(f"bad value {_shown(value)}: {exc}") from exc
        if key in _TOGETHER:
            _check_together({**self.values, key: checked})
        self.values[key] = checked
        return checked

    @property
    def hub_endpoint(self) -> str:
        return make_endpoint(self.get("hub.ip"), self.get("hub.port"))

    @property
    def hub_endpoints(self) -> tuple[str, ...]:
        """Every hub the libraries shared from here name: hub.ip:hub.port, then hub.more."""
        more = [hub for hub in str(self.get("hub.more")).split(",") if hub]
        return tuple(dict.fromkeys([self.hub_endpoint, *more]))

    @property
    def libs_dir(self) -> Path:
        return self.data_dir / "libs"

    @property
    def downloads_dir(self) -> Path:
        """The downloads folder; a relative ``paths.downloads`` (one written into config.toml by hand) is under the
        data folder, whatever folder a process runs in."""
        custom = self.get("paths.downloads")
        return self.data_dir / os.path.expanduser(custom) if custom else self.data_dir / "downloads"

    @property
    def run_dir(self) -> Path:
        return rundir.run_dir(self.data_dir)

    @property
    def state_db(self) -> Path:
        return self.data_dir / "state.db"

    def ensure_dirs(self) -> None:
        """The player's own folders. Not the downloads folder: a download makes it when it starts, so a folder
        that cannot be (``usable.problems`` says so) stops only downloads, never a command or the player."""
        for folder in (self.data_dir, self.libs_dir, self.data_dir / "logs"):
            folder.mkdir(parents=True, exist_ok=True)
        rundir.make(self.run_dir)

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
        if config.path.exists():  # a folder, FIFO or device: taken for no config, it was replaced by the defaults
            raise ConfigError(f"{config.path} is not a file (a folder, FIFO, socket or device); move it away")
        return config
    try:
        with open(config.path, "rb") as handle:
            data = handle.read(MAX_CONFIG_BYTES + 1)
        if len(data) > MAX_CONFIG_BYTES:
            raise ConfigError(f"{config.path} is over {MAX_CONFIG_BYTES} bytes, not a config; fix or delete it")
        raw = tomllib.loads(data.decode("utf-8"))
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
                    raise ConfigError(f"{config.path}: {key}: {exc}; fix it with `emma settings set {key} VALUE` "
                                      "or edit the file") from exc
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
        except ConfigError as exc:
            from services.runtime.logs import get_logger  # structlog: in the services that watch, not the CLI

            get_logger("services").warning("config_invalid", path=str(self.path), error=str(exc),
                                           hint="the running player keeps the settings it had; fix the file to apply "
                                                "new ones")
            return None
