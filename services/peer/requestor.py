"""The Requestor process: the player's acquisition.

Each loop turn it (1) re-reads state.db and ``<data>/libs/`` for libraries to
download, pause or drop; (2) asks the hub for peers through a HubLink worker;
(3) handshakes new peers on a DEALER each; (4) tops up every peer's request
window with books from the picker, all windows together holding at most
IN_FLIGHT_BYTES of books (the memory bound, whatever the book size); (5)
receives books, verifies, pwrites, tells the local Distributor, and fsyncs
(in a Syncer thread) + persists progress in batches; (6) expires late
requests and unreachable peers (reported to the hub).

Run: ``python -m services.peer.requestor --data-dir D``.
"""

from __future__ import annotations

import os
import time
from typing import Any

import zmq

from services.peer import catalog, identity
from services.peer.bitfield import Bitfield
from services.peer.distributor import notify_endpoint
from services.peer.download import DiskError, Download, open_partial
from services.peer.hublink import HubLink, HubResult, PeersJob, ReportJob
from services.peer.library import LibraryError, read_library
from services.peer.picker import Picker
from services.peer.ratelimit import TokenBucket
from services.peer.remote import Remote
from services.peer.state import State, Status
from services.peer.syncer import Syncer
from services.peer.window import IN_FLIGHT_BYTES
from services.peer.writer import Outcome, Written, land
from services.runtime import config as config_mod
from services.runtime.heartbeat import HeartbeatSender
from services.runtime.logs import get_logger
from services.runtime.service import service_main
from services.wire import framing
from services.wire.errors import ErrorCode, ProtocolError
from services.wire.pb import wire_pb2

log = get_logger("events")
slog = get_logger("services")
RELOAD_SECONDS = 0.25
SYNC_SECONDS = 0.5
PEERS_EVERY = 5.0
PEERS_EVERY_STARVED = 0.5
SILENT_PEER = 20.0
HANDSHAKE_ATTEMPTS = 3
REFUSED_SECONDS = 0.5  # after a busy for a book, ask that remote for other books this long


def peers_interval(asks: int, got: int, numwant: int, ok: bool) -> float:
    """When to ask the hub again: soon and then less often while the swarm is still forming
    (players join the library at about the same time), every PEERS_EVERY once it has formed."""
    if not ok or got == 0:
        return PEERS_EVERY_STARVED
    if got >= numwant:
        return PEERS_EVERY
    return min(PEERS_EVERY, 0.25 * float(2 ** min(asks, 8)))


class Requestor:
    def __init__(self, config: config_mod.Config, heartbeat: str | None = None) -> None:
        self.config = config
        self.ctx: zmq.Context[Any] = zmq.Context()
        self.state = State(config.state_db)
        self.player_id = identity.player_id(config.data_dir)
        self.push = self.ctx.socket(zmq.PUSH)
        self.push.setsockopt(zmq.LINGER, 1000)
        self.push.connect(notify_endpoint(config.run_dir))
        self.own_endpoint = ""
        self.hub = HubLink(self.ctx)
        self.downloads: dict[bytes, Download] = {}
        self.remotes: dict[str, Remote] = {}
        self.by_socket: dict[zmq.Socket[Any], Remote] = {}
        self.next_peers: dict[bytes, float] = {}
        self.peer_asks: dict[bytes, int] = {}
        self.settings = config_mod.Watcher(config)
        self.bucket = TokenBucket(config.get("limits.download_rate"), time.monotonic())
        self.heartbeat = HeartbeatSender(self.ctx, heartbeat, "requestor",
                                         config.get("maestro.heartbeat_interval")) if heartbeat else None
        self.poller = zmq.Poller()
        self.poller.register(self.hub.socket, zmq.POLLIN)
        self.syncer = Syncer(self.ctx)
        self.poller.register(self.syncer.socket, zmq.POLLIN)
        self.counts = {"books": 0, "bad_books": 0, "peers": 0, "downloads": 0}
        self.running = True

    # -- which libraries to download ------------------------------------------
    def reload(self, now: float) -> None:
        fresh = self.settings.changed()
        if fresh is not None:
            self.bucket.set_rate(fresh.get("limits.download_rate"), now)
        self._import_dropped_libraries()
        endpoint_file = self.config.run_dir / "distributor.endpoint"
        if endpoint_file.exists():
            self.own_endpoint = endpoint_file.read_text().strip()
        records = {r.id: r for r in self.state.all()}
        for library_id, download in list(self.downloads.items()):
            record = records.get(library_id.hex())
            if record is None or record.status is not Status.DOWNLOADING:
                self._deactivate(download, "removed" if record is None else record.status.value)
        for record in records.values():
            if record.status is Status.DOWNLOADING and bytes.fromhex(record.id) not in self.downloads:
                self._activate(record, now)

    def _import_dropped_libraries(self) -> None:
        for path in sorted(self.config.libs_dir.glob("*.lib")):
            try:
                library = read_library(path)
            except LibraryError as exc:
                bad = path.with_name(path.name + ".bad")
                log.error("library_rejected", path=str(path), error=str(exc), moved_to=str(bad))
                path.rename(bad)
                continue
            if self.state.get(library.id_hex) is None:
                target = catalog.import_library(self.config, library, path)
                if target != path:
                    path.unlink()
                catalog.record_download(self.state, self.config, library, target)
                log.info("library_added", library=library.id_hex, name=library.name, size=library.size)

    def _activate(self, record: Any, now: float) -> None:
        try:
            library = read_library(record.lib_path)
            fd, part = open_partial(library, record)
        except (LibraryError, DiskError) as exc:
            log.error("download_failed", library=record.id, error=str(exc),
                      hint="free disk space or fix the library, then `emma resume`")
            self.state.set_status(record.id, Status.ERROR)
            return
        picker = Picker(Bitfield(library.books, record.have.to_bytes()))
        download = Download(library=library, record=record, picker=picker, fd=fd, part_path=part,
                            downloaded=record.downloaded, fetched=record.fetched)
        self.downloads[library.id] = download
        self.next_peers[library.id] = now
        self.peer_asks[library.id] = 0
        self.push.send(framing.local_notice(wire_pb2.LocalNotice(library_id=library.id)))
        log.info("download_started", library=record.id, name=library.name, have=len(picker.have),
                 books=library.books)
        if download.complete:
            self._finish(download)

    def _deactivate(self, download: Download, why: str) -> None:
        for remote in self.remotes.values():
            for book in [b for (lib, b) in remote.window.sent if lib == download.id]:
                remote.window.forget((download.id, book))
                remote.send(framing.cancel(download.id, book))
            remote.books.pop(download.id, None)
            remote.handshake_at.pop(download.id, None)
        try:
            download.sync_now(self.state)
        except OSError as exc:
            log.error("sync_failed", library=download.library.id_hex, error=str(exc))
        download.close()
        del self.downloads[download.id]
        self.next_peers.pop(download.id, None)
        log.info("download_stopped", library=download.library.id_hex, reason=why)

    # -- peers --------------------------------------------------------------------
    def _ask_hub(self, now: float) -> None:
        for library_id, due in list(self.next_peers.items()):
            if now < due:
                continue
            download = self.downloads[library_id]
            self.hub.submit(PeersJob(library_id, download.library.hubs, self.player_id, numwant=50))
            self.next_peers[library_id] = now + 30.0  # until the reply schedules the next one

    def _on_hub(self, result: HubResult, now: float) -> None:
        job = result.job
        if not isinstance(job, PeersJob):
            return
        download = self.downloads.get(job.library_id)
        if download is None:
            return
        slog.debug("hub_peers", library=job.library_id.hex(), ok=result.ok, error=result.error,
                   peers=[p.endpoint for p in result.peers])
        added = 0
        for peer in result.peers:
            if peer.player_id == self.player_id or peer.endpoint == self.own_endpoint:
                continue
            if peer.endpoint in download.banned:
                continue
            remote = self._remote(peer.endpoint, now)
            if job.library_id not in remote.books:
                remote.handshake(job.library_id, self.player_id, now)
                added += 1
        asks = self.peer_asks[job.library_id] = self.peer_asks.get(job.library_id, 0) + 1
        self.next_peers[job.library_id] = now + peers_interval(asks, len(result.peers), job.numwant, result.ok)

    def _remote(self, endpoint: str, now: float) -> Remote:
        remote = self.remotes.get(endpoint)
        if remote is None:
            remote = self.remotes[endpoint] = Remote.connect(self.ctx, endpoint, now)
            self.by_socket[remote.socket] = remote
            self.poller.register(remote.socket, zmq.POLLIN)
        return remote

    def _drop_remote(self, remote: Remote, report: bool) -> None:
        for library_id, books in remote.books.items():
            download = self.downloads.get(library_id)
            if download is None:
                continue
            download.picker.peer_gone(remote.endpoint, books.indices() if books else [])
            if report:
                self.hub.submit(ReportJob(library_id, download.library.hubs, self.player_id, remote.endpoint))
        self.poller.unregister(remote.socket)
        del self.by_socket[remote.socket]
        del self.remotes[remote.endpoint]
        remote.close()
        log.info("peer_dropped", endpoint=remote.endpoint, reported=report)

    # -- messages from remotes -------------------------------------------------------
    def _receive(self, remote: Remote, now: float) -> None:
        for _ in range(64):
            try:
                frames = remote.socket.recv_multipart(zmq.NOBLOCK, copy=False)
            except zmq.Again:
                return
            remote.last_heard = now
            try:
                self._handle(remote, frames, now)
            except ProtocolError as exc:
                log.warning("bad_peer_message", endpoint=remote.endpoint, code=exc.code_name, error=exc.message)
            if remote.endpoint not in self.remotes:
                return

    def _handle(self, remote: Remote, frames: list[zmq.Frame], now: float) -> None:
        message = framing.decode(frames[0].buffer)
        kind = message.WhichOneof("body")
        if kind == "book":
            if len(frames) != 2:
                raise ProtocolError(ErrorCode.MALFORMED, "a book needs a header and one payload frame")
            self._on_book(remote, message.book, frames[1])
        elif len(frames) != 1:
            raise ProtocolError(ErrorCode.MALFORMED, f"{kind} must be one frame")
        elif kind == "bitfield":
            self._on_bitfield(remote, message.bitfield)
        elif kind == "have":
            self._on_have(remote, message.have)
        elif kind == "busy":
            key = (message.busy.library_id, message.busy.book)
            retry = min(5.0, message.busy.retry_after_ms / 1000)
            if remote.window.forget(key):
                remote.window.on_busy(key)
                self._release(key, remote)
            remote.refuse(key, now + max(REFUSED_SECONDS, retry))
            remote.not_before = now + retry
        elif kind == "error":
            key = (message.error.library_id, message.error.book)
            if message.error.library_id in remote.books and remote.books[message.error.library_id] is None:
                self._forget_library(remote, message.error.library_id)  # the handshake was refused
            elif remote.window.forget(key):
                self._release(key, remote)
            log.info("peer_error", endpoint=remote.endpoint, code=ErrorCode.Name(message.error.error.code),
                     message=message.error.error.message)
        else:
            raise ProtocolError(ErrorCode.UNKNOWN_REQUEST, f"a requestor does not expect {kind!r}")

    def _release(self, key: tuple[bytes, int], remote: Remote) -> None:
        download = self.downloads.get(key[0])
        if download:
            download.picker.release(key[1], remote.endpoint)

    def _forget_library(self, remote: Remote, library_id: bytes) -> None:
        books = remote.books.pop(library_id, None)
        remote.handshake_at.pop(library_id, None)
        download = self.downloads.get(library_id)
        if download:
            download.picker.peer_gone(remote.endpoint, books.indices() if books else [])

    def _on_bitfield(self, remote: Remote, message: wire_pb2.Bitfield) -> None:
        download = self.downloads.get(message.library_id)
        if download is None or message.library_id not in remote.books:
            return
        if message.book_count != download.library.books:
            raise ProtocolError(ErrorCode.INVALID_ARGUMENT, "bitfield book count does not match the library")
        try:
            books = Bitfield(download.library.books, message.bits)
        except ValueError as exc:
            raise ProtocolError(ErrorCode.INVALID_ARGUMENT, str(exc)) from exc
        old = remote.books.get(message.library_id)
        if old is not None:
            download.picker.peer_gone(remote.endpoint, old.indices())
        remote.books[message.library_id] = books
        remote.handshake_at.pop(message.library_id, None)
        remote.window.advertise(message.upload_slots)
        download.picker.peer_has(books.indices())

    def _on_have(self, remote: Remote, message: wire_pb2.Have) -> None:
        download = self.downloads.get(message.library_id)
        books = remote.books.get(message.library_id)
        if download is None or books is None:
            return
        fresh = [b for b in message.books if 0 <= b < books.size and books.add(b)]
        download.picker.peer_has(fresh)

    def _on_book(self, remote: Remote, header: wire_pb2.BookHeader, payload: zmq.Frame) -> None:
        key = (header.library_id, header.book)
        download = self.downloads.get(header.library_id)
        if not remote.window.arrived(key):
            return  # cancelled, or a late duplicate: not counted, not written
        if download is None or header.book in download.picker.have or header.book in download.verifying:
            remote.window.landed(key)
            if download is not None:
                download.picker.release(header.book, remote.endpoint)
            return
        download.verifying.add(header.book)
        self._on_written(land(download.library, header.book, remote.endpoint, payload, download.fd))

    def _on_written(self, result: Written) -> None:
        remote = self.remotes.get(result.peer)
        if remote is not None:
            remote.window.landed((result.library_id, result.book))
        download = self.downloads.get(result.library_id)
        if download is None or result.book not in download.verifying:
            return  # the download was stopped meanwhile
        download.verifying.discard(result.book)
        if result.outcome is Outcome.BAD_HASH:
            self._bad_book(download, result)
        elif result.outcome is Outcome.DISK_ERROR:
            download.picker.release(result.book, result.peer)
            log.error("download_failed", library=download.library.id_hex, error=result.error,
                      hint="free disk space, then `emma resume`")
            self.state.set_status(download.record.id, Status.ERROR)
            self._deactivate(download, "disk error")
        else:
            self._landed(download, result)

    def _bad_book(self, download: Download, result: Written) -> None:
        download.picker.release(result.book, result.peer)
        self.counts["bad_books"] += 1
        banned = download.strike(result.peer)
        log.warning("bad_book", library=download.library.id_hex, book=result.book, endpoint=result.peer,
                    banned=banned)
        remote = self.remotes.get(result.peer)
        if banned and remote is not None:
            self._forget_library(remote, download.id)

    def _landed(self, download: Download, result: Written) -> None:
        download.record_written(result.book, result.length)
        self.counts["books"] += 1
        for other in download.picker.received(result.book, result.peer):
            peer = self.remotes.get(str(other))
            if peer and peer.window.forget((download.id, result.book)):
                peer.send(framing.cancel(download.id, result.book))
        self.push.send(framing.local_notice(wire_pb2.LocalNotice(library_id=download.id, books=[result.book])))
        if download.complete:
            log.info("download_verified", library=download.library.id_hex, books=download.library.books,
                     fetched=download.fetched)
            self._sync_one(download)

    def _finish(self, download: Download) -> None:
        try:
            final = download.finish(self.state)
        except OSError as exc:
            log.error("finish_failed", library=download.library.id_hex, error=str(exc))
            return
        download.close()
        del self.downloads[download.id]
        self.next_peers.pop(download.id, None)
        self.push.send(framing.local_notice(wire_pb2.LocalNotice(library_id=download.id, stuff_path=str(final))))
        log.info("download_complete", library=download.library.id_hex, name=download.library.name,
                 path=str(final), fetched=download.fetched, bad_books=download.bad_books)

    # -- requests ---------------------------------------------------------------------
    def _fill(self, now: float) -> None:
        room = IN_FLIGHT_BYTES - sum(remote.window.held_bytes for remote in self.remotes.values())
        for remote in list(self.remotes.values()):
            if now < remote.not_before:
                continue
            for library_id, books in remote.books.items():
                download = self.downloads.get(library_id)
                if books is None or download is None or download.complete:
                    continue
                credit = min(remote.window.credit, room // download.library.book_size)
                if credit <= 0:
                    continue
                if not self.bucket.ready(now):
                    return
                for book in download.picker.pick(remote.endpoint, remote.offer(library_id, books, now), credit):
                    length = download.library.book_span(book)[1]
                    remote.window.on_send((library_id, book), now, length)
                    room -= length
                    self.bucket.take(length, now)
                    remote.send(framing.request(library_id, book))

    def _expire(self, now: float) -> None:
        for remote in list(self.remotes.values()):
            for key in remote.window.expired(now):
                self._release(key, remote)
                log.info("request_timeout", endpoint=remote.endpoint, library=key[0].hex(), book=key[1])
            stale = remote.stale_handshakes(now)
            if stale:
                remote.attempts += 1
                if remote.attempts >= HANDSHAKE_ATTEMPTS:
                    self._drop_remote(remote, report=True)
                    continue
                for library_id in stale:
                    remote.handshake(library_id, self.player_id, now)
            elif remote.window.sent and now - remote.last_heard > SILENT_PEER:
                self._drop_remote(remote, report=True)
            elif not remote.books:
                self._drop_remote(remote, report=False)

    # -- the loop -----------------------------------------------------------------------
    def run(self) -> None:
        slog.info("requestor_started", pid=os.getpid())
        next_reload = next_sync = 0.0
        while self.running:
            now = time.monotonic()
            if now >= next_reload:
                self.reload(now)
                self._expire(now)
                next_reload = now + RELOAD_SECONDS
            if now >= next_sync:
                self._sync()
                next_sync = now + SYNC_SECONDS
            if self.heartbeat:
                self.heartbeat.tick(now, self._counters)
            self._ask_hub(now)
            self._fill(now)
            timeout = max(0.0, min(next_reload, next_sync) - now)
            for socket, _ in self.poller.poll(int(min(timeout, 0.1) * 1000)):
                now = time.monotonic()
                if socket is self.syncer.socket:
                    self._synced()
                elif socket is self.hub.socket:
                    for result in self.hub.results():
                        self._on_hub(result, now)
                else:
                    remote = self.by_socket.get(socket)
                    if remote is not None:
                        self._receive(remote, now)
                        self._fill(now)
        self.shutdown()

    def _sync(self) -> None:
        for download in list(self.downloads.values()):
            self._sync_one(download)

    def _sync_one(self, download: Download) -> None:
        if download.begin_sync():
            self.syncer.submit(download.id, download.fd)
        elif download.finishable:
            self._finish(download)

    def _synced(self) -> None:
        for library_id, error in self.syncer.results():
            download = self.downloads.get(library_id)
            if download is None:
                continue
            if error:
                log.error("sync_failed", library=download.library.id_hex, error=error,
                          hint="check the disk; progress since the last sync will be fetched again")
                download.unsynced = [*(download.syncing or ()), *download.unsynced]
                download.syncing = None
                continue
            download.end_sync(self.state)
            if download.finishable:
                self._finish(download)

    def _counters(self) -> dict[str, int]:
        per_library = {
            f"peers.{download.library.id_hex}": sum(1 for r in self.remotes.values() if r.books.get(lib))
            for lib, download in self.downloads.items()
        }
        return {**self.counts, "peers": len(self.remotes), "downloads": len(self.downloads), **per_library}

    def stop(self, *_: object) -> None:
        self.running = False

    def shutdown(self) -> None:
        for download in list(self.downloads.values()):
            self._deactivate(download, "shutdown")
        for remote in list(self.remotes.values()):
            remote.close()
        self.hub.close(timeout=1.0)
        self.syncer.close()
        if self.heartbeat:
            self.heartbeat.close()
        self.state.close()
        self.ctx.destroy(linger=0)
        slog.info("requestor_stopped", pid=os.getpid())


def main(argv: list[str] | None = None) -> int:
    return service_main("requestor", Requestor, argv)


if __name__ == "__main__":
    raise SystemExit(main())
