"""Whether this player's settings can work on this host, now: nothing may lock a person out.

``config.py`` checks that a value is well formed wherever it comes from (a hand-edited file
included), so a config always loads. This module checks what only the host can say, in two
places:

- ``refuse(config, key)`` when a person sets a value (``emma settings set``, the console's
  Settings, first-run setup): a downloads folder that cannot be created or written, a
  distributor address that is not one of this host's, a port another program holds. The
  value is refused with the reason and nothing is saved.
- ``problems(config)`` for a value that was fine and stopped being so (a disk unmounted, a
  folder made read-only, an address gone): every command still starts, and shows each
  problem as one line that says how to fix it; the console opens so Settings can.
"""

from __future__ import annotations

import errno
import os
import socket
import tempfile
from pathlib import Path
from typing import Any

from services.runtime.config import ANY_PLAYERS, Config, ConfigError

FIX_DOWNLOADS = "fix it with `emma settings set paths.downloads DIR` (empty for <data>/downloads) or console Settings"
FIX_ADDRESS = "fix it with `emma settings set distributor.ip 0.0.0.0` (all addresses) or console Settings"
_ANY = {"0.0.0.0", "::", ""}
# Settings naming a file or folder: saved absolute, since the player's processes run from another folder
_PATH_KEYS = ("paths.downloads", "security.players", "security.publishers")


def set_checked(config: Config, key: str, value: Any) -> Any:
    """``config.set`` for a value a person gives: well formed and able to work here (``refuse``), else
    ConfigError and ``config`` unchanged. Returns the value kept."""
    if key in _PATH_KEYS and isinstance(value, str) and value.strip() and value.strip().lower() != ANY_PLAYERS:
        value = os.path.abspath(os.path.expanduser(value.strip()))  # the folder the person typed it in means
    trial = Config(data_dir=config.data_dir, values=dict(config.values))
    checked = trial.set(key, value)
    refuse(trial, key, config.get(key))
    return config.set(key, checked)


def refuse(config: Config, key: str, before: object = None) -> None:
    """ConfigError when the value ``config`` now holds for ``key`` cannot work on this host; creates the
    downloads folder when it checks it. A port equal to ``before`` (the saved value, which this player's own
    distributor may hold) is not checked."""
    if key == "paths.downloads":
        _writable(config.downloads_dir)
    elif key == "distributor.ip":
        _bindable(str(config.get("distributor.ip")), 0)
    elif key == "distributor.port":
        port = int(config.get("distributor.port"))
        if port and port != before:
            _bindable(str(config.get("distributor.ip")), port)
    elif key in ("security.players", "security.publishers") and config.get(key) not in (ANY_PLAYERS, ""):
        _key_file(key, str(config.get(key)))
    elif key == "metrics.bind" and config.get("metrics.bind") and config.get("metrics.bind") != before:
        host, _, number = str(config.get("metrics.bind")).rpartition(":")
        _bindable(host.strip("[]"), int(number))


def problems(config: Config) -> list[str]:
    """One line for each setting that no longer works here, saying how to fix it; empty when all do.

    Cheap and without side effects (nothing is created), so every command can ask."""
    found = []
    folder = config.downloads_dir
    reason = _unwritable(folder)
    if reason:
        found.append(f"downloads folder {folder} {reason}; {FIX_DOWNLOADS}")
    host = str(config.get("distributor.ip"))
    if host not in _ANY:
        try:
            _bindable(host, 0)
        except ConfigError as exc:
            found.append(f"{exc}; {FIX_ADDRESS}")
    for key, fix in (("security.players", "any"), ("security.publishers", "''")):
        source = str(config.get(key))
        if source and source != ANY_PLAYERS and not os.access(os.path.expanduser(source), os.R_OK):
            found.append(f"{key} names {source}, which cannot be read: the player cannot start its distributor; "
                         f"put the file back, or `emma settings set {key} {fix}`")
    return found


def _unwritable(folder: Path) -> str:
    """Why files cannot be made in ``folder`` (or, when it does not exist yet, why it cannot be), or ''."""
    probe = folder
    while not probe.exists():
        if probe.is_symlink():
            return f"is a link to {os.readlink(probe)}, which is missing"
        if probe.parent == probe:
            return "cannot be created"
        probe = probe.parent
    if not probe.is_dir():
        return "is a file" if probe == folder else f"cannot be created: {probe} is a file"
    if not os.access(probe, os.W_OK | os.X_OK):
        return "is not writable" if probe == folder else f"cannot be created: {probe} is not writable"
    return ""


def _key_file(key: str, source: str) -> None:
    """Read the file of keys ``source`` as the player will (an allowlist of player keys, or trusted publishers),
    or ConfigError naming what is wrong: a player given a file it cannot read would serve nobody."""
    from services.peer.signing import SignatureError, Trusted  # zmq and cryptography: only when such a key is set
    from services.wire.curve import Allowlist, CurveKeyError

    try:
        if key == "security.players":
            Allowlist(source)
        else:
            Trusted.from_file(source)
    except (CurveKeyError, SignatureError) as exc:
        what = "player keys (or any)" if key == "security.players" else "trusted publisher keys (or empty)"
        raise ConfigError(f"{key} must name a readable file of {what}: {exc}") from None


def _writable(folder: Path) -> None:
    """Create ``folder`` and write a file in it, or ConfigError with the OS's reason."""
    try:
        folder.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryFile(dir=folder):
            pass
    except OSError as exc:
        raise ConfigError(f"cannot use {folder} for downloads: {exc.strerror or exc}") from None


def _bindable(host: str, port: int) -> None:
    """Bind a TCP socket to ``host:port`` and let it go, or ConfigError: not an address of this host, or a
    port another program holds."""
    if host in _ANY and port == 0:
        return
    try:
        infos = socket.getaddrinfo(host or None, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
    except socket.gaierror as exc:
        raise ConfigError(f"{host} does not resolve: {exc.strerror}") from None
    family, kind, proto, _, address = infos[0]
    with socket.socket(family, kind, proto) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as ZeroMQ binds: TIME_WAIT is no conflict
        try:
            sock.bind(address)
        except OSError as exc:
            if exc.errno == errno.EADDRNOTAVAIL:
                raise ConfigError(f"{host} is not an address of this host (see `ip addr`): a port opens on one of "
                                  "its own, or on 0.0.0.0 for all") from None
            if exc.errno == errno.EADDRINUSE:
                raise ConfigError(f"port {port} on {host} is in use by another program; choose another "
                                  "(0 = a random free port)") from None
            raise ConfigError(f"cannot listen on {host}:{port}: {exc.strerror or exc}") from None
