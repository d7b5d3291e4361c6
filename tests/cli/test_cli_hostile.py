"""Hostile input seen from the CLI and the console: one-line errors, and outside text escaped when printed.

A .lib that is a FIFO, a link to /dev/zero, a date past 9999 or a name with an escape
sequence ends in one ``error:`` line; whatever outside text is printed (names, paths,
reasons, log fields) reaches the terminal with its control characters escaped.
"""

from __future__ import annotations

import os
import tomllib
from io import StringIO
from pathlib import Path

import pytest
from rich.console import Console

from services.cli.console_views import downloads_view, services_table
from services.cli.fmt import download_state, printable
from services.cli.logs_view import Entry, parse, render
from services.peer.library import FORMAT_FILE, HASH_LEN, MAGIC, MAX_NAME_BYTES
from services.runtime.config import MAX_RATE
from services.wire.pb import control_pb2, library_pb2
from tests.cli.helpers import assert_one_line_error, emma

BOOK = 16 * 1024
U64_MAX = 2**64 - 1


def lib_bytes(*, name: str = "movie.mkv", created_at: int = 1_700_000_000, creator: str = "emma test") -> bytes:
    """A one-book .lib built by hand, past every check make_library does."""
    info = library_pb2.LibraryInfo(name=name, size=10, book_size=BOOK, hash_algorithm=library_pb2.BLAKE3,
                                   book_hashes=b"\x03" * HASH_LEN)
    wrapper = library_pb2.LibraryFile(format_version=FORMAT_FILE, info=info.SerializeToString(),
                                      hubs=["tcp://10.0.0.5:7070"], created_at=created_at, creator=creator)
    return MAGIC + wrapper.SerializeToString()


def write_lib(folder: Path, **fields: object) -> Path:
    path = folder / "x.lib"
    path.write_bytes(lib_bytes(**fields))  # type: ignore[arg-type]
    return path


@pytest.fixture
def data(tmp_path: Path) -> Path:
    return tmp_path / "data"


def no_raw_controls(text: str) -> None:
    assert "\x1b" not in text and "\r" not in text and "\u202e" not in text, repr(text)


# --- emma lib show on hostile files -------------------------------------------------------------------------


def test_lib_show_of_a_date_past_year_9999_is_one_line(data: Path, tmp_path: Path) -> None:
    path = write_lib(tmp_path, created_at=U64_MAX)
    assert_one_line_error(emma(data, "lib", "show", str(path)), "after the year 9999")


def test_lib_show_of_the_last_date_is_shown(data: Path, tmp_path: Path) -> None:
    result = emma(data, "lib", "show", str(write_lib(tmp_path, created_at=253_402_300_799)))
    assert result.exit_code == 0, result.output
    assert "created  9999-12-31 23:59:59 UTC" in result.stdout


def test_lib_show_of_a_fifo_is_one_line(data: Path, tmp_path: Path) -> None:
    fifo = tmp_path / "fifo.lib"
    os.mkfifo(fifo)
    assert_one_line_error(emma(data, "lib", "show", str(fifo)), "not a regular file")


def test_lib_show_of_a_link_to_dev_zero_is_one_line(data: Path, tmp_path: Path) -> None:
    link = tmp_path / "zero.lib"
    link.symlink_to("/dev/zero")
    assert_one_line_error(emma(data, "lib", "show", str(link)), "not a regular file")


@pytest.mark.parametrize("name", ["evil\x1b[2J\x1b[Hname", "two\nlines.txt", "exe.\u202etxt"])
def test_lib_show_refuses_control_characters_in_names_and_escapes_them(data: Path, tmp_path: Path,
                                                                       name: str) -> None:
    result = emma(data, "lib", "show", str(write_lib(tmp_path, name=name)))
    assert_one_line_error(result, "control character")
    no_raw_controls(result.stderr)


def test_lib_show_escapes_what_a_valid_name_may_hold(data: Path, tmp_path: Path) -> None:
    """A zero-width space is no control character, so the name is valid; it is still shown, not hidden."""
    result = emma(data, "lib", "show", str(write_lib(tmp_path, name="pay\u200bpal.pdf")))
    assert result.exit_code == 0, result.output
    assert "name     pay\\u200bpal.pdf" in result.stdout.splitlines()


def test_a_path_with_an_escape_and_a_newline_is_one_escaped_line(data: Path, tmp_path: Path) -> None:
    path = tmp_path / "evil\x1b]0;pwned\x07\nerror: fake.lib"
    result = emma(data, "lib", "show", str(path))
    assert_one_line_error(result, "no such library file")
    assert "\\x1b]0;pwned\\x07\\nerror: fake.lib" in result.stderr
    no_raw_controls(result.stderr)


# --- emma share of files with names a download could not use --------------------------------------------------


@pytest.mark.parametrize("length", [MAX_NAME_BYTES + 1, 255])
def test_share_refuses_a_name_without_room_for_part(data: Path, tmp_path: Path, length: int) -> None:
    path = tmp_path / ("n" * (length - 4) + ".bin")
    path.write_bytes(b"x" * 100)
    result = emma(data, "share", str(path))
    assert_one_line_error(result, f"{length} bytes, at most {MAX_NAME_BYTES}")
    assert "rename the file" in result.stderr


def test_share_accepts_the_longest_name(data: Path, tmp_path: Path) -> None:
    path = tmp_path / ("n" * (MAX_NAME_BYTES - 4) + ".bin")
    path.write_bytes(b"x" * 100)
    assert emma(data, "share", str(path)).exit_code == 0


def test_share_refuses_an_escape_in_a_file_name(data: Path, tmp_path: Path) -> None:
    path = tmp_path / "clip\x1b[31m.bin"
    path.write_bytes(b"x" * 100)
    result = emma(data, "share", str(path))
    assert_one_line_error(result, "control character U+001B")
    no_raw_controls(result.stderr)


# --- settings from every path -----------------------------------------------------------------------------------


@pytest.mark.parametrize(("key", "value", "rule"), [
    ("limits.upload_rate", str(U64_MAX), f"expected at most {MAX_RATE}"),
    ("limits.download_rate", str(MAX_RATE + 1), f"expected at most {MAX_RATE}"),
    ("limits.upload_slots", str(2**32), "expected at most 1024"),
    ("hub.ip", "fe80::1%\x1b[31m", "not an IP address or host name"),
    ("paths.downloads", "/srv/\x00dl", "NUL"),
])
def test_settings_set_refuses_absurd_values_and_saves_nothing(data: Path, key: str, value: str, rule: str) -> None:
    assert emma(data, "settings", "set", "hub.port", "9000").exit_code == 0
    before = (data / "config.toml").read_bytes()
    result = emma(data, "settings", "set", "--", key, value)
    assert_one_line_error(result, rule)
    no_raw_controls(result.stderr)
    assert (data / "config.toml").read_bytes() == before


@pytest.mark.parametrize(("line", "rule"), [
    ("upload_rate = 18446744073709551615", f"expected at most {MAX_RATE}"),
    ("upload_rate = inf", "expected a whole number"),
    ("upload_rate = nan", "expected a whole number"),
    ("upload_rate = 1.5", "expected a whole number"),
    ("upload_rate = true", "expected a whole number"),
    ("upload_slots = 4294967296", "expected at most 1024"),
])
def test_a_hand_edited_config_is_one_line_naming_key_and_rule(data: Path, line: str, rule: str) -> None:
    data.mkdir()
    (data / "config.toml").write_text(f"[limits]\n{line}\n")
    key = "limits." + line.split(" = ")[0]
    result = emma(data, "settings", "show")
    assert_one_line_error(result, f"{key}: {rule}")
    assert f"emma settings set {key} VALUE" in result.stderr


def test_the_largest_rate_is_accepted_and_saved(data: Path) -> None:
    assert emma(data, "settings", "set", "limits.upload_rate", str(MAX_RATE)).exit_code == 0
    assert tomllib.loads((data / "config.toml").read_text())["limits"]["upload_rate"] == MAX_RATE


# --- outside text printed by views ------------------------------------------------------------------------------


@pytest.mark.parametrize(("raw", "shown"), [
    ("plain name.txt", "plain name.txt"),
    ("évite 名前", "évite 名前"),
    ("a\x1b[2Jb", "a\\x1b[2Jb"),
    ("line\nbreak\r\t", "line\\nbreak\\r\\t"),
    ("c1\x9bx\x7f", "c1\\x9bx\\x7f"),
    ("rtl\u202eexe", "rtl\\u202eexe"),
    ("sep\u2028x", "sep\\u2028x"),
    ("bad\udcffutf8", "bad\\udcffutf8"),
    ("tag\U000e0041", "tag\\U000e0041"),
])
def test_printable_escapes_what_a_terminal_would_obey(raw: str, shown: str) -> None:
    assert printable(raw) == shown
    assert printable(shown) == shown  # escaping escaped text changes nothing: it is all printable


def render_plain(renderable: object) -> str:
    out = Console(file=StringIO(), width=200, color_system=None)
    out.print(renderable)
    text = out.file.getvalue()  # type: ignore[attr-defined]
    assert isinstance(text, str)
    return text


def test_downloads_and_services_tables_escape_names_and_reasons() -> None:
    item = control_pb2.Download(library_id="ab" * 32, name="x\x1b[2Jy", size=1, books_total=1,
                                state=control_pb2.STALLED, detail="no source\x1b]0;t\x07")
    text = render_plain(downloads_view([item], ""))
    no_raw_controls(text)
    assert "x\\x1b[2Jy" in text and "\x07" not in text
    assert download_state(item) == "stalled: no source\\x1b]0;t\\x07"
    status = control_pb2.ServiceStatus(name="distributor", state=control_pb2.RUNNING, detail="unreachable\x1b[31m")
    text = render_plain(services_table([status]))
    no_raw_controls(text)
    assert "unreachable\\x1b[31m" in text


def test_log_lines_are_rendered_escaped() -> None:
    entry = parse('{"event": "library_rejected\\u001b[2J", "level": "error", "path": "/libs/a\\u001bb.lib", '
                  '"error": "bad stuff name: two\\nlines"}')
    plain = render(entry).plain
    no_raw_controls(plain)
    assert "\n" not in plain
    assert "library_rejected\\x1b[2J" in plain and "path=/libs/a\\x1bb.lib" in plain
    assert "\\x1b" in render(Entry(event="not json \x1b[31m")).plain
