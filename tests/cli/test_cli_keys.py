"""``emma keys show|rotate`` and the trust settings: keys made once, printed, replaced; secrets never shown."""

from __future__ import annotations

import json
from pathlib import Path

from services.peer import identity, signing
from services.wire import curve
from tests.cli.helpers import assert_one_line_error, emma


def test_keys_show_prints_the_public_keys_made_on_first_use(tmp_path: Path) -> None:
    data = tmp_path / "data"
    shown = emma(data, "keys", "show", "--json")
    assert shown.exit_code == 0, shown.output
    keys = json.loads(shown.stdout)
    pair = curve.load_or_create(data)
    assert keys == {"player_key": pair.public.decode(), "publisher_key": signing.load_publisher(data).public.hex()}
    assert pair.secret.decode() not in emma(data, "keys", "show").stdout
    assert json.loads(emma(data, "keys", "show", "--json").stdout) == keys  # the same keys every time


def test_keys_rotate_replaces_the_player_key_or_the_publisher_key(tmp_path: Path) -> None:
    data = tmp_path / "data"
    before = json.loads(emma(data, "keys", "show", "--json").stdout)
    old_id = identity.player_id(data)
    rotated = emma(data, "keys", "rotate")
    assert rotated.exit_code == 0 and "restart the player" in rotated.stdout
    after = json.loads(emma(data, "keys", "show", "--json").stdout)
    assert after["player_key"] != before["player_key"] and after["publisher_key"] == before["publisher_key"]
    assert identity.player_id(data) != old_id
    assert emma(data, "keys", "rotate", "--publisher").exit_code == 0
    assert json.loads(emma(data, "keys", "show", "--json").stdout)["publisher_key"] != before["publisher_key"]


def test_a_key_file_others_may_read_is_refused_in_one_line(tmp_path: Path) -> None:
    data = tmp_path / "data"
    curve.load_or_create(data)
    curve.key_path(data).chmod(0o644)
    assert_one_line_error(emma(data, "keys", "show"), "emma keys rotate")


def test_a_private_swarm_cannot_turn_encryption_off(tmp_path: Path) -> None:
    data = tmp_path / "data"
    allowlist = tmp_path / "players.keys"
    allowlist.write_text(curve.KeyPair.generate().public.decode() + "\n")
    assert emma(data, "settings", "set", "security.players", str(allowlist)).exit_code == 0
    assert_one_line_error(emma(data, "settings", "set", "security.encryption", "false"), "always encrypts")
    assert emma(data, "settings", "set", "security.players", "any").exit_code == 0
    assert emma(data, "settings", "set", "security.encryption", "false").exit_code == 0
    assert_one_line_error(emma(data, "settings", "set", "hub.key", "short"), "40 characters")
