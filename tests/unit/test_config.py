"""Settings: defaults, validation on set, config.toml round trips, and files that do not parse."""

from __future__ import annotations

import tomllib
from pathlib import Path
from typing import Any

import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from services.runtime.config import (
    ENV_DATA_DIR,
    SETTINGS,
    ConfigError,
    default_data_dir,
    exists,
    load,
    render_toml,
)

DEFAULTS = {
    "hub.ip": "127.0.0.1",
    "hub.port": 7070,
    "hub.more": "",
    "distributor.ip": "0.0.0.0",
    "distributor.port": 0,
    "limits.upload_rate": 0,
    "limits.download_rate": 0,
    "limits.upload_slots": 64,
    "maestro.heartbeat_interval": 0.5,
    "maestro.stop_grace": 8.0,
    "paths.downloads": "",
    "distributor.advertise": "",
    "metrics.bind": "",
    "metrics.library_label": True,
    "hub.key": "",
    "security.players": "any",
    "security.encryption": True,
    "security.publishers": "",
    "seeding.ratio": 0.0,
    "seeding.hours": 0.0,
}


def test_missing_file_means_defaults(tmp_path: Path) -> None:
    config = load(tmp_path)
    assert not exists(tmp_path)
    assert config.as_dict() == DEFAULTS
    assert config.hub_endpoint == "tcp://127.0.0.1:7070"
    assert config.libs_dir == tmp_path / "libs"
    assert config.downloads_dir == tmp_path / "downloads"
    assert config.state_db == tmp_path / "state.db"


def test_ensure_dirs_makes_the_player_s_own_folders_not_the_downloads_one(tmp_path: Path) -> None:
    (tmp_path / "a-file").write_bytes(b"")
    config = load(tmp_path / "data")
    config.set("paths.downloads", str(tmp_path / "a-file" / "dl"))  # cannot be made: nothing else may fail for it
    config.ensure_dirs()
    assert sorted(p.name for p in (tmp_path / "data").iterdir()) == ["libs", "logs", "run"]


def test_default_data_dir_from_environment(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv(ENV_DATA_DIR, str(tmp_path / "emma"))
    assert default_data_dir() == tmp_path / "emma"
    monkeypatch.delenv(ENV_DATA_DIR)
    monkeypatch.setenv("HOME", str(tmp_path))
    assert default_data_dir() == tmp_path / ".emma"


@pytest.mark.parametrize(
    ("key", "value", "expected"),
    [
        ("hub.ip", "10.0.0.5", "10.0.0.5"),
        ("hub.ip", " hub.example.org ", "hub.example.org"),
        ("hub.ip", "::1", "::1"),
        ("hub.port", "1", 1),
        ("hub.port", "65535", 65535),
        ("hub.port", 8080, 8080),
        ("distributor.port", "0", 0),
        ("limits.upload_rate", "1000000", 1_000_000),
        ("limits.upload_slots", "1", 1),
        ("maestro.heartbeat_interval", "0.05", 0.05),
        ("maestro.heartbeat_interval", "60", 60.0),
        ("paths.downloads", "/srv/emma", "/srv/emma"),
    ],
)
def test_set_valid_values(tmp_path: Path, key: str, value: Any, expected: Any) -> None:
    config = load(tmp_path)
    assert config.set(key, value) == expected
    assert config.get(key) == expected


@pytest.mark.parametrize(
    ("key", "value", "message"),
    [
        ("hub.ip", "not a host!", "not an IP address or host name"),
        ("hub.ip", "", "not an IP address or host name"),
        ("hub.ip", "999.1.1.1", "not an IP address or host name"),
        ("hub.port", "0", "port must be between 1 and 65535"),
        ("hub.port", "65536", "port must be between 1 and 65535"),
        ("hub.port", "-1", "port must be between 1 and 65535"),
        ("hub.port", "http", "expected a whole number"),
        ("hub.port", "70.5", "expected a whole number"),
        ("hub.port", True, "expected a whole number"),
        ("distributor.port", "65536", "port must be between 0 and 65535"),
        ("limits.upload_rate", "-1", "expected 0 or more"),
        ("limits.upload_slots", "0", "expected 1 or more"),
        ("maestro.heartbeat_interval", "0.01", "between 0.05 and 60"),
        ("maestro.heartbeat_interval", "61", "between 0.05 and 60"),
        ("maestro.heartbeat_interval", "nan", "between 0.05 and 60"),
        ("maestro.heartbeat_interval", "soon", "expected a number of seconds"),
    ],
)
def test_set_invalid_values(tmp_path: Path, key: str, value: Any, message: str) -> None:
    config = load(tmp_path)
    with pytest.raises(ConfigError, match=message):
        config.set(key, value)
    assert config.get(key) == DEFAULTS[key]


def test_unknown_key(tmp_path: Path) -> None:
    config = load(tmp_path)
    with pytest.raises(ConfigError, match=r"unknown setting 'hub\.colour'"):
        config.set("hub.colour", "red")
    with pytest.raises(ConfigError, match="unknown setting"):
        config.get("nope")


def test_ipv6_hub_endpoint(tmp_path: Path) -> None:
    config = load(tmp_path)
    config.set("hub.ip", "::1")
    config.set("hub.port", "9000")
    assert config.hub_endpoint == "tcp://[::1]:9000"


def test_custom_downloads_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HOME", str(tmp_path))
    config = load(tmp_path)
    config.set("paths.downloads", "~/dl")
    assert config.downloads_dir == tmp_path / "dl"


def test_save_and_load_round_trip(tmp_path: Path) -> None:
    config = load(tmp_path)
    changed = {"hub.ip": "hub.lan", "hub.port": 9001, "distributor.port": 7100, "limits.upload_rate": 5,
               "maestro.heartbeat_interval": 1.25, "paths.downloads": 'C:\\dl "quoted"'}
    for key, value in changed.items():
        config.set(key, value)
    config.save()
    assert exists(tmp_path)
    assert [p.name for p in tmp_path.iterdir()] == ["config.toml"]  # no temp file left
    assert load(tmp_path).as_dict() == {**DEFAULTS, **changed}
    assert tomllib.loads(config.path.read_text())["hub"] == {"ip": "hub.lan", "port": 9001, "more": "", "key": ""}


def test_saved_defaults_are_every_setting(tmp_path: Path) -> None:
    load(tmp_path).save()
    raw = tomllib.loads((tmp_path / "config.toml").read_text())
    flat = {f"{table}.{name}": value for table, entries in raw.items() for name, value in entries.items()}
    assert flat == DEFAULTS
    assert set(flat) == set(SETTINGS)


@settings(max_examples=60, deadline=None)
@given(text=st.text(st.characters(codec="utf-8", exclude_characters="\x00"), max_size=30))  # NUL: refused
@example(text='new\nline\ttab\x1fctl\x7fdel "q" \\b \\u0041 é')
def test_any_downloads_path_survives_save_and_load(tmp_path_factory: pytest.TempPathFactory, text: str) -> None:
    folder = tmp_path_factory.mktemp("cfg")
    config = load(folder)
    config.set("paths.downloads", text)
    config.save()
    assert load(folder).get("paths.downloads") == text


def test_render_toml_groups_tables() -> None:
    assert render_toml({"a.x": 1, "a.y": True, "b.z": "s"}) == '[a]\nx = 1\ny = true\n\n[b]\nz = "s"\n'


@pytest.mark.parametrize(
    "text",
    ["[hub\nport = 1\n", "hub.port = \n", "[hub]\nport = 1\nport = 2\n", "not toml at all"],
)
def test_bad_toml_is_a_config_error(tmp_path: Path, text: str) -> None:
    (tmp_path / "config.toml").write_text(text)
    with pytest.raises(ConfigError, match=r"cannot read .*config\.toml.*fix or delete it"):
        load(tmp_path)


def test_non_utf8_file_is_a_config_error(tmp_path: Path) -> None:
    (tmp_path / "config.toml").write_bytes(b'[hub]\nip = "\xff"\n')
    with pytest.raises(ConfigError, match="cannot read"):
        load(tmp_path)


def test_invalid_value_in_file_names_the_key(tmp_path: Path) -> None:
    (tmp_path / "config.toml").write_text("[hub]\nport = 0\n")
    with pytest.raises(ConfigError, match=r"hub\.port: port must be between 1 and 65535"):
        load(tmp_path)


def test_top_level_value_is_a_config_error(tmp_path: Path) -> None:
    (tmp_path / "config.toml").write_text("hub = 3\n")
    with pytest.raises(ConfigError, match=r"\[hub\] must be a table"):
        load(tmp_path)


def test_unknown_keys_in_file_are_ignored(tmp_path: Path) -> None:
    (tmp_path / "config.toml").write_text("[hub]\nport = 7777\ncolour = 'red'\n[future]\nx = 1\n")
    assert load(tmp_path).as_dict() == {**DEFAULTS, "hub.port": 7777}


def test_more_hubs_are_a_checked_list_named_after_the_first(tmp_path: Path) -> None:
    config = load(tmp_path)
    assert config.hub_endpoints == (config.hub_endpoint,)
    config.set("hub.more", " tcp://10.0.0.2:7000, tcp://hub3.example:7000 ,")
    assert config.get("hub.more") == "tcp://10.0.0.2:7000,tcp://hub3.example:7000"
    assert list(config.hub_endpoints) == [config.hub_endpoint, "tcp://10.0.0.2:7000", "tcp://hub3.example:7000"]
    for bad in ("10.0.0.2:7000", "tcp://10.0.0.2:99999", 7, ",".join(["tcp://10.0.0.2:7000"] * 17)):
        with pytest.raises(ConfigError):
            config.set("hub.more", bad)
