"""CURVE on the TCP links: key pairs on disk, the allowlist of player keys, and socket setup.

How this works. Every player and every hub owns one CURVE key pair (``zmq.curve_keypair``),
kept as its secret half, Z85 text, in ``<data>/curve.key`` with 0600 permissions (the
public half is derived from it). A listening socket (hub ROUTER, Distributor ROUTER) is a
CURVE server; the clients that reach it (HubClient's DEALER, the Requestor's DEALERs) are
CURVE clients that must know the server's public key beforehand: a library names each
hub's key, the hub hands out each peer's key with its endpoint. An empty key means the
other side runs in clear (encryption off); the connection is then made without CURVE.

What a server admits is an :class:`Allowlist`: "any" (an open swarm, every key), or the
keys in a file, one Z85 key a line with an optional comment after it, re-read when the file
changes (:meth:`Allowlist.refresh`, called by the ZAP handler's loop, see
:mod:`services.wire.admission`). Secret keys never reach a log line or a repr.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import blake3
import zmq
from zmq.utils import z85

from services.runtime.secret_file import write_secret
from services.wire.ids import PLAYER_ID_LEN

KEY_FILE = "curve.key"
ANY = "any"
Z85_KEY_LEN = 40  # a 32-byte key in Z85 text
RELOAD_SECONDS = 1.0  # how often an allowlist file is looked at for changes
MAX_ALLOWLIST_BYTES = 4 * 1024 * 1024  # about 80,000 keys with comments
_Z85 = re.compile(r"[0-9a-zA-Z.\-:+=^!/*?&<>()\[\]{}@%$#]{40}")


class CurveKeyError(ValueError):
    """A key or key file that cannot be used; the message says what to do."""


def check_key(text: str, what: str = "key") -> bytes:
    """A public key as Z85 text (40 characters), returned as bytes; CurveKeyError otherwise."""
    text = text.strip()
    if len(text) != Z85_KEY_LEN or not _Z85.fullmatch(text):
        raise CurveKeyError(f"bad {what} {text[:48]!r}: a CURVE key is 40 characters of Z85 text "
                        "(as `emma keys show` prints it)")
    try:
        z85.decode(text)
    except (ValueError, KeyError) as exc:
        raise CurveKeyError(f"bad {what} {text[:48]!r}: not Z85 text") from exc
    return text.encode("ascii")


@dataclass(frozen=True)
class KeyPair:
    """A CURVE key pair as Z85 bytes; the secret half never shows in a repr."""

    public: bytes
    secret: bytes = field(repr=False)

    @classmethod
    def generate(cls) -> KeyPair:
        public, secret = zmq.curve_keypair()
        return cls(public, secret)

    @classmethod
    def from_secret(cls, secret: bytes) -> KeyPair:
        return cls(zmq.curve_public(secret), secret)


def player_id_of(public: bytes) -> bytes:
    """The player id a public key (Z85) stands for: what the hub accepts in requests made with that key."""
    return blake3.blake3(b"emma player id\0" + public).digest()[:PLAYER_ID_LEN]


def key_path(data_dir: Path) -> Path:
    return data_dir / KEY_FILE


def load_or_create(data_dir: Path) -> KeyPair:
    """The key pair of a data directory, made on first use (atomically: concurrent first runs agree)."""
    path = key_path(data_dir)
    if not path.exists():
        _write_new(path, KeyPair.generate(), replace=False)
    return read_key_file(path)


def rotate(data_dir: Path) -> KeyPair:
    """Replace the data directory's key pair with a new one; the old one is gone."""
    pair = KeyPair.generate()
    _write_new(key_path(data_dir), pair, replace=True)
    return pair


def read_key_file(path: Path) -> KeyPair:
    """Read a key file; refuse one that others may read (a leaked secret must be replaced, not used)."""
    try:
        info = path.stat()
        text = path.read_text(encoding="ascii").strip()
    except (OSError, UnicodeDecodeError) as exc:
        raise CurveKeyError(f"cannot read the key file {path}: {exc}; `emma keys rotate` makes a new one") from exc
    if info.st_mode & 0o077:
        raise CurveKeyError(f"{path} may be read by others (mode {info.st_mode & 0o777:o}); its secret may have "
                        f"leaked: make a new pair with `emma keys rotate`, or `chmod 600 {path}` if it did not")
    try:
        secret = check_key(text, "secret key")
        return KeyPair.from_secret(secret)
    except (CurveKeyError, zmq.ZMQError) as exc:
        raise CurveKeyError(f"{path} holds no valid key ({exc}); `emma keys rotate` makes a new one") from None


def _write_new(path: Path, pair: KeyPair, *, replace: bool) -> None:
    write_secret(path, pair.secret.decode("ascii") + "\n", replace=replace)


# -- who a server admits ---------------------------------------------------------------------------------------


def parse_allowlist(text: str, origin: str = "allowlist") -> dict[bytes, str]:
    """Keys of an allowlist file's text, each with its comment ("" without); a bad line names itself.

    A line is a key, then optionally whitespace and a comment (``# alice's laptop``); a line that
    starts with ``#`` and is not a key is a comment (Z85 itself uses ``#``, so a key may start with one).
    """
    keys: dict[bytes, str] = {}
    for number, line in enumerate(text.splitlines(), start=1):
        parts = line.split(None, 1)
        if not parts:
            continue
        try:
            key = check_key(parts[0], "player key")
        except CurveKeyError as exc:
            if parts[0].startswith("#"):
                continue
            raise CurveKeyError(f"{origin}:{number}: {exc}") from None
        keys[key] = parts[1].strip().removeprefix("#").strip() if len(parts) > 1 else ""
    return keys


KEPT = "; the keys read before stay in force"  # what a refresh that failed says of the keys


class Allowlist:
    """Which client keys a server admits: every one ("any"), or those of a file, re-read when it changes.

    A file that turns unreadable or invalid keeps the keys last read (and :meth:`refresh` says
    why): a typo must not open the swarm, nor close it to everyone.
    """

    def __init__(self, source: str) -> None:
        self.source = source.strip() or ANY
        self.path = None if self.source == ANY else Path(os.path.expanduser(self.source))
        self.keys: dict[bytes, str] = {}
        self._stamp: tuple[int, int, int] | None = None
        self._next_look = 0.0
        self._last_problem = ""
        if self.path is not None:
            error = self.refresh(0.0)
            if error:  # at start no keys were read before: none stay in force
                raise CurveKeyError(error.partition(KEPT)[0])

    @property
    def open(self) -> bool:
        return self.path is None

    def admits(self, key: bytes) -> bool:
        return self.path is None or key in self.keys

    def refresh(self, now: float) -> str:
        """Re-read the file if it changed (looked at once per RELOAD_SECONDS); "" or why it was not taken."""
        if self.path is None or now < self._next_look:
            return ""
        self._next_look = now + RELOAD_SECONDS
        try:
            info = self.path.stat()
            stamp = (info.st_ino, info.st_size, info.st_mtime_ns)
            if stamp == self._stamp:
                return ""
            if info.st_size > MAX_ALLOWLIST_BYTES:
                raise CurveKeyError(f"{self.path} is over {MAX_ALLOWLIST_BYTES} bytes; it is not a list of keys")
            keys = parse_allowlist(self.path.read_text(encoding="utf-8"), str(self.path))
        except (OSError, UnicodeDecodeError) as exc:
            why = getattr(exc, "strerror", None) or exc
            return self._problem(f"cannot read the allowlist {self.path}: {why}{KEPT}")
        except CurveKeyError as exc:
            return self._problem(f"{exc}{KEPT} until the file is fixed")
        self._stamp, self.keys, self._last_problem = stamp, keys, ""
        return ""

    def _problem(self, text: str) -> str:
        """``text`` the first time it happens, "" while the same problem lasts."""
        if text == self._last_problem:
            return ""
        self._last_problem = text
        return text


# -- sockets -------------------------------------------------------------------------------------------------------


def serve_curve(sock: zmq.Socket[Any], pair: KeyPair) -> None:
    """Make ``sock`` a CURVE server with ``pair``; call before it binds."""
    sock.curve_server = True
    sock.curve_secretkey = pair.secret
    sock.curve_publickey = pair.public


def connect_curve(sock: zmq.Socket[Any], pair: KeyPair, server_key: bytes) -> None:
    """Make ``sock`` a CURVE client of the server whose public key is ``server_key``; before it connects.
    An empty ``server_key`` leaves the socket in clear (that server runs with encryption off)."""
    if not server_key:
        return
    sock.curve_serverkey = server_key
    sock.curve_publickey = pair.public
    sock.curve_secretkey = pair.secret
