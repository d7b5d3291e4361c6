"""Links: one line naming a library and its hubs; what a peer sends for one is checked against its id."""

from __future__ import annotations

import pytest
from zmq.utils import z85

from services.peer import links
from services.peer.library import MIN_BOOK_SIZE, HashAlgorithm, hash_bytes, make_library
from services.wire import curve

KEY = curve.KeyPair.generate().public.decode()


def library(hubs: tuple[str, ...] = ("tcp://203.0.113.5:7070",), hub_keys: tuple[str, ...] = (), seed: int = 1):
    data = bytes((i * seed) % 251 for i in range(MIN_BOOK_SIZE + 9))
    hashes = b"".join(hash_bytes(HashAlgorithm.BLAKE3, data[i:i + MIN_BOOK_SIZE])
                      for i in range(0, len(data), MIN_BOOK_SIZE))
    return make_library(name="film.mkv", size=len(data), book_size=MIN_BOOK_SIZE, hash_algorithm=HashAlgorithm.BLAKE3,
                        book_hashes=hashes, hubs=hubs, created_at=1, creator="test", hub_keys=hub_keys)


def test_a_link_is_one_line_and_reads_back_to_the_same_library_hubs_and_keys() -> None:
    lib = library(("tcp://203.0.113.5:7070", "tcp://[2001:db8::1]:7071"), (KEY, ""))
    text = links.of_library(lib).text
    assert "\n" not in text and " " not in text
    assert text.startswith(f"emma:{lib.id_hex}?hub=") and "@tcp://203.0.113.5:7070&hub=tcp://[2001:db8::1]:7071" in text
    assert links.parse(text) == links.Link(lib.id, lib.hubs, (KEY, ""))
    plain = library()
    assert links.parse(links.of_library(plain).text) == links.Link(plain.id, plain.hubs, ())
    assert links.parse(f"  {links.of_library(plain).text}\n").library_id == plain.id  # as pasted


@pytest.mark.parametrize(("text", "why"), [
    ("https://example.org/x", "not an emma link"),
    ("emma:abcd?hub=tcp://h:1", "64 hex digits"),
    ("emma:" + "zz" * 32 + "?hub=tcp://h:1", "64 hex digits"),
    ("emma:" + "ab" * 32, "must name 1 to 16 hubs"),
    ("emma:" + "ab" * 32 + "?hub=nowhere", "bad hub endpoint in the link"),
    ("emma:" + "ab" * 32 + "?hub=12@tcp://h:1", "bad hub key"),
    ("emma:" + "ab" * 32 + "?hub=tcp://h:1&evil=1", "holds 'evil'"),
    ("emma:" + "ab" * 32 + "?hub=tcp://h:1\x1b[2J", "plain characters"),
    ("emma:" + "ab" * 5000, "plain characters"),
])
def test_a_malformed_link_says_what_is_wrong(text: str, why: str) -> None:
    with pytest.raises(links.LinkError, match=why.replace("[", r"\[")):
        links.parse(text)


def test_a_hub_is_an_endpoint_with_its_key_in_hex_before_it_as_emma_get_hub_takes_it() -> None:
    key_hex = z85.decode(KEY).hex()
    assert links.parse_hub("tcp://203.0.113.5:7070") == ("tcp://203.0.113.5:7070", "")
    assert links.parse_hub(f"{key_hex}@tcp://hub.example:7070") == ("tcp://hub.example:7070", KEY)
    lib = library(hub_keys=())
    moved = lib.with_hubs(*zip(links.parse_hub(f"{key_hex}@tcp://hub.example:7070"), strict=True))
    assert (moved.id, moved.hubs, moved.hub_keys) == (lib.id, ("tcp://hub.example:7070",), (KEY,))
    assert lib.with_hubs(("tcp://a:1",), ("",)).hub_keys == ()  # no key at all: in clear
    with pytest.raises(links.LinkError, match="bad hub endpoint: "):
        links.parse_hub(f"{key_hex}@nowhere")
    with pytest.raises(links.LinkError, match="bad hub key: 64 hex digits"):
        links.parse_hub("abc@tcp://h:1")


def test_a_fetched_library_is_kept_only_if_it_is_the_links() -> None:
    lib, other = library(), library(seed=3)
    link = links.of_library(lib)
    assert links.check(link, lib.to_bytes()) == lib
    with pytest.raises(links.LinkError, match="not the link's"):
        links.check(link, other.to_bytes())
    with pytest.raises(links.LinkError, match="not valid"):
        links.check(link, b"EMMA" + b"\x00" * 40)
