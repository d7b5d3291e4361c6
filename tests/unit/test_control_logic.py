"""The Maestro's control socket logic: requests in, replies out, with a fake supervisor.

A real Config and state.db live in tmp_path; the supervisor is a recording fake.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from services.peer.bitfield import Bitfield
from services.peer.library import MIN_BOOK_SIZE, HashAlgorithm, Library, hash_bytes, make_library, write_library
from services.peer.state import State, Status
from services.runtime import config as config_mod
from services.supervisor.control_logic import ControlLogic, Supervisor
from services.wire.errors import ErrorCode
from services.wire.pb import control_pb2
from services.wire.versions import CONTROL

BOOK = MIN_BOOK_SIZE


@dataclass
class FakeSupervisor:
    services: list[control_pb2.ServiceStatus] = field(default_factory=list)
    calls: list[tuple[str, str]] = field(default_factory=list)
    peers: dict[str, int] = field(default_factory=dict)
    stalled: dict[str, int] = field(default_factory=dict)
    refused: dict[str, int] = field(default_factory=dict)
    hub: dict[str, int] = field(default_factory=dict)  # absent: a hub answered (1)
    shutdown: bool = False

    def statuses(self, now: float) -> list[control_pb2.ServiceStatus]:
        return self.services

    def start_service(self, name: str, now: float) -> str:
        self.calls.append(("start", name))
        return f"started {name}"

    def stop_service(self, name: str, now: float) -> str:
        self.calls.append(("stop", name))
        return f"stopped {name}"

    def request_shutdown(self) -> None:
        self.shutdown = True

    def peers_of(self, library_id: str) -> int:
        return self.peers.get(library_id, 0)

    def stalled_of(self, library_id: str) -> int:
        return self.stalled.get(library_id, 0)

    def refused_of(self, library_id: str) -> int:
        return self.refused.get(library_id, 0)

    def hub_of(self, library_id: str) -> int:
        return self.hub.get(library_id, 1)

    def metrics_text(self) -> str:
        return "emma_service_up{service=\"maestro\"} 1.0\n"


def library(name: str = "movie.mkv", books: int = 3) -> Library:
    size = (books - 1) * BOOK + 10
    data = bytes((i + len(name)) % 256 for i in range(size))
    hashes = b"".join(hash_bytes(HashAlgorithm.BLAKE3, data[i : i + BOOK]) for i in range(0, size, BOOK))
    return make_library(name=name, size=size, book_size=BOOK, hash_algorithm=HashAlgorithm.BLAKE3,
                        book_hashes=hashes, hubs=("tcp://127.0.0.1:7070",), created_at=1, creator="test")


@pytest.fixture
def config(tmp_path: Path) -> config_mod.Config:
    conf = config_mod.Config(data_dir=tmp_path / "data", values={})
    conf.ensure_dirs()
    return conf


@pytest.fixture
def state(config: config_mod.Config) -> Iterator[State]:
    db = State(config.state_db)
    yield db
    db.close()


@pytest.fixture
def supervisor() -> FakeSupervisor:
    return FakeSupervisor()


@pytest.fixture
def control(supervisor: FakeSupervisor, config: config_mod.Config, state: State) -> ControlLogic:
    checked: Supervisor = supervisor  # the fake satisfies the protocol
    return ControlLogic(checked, config, state)


def ask(control: ControlLogic, now: float = 0.0, **body: object) -> control_pb2.ControlReply:
    request = control_pb2.ControlRequest(version=1, **body)  # type: ignore[arg-type]
    return send(control, request.SerializeToString(), now)


def send(control: ControlLogic, frame: bytes, now: float = 0.0) -> control_pb2.ControlReply:
    reply = control_pb2.ControlReply()
    reply.ParseFromString(control.handle(frame, now))
    assert reply.version == 1
    return reply


def ok(reply: control_pb2.ControlReply) -> str:
    assert reply.WhichOneof("body") == "ok", reply
    return reply.ok.message


def error(reply: control_pb2.ControlReply) -> int:
    assert reply.WhichOneof("body") == "error", reply
    assert reply.error.message
    return reply.error.code


def lib_file(tmp_path: Path, lib: Library) -> Path:
    path = tmp_path / "incoming" / f"{lib.name}.lib"
    write_library(lib, path)
    return path


def action(control: ControlLogic, prefix: str, what: int) -> control_pb2.ControlReply:
    return ask(control, library=control_pb2.LibraryAction(library_id=prefix, action=what))  # type: ignore[arg-type]


Action = control_pb2.LibraryAction
PAUSE, RESUME, REMOVE = Action.PAUSE, Action.RESUME, Action.REMOVE


def record(state: State, library_id: str, status: Status = Status.DOWNLOADING, name: str = "movie") -> None:
    state.upsert(library_id=library_id, lib_path=Path(f"/libs/lib_{library_id}.lib"), stuff_path=Path(f"/dl/{name}"),
                 name=name, size=100, books=1, status=status, have=Bitfield(1))


def status(state: State, library_id: str) -> Status:
    found = state.get(library_id)
    assert found is not None
    return found.status


# --- services -----------------------------------------------------------------------------------


def test_services_lists_what_the_supervisor_reports(control: ControlLogic, supervisor: FakeSupervisor) -> None:
    supervisor.services = [
        control_pb2.ServiceStatus(name="distributor", state=control_pb2.RUNNING, pid=42, restarts=1),
        control_pb2.ServiceStatus(name="requestor", state=control_pb2.BACKOFF),
    ]
    reply = ask(control, services=control_pb2.ListServices())
    assert reply.WhichOneof("body") == "services"
    assert [(s.name, s.state, s.pid) for s in reply.services.services] == [
        ("distributor", control_pb2.RUNNING, 42), ("requestor", control_pb2.BACKOFF, 0)]


@pytest.mark.parametrize(("start", "call", "message"), [(True, "start", "started requestor"),
                                                      (False, "stop", "stopped requestor")])
def test_service_start_and_stop(control: ControlLogic, supervisor: FakeSupervisor, start: bool, call: str,
                                message: str) -> None:
    reply = ask(control, service=control_pb2.ServiceAction(service="requestor", start=start))
    assert ok(reply) == message
    assert supervisor.calls == [(call, "requestor")]


def test_shutdown(control: ControlLogic, supervisor: FakeSupervisor) -> None:
    assert ok(ask(control, shutdown=control_pb2.Shutdown())) == "shutting down"
    assert supervisor.shutdown


# --- add and list ------------------------------------------------------------------------------------


def test_add_a_library_then_list_it(tmp_path: Path, control: ControlLogic, config: config_mod.Config,
                                    supervisor: FakeSupervisor) -> None:
    lib = library()
    message = ok(ask(control, add=control_pb2.AddLibrary(path=str(lib_file(tmp_path, lib)))))
    assert message == f"added {lib.id_hex} (movie.mkv)"
    assert (config.libs_dir / lib.file_name).is_file()

    supervisor.peers[lib.id_hex] = 3
    reply = ask(control, downloads=control_pb2.ListDownloads())
    assert reply.WhichOneof("body") == "downloads"
    [download] = reply.downloads.downloads
    assert (download.library_id, download.name, download.size) == (lib.id_hex, "movie.mkv", lib.size)
    assert (download.books_total, download.books_have, download.peers) == (3, 0, 3)
    assert download.state == control_pb2.DOWNLOADING
    assert download.path == str(config.downloads_dir / "movie.mkv")


def test_adding_a_known_library_again_says_so(tmp_path: Path, control: ControlLogic, state: State) -> None:
    lib = library()
    path = lib_file(tmp_path, lib)
    ok(ask(control, add=control_pb2.AddLibrary(path=str(path))))
    again = ok(ask(control, add=control_pb2.AddLibrary(path=str(path))))
    assert again == f"{lib.id_hex} is already known (downloading)"
    assert len(state.all()) == 1


def test_download_rates_come_from_successive_samples(tmp_path: Path, control: ControlLogic, state: State) -> None:
    lib = library()
    ok(ask(control, add=control_pb2.AddLibrary(path=str(lib_file(tmp_path, lib)))))
    ask(control, 10.0, downloads=control_pb2.ListDownloads())
    have = Bitfield(3)
    have.add(0)
    state.save_progress(lib.id_hex, have, downloaded=BOOK, fetched=BOOK)
    state.add_uploaded(lib.id_hex, 4096)
    [download] = ask(control, 12.0, downloads=control_pb2.ListDownloads()).downloads.downloads
    assert download.books_have == 1
    assert (download.download_rate, download.upload_rate) == (BOOK / 2, 2048.0)


def test_a_download_without_a_source_shows_as_stalled_with_its_reason(
    control: ControlLogic, state: State, supervisor: FakeSupervisor
) -> None:
    record(state, "aa" * 32)
    record(state, "bb" * 32, Status.PAUSED)
    record(state, "cc" * 32)
    supervisor.stalled = {"aa" * 32: 3, "bb" * 32: 2, "cc" * 32: 1}
    rows = {d.library_id[:2]: (d.state, d.detail) for d in ask(control, downloads=control_pb2.ListDownloads()
                                                                 ).downloads.downloads}
    assert rows == {"aa": (control_pb2.STALLED, "no source for 3 books"), "bb": (control_pb2.PAUSED, ""),
                    "cc": (control_pb2.STALLED, "no source for 1 book")}
    supervisor.stalled = {}  # a source appeared: the requestor's counter is gone
    supervisor.peers = {"aa" * 32: 1, "cc" * 32: 1}
    states = [d.state for d in ask(control, downloads=control_pb2.ListDownloads()).downloads.downloads]
    assert states == [control_pb2.DOWNLOADING, control_pb2.PAUSED, control_pb2.DOWNLOADING]


def test_a_download_refused_by_its_hub_or_peers_says_who(
    control: ControlLogic, state: State, supervisor: FakeSupervisor
) -> None:
    for name in ("aa", "bb", "cc"):
        record(state, name * 32)
    supervisor.refused = {"aa" * 32: 1, "bb" * 32: 4, "cc" * 32: 3}
    rows = {d.library_id[:2]: (d.state, d.detail) for d in ask(control, downloads=control_pb2.ListDownloads()
                                                                 ).downloads.downloads}
    assert rows["aa"] == (control_pb2.REFUSED,
                          "not authorised by hub: our key is not on their allowlist (emma logs says more)")
    assert rows["bb"][1].startswith("not authorised by 2 peers:")
    assert rows["cc"][1].startswith("not authorised by hub and 1 peer:")


@pytest.mark.parametrize("content", [b"", b"not a library", b"EMMALIB\n\xff\xff\xff"])
def test_adding_a_bad_library_is_an_invalid_argument(tmp_path: Path, control: ControlLogic, state: State,
                                                     content: bytes) -> None:
    path = tmp_path / "bad.lib"
    path.write_bytes(content)
    reply = ask(control, add=control_pb2.AddLibrary(path=str(path)))
    assert error(reply) == ErrorCode.INVALID_ARGUMENT
    assert str(path) in reply.error.message
    assert state.all() == []


def test_adding_a_missing_file_is_an_invalid_argument(tmp_path: Path, control: ControlLogic) -> None:
    reply = ask(control, add=control_pb2.AddLibrary(path=str(tmp_path / "nope.lib")))
    assert error(reply) == ErrorCode.INVALID_ARGUMENT
    assert "no such library file" in reply.error.message


# --- pause, resume, remove -------------------------------------------------------------------------------


def test_pause_and_resume_by_a_unique_prefix(control: ControlLogic, state: State) -> None:
    record(state, "ab" * 32)
    record(state, "cd" * 32)
    assert ok(action(control, "ab", PAUSE)) == "paused movie"
    assert status(state, "ab" * 32) is Status.PAUSED
    assert status(state, "cd" * 32) is Status.DOWNLOADING
    assert ok(action(control, "ABAB", RESUME)) == "resumed movie"  # case does not matter
    assert status(state, "ab" * 32) is Status.DOWNLOADING


def test_remove_forgets_the_library_and_its_lib_file(control: ControlLogic, state: State,
                                                      config: config_mod.Config) -> None:
    library_id = "ab" * 32
    record(state, library_id)
    lib = config.libs_dir / f"lib_{library_id}.lib"
    lib.write_bytes(b"x")
    assert ok(action(control, library_id, REMOVE)) == "removed movie (files kept in /dl)"
    assert state.get(library_id) is None
    assert not lib.exists()


def test_pausing_a_seeding_library_stops_seeding_and_resume_seeds_again(
    control: ControlLogic, state: State, supervisor: FakeSupervisor
) -> None:
    record(state, "ab" * 32, Status.SEEDING)
    assert ok(action(control, "ab", RESUME)) == "movie is complete and seeding"
    assert ok(action(control, "ab", PAUSE)) == (
        "paused movie: complete, no longer seeding (`emma resume` seeds it again)")
    assert status(state, "ab" * 32) is Status.STOPPED
    [row] = ask(control, downloads=control_pb2.ListDownloads()).downloads.downloads
    assert (row.state, row.detail, row.upload_rate) == (
        control_pb2.PAUSED, "complete; not seeding (`emma resume` seeds it again)", 0.0)
    assert ok(action(control, "ab", PAUSE)) == "movie is complete and not seeding"
    assert ok(action(control, "ab", RESUME)) == "seeding movie again"
    assert status(state, "ab" * 32) is Status.SEEDING


def test_an_ambiguous_prefix_is_refused(control: ControlLogic, state: State) -> None:
    record(state, "ab" * 32)
    record(state, "ac" * 32)
    reply = action(control, "a", REMOVE)
    assert error(reply) == ErrorCode.INVALID_ARGUMENT
    assert "matches 2 libraries" in reply.error.message
    assert len(state.all()) == 2


def test_an_unknown_prefix_is_not_found(control: ControlLogic, state: State) -> None:
    record(state, "ab" * 32)
    assert error(action(control, "ff", PAUSE)) == ErrorCode.NOT_FOUND


@pytest.mark.parametrize("prefix", ["", "xyz", "a%", "_", "ab" * 32 + "a", "ab cd"])
def test_a_prefix_that_is_not_hex_is_refused(control: ControlLogic, state: State, prefix: str) -> None:
    record(state, "ab" * 32)
    assert error(action(control, prefix, REMOVE)) == ErrorCode.INVALID_ARGUMENT
    assert state.get("ab" * 32) is not None


def test_an_unspecified_action_is_refused(control: ControlLogic, state: State) -> None:
    record(state, "ab" * 32)
    assert error(action(control, "ab", control_pb2.LibraryAction.ACTION_UNSPECIFIED)) == ErrorCode.INVALID_ARGUMENT


# --- rates -------------------------------------------------------------------------------------------------


def test_set_rates_are_saved_to_config(control: ControlLogic, config: config_mod.Config) -> None:
    message = ok(ask(control, rates=control_pb2.SetRates(upload_rate=1000, download_rate=0)))
    assert message == "upload 1000 B/s, download unlimited B/s"
    saved = config_mod.load(config.data_dir)
    assert (saved.get("limits.upload_rate"), saved.get("limits.download_rate")) == (1000, 0)
    assert config.get("limits.upload_rate") == 1000


# --- garbage ----------------------------------------------------------------------------------------------


def test_garbage_is_malformed(control: ControlLogic) -> None:
    assert error(send(control, b"\xff\xfe\xfd\xfc")) == ErrorCode.MALFORMED


def test_truncated_request_is_malformed(control: ControlLogic) -> None:
    frame = control_pb2.ControlRequest(version=1, add=control_pb2.AddLibrary(path="/x" * 20)).SerializeToString()
    assert error(send(control, frame[:-5])) == ErrorCode.MALFORMED


def test_a_newer_minor_version_is_answered(control: ControlLogic) -> None:
    frame = control_pb2.ControlRequest(version=CONTROL.current + 1, services=control_pb2.ListServices())
    assert send(control, frame.SerializeToString()).WhichOneof("body") == "services"


def test_a_version_older_than_supported_is_refused_naming_both(control: ControlLogic) -> None:
    frame = control_pb2.ControlRequest(version=CONTROL.oldest - 1, services=control_pb2.ListServices())
    reply = send(control, frame.SerializeToString())
    assert error(reply) == ErrorCode.UNSUPPORTED_VERSION
    message = reply.error.message
    assert f"version {CONTROL.oldest - 1} " in message and f"speaks {CONTROL.current}" in message


def test_empty_bytes_have_no_version(control: ControlLogic) -> None:
    assert error(send(control, b"")) == ErrorCode.UNSUPPORTED_VERSION


def test_a_request_without_a_body_is_unknown(control: ControlLogic) -> None:
    assert error(ask(control)) == ErrorCode.UNKNOWN_REQUEST


def test_an_oversized_request_is_too_large(control: ControlLogic) -> None:
    frame = control_pb2.ControlRequest(version=1, add=control_pb2.AddLibrary(path="x" * 70_000)).SerializeToString()
    assert error(send(control, frame)) == ErrorCode.TOO_LARGE


def test_metrics_come_back_as_the_supervisor_renders_them(control: ControlLogic) -> None:
    reply = ask(control, metrics=control_pb2.MetricsRequest())
    assert reply.metrics.text.startswith("emma_service_up")


# --- tree libraries: --only ------------------------------------------------------------------------------


def tree(name: str = "dataset", size: int = 10) -> Library:
    from services.peer.library import FileEntry

    paths = ["config.json", "shards/a.bin", "shards/b.bin", "readme.txt"]
    entries = [FileEntry(path, size, bytes(32), index) for index, path in enumerate(sorted(paths))]
    return make_library(name=name, size=4 * size, book_size=BOOK, hash_algorithm=HashAlgorithm.BLAKE3,
                        book_hashes=bytes(32) * 4, hubs=("tcp://127.0.0.1:7070",), created_at=1, creator="test",
                        files=entries)


def test_get_only_records_the_selection_and_downloads_say_how_many_files(control: ControlLogic, state: State,
                                                                         tmp_path: Path) -> None:
    lib = tree()
    path = lib_file(tmp_path, lib)
    assert ok(ask(control, add=control_pb2.AddLibrary(path=str(path), only=["shards"]))).endswith(
        ": 2 of 4 files selected")
    record = state.get(lib.id_hex)
    assert record is not None and record.only == ("shards",) and record.stuff_path.name == "dataset"
    shown = ask(control, downloads=control_pb2.ListDownloads()).downloads.downloads[0]
    assert (shown.files_total, shown.files_selected) == (4, 2)


def test_get_only_again_adds_to_the_selection_and_a_complete_one_downloads_again(control: ControlLogic, state: State,
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
def test_get_only_refuses_globs_that_select_nothing_or_are_malformed(control: ControlLogic, state: State,
                                                                     tmp_path: Path, only: list[str],
                                                                     text: str) -> None:
    reply = ask(control, add=control_pb2.AddLibrary(path=str(lib_file(tmp_path, tree())), only=only))
    assert error(reply) == ErrorCode.INVALID_ARGUMENT and text in reply.error.message
    assert state.all() == []


def test_get_only_of_a_single_file_library_is_refused(control: ControlLogic, tmp_path: Path) -> None:
    reply = ask(control, add=control_pb2.AddLibrary(path=str(lib_file(tmp_path, library())), only=["*"]))
    assert error(reply) == ErrorCode.INVALID_ARGUMENT and "single file" in reply.error.message


def test_a_second_tree_of_the_same_name_goes_to_a_folder_of_its_own(control: ControlLogic, state: State,
                                                                    tmp_path: Path) -> None:
    one, two = tree(), tree(size=11)
    for lib in (one, two):
        ok(ask(control, add=control_pb2.AddLibrary(path=str(lib_file(tmp_path / lib.id_hex, lib)))))
    first, second = state.get(one.id_hex), state.get(two.id_hex)
    assert first is not None and second is not None
    assert first.stuff_path.name == "dataset" and second.stuff_path.name == f"dataset.{two.id_hex[:8]}"

