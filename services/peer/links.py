"""Sharing by link: one copyable line instead of a .lib file.

A link names a library by its id and says where to ask for it::

    emma:<64 hex of the library id>?hub=tcp://203.0.113.5:7070&hub=<64 hex of the hub's CURVE key>@tcp://...

(each ``hub`` is an endpoint, with its CURVE public key in hex before ``@`` when the hub runs with keys).
``emma get LINK`` asks those hubs for players of the library, asks one of their
distributors for the library file (a ``LibraryRequest``), and keeps it only if it parses
as a library (signature included, if signed) whose id is the link's; then it downloads
as from a .lib file. ``parse`` and ``format_link`` are plain functions; ``fetch`` is the
one place with sockets. Nothing fetched is written unless it passed every check.
"""

from __future__ import annotations

import binascii
import time
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qsl, urlsplit

import zmq
import zmq.utils.z85

from services.hub.client import HubClient
from services.hub.client_types import HubClientError
from services.peer.library import MAX_HUBS, MAX_LIBRARY_BYTES, Library, LibraryError, parse_library
from services.wire import curve, framing
from services.wire.errors import ProtocolError
from services.wire.ids import LIBRARY_ID_LEN, parse_endpoint

SCHEME = "emma:"
MAX_LINK_CHARS = 4096
PEERS_TRIED = 8  # distributors asked for the library file, one after the other
KEY_HEX = 64  # a CURVE public key: 32 bytes


class LinkError(ValueError):
    """A link that cannot be used, or a library that cannot be fetched with it: the message says why."""


@dataclass(frozen=True)
class Link:
    library_id: bytes
    hubs: tuple[str, ...]
    hub_keys: tuple[str, ...]  # each hub's CURVE key (Z85, as .lib files hold them); "" for a hub in clear

    @property
    def text(self) -> str:
        return format_link(self.library_id, self.hubs, self.hub_keys)


def is_link(text: str) -> bool:
    """Whether ``text`` is meant as a link: it starts with the scheme, in any case, once the blanks a copy and
    paste brings are stripped (a scheme is case-insensitive, as in every URI)."""
    return text.strip()[: len(SCHEME)].lower() == SCHEME


def format_link(library_id: bytes, hubs: tuple[str, ...], hub_keys: tuple[str, ...] = ()) -> str:
    parts = []
    for index, hub in enumerate(hubs):
        key = hub_keys[index] if index < len(hub_keys) else ""
        parts.append(f"hub={zmq.utils.z85.decode(key).hex()}@{hub}" if key else f"hub={hub}")
    return f"{SCHEME}{library_id.hex()}?{'&'.join(parts)}"


def of_library(library: Library) -> Link:
    return Link(library.id, library.hubs, library.hub_keys)


def parse(text: str) -> Link:
    """The link in ``text``; LinkError (saying what is wrong) for anything else."""
    text = text.strip()
    if len(text) > MAX_LINK_CHARS or not text.isascii() or not text.isprintable():
        raise LinkError(f"not an emma link: give one line of at most {MAX_LINK_CHARS} plain characters")
    if not is_link(text):
        raise LinkError(f"not an emma link (it starts with {SCHEME!r}): {text[:60]!r}")
    parts = urlsplit(text)
    try:
        library_id = bytes.fromhex(parts.path)
    except ValueError:
        library_id = b""
    if len(library_id) != LIBRARY_ID_LEN:
        raise LinkError(f"the link's library id must be {2 * LIBRARY_ID_LEN} hex digits, got {parts.path[:80]!r}")
    hubs: list[str] = []
    keys: list[str] = []
    for name, value in parse_qsl(parts.query, keep_blank_values=True):
        if name != "hub":
            raise LinkError(f"the link holds {name[:20]!r}; it holds only hub=ENDPOINT or hub=KEY@ENDPOINT")
        endpoint, key = parse_hub(value, " in the link")
        hubs.append(endpoint)
        keys.append(key)
    if not hubs or len(hubs) > MAX_HUBS:
        raise LinkError(f"the link must name 1 to {MAX_HUBS} hubs (hub=tcp://HOST:PORT)")
    return Link(library_id, tuple(hubs), tuple(keys) if any(keys) else ())


def parse_hub(value: str, where: str = "") -> tuple[str, str]:
    """A hub as a link or `emma get --hub` gives it, ``tcp://HOST:PORT`` or ``KEYHEX@tcp://HOST:PORT``: its
    endpoint and its CURVE key (Z85, as .lib files hold them; "" for a hub in clear); LinkError if malformed,
    saying ``where`` it was."""
    key_hex, _, endpoint = value.rpartition("@")
    try:
        parse_endpoint(endpoint)
    except ValueError as exc:
        raise LinkError(f"bad hub endpoint{where}: {exc}") from None
    if not key_hex:
        return endpoint, ""
    try:
        raw = binascii.unhexlify(key_hex) if len(key_hex) == KEY_HEX else b""
    except binascii.Error:
        raw = b""
    if not raw:
        raise LinkError(f"bad hub key{where}: {KEY_HEX} hex digits before '@', got {key_hex[:80]!r}")
    return endpoint, zmq.utils.z85.encode(raw).decode("ascii")


def check(link: Link, data: bytes) -> Library:
    """The library in ``data`` if it is the link's (every field and any signature checked); LinkError if not."""
    try:
        library = parse_library(data)
    except LibraryError as exc:
        raise LinkError(f"the library file a peer sent is not valid ({exc}); nothing was written") from None
    if library.id != link.library_id:
        raise LinkError(f"a peer sent a library whose id is {library.id_hex[:16]}..., not the link's "
                        f"{link.library_id.hex()[:16]}...; nothing was written")
    return library


def fetch(link: Link, keys: curve.KeyPair, player_id: bytes, timeout: float = 10.0) -> Library:
    """Ask the link's hubs for players of the library and one of them for its file; the checked library."""
    ctx: zmq.Context[Any] = zmq.Context()
    try:
        hub_keys = {hub: key.encode("ascii") for hub, key in zip(link.hubs, link.hub_keys, strict=False) if key}
        client = HubClient(list(link.hubs), context=ctx, timeout=min(timeout, 5.0), keys=hub_keys, identity=keys)
        try:
            peers = client.get_peers(link.library_id, player_id, numwant=PEERS_TRIED).peers
        except HubClientError as exc:
            raise LinkError(f"the link's hubs ({', '.join(link.hubs)}) did not answer: {exc}") from None
        finally:
            client.close()
        if not peers:
            raise LinkError(f"no player serves library {link.library_id.hex()[:16]}... now (the hub knows none); "
                            "try again once its sharer runs `emma peer`")
        reasons = []
        for peer in peers[:PEERS_TRIED]:
            try:
                return check(link, _ask(ctx, peer.endpoint, peer.public_key, keys, link.library_id, timeout))
            except LinkError as exc:
                reasons.append(f"{peer.endpoint}: {exc}")
        raise LinkError(f"no player sent the library file: {'; '.join(reasons)}")
    finally:
        ctx.destroy(linger=0)


def _ask(ctx: zmq.Context[Any], endpoint: str, server_key: bytes, keys: curve.KeyPair, library_id: bytes,
         timeout: float) -> bytes:
    """One distributor's answer to a LibraryRequest: the library file's bytes (unchecked)."""
    socket = ctx.socket(zmq.DEALER)
    socket.setsockopt(zmq.LINGER, 0)
    socket.setsockopt(zmq.MAXMSGSIZE, MAX_LIBRARY_BYTES + framing.MAX_CONTROL_FRAME)
    try:
        curve.connect_curve(socket, keys, server_key)
        socket.connect(endpoint)
        socket.send(framing.library_request(library_id))
        deadline = time.monotonic() + timeout
        while True:
            left = deadline - time.monotonic()
            if left <= 0 or not socket.poll(int(left * 1000)):
                raise LinkError(f"no answer within {timeout:g} s")
            frames = socket.recv_multipart()
            try:
                message = framing.decode(frames[0])
            except ProtocolError as exc:
                raise LinkError(f"malformed answer ({exc.message})") from None
            kind = message.WhichOneof("body")
            if kind == "error":
                raise LinkError(f"refused: {message.error.error.message[:200]}")
            if kind == "busy" and message.busy.library_id == library_id:  # its upload is taken: ask again later
                pause = min(message.busy.retry_after_ms / 1000, max(0.0, deadline - time.monotonic()))
                socket.poll(int(pause * 1000))  # whatever comes meanwhile is read next
                socket.send(framing.library_request(library_id))
                continue
            if kind != "library_file":
                continue  # news of other libraries (a have), not an answer
            header = message.library_file
            if header.library_id != library_id or len(frames) != 2 or len(frames[1]) != header.length:
                raise LinkError("the answer does not match the request")
            return bytes(frames[1])
    finally:
        socket.close(linger=0)
