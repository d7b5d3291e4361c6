"""The Maestro's control socket logic: requests in, replies out, with a fake supervisor.

A real Config and state.db live in tmp_path; the supervisor is a recording fake.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import pytest

from services.peer import catalog
from services.peer.bitfield import Bitfield
from services.peer.library import MIN_BOOK_SIZE, HashAlgorithm, Library, hash_bytes, make_library, write_library
from services.peer.state import State, Status
from services.runtime import config as config_mod
from services.supervisor.control_logic import ControlLogic, Forward, Supervisor
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
    answer = control.handle(frame, now)
    assert isinstance(answer, bytes), answer
    reply.ParseFromString(answer)
    assert reply.version == CONTROL.current
    return reply


def ok(reply: control_pb2.ControlReply) -> str:
    assert reply.WhichOneof("body") == "ok", reply
    return reply.ok.message


def error(reply: control_pb2.ControlReply) -> int:
    assert reply.WhichOneof("body") == "error", reply
    assert reply.error.message
    return reply.error.code


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


# --- forwarded to the Requestor, and the downloads view ----------------------------------------


@pytest.mark.parametrize("body", [
    {"add": control_pb2.AddLibrary(path="/x/a.lib", only=["*.bin"], to="/dl", on_complete="echo", hubs=["tcp://h:1"])},
    {"library": control_pb2.LibraryAction(library_id="ab", action=control_pb2.LibraryAction.PAUSE)},
    {"seed": control_pb2.SeedLibrary(path="/x/a.lib", stuff_path="/x/a")},
])
def test_what_changes_the_libraries_is_forwarded_as_asked_and_nothing_is_written(
    control: ControlLogic, state: State, config: config_mod.Config, body: dict[str, object]
) -> None:
    request = control_pb2.ControlRequest(version=CONTROL.current, **body)  # type: ignore[arg-type]
    forward = control.handle(request.SerializeToString(), 0.0)
    assert isinstance(forward, Forward)
    assert forward.request == request
    assert state.all() == [] and list(config.libs_dir.iterdir()) == []


def test_download_rates_come_from_successive_samples(control: ControlLogic, state: State,
                                                    config: config_mod.Config) -> None:
    lib = library()
    write_library(lib, config.libs_dir / lib.file_name)
    catalog.record_download(state, config, lib, config.libs_dir / lib.file_name)
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
