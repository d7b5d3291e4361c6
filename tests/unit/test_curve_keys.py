"""Key files (made once, 0600, rotated, refused when others may read them) and the allowlist's reload."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest
import zmq

from services.peer import identity
from services.wire import curve
from services.wire.curve import Allowlist, CurveKeyError, KeyPair


def test_a_key_pair_is_made_once_with_owner_only_permissions(tmp_path: Path) -> None:
    first = curve.load_or_create(tmp_path)
    assert curve.load_or_create(tmp_path) == first
    mode = stat.S_IMODE(curve.key_path(tmp_path).stat().st_mode)
    assert mode == 0o600
    assert first.public == zmq.curve_public(first.secret) and len(first.public) == 40
    assert first.secret.decode() not in repr(first)  # never shown
    assert [p.name for p in tmp_path.iterdir()] == [curve.KEY_FILE]  # no temp file left


def test_rotate_makes_a_new_pair_and_a_new_player_id(tmp_path: Path) -> None:
    old = curve.load_or_create(tmp_path)
    old_id = identity.player_id(tmp_path)
    new = curve.rotate(tmp_path)
    assert new != old and curve.load_or_create(tmp_path) == new
    assert identity.player_id(tmp_path) == curve.player_id_of(new.public) != old_id
    assert stat.S_IMODE(curve.key_path(tmp_path).stat().st_mode) == 0o600


def test_a_key_file_others_may_read_or_a_broken_one_is_refused_with_what_to_do(tmp_path: Path) -> None:
    curve.load_or_create(tmp_path)
    path = curve.key_path(tmp_path)
    os.chmod(path, 0o644)
    with pytest.raises(CurveKeyError, match="emma keys rotate"):
        curve.load_or_create(tmp_path)
    os.chmod(path, 0o600)
    path.write_text("not a key\n")
    with pytest.raises(CurveKeyError, match="no valid key"):
        curve.load_or_create(tmp_path)


def test_check_key_takes_z85_keys_only() -> None:
    pair = KeyPair.generate()
    assert curve.check_key(" " + pair.public.decode() + "\n") == pair.public
    for bad in ("", "short", pair.public.decode()[:-1] + "~", "x" * 41):
        with pytest.raises(CurveKeyError, match="40 characters"):
            curve.check_key(bad)


def keys_file(path: Path, *pairs: tuple[KeyPair, str]) -> None:
    path.write_text("# the fleet\n" + "".join(f"{pair.public.decode()}  # {name}\n" for pair, name in pairs))


def test_any_admits_every_key_and_a_file_only_its_keys() -> None:
    assert Allowlist("any").admits(KeyPair.generate().public)
    assert Allowlist("").open


def test_the_allowlist_is_reread_when_its_file_changes(tmp_path: Path) -> None:
    alice, bob = KeyPair.generate(), KeyPair.generate()
    path = tmp_path / "players.keys"
    keys_file(path, (alice, "alice"))
    allowlist = Allowlist(str(path))
    assert allowlist.admits(alice.public) and not allowlist.admits(bob.public)
    assert allowlist.keys[alice.public] == "alice"
    keys_file(path, (bob, "bob"))  # alice revoked, bob added
    assert allowlist.refresh(0.5) == ""  # looked at no more than once a second: not yet
    assert allowlist.admits(alice.public)
    assert allowlist.refresh(1.0) == ""
    assert allowlist.admits(bob.public) and not allowlist.admits(alice.public)


def test_a_broken_allowlist_keeps_the_keys_read_before_and_says_why_once(tmp_path: Path) -> None:
    alice = KeyPair.generate()
    path = tmp_path / "players.keys"
    keys_file(path, (alice, "alice"))
    allowlist = Allowlist(str(path))
    path.write_text(f"{alice.public.decode()}\nnot-a-key  # typo\n")
    problem = allowlist.refresh(1.0)
    assert "players.keys:2" in problem and "stay in force" in problem
    assert allowlist.admits(alice.public)
    assert allowlist.refresh(2.0) == ""  # the same problem is said once
    path.unlink()
    assert "cannot read" in allowlist.refresh(3.0) and allowlist.admits(alice.public)


def test_an_allowlist_that_cannot_be_read_at_start_is_an_error(tmp_path: Path) -> None:
    with pytest.raises(CurveKeyError, match="cannot read"):
        Allowlist(str(tmp_path / "missing.keys"))
    bad = tmp_path / "bad.keys"
    bad.write_text("hello\n")
    with pytest.raises(CurveKeyError, match=r"bad\.keys:1"):
        Allowlist(str(bad))
