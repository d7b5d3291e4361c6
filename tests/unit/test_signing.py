"""Signed libraries: every signed field is covered, a swapped signature fails, trusted publishers decide."""

from __future__ import annotations

import stat
from pathlib import Path

import pytest

from services.peer import signing
from services.peer.library import MAGIC, HashAlgorithm, Library, LibraryError, make_library, parse_library
from services.peer.signing import SignatureError, Trusted
from services.wire.curve import KeyPair
from services.wire.pb import library_pb2

HUB_KEY = KeyPair.generate().public.decode()
OTHER_KEY = KeyPair.generate().public.decode()


def signed(publisher: signing.Publisher | None, **more: object) -> Library:
    parts: dict[str, object] = {
        "name": "data.bin", "size": 40_000, "book_size": 16 * 1024, "hash_algorithm": HashAlgorithm.BLAKE3,
        "book_hashes": bytes(range(96)), "hubs": ("tcp://10.0.0.5:7070", "tcp://10.0.0.6:7070"),
        "created_at": 1_700_000_000, "creator": "emma test", "hub_keys": (HUB_KEY, HUB_KEY), "publisher": publisher,
    }
    return make_library(**{**parts, **more})  # type: ignore[arg-type]


@pytest.fixture
def publisher(tmp_path: Path) -> signing.Publisher:
    return signing.load_publisher(tmp_path)


def test_a_signed_library_reads_back_with_its_publisher_and_hub_keys(publisher: signing.Publisher) -> None:
    library = signed(publisher)
    again = parse_library(library.to_bytes())
    assert again.publisher_key == publisher.public and len(again.signature) == 64
    assert again.hub_keys == (HUB_KEY, HUB_KEY) and again.id == library.id


def tampered(library: Library, change: object) -> bytes:
    wrapper = library_pb2.LibraryFile.FromString(library.to_bytes()[len(MAGIC):])
    change(wrapper)  # type: ignore[operator]
    return MAGIC + wrapper.SerializeToString()


def _info(wrapper: library_pb2.LibraryFile) -> None:
    info = library_pb2.LibraryInfo.FromString(wrapper.info)
    info.name = "other.bin"
    wrapper.info = info.SerializeToString()


CHANGES = {
    "info": _info,
    "a hub": lambda w: w.hubs.__setitem__(1, "tcp://203.0.113.9:7070"),
    "a hub added": lambda w: (w.hubs.append("tcp://203.0.113.9:7070"), w.hub_keys.append(HUB_KEY)),
    "a hub key": lambda w: w.hub_keys.__setitem__(0, OTHER_KEY),
    "a hub key dropped": lambda w: w.hub_keys.pop(),
    "created_at": lambda w: setattr(w, "created_at", w.created_at + 1),
    "creator": lambda w: setattr(w, "creator", "someone else"),
    "format version": lambda w: setattr(w, "format_version", 2),
    "publisher key": lambda w: setattr(w, "publisher_key", bytes(32)),
    "signature": lambda w: setattr(w, "signature", bytes(64)),
    "signature cut": lambda w: setattr(w, "signature", w.signature[:63]),
}


@pytest.mark.parametrize("field", sorted(CHANGES))
def test_a_change_to_any_signed_field_fails_to_load(publisher: signing.Publisher, field: str) -> None:
    # A version 1 library read as version 2 is refused as a corrupt tree even before its signature is checked.
    with pytest.raises(LibraryError, match="signature" if field != "format version" else "corrupt"):
        parse_library(tampered(signed(publisher), CHANGES[field]))


def test_the_format_version_is_signed_too() -> None:
    one, two = (signing.signed_message(b"info", ["tcp://h:1"], [""], 1, "c", b"k" * 32, version) for version in (1, 2))
    assert one != two


def test_a_signature_swapped_from_another_library_of_the_same_publisher_fails(publisher: signing.Publisher) -> None:
    one, two = signed(publisher), signed(publisher, created_at=1_700_000_001)
    with pytest.raises(LibraryError, match="does not hold"):
        parse_library(tampered(one, lambda w: setattr(w, "signature", two.signature)))


def test_a_library_resigned_by_someone_else_loads_but_is_not_trusted(tmp_path: Path,
                                                                     publisher: signing.Publisher) -> None:
    mallory = signing.load_publisher(tmp_path / "mallory")
    forged = signed(mallory)
    assert parse_library(forged.to_bytes()).publisher_key == mallory.public
    trusted = Trusted({publisher.public: "us"})
    assert trusted.refusal(publisher.public) == ""
    assert "not one this player trusts" in trusted.refusal(mallory.public)
    assert "unsigned" in trusted.refusal(b"")
    assert Trusted().refusal(b"") == ""  # no publishers named: every library is taken


def test_an_unsigned_library_from_before_signing_still_loads(publisher: signing.Publisher) -> None:
    unsigned = signed(None, hub_keys=())
    again = parse_library(unsigned.to_bytes())
    assert again.publisher_key == b"" and again.signature == b"" and again.hub_key(0) == ""


def test_publisher_keys_are_owner_only_and_rotate(tmp_path: Path) -> None:
    first = signing.load_publisher(tmp_path)
    assert signing.load_publisher(tmp_path).public == first.public
    path = signing.publisher_path(tmp_path)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert signing.rotate_publisher(tmp_path).public != first.public
    path.chmod(0o640)
    with pytest.raises(SignatureError, match="read by others"):
        signing.load_publisher(tmp_path)


def test_the_trusted_publishers_file_names_a_bad_line(tmp_path: Path, publisher: signing.Publisher) -> None:
    path = tmp_path / "publishers.keys"
    path.write_text(f"# ours\n{publisher.public.hex()}  # build farm\n")
    assert Trusted.from_file(str(path)).keys == {publisher.public: "build farm"}
    path.write_text("abc\n")
    with pytest.raises(SignatureError, match=r"publishers\.keys:1"):
        Trusted.from_file(str(path))
