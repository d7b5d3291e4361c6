"""The Requestor's commands (what the Maestro forwards: get, pause, resume, remove, share): commands in, replies
and the changed libraries out, with no sockets.

A real Config and state.db live in tmp_path; ``view`` lists what the Maestro would show of the same state.db.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from zmq.utils import z85

from services.peer.commands import Commands, Outcome
from services.peer.library import FileEntry, HashAlgorithm, Library, make_library, read_library, write_library
from services.peer.state import State, Status
from services.runtime import config as config_mod
from services.supervisor.control_logic import ControlLogic
from services.wire import curve
from services.wire.errors import ErrorCode
from services.wire.pb import control_pb2
from services.wire.versions import CONTROL
from tests.unit.test_control_logic import BOOK, FakeSupervisor, library, record, status

COMMAND_ID = 7


@pytest.fixture
def supervisor() -> FakeSupervisor:
    return FakeSupervisor()


@pytest.fixture
def released() -> list[str]:
    return []


@pytest.fixture
def control(config: config_mod.Config, state: State, released: list[str]) -> Commands:
    return Commands(config, state, released.append)


@pytest.fixture
def shown(supervisor: FakeSupervisor, config: config_mod.Config, state: State) -> ControlLogic:
    return ControlLogic(supervisor, config, state)


def outcome(control: Commands, frame: bytes) -> tuple[control_pb2.ChildReply, tuple[str, ...]]:
    done: Outcome = control.handle(frame, 0.0)
    reply = control_pb2.ChildReply()
    reply.ParseFromString(done.reply)
    assert reply.version == CONTROL.current
    return reply, done.changed


def ask(control: Commands, **body: object) -> control_pb2.ChildReply:
    command = control_pb2.ChildCommand(version=CONTROL.current, id=COMMAND_ID, **body)  # type: ignore[arg-type]
    reply, _ = outcome(control, command.SerializeToString())
    assert reply.id == COMMAND_ID
    return reply


def ok(reply: control_pb2.ChildReply) -> str:
    assert reply.WhichOneof("body") == "ok", reply
    return reply.ok.message


def error(reply: control_pb2.ChildReply) -> int:
    assert reply.WhichOneof("body") == "error", reply
    assert reply.error.message
    return reply.error.code


def lib_file(tmp_path: Path, lib: Library) -> Path:
    path = tmp_path / "incoming" / f"{lib.name}.lib"
    write_library(lib, path)
    return path


def action(control: Commands, prefix: str, what: int) -> control_pb2.ChildReply:
    return ask(control, library=control_pb2.LibraryAction(library_id=prefix, action=what))  # type: ignore[arg-type]


def listed(shown: ControlLogic, **body: object) -> control_pb2.ControlReply:
    request = control_pb2.ControlRequest(version=CONTROL.current, **body)  # type: ignore[arg-type]
    reply = control_pb2.ControlReply()
    frame = shown.handle(request.SerializeToString(), 0.0)
    assert isinstance(frame, bytes)
    reply.ParseFromString(frame)
    return reply


Action = control_pb2.LibraryAction
PAUSE, RESUME, REMOVE = Action.PAUSE, Action.RESUME, Action.REMOVE


def tree(name: str = "dataset", size: int = 10) -> Library:
    paths = ["config.json", "shards/a.bin", "shards/b.bin", "readme.txt"]
    entries = [FileEntry(path, size, bytes(32), index) for index, path in enumerate(sorted(paths))]
    return make_library(name=name, size=4 * size, book_size=BOOK, hash_algorithm=HashAlgorithm.BLAKE3,
                        book_hashes=bytes(32) * 4, hubs=("tcp://127.0.0.1:7070",), created_at=1, creator="test",
                        files=entries)


def test_add_a_library_then_list_it(tmp_path: Path, control: Commands, config: config_mod.Config,
                                    supervisor: FakeSupervisor, shown: ControlLogic) -> None:
    lib = library()
    message = ok(ask(control, add=control_pb2.AddLibrary(path=str(lib_file(tmp_path, lib)))))
    assert message == f"added {lib.id_hex} (movie.mkv)"
    assert (config.libs_dir / lib.file_name).is_file()

    supervisor.peers[lib.id_hex] = 3
    reply = listed(shown, downloads=control_pb2.ListDownloads())
    assert reply.WhichOneof("body") == "downloads"
    [download] = reply.downloads.downloads
    assert (download.library_id, download.name, download.size) == (lib.id_hex, "movie.mkv", lib.size)
    assert (download.books_total, download.books_have, download.peers) == (3, 0, 3)
    assert download.state == control_pb2.DOWNLOADING
    assert download.path == str(config.downloads_dir / "movie.mkv")


def test_adding_a_known_library_again_says_so(tmp_path: Path, control: Commands, state: State) -> None:
    lib = library()
    path = lib_file(tmp_path, lib)
    ok(ask(control, add=control_pb2.AddLibrary(path=str(path))))
    again = ok(ask(control, add=control_pb2.AddLibrary(path=str(path))))
    assert again == f"{lib.id_hex} is already known (downloading)"
    assert len(state.all()) == 1


def test_get_hub_with_a_key_lists_that_hub_and_key_in_the_library_kept(tmp_path: Path, control: Commands,
                                                                       config: config_mod.Config) -> None:
    lib = library()
    key = curve.KeyPair.generate().public.decode()
    hubs = [f"{z85.decode(key).hex()}@tcp://hub.example:7070", "tcp://203.0.113.9:7071"]
    ok(ask(control, add=control_pb2.AddLibrary(path=str(lib_file(tmp_path, lib)), hubs=hubs)))
    kept = read_library(config.libs_dir / lib.file_name)
    assert (kept.id, kept.hubs, kept.hub_keys) == (lib.id, ("tcp://hub.example:7070", "tcp://203.0.113.9:7071"),
                                                   (key, ""))


@pytest.mark.parametrize(("hub", "why"), [("nowhere", "bad hub endpoint (--hub)"),
                                          ("abc@tcp://h:1", "bad hub key (--hub): 64 hex digits")])
def test_get_hub_malformed_is_an_invalid_argument_and_adds_nothing(tmp_path: Path, control: Commands, state: State,
                                                                  hub: str, why: str) -> None:
    reply = ask(control, add=control_pb2.AddLibrary(path=str(lib_file(tmp_path, library())), hubs=[hub]))
    assert error(reply) == ErrorCode.INVALID_ARGUMENT and why in reply.error.message
    assert state.all() == []


@pytest.mark.parametrize("content", [b"", b"not a library", b"EMMALIB\n\xff\xff\xff"])
def test_adding_a_bad_library_is_an_invalid_argument(tmp_path: Path, control: Commands, state: State,
                                                     content: bytes) -> None:
    path = tmp_path / "bad.lib"
    path.write_bytes(content)
    reply = ask(control, add=control_pb2.AddLibrary(path=str(path)))
    assert error(reply) == ErrorCode.INVALID_ARGUMENT
    assert str(path) in reply.error.message
    assert state.all() == []


def test_adding_a_missing_file_is_an_invalid_argument(tmp_path: Path, control: Commands) -> None:
    reply = ask(control, add=control_pb2.AddLibrary(path=str(tmp_path / "nope.lib")))
    assert error(reply) == ErrorCode.INVALID_ARGUMENT
    assert "no such library file" in reply.error.message


def test_pause_and_resume_by_a_unique_prefix(control: Commands, state: State) -> None:
    record(state, "ab" * 32)
    record(state, "cd" * 32)
    assert ok(action(control, "ab", PAUSE)) == "paused movie"
    assert status(state, "ab" * 32) is Status.PAUSED
    assert status(state, "cd" * 32) is Status.DOWNLOADING
    assert ok(action(control, "ABAB", RESUME)) == "resumed movie"  # case does not matter
    assert status(state, "ab" * 32) is Status.DOWNLOADING


def test_remove_forgets_the_library_and_its_lib_file(control: Commands, state: State,
                                                      config: config_mod.Config) -> None:
    library_id = "ab" * 32
    record(state, library_id)
    lib = config.libs_dir / f"lib_{library_id}.lib"
    lib.write_bytes(b"x")
    assert ok(action(control, library_id, REMOVE)) == "removed movie (files kept in /dl)"
    assert state.get(library_id) is None
    assert not lib.exists()


def test_pausing_a_seeding_library_stops_seeding_and_resume_seeds_again(
    control: Commands, state: State, shown: ControlLogic
) -> None:
    record(state, "ab" * 32, Status.SEEDING)
    assert ok(action(control, "ab", RESUME)) == "movie is complete and seeding"
    assert ok(action(control, "ab", PAUSE)) == (
        "paused movie: complete, no longer seeding (`emma resume` seeds it again)")
    assert status(state, "ab" * 32) is Status.STOPPED
    [row] = listed(shown, downloads=control_pb2.ListDownloads()).downloads.downloads
    assert (row.state, row.detail, row.upload_rate) == (
        control_pb2.PAUSED, "complete; not seeding (`emma resume` seeds it again)", 0.0)
    assert ok(action(control, "ab", PAUSE)) == "movie is complete and not seeding"
    assert ok(action(control, "ab", RESUME)) == "seeding movie again"
    assert status(state, "ab" * 32) is Status.SEEDING


def test_an_ambiguous_prefix_is_refused(control: Commands, state: State) -> None:
    record(state, "ab" * 32)
    record(state, "ac" * 32)
    reply = action(control, "a", REMOVE)
    assert error(reply) == ErrorCode.INVALID_ARGUMENT
    assert "matches 2 libraries" in reply.error.message
    assert len(state.all()) == 2


def test_an_unknown_prefix_is_not_found(control: Commands, state: State) -> None:
    record(state, "ab" * 32)
    assert error(action(control, "ff", PAUSE)) == ErrorCode.NOT_FOUND


@pytest.mark.parametrize("prefix", ["", "xyz", "a%", "_", "ab" * 32 + "a", "ab cd"])
def test_a_prefix_that_is_not_hex_is_refused(control: Commands, state: State, prefix: str) -> None:
    record(state, "ab" * 32)
    assert error(action(control, prefix, REMOVE)) == ErrorCode.INVALID_ARGUMENT
    assert state.get("ab" * 32) is not None


def test_an_unspecified_action_is_refused(control: Commands, state: State) -> None:
    record(state, "ab" * 32)
    assert error(action(control, "ab", control_pb2.LibraryAction.ACTION_UNSPECIFIED)) == ErrorCode.INVALID_ARGUMENT


def test_get_only_records_the_selection_and_downloads_say_how_many_files(control: Commands, state: State,
                                                                         tmp_path: Path, shown: ControlLogic) -> None:
    lib = tree()
    path = lib_file(tmp_path, lib)
    assert ok(ask(control, add=control_pb2.AddLibrary(path=str(path), only=["shards"]))).endswith(
        ": 2 of 4 files selected")
    record = state.get(lib.id_hex)
    assert record is not None and record.only == ("shards",) and record.stuff_path.name == "dataset"
    row = listed(shown, downloads=control_pb2.ListDownloads()).downloads.downloads[0]
    assert (row.files_total, row.files_selected) == (4, 2)


def test_get_only_again_adds_to_the_selection_and_a_complete_one_downloads_again(control: Commands, state: State,
                                                                                 tmp_path: Path) -> None:
    lib = tree()
    path = lib_file(tmp_path, lib)
    ok(ask(control, add=control_pb2.AddLibrary(path=str(path), only=["*.json"])))
    state.set_status(lib.id_hex, Status.SEEDING)
    assert "already known" in ok(ask(control, add=control_pb2.AddLibrary(path=str(path), only=["*.json"])))
    assert ok(ask(control, add=control_pb2.AddLibrary(path=str(path), only=["readme.txt"]))) == \
        "dataset: 2 of 4 files selected (downloading)"
    record = state.get(lib.id_hex)
    assert record is not None and record.only == ("*.json", "readme.txt") and record.status is Status.DOWNLOADING
    every = ok(ask(control, add=control_pb2.AddLibrary(path=str(path))))
    assert every == "dataset: 4 of 4 files selected (downloading)"
    record = state.get(lib.id_hex)
    assert record is not None and record.only == ()


@pytest.mark.parametrize(("only", "text"), [
    (["nothing*"], "matches none of the 4 files"),
    ([""], "printable"),
    (["a\nb"], "printable"),
    (["x"] * 65, "at most 64 globs"),
])
def test_get_only_refuses_globs_that_select_nothing_or_are_malformed(control: Commands, state: State,
                                                                     tmp_path: Path, only: list[str],
                                                                     text: str) -> None:
    reply = ask(control, add=control_pb2.AddLibrary(path=str(lib_file(tmp_path, tree())), only=only))
    assert error(reply) == ErrorCode.INVALID_ARGUMENT and text in reply.error.message
    assert state.all() == []


def test_get_only_of_a_single_file_library_is_refused(control: Commands, tmp_path: Path) -> None:
    reply = ask(control, add=control_pb2.AddLibrary(path=str(lib_file(tmp_path, library())), only=["*"]))
    assert error(reply) == ErrorCode.INVALID_ARGUMENT and "single file" in reply.error.message


def test_a_second_tree_of_the_same_name_goes_to_a_folder_of_its_own(control: Commands, state: State,
                                                                    tmp_path: Path) -> None:
    one, two = tree(), tree(size=11)
    for lib in (one, two):
        ok(ask(control, add=control_pb2.AddLibrary(path=str(lib_file(tmp_path / lib.id_hex, lib)))))
    first, second = state.get(one.id_hex), state.get(two.id_hex)
    assert first is not None and second is not None
    assert first.stuff_path.name == "dataset" and second.stuff_path.name == f"dataset.{two.id_hex[:8]}"



# --- what the Requestor acts on at once, and share ------------------------------------------------------


def test_each_command_names_the_libraries_it_changed_and_a_refusal_none(control: Commands, state: State,
                                                                        tmp_path: Path) -> None:
    lib = library()
    add = control_pb2.ChildCommand(version=CONTROL.current, id=1, add=control_pb2.AddLibrary(
        path=str(lib_file(tmp_path, lib))))
    assert outcome(control, add.SerializeToString())[1] == (lib.id_hex,)
    assert outcome(control, add.SerializeToString())[1] == ()  # already known: nothing changed
    pause = control_pb2.ChildCommand(version=CONTROL.current, id=2, library=control_pb2.LibraryAction(
        library_id=lib.id_hex[:6], action=PAUSE))
    assert outcome(control, pause.SerializeToString())[1] == (lib.id_hex,)
    unknown = control_pb2.ChildCommand(version=CONTROL.current, id=3, library=control_pb2.LibraryAction(
        library_id="ffff", action=PAUSE))
    reply, changed = outcome(control, unknown.SerializeToString())
    assert (reply.id, reply.error.code, changed) == (3, ErrorCode.NOT_FOUND, ())


def test_a_library_given_with_its_folder_and_command_is_recorded_with_them(
    control: Commands, state: State, config: config_mod.Config, tmp_path: Path
) -> None:
    lib = library()
    message = ok(ask(control, add=control_pb2.AddLibrary(path=str(lib_file(tmp_path, lib)), to=str(tmp_path / "to"),
                                                         on_complete="true")))
    assert message.endswith(f"into {tmp_path / 'to'}")
    found = state.get(lib.id_hex)
    assert found is not None and found.status is Status.DOWNLOADING and found.on_complete == "true"
    assert found.stuff_path == tmp_path / "to" / "movie.mkv"
    assert found.lib_path == config.libs_dir / lib.file_name and found.lib_path.is_file()


def test_share_records_the_library_as_seeding_after_stopping_its_download(
    control: Commands, state: State, config: config_mod.Config, tmp_path: Path, released: list[str]
) -> None:
    lib = library()
    ok(ask(control, add=control_pb2.AddLibrary(path=str(lib_file(tmp_path, lib)))))
    stuff = tmp_path / "movie.mkv"
    stuff.write_bytes(b"x")
    message = ok(ask(control, seed=control_pb2.SeedLibrary(path=str(lib_file(tmp_path / "cli", lib)),
                                                           stuff_path=str(stuff))))
    assert message == f"seeding {lib.id_hex} (movie.mkv)"
    assert released == [lib.id_hex]
    found = state.get(lib.id_hex)
    assert found is not None and found.status is Status.SEEDING and found.have.complete
    assert found.stuff_path == stuff and found.lib_path == config.libs_dir / lib.file_name


@pytest.mark.parametrize("stuff", ["relative/file", "/no/such/file"])
def test_share_of_a_file_that_is_not_there_is_refused(control: Commands, state: State, tmp_path: Path,
                                                      released: list[str], stuff: str) -> None:
    reply = ask(control, seed=control_pb2.SeedLibrary(path=str(lib_file(tmp_path, library())), stuff_path=stuff))
    assert error(reply) == ErrorCode.INVALID_ARGUMENT
    assert state.all() == [] and released == []


def test_a_library_that_cannot_be_saved_is_an_internal_error_saying_what_to_do(
    control: Commands, state: State, config: config_mod.Config, tmp_path: Path
) -> None:
    config.libs_dir.rmdir()
    config.libs_dir.write_text("not a folder")  # libs/ cannot take the .lib
    reply = ask(control, add=control_pb2.AddLibrary(path=str(lib_file(tmp_path, library()))))
    assert error(reply) == ErrorCode.INTERNAL
    assert "free space" in reply.error.message
    assert state.all() == []  # nothing recorded without its .lib


@pytest.mark.parametrize("frame", [b"\xff\xfe\xfd", b"", b"x" * 70_000])
def test_garbage_gets_an_error_reply_and_changes_nothing(control: Commands, state: State, frame: bytes) -> None:
    reply, changed = outcome(control, frame)
    assert reply.WhichOneof("body") == "error" and changed == ()
    assert state.all() == []


def test_a_command_without_a_body_is_unknown(control: Commands) -> None:
    assert error(ask(control)) == ErrorCode.UNKNOWN_REQUEST


@pytest.mark.parametrize("path", ["/a\x00b.lib", "/" + "a" * 5000, "/" + "a" * 5000 + ".lib", "/dev/zero"])
@pytest.mark.parametrize("kind", ["add", "seed"])
def test_hostile_paths_are_invalid_arguments(control: Commands, state: State, path: str, kind: str) -> None:
    body = (control_pb2.AddLibrary(path=path) if kind == "add"
            else control_pb2.SeedLibrary(path=path, stuff_path=path))
    assert error(ask(control, **{kind: body})) == ErrorCode.INVALID_ARGUMENT
    assert state.all() == []
