"""Library ids, player ids and endpoints: parsing and validation.

A library id is 32 bytes (BLAKE3 of the library's info), shown as 64 hex
characters. A player id is 16 random bytes. An endpoint is ``tcp://HOST:PORT``
with a numeric port in 1..65535.
"""

from __future__ import annotations

import ipaddress
import re

LIBRARY_ID_LEN = 32
PLAYER_ID_LEN = 16
MAX_ENDPOINT_LEN = 270

_LABEL = r"[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?"
_HOSTNAME = re.compile(rf"^(?=.{{1,253}}$){_LABEL}(\.{_LABEL})*$")


class InvalidEndpoint(ValueError):
    """An endpoint string that is not ``tcp://HOST:PORT``."""


def parse_endpoint(endpoint: str) -> tuple[str, int]:
    """Split ``tcp://host:port`` into (host, port), raising InvalidEndpoint."""
    if not isinstance(endpoint, str) or len(endpoint) > MAX_ENDPOINT_LEN:
        raise InvalidEndpoint(f"endpoint too long or not text: {endpoint!r}")
    if not endpoint.startswith("tcp://"):
        raise InvalidEndpoint(f"endpoint must start with tcp://: {endpoint!r}")
    rest = endpoint[len("tcp://"):]
    if rest.startswith("["):
        host, sep, port_text = rest[1:].partition("]:")
        if not sep:
            raise InvalidEndpoint(f"bad IPv6 endpoint: {endpoint!r}")
        try:
            ipaddress.IPv6Address(host)
        except ValueError as exc:
            raise InvalidEndpoint(f"bad IPv6 address in {endpoint!r}") from exc
    else:
        host, sep, port_text = rest.rpartition(":")
        if not sep or not host:
            raise InvalidEndpoint(f"endpoint needs host and port: {endpoint!r}")
        if not is_host(host):
            raise InvalidEndpoint(f"bad host in endpoint: {endpoint!r}")
    if not (port_text.isascii() and port_text.isdigit()) or len(port_text) > 5 or not 0 < int(port_text) < 65536:
        raise InvalidEndpoint(f"port must be 1-65535 in {endpoint!r}")
    return host, int(port_text)


def is_host(host: str) -> bool:
    try:
        ipaddress.IPv4Address(host)
        return True
    except ValueError:
        return bool(_HOSTNAME.match(host)) and not host.replace(".", "").isdigit()


def is_valid_endpoint(endpoint: str) -> bool:
    try:
        parse_endpoint(endpoint)
    except InvalidEndpoint:
        return False
    return True


def make_endpoint(host: str, port: int) -> str:
    return f"tcp://[{host}]:{port}" if ":" in host else f"tcp://{host}:{port}"


def library_id_hex(library_id: bytes) -> str:
    return library_id.hex()


def parse_library_id(text: str) -> bytes:
    """Parse 64 hex characters into a library id, raising ValueError."""
    raw = bytes.fromhex(text)
    if len(raw) != LIBRARY_ID_LEN:
        raise ValueError(f"a library id is {LIBRARY_ID_LEN * 2} hex characters, got {len(text)}")
    return raw


def parse_host_port(text: str) -> tuple[str, int]:
    """Split ``HOST:PORT`` (``[v6]:PORT`` too; port 0 = any free one) into (host, port), raising InvalidEndpoint."""
    host, sep, port_text = text.strip().rpartition(":")
    host = host[1:-1] if host.startswith("[") and host.endswith("]") else host
    if not sep or not host or not (port_text.isascii() and port_text.isdigit()) or len(port_text) > 5:
        raise InvalidEndpoint(f"expected HOST:PORT such as 127.0.0.1:9101, got {text!r}")
    try:
        ipaddress.ip_address(host)
    except ValueError:
        if not is_host(host):
            raise InvalidEndpoint(f"bad host in {text!r}") from None
    port = int(port_text)
    if port > 65535:
        raise InvalidEndpoint(f"port must be 0-65535 in {text!r}")
    return host, port


def canonical_address(text: str) -> str:
    """One spelling per host: IPv4-mapped IPv6 (``::ffff:10.0.0.1``) becomes plain IPv4."""
    try:
        address = ipaddress.ip_address(text.strip("[]"))
    except ValueError:
        return text
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        return str(address.ipv4_mapped)
    return str(address)
