"""Signed libraries: the publisher's Ed25519 key, what a signature covers, and trusted publishers.

How this works. ``emma share`` signs each library with the player's publisher key
(``<data>/publisher.key``, 0600, made on first use; ``emma keys show`` prints its public
half). The signature covers, in one unambiguous message (:func:`signed_message`, each part
length-prefixed): the format version and the info bytes (so the id), every hub endpoint with its CURVE key, the
creation time, the creator text and the publisher's public key. A signed library whose
bytes were changed in any of these, or whose signature or publisher key was swapped, fails
to load (:func:`check`, called by :func:`services.peer.library.parse_library`).

A library with neither publisher key nor signature is *unsigned* (libraries made before
signing existed): it loads, and works with hubs that run in clear, unless the player trusts
named publishers (``security.publishers``, a file of publisher keys, one 64-hex key a line
with an optional ``#`` comment): :meth:`Trusted.refusal` then says why it is refused.
"""

from __future__ import annotations

import os
import struct
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from services.runtime.secret_file import write_secret

PUBLISHER_FILE = "publisher.key"
KEY_LEN = 32
SIGNATURE_LEN = 64
_DOMAIN = b"emma library signature v1\0"
RESHARE = "ask its publisher for the library again (`emma share` makes a signed one)"


class SignatureError(ValueError):
    """A signature that does not hold, or a publisher key file that cannot be used."""


def signed_message(info: bytes, hubs: Sequence[str], hub_keys: Sequence[str], created_at: int, creator: str,
                   publisher_key: bytes, format_version: int) -> bytes:
    """The bytes a library's signature is made over (each part length-prefixed: no two libraries share them)."""
    entries = [f"{hub}\0{key}".encode() for hub, key in zip(hubs, _padded(hub_keys, len(hubs)), strict=True)]
    parts = [struct.pack(">I", format_version), info, *entries, struct.pack(">Q", created_at), creator.encode(),
             publisher_key]
    counted = struct.pack(">I", len(hubs))
    return _DOMAIN + counted + b"".join(struct.pack(">Q", len(part)) + part for part in parts)


def _padded(keys: Sequence[str], count: int) -> list[str]:
    return [*keys, *([""] * (count - len(keys)))][:count]


def check(message: bytes, publisher_key: bytes, signature: bytes) -> None:
    """Raise SignatureError unless ``signature`` is ``publisher_key``'s over ``message`` (both empty: unsigned)."""
    if not publisher_key and not signature:
        return
    if len(publisher_key) != KEY_LEN or len(signature) != SIGNATURE_LEN:
        raise SignatureError(f"library signature is malformed (a {len(publisher_key)}-byte publisher key, a "
                             f"{len(signature)}-byte signature); {RESHARE}")
    try:
        Ed25519PublicKey.from_public_bytes(publisher_key).verify(signature, message)
    except (InvalidSignature, ValueError):
        raise SignatureError(f"library signature does not hold: the file was changed after publisher "
                             f"{publisher_key.hex()[:16]} signed it; {RESHARE}") from None


@dataclass(frozen=True)
class Publisher:
    """A publisher key pair; the private half never shows in a repr."""

    private: Ed25519PrivateKey = field(repr=False)

    @property
    def public(self) -> bytes:
        return self.private.public_key().public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)

    def sign(self, message: bytes) -> bytes:
        return self.private.sign(message)


def publisher_path(data_dir: Path) -> Path:
    return data_dir / PUBLISHER_FILE


def load_publisher(data_dir: Path) -> Publisher:
    """The data directory's publisher key, made on first use (0600; concurrent first runs agree)."""
    path = publisher_path(data_dir)
    if not path.exists():
        try:
            _write(path, Ed25519PrivateKey.generate(), replace=False)
        except OSError as exc:
            raise SignatureError(f"cannot make the publisher key in {data_dir}: {exc.strerror or exc}") from exc
    try:
        info = path.stat()
        raw = bytes.fromhex(path.read_text(encoding="ascii").strip())
    except (OSError, UnicodeDecodeError, ValueError) as exc:
        raise SignatureError(f"cannot read the publisher key {path}: {exc}; `emma keys rotate --publisher` "
                             "makes a new one") from exc
    if info.st_mode & 0o077:
        raise SignatureError(f"{path} may be read by others (mode {info.st_mode & 0o777:o}): make a new key with "
                             f"`emma keys rotate --publisher`, or `chmod 600 {path}` if it did not leak")
    if len(raw) != KEY_LEN:
        raise SignatureError(f"{path} holds no publisher key; `emma keys rotate --publisher` makes a new one")
    return Publisher(Ed25519PrivateKey.from_private_bytes(raw))


def rotate_publisher(data_dir: Path) -> Publisher:
    """A new publisher key in place of the old one (libraries signed before keep the old signature)."""
    key = Ed25519PrivateKey.generate()
    _write(publisher_path(data_dir), key, replace=True)
    return Publisher(key)


def _write(path: Path, key: Ed25519PrivateKey, *, replace: bool) -> None:
    raw = key.private_bytes(serialization.Encoding.Raw, serialization.PrivateFormat.Raw,
                            serialization.NoEncryption())
    write_secret(path, raw.hex() + "\n", replace=replace)


def parse_publisher_key(text: str) -> bytes:
    """A publisher's public key from its 64-hex text (as `emma keys show` prints it)."""
    text = text.strip()
    try:
        raw = bytes.fromhex(text)
    except ValueError:
        raw = b""
    if len(raw) != KEY_LEN:
        raise SignatureError(f"bad publisher key {text[:70]!r}: 64 hex characters, as `emma keys show` prints it")
    return raw


class Trusted:
    """The publishers a player trusts (none named: every library, signed or not, is taken)."""

    def __init__(self, keys: dict[bytes, str] | None = None) -> None:
        self.keys = keys or {}

    @classmethod
    def from_file(cls, source: str) -> Trusted:
        """Read ``security.publishers`` (empty: trust every library); SignatureError names a bad line."""
        if not source:
            return cls()
        path = Path(os.path.expanduser(source))
        try:
            text = path.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            raise SignatureError(f"cannot read the trusted publishers file {path}: {exc}; fix it or set "
                                 "security.publishers to empty") from exc
        keys: dict[bytes, str] = {}
        for number, line in enumerate(text.splitlines(), start=1):
            body, _, comment = line.partition("#")
            if body.strip():
                try:
                    keys[parse_publisher_key(body)] = comment.strip()
                except SignatureError as exc:
                    raise SignatureError(f"{path}:{number}: {exc}") from None
        return cls(keys)

    def refusal(self, publisher_key: bytes) -> str:
        """Why a library signed by ``publisher_key`` (b"": unsigned) is refused; "" when it is taken."""
        if not self.keys or publisher_key in self.keys:
            return ""
        if not publisher_key:
            return f"the library is unsigned and this player trusts only named publishers; {RESHARE}"
        return (f"the library is signed by publisher {publisher_key.hex()[:16]}, not one this player trusts; add "
                "its key to the security.publishers file if you trust it")
