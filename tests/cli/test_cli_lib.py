"""``emma share`` and ``emma lib show|verify`` through typer's test runner, errors included."""

from __future__ import annotations

import json
import random
from pathlib import Path

import pytest
from typer.testing import CliRunner, Result

from services.cli.app import app
from services.peer import signing
from services.peer.library import MAGIC, Library, read_library
from services.peer.state import State, Status
from services.wire.pb import library_pb2
from tests.cli.helpers import Hub, configure

BOOK = 16 * 1024
runner = CliRunner()


def emma(data: Path, *args: str) -> Result:
    return runner.invoke(app, ["--data-dir", str(data), *args])


def assert_one_line_error(result: Result, text: str, code: int = 2) -> None:
    assert result.exit_code == code, result.output
    assert result.exception is None or isinstance(result.exception, SystemExit), result.exception
    lines = result.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), result.stderr
    assert text in lines[0]
    assert "Traceback" not in result.output


@pytest.fixture
def data(tmp_path: Path) -> Path:
    return tmp_path / "data"


@pytest.fixture
def stuff(tmp_path: Path) -> Path:
    """A 4.5-book file."""
    path = tmp_path / "files" / "movie.bin"
    path.parent.mkdir()
    path.write_bytes(random.Random(1).randbytes(4 * BOOK + BOOK // 2))
    return path


def share(data: Path, path: Path, *args: str) -> Library:
    result = emma(data, "share", str(path), "--book-size", str(BOOK), "--json", *args)
    assert result.exit_code == 0, result.output
    return read_library(Path(json.loads(result.stdout)["path"]))


def flip(path: Path, offset: int) -> None:
    raw = bytearray(path.read_bytes())
    raw[offset] ^= 0xFF
    path.write_bytes(bytes(raw))


# --- share --------------------------------------------------------------------------------------


def test_share_text_output_and_library_in_data_dir(data: Path, stuff: Path) -> None:
    result = emma(data, "share", str(stuff), "--book-size", str(BOOK))
    assert result.exit_code == 0, result.output
    libs = list((data / "libs").iterdir())
    assert len(libs) == 1
    library = read_library(libs[0])
    assert libs[0].name == f"lib_{library.id_hex}.lib"
    lines = result.stdout.splitlines()
    assert lines[0] == f"library {library.id_hex}"
    assert lines[1] == f"written to {libs[0]}"
    assert lines[2].startswith(f"5 books of {BOOK} bytes, {stuff.stat().st_size} bytes in ")
    assert lines[4] == f"link: emma:{library.id_hex}?hub=tcp://127.0.0.1:7070"  # `emma get` takes it
    [warning] = result.stderr.splitlines()  # no hub runs there in this test
    assert warning.startswith("warning: hub tcp://127.0.0.1:7070 does not answer (")
    assert warning.endswith("players cannot find this library through it until it runs: start it (`emma hub`), "
                            "or share again naming a hub that runs (settings hub.ip, hub.port)")
    assert (library.name, library.books, library.hubs) == ("movie.bin", 5, ("tcp://127.0.0.1:7070",))


@pytest.mark.slow
def test_share_with_a_hub_that_answers_warns_of_nothing(tmp_path: Path, stuff: Path) -> None:
    hub = Hub(tmp_path / "hub")
    try:
        data = tmp_path / "player"
        configure(data, hub_port=hub.port, hub_key=hub.key)
        result = emma(data, "share", str(stuff), "--book-size", str(BOOK), "--json")
        assert result.exit_code == 0, result.output
        assert result.stderr == ""
        assert json.loads(result.stdout)["link"].endswith(f"@{hub.endpoint}")
    finally:
        hub.stop()


def test_share_records_the_library_as_seeding(data: Path, stuff: Path) -> None:
    library = share(data, stuff)
    state = State(data / "state.db")
    try:
        record = state.get(library.id_hex)
    finally:
        state.close()
    assert record is not None
    assert record.status is Status.SEEDING and record.have.complete
    assert record.stuff_path == stuff


def test_share_json(data: Path, stuff: Path) -> None:
    result = emma(data, "share", str(stuff), "--book-size", str(BOOK), "--json")
    assert result.exit_code == 0, result.output
    out = json.loads(result.stdout)
    library = read_library(data / "libs" / f"lib_{out['id']}.lib")
    assert out["path"] == str(data / "libs" / library.file_name)
    assert (out["id"], out["name"], out["books"]) == (library.id_hex, "movie.bin", 5)
    assert out["size"] == stuff.stat().st_size == 4 * BOOK + BOOK // 2
    assert out["data_dir"] == str(data)
    assert out["seconds"] >= 0


def test_share_automatic_book_size(data: Path, stuff: Path) -> None:
    result = emma(data, "share", str(stuff), "--json")
    assert result.exit_code == 0, result.output
    assert read_library(Path(json.loads(result.stdout)["path"])).book_size == 64 * 1024


def test_share_out(data: Path, stuff: Path, tmp_path: Path) -> None:
    out = tmp_path / "elsewhere" / "mine.lib"
    library = share(data, stuff, "--out", str(out))
    assert read_library(out) == library
    assert not any((data / "libs").iterdir())


def test_share_same_file_twice_gives_the_same_id(data: Path, stuff: Path) -> None:
    assert share(data, stuff).id == share(data, stuff).id


def test_share_sha256(data: Path, stuff: Path) -> None:
    library = share(data, stuff, "--hash", "sha256")
    assert library.hash_algorithm.value == "sha256"
    assert share(data, stuff).id != library.id


def test_share_hubs(data: Path, stuff: Path) -> None:
    library = share(data, stuff, "--hub", "tcp://10.0.0.5:7070", "--hub", "tcp://[::1]:9")
    assert library.hubs == ("tcp://10.0.0.5:7070", "tcp://[::1]:9")


def test_share_default_hub_comes_from_settings(data: Path, stuff: Path) -> None:
    assert emma(data, "settings", "set", "hub.ip", "hub.lan").exit_code == 0
    assert emma(data, "settings", "set", "hub.port", "9100").exit_code == 0
    assert share(data, stuff).hubs == ("tcp://hub.lan:9100",)


@pytest.mark.parametrize("size", ["0", "1000", "49152", "8192", "134217728", "200M"])
def test_share_bad_book_size(data: Path, stuff: Path, size: str) -> None:
    assert_one_line_error(emma(data, "share", str(stuff), "--book-size", size), "bad book size")
    assert not (data / "libs").exists() or not any((data / "libs").iterdir())


def test_share_book_size_not_a_number(data: Path, stuff: Path) -> None:
    assert_one_line_error(emma(data, "share", str(stuff), "--book-size", "big"), "--book-size: not a size: 'big'")
    assert_one_line_error(emma(data, "share", str(stuff), "--book-size", "-16384"), "not a size: '-16384'")


@pytest.mark.parametrize(("size", "book"), [("64K", 65536), ("1M", 1 << 20), ("65536", 65536), ("0.5MiB", 1 << 19)])
def test_share_book_size_with_a_unit(data: Path, stuff: Path, size: str, book: int) -> None:
    result = emma(data, "share", str(stuff), "--book-size", size, "--json")
    assert result.exit_code == 0, result.output
    assert read_library(Path(json.loads(result.stdout)["path"])).book_size == book


def test_share_bogus_hash_lists_the_choices(data: Path, stuff: Path) -> None:
    assert_one_line_error(emma(data, "share", str(stuff), "--hash", "md5"), "'md5' is not one of 'blake3', 'sha256'")
    assert "blake3|sha256" in emma(data, "share", "--help").stdout


@pytest.mark.parametrize("hub", ["10.0.0.5:7070", "tcp://10.0.0.5", "tcp://10.0.0.5:0", "tcp://bad host:1"])
def test_share_bad_hub(data: Path, stuff: Path, hub: str) -> None:
    assert_one_line_error(emma(data, "share", str(stuff), "--hub", hub), "tcp://")


def test_share_missing_file(data: Path, tmp_path: Path) -> None:
    assert_one_line_error(emma(data, "share", str(tmp_path / "nope.bin")), "no such file")


def test_share_a_folder_makes_a_tree_library_and_lib_show_lists_it(data: Path, tmp_path: Path) -> None:
    folder = tmp_path / "dataset"
    (folder / "shards" / "a").mkdir(parents=True)
    (folder / "empty").mkdir()
    (folder / "shards" / "a" / "big.bin").write_bytes(random.randbytes(200_000))
    (folder / "config.json").write_text("{}")
    (folder / "zero").write_bytes(b"")
    (folder / "link").symlink_to(folder / "config.json")
    result = emma(data, "share", str(folder), "--json")
    assert result.exit_code == 0, result.output
    shared = json.loads(result.stdout)
    assert (shared["files"], shared["skipped"], shared["size"]) == (3, 1, 200_002)
    assert "skipped" in result.stderr and "link" in result.stderr and "symbolic link" in result.stderr
    library = read_library(Path(shared["path"]))
    assert library.tree is not None and library.tree.paths == ("config.json", "shards/a/big.bin", "zero")
    assert (data / "state.db").exists() and State(data / "state.db").get(library.id_hex) is not None
    shown = emma(data, "lib", "show", shared["path"])
    assert shown.exit_code == 0 and "3 files, 3 folders (1 empty)" in shown.stdout
    assert shown.stdout.index("shards/a/big.bin") < shown.stdout.index("config.json")  # largest first
    listed = json.loads(emma(data, "lib", "show", shared["path"], "--json").stdout)
    assert [f["path"] for f in listed["files"]] == ["config.json", "shards/a/big.bin", "zero"]
    assert listed["empty_dirs"] == ["empty"] and listed["format_version"] == 2
    assert listed["files"][1]["first_book"] == 1 and listed["files"][2]["books"] == 0
    assert emma(data, "lib", "verify", shared["path"], str(folder)).exit_code == 0
    with open(folder / "shards" / "a" / "big.bin", "r+b") as handle:
        handle.seek(100_000)
        handle.write(b"\0")
    checked = emma(data, "lib", "verify", shared["path"], str(folder), "--json")
    assert checked.exit_code == 1 and json.loads(checked.stdout)["bad"] == [2]


def test_share_a_folder_with_a_name_no_library_may_hold(data: Path, tmp_path: Path) -> None:
    folder = tmp_path / "stuff"
    folder.mkdir()
    (folder / "bad\x1bname").write_bytes(b"x")
    assert_one_line_error(emma(data, "share", str(folder)), "rename")


def test_share_special_file(data: Path) -> None:
    assert_one_line_error(emma(data, "share", "/dev/null"), "not a regular file")


# --- lib show -----------------------------------------------------------------------------------


def test_lib_show_text(data: Path, stuff: Path, tmp_path: Path) -> None:
    library = share(data, stuff, "--hub", "tcp://10.0.0.5:7070", "--out", str(tmp_path / "x.lib"))
    result = emma(data, "lib", "show", str(tmp_path / "x.lib"))
    assert result.exit_code == 0, result.output
    rows = dict(line.split(None, 1) for line in result.stdout.splitlines())
    assert rows["id"] == library.id_hex
    assert rows["name"] == "movie.bin"
    assert rows["size"] == f"{4 * BOOK + BOOK // 2} bytes"
    assert rows["books"] == f"5 x {BOOK} bytes"
    assert rows["hash"] == "blake3"
    assert rows["hubs"] == "tcp://10.0.0.5:7070"
    assert rows["created"].endswith("UTC")
    assert rows["creator"].startswith("emma")
    publisher = signing.load_publisher(data).public.hex()
    assert rows["signed"] == f"publisher {publisher} (the signature holds)"
    assert rows["hub-key"] == "tcp://10.0.0.5:7070 (in clear)"  # hub.key is not set here


def test_lib_show_json(data: Path, stuff: Path, tmp_path: Path) -> None:
    library = share(data, stuff, "--hash", "sha256", "--out", str(tmp_path / "x.lib"))
    result = emma(data, "lib", "show", str(tmp_path / "x.lib"), "--json")
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout) == {
        "id": library.id_hex, "name": "movie.bin", "size": 4 * BOOK + BOOK // 2, "book_size": BOOK,
        "books": 5, "hash": "sha256", "hubs": ["tcp://127.0.0.1:7070"], "created_at": library.created_at,
        "creator": library.creator, "format_version": 1, "hub_keys": [""],
        "publisher": signing.load_publisher(data).public.hex(), "trusted": True,
    }


def test_lib_verify_checks_the_signature_and_the_trusted_publishers(data: Path, stuff: Path, tmp_path: Path) -> None:
    lib = tmp_path / "x.lib"
    share(data, stuff, "--out", str(lib))
    assert emma(data, "lib", "verify", str(lib)).stdout.splitlines()[-1] == "OK"
    spoilt = library_pb2.LibraryFile.FromString(lib.read_bytes()[len(MAGIC):])
    spoilt.creator = "someone else"
    bad = tmp_path / "bad.lib"
    bad.write_bytes(MAGIC + spoilt.SerializeToString())
    assert_one_line_error(emma(data, "lib", "verify", str(bad)), "signature does not hold")
    assert_one_line_error(emma(data, "lib", "show", str(bad)), "signature does not hold")
    others = tmp_path / "publishers.keys"
    others.write_text(f"{'ab' * 32}  # somebody else\n")
    assert emma(data, "settings", "set", "security.publishers", str(others)).exit_code == 0
    assert_one_line_error(emma(data, "lib", "verify", str(lib), str(stuff)), "not one this player trusts", code=1)
    assert "refused here" in emma(data, "lib", "show", str(lib)).stdout


def _spoil(good: bytes, how: str) -> bytes:
    """A valid library's bytes, spoilt in one way."""
    wrapper = library_pb2.LibraryFile()
    wrapper.ParseFromString(good[len(MAGIC) :])
    info = library_pb2.LibraryInfo()
    info.ParseFromString(wrapper.info)
    if how == "no-magic":
        return good[len(MAGIC) :]
    if how == "truncated":
        return good[: len(good) // 2]
    if how == "version":
        wrapper.format_version = 3
    elif how == "hash-count":
        info.book_hashes = info.book_hashes[:-32]
    elif how == "book-size":
        info.book_size = 1000
    elif how == "name":
        info.name = "../../etc/passwd"
    elif how == "hub":
        wrapper.hubs.append("tcp://nowhere")
    if how in {"hash-count", "book-size", "name"}:
        wrapper.info = info.SerializeToString()
    return MAGIC + wrapper.SerializeToString()


@pytest.mark.parametrize(
    ("how", "text"),
    [
        ("no-magic", "not an Emma library"),
        ("truncated", "truncated or corrupt"),
        ("version", "unsupported library format version 3"),
        ("hash-count", "needs 5"),
        ("book-size", "bad book size 1000"),
        ("name", "bad stuff name"),
        ("hub", "bad hub endpoint"),
    ],
)
@pytest.mark.parametrize("command", ["show", "verify"])
def test_bad_library_is_a_one_line_error(
    data: Path, stuff: Path, tmp_path: Path, how: str, text: str, command: str
) -> None:
    share(data, stuff, "--out", str(tmp_path / "good.lib"))
    bad = tmp_path / "bad.lib"
    bad.write_bytes(_spoil((tmp_path / "good.lib").read_bytes(), how))
    args = [str(bad), str(stuff)] if command == "verify" else [str(bad)]
    result = emma(data, "lib", command, *args)
    assert_one_line_error(result, text)
    assert str(bad) in result.stderr


def test_lib_show_missing_and_directory(data: Path, tmp_path: Path) -> None:
    assert_one_line_error(emma(data, "lib", "show", str(tmp_path / "nope.lib")), "no such library file")
    assert_one_line_error(emma(data, "lib", "show", str(tmp_path)), "is a directory")


# --- lib verify ---------------------------------------------------------------------------------


@pytest.fixture
def lib(data: Path, stuff: Path, tmp_path: Path) -> Path:
    share(data, stuff, "--out", str(tmp_path / "movie.lib"))
    return tmp_path / "movie.lib"


def test_verify_good_file(data: Path, stuff: Path, lib: Path) -> None:
    result = emma(data, "lib", "verify", str(lib), str(stuff))
    assert result.exit_code == 0, result.output
    assert result.stdout.splitlines() == ["5/5 books good", "OK"]


def test_verify_flipped_byte(data: Path, stuff: Path, lib: Path) -> None:
    flip(stuff, 2 * BOOK + 123)
    result = emma(data, "lib", "verify", str(lib), str(stuff))
    assert result.exit_code == 1
    assert result.stdout.splitlines() == ["4/5 books good", "bad books: 2", "FAILED"]


def test_verify_json(data: Path, stuff: Path, lib: Path) -> None:
    result = emma(data, "lib", "verify", str(lib), str(stuff), "--json")
    assert result.exit_code == 0
    assert json.loads(result.stdout) == {"ok": True, "good": 5, "bad": [], "size_matches": True}
    flip(stuff, 4 * BOOK)
    result = emma(data, "lib", "verify", str(lib), str(stuff), "--json")
    assert result.exit_code == 1
    assert json.loads(result.stdout) == {"ok": False, "good": 4, "bad": [4], "size_matches": True}


def test_verify_short_file(data: Path, stuff: Path, lib: Path) -> None:
    stuff.write_bytes(stuff.read_bytes()[: 3 * BOOK])
    result = emma(data, "lib", "verify", str(lib), str(stuff))
    assert result.exit_code == 1
    assert result.stdout.splitlines() == [
        "3/5 books good", "bad books: 3, 4", f"size differs: library says {4 * BOOK + BOOK // 2} bytes", "FAILED"
    ]


def test_verify_lists_at_most_20_bad_books(data: Path, tmp_path: Path) -> None:
    big = tmp_path / "big.bin"
    big.write_bytes(bytes(25 * BOOK))
    share(data, big, "--out", str(tmp_path / "big.lib"))
    big.write_bytes(b"\x01" * (25 * BOOK))
    result = emma(data, "lib", "verify", str(tmp_path / "big.lib"), str(big))
    assert result.exit_code == 1
    assert f"bad books: {', '.join(str(i) for i in range(20))} ..." in result.stdout.splitlines()


def test_verify_missing_or_directory_path(data: Path, lib: Path, tmp_path: Path) -> None:
    assert_one_line_error(emma(data, "lib", "verify", str(lib), str(tmp_path / "nope")), "no such file")
    assert_one_line_error(emma(data, "lib", "verify", str(lib), str(tmp_path)), "is a directory")
