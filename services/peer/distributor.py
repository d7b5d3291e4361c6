"""The Distributor process: the player's public face (a ROUTER on its port).

The loop is thin: it receives frames, lets DistributorLogic decide, reads
books with ``pread`` and sends them as header + payload without copies
(each requester keeps what it asks for under its own in-flight bound). What it
serves comes from state.db: all of it at start, then one library at a time as
the Requestor's notices name them (a download started or completed), and all
of it again only when another process wrote to state.db (``State.changed``). It
announces what it serves to the hub through a HubLink worker thread.

It listens on every interface by default and announces a wildcard host: the
hub records the address the announce came from (``distributor.advertise``
overrides that), answers with the endpoint it hands out and whether the hub
itself could connect to it, and the heartbeat carries that to View Services.

Trust: with ``security.encryption`` on (always in a private swarm) the ROUTER is a
CURVE server with the player's key pair, admitting the keys of ``security.players``
("any", or a file re-read when it changes); the announce tells the hub so, and the
hub hands this key out with our endpoint. A key revoked from the file is refused new
connections at once, and on connections opened before it, every request is checked:
it gets a NOT_AUTHORISED error instead of books. With ``security.publishers`` set, a
library not signed by a trusted publisher is not served.

Run: ``python -m services.peer.distributor --data-dir D``.
"""

from __future__ import annotations

import errno
import os
import sqlite3
import time
from collections import deque
from pathlib import Path
from typing import Any

import zmq

from services.hub.client_types import Reachability
from services.peer import identity, seeding, signing
from services.peer.announces import Announces
from services.peer.distributor_logic import DistributorLogic, Send, SendBook, Served
from services.peer.hublink import MAX_BATCH, AnnounceJob, HubLink, batches
from services.peer.library import Library, LibraryError, read_library
from services.peer.partfile import partial_path
from services.peer.state import LibraryRecord, State, Status
from services.peer.treefiles import TreeFiles
from services.runtime import config as config_mod
from services.runtime import rundir
from services.runtime.heartbeat import HeartbeatSender
from services.runtime.logs import get_logger
from services.runtime.rundir import notify_endpoint
from services.runtime.service import Unusable, key_file_problem, service_main
from services.wire import curve, framing, names
from services.wire.admission import Admission, Gate, key_of, source_of
from services.wire.errors import ErrorCode
from services.wire.ids import make_endpoint
from services.wire.pb import hub_pb2, wire_pb2
from services.wire.waiting import waiting

log = get_logger("events")
slog = get_logger("services")
dlog = get_logger("debug")
LOOK_SECONDS = 0.25  # the loop looks this often at the settings, state.db's data version and the announces due
UPLOADED_SAVE_SECONDS = 1.0  # bytes uploaded are added to state.db this often
LIMITS_LOOK_SECONDS = 60.0  # with a seeding limit in hours, every library is checked against it this often
ANNOUNCE_UNVERIFIED = 3.0  # while the hub has not checked our endpoint yet, announce again this soon
UNVERIFIED_ANNOUNCES = 5  # at most this many times
SEND_BUFFER = 128 * 1024  # kernel send buffer per connection: a slow link's backlog waits where we see it
NOTICE_BATCH = 256  # local notices taken per loop turn
RECEIVE_BATCH = 256  # requests taken per loop turn
_SNDMORE = int(zmq.SNDMORE)  # a plain int: pyzmq's enum flags cost an enum operation per use
_NOBLOCK = int(zmq.NOBLOCK)
# Messages queued for one requester at most (a book, with its header, is one). Books stay within the pipe's
# share (16 MiB, so at most 1,024 books of the smallest size) and haves come a few a second: a requester
# past this reads nothing, and is forgotten as if it had left (see _unread). Without a bound, answers to
# a client that sends and never reads grew the Distributor without end.
QUEUED_PER_REQUESTER = 2048
DRAIN_POLL = 0.01  # while books are on their way to the kernel, look this often whether they got there
CONNECTIONS_PER_ADDRESS = 128  # live connections from one address; more are refused at the handshake
MAX_CONNECTIONS = 1024
STUCK_SECONDS = 30.0  # a connection whose sent bytes go unacknowledged this long (a reader that stopped) is closed


def bind_problem(host: str, port: int, exc: zmq.ZMQError) -> str:
    """Why the distributor cannot listen, in the OS's words, and which setting to change."""
    where = make_endpoint(host, port) if port else f"a free port of {host}"
    if exc.errno == errno.EADDRINUSE:
        fix = f"another program uses port {port}: choose another with `emma settings set distributor.port N` (0 = any)"
    elif exc.errno == errno.EADDRNOTAVAIL:
        fix = f"{host} is not an address of this host: `emma settings set distributor.ip 0.0.0.0` listens on all"
    elif exc.errno == errno.EACCES:
        fix = "ports below 1024 need privileges: `emma settings set distributor.port N` with N >= 1024 (0 = any)"
    else:
        fix = "check distributor.ip and distributor.port (`emma settings`)"
    return f"cannot listen on {where}: {os.strerror(exc.errno) if exc.errno else exc}; {fix}"


class Distributor:
    def __init__(self, config: config_mod.Config, heartbeat: str | None = None) -> None:
        self.config = config
        self.ctx: zmq.Context[Any] = zmq.Context()
        self.router = self.ctx.socket(zmq.ROUTER)
        self.router.setsockopt(zmq.MAXMSGSIZE, framing.MAX_REQUEST_FRAME)
        self.router.setsockopt(zmq.SNDHWM, QUEUED_PER_REQUESTER)
        self.router.setsockopt(zmq.ROUTER_MANDATORY, 1)  # a send to a requester that left (or is full) raises
        self.router.copy_threshold = 0  # a shared answer (Send.shared) is never copied, however small
        self.router.setsockopt(zmq.RCVHWM, 10000)
        self.router.setsockopt(zmq.LINGER, 0)
        self.router.setsockopt(zmq.SNDBUF, SEND_BUFFER)
        self.router.setsockopt(zmq.TCP_MAXRT, int(STUCK_SECONDS * 1000))  # TCP_USER_TIMEOUT: zero windows too
        self.keys = curve.load_or_create(config.data_dir)
        try:  # a file of keys gone or garbled: retrying cannot help, and serving everyone must not happen
            self.allowlist = curve.Allowlist(config.get("security.players"))
            self.trusted = signing.Trusted.from_file(config.get("security.publishers"))
        except (curve.CurveKeyError, signing.SignatureError) as exc:
            self.ctx.destroy(linger=0)
            raise Unusable(key_file_problem(exc)) from exc
        self.encrypted = bool(config.get("security.encryption")) or not self.allowlist.open
        self.refused_libraries: set[bytes] = set()
        self.revoked: set[bytes] = set()  # connections whose key was revoked and that were told so
        self.unread: set[bytes] = set()  # requesters forgotten for not reading, logged once each
        self.unread_dropped = 0  # answers dropped because their requester read nothing
        self.gate = Gate(self.ctx, Admission(CONNECTIONS_PER_ADDRESS, MAX_CONNECTIONS), "distributor", self.allowlist)
        self.gate.guard(self.router, self.keys if self.encrypted else None)
        host, port = config.get("distributor.ip"), config.get("distributor.port")
        try:
            if port == 0:
                port = self.router.bind_to_random_port(f"tcp://{host}" if ":" not in host else f"tcp://[{host}]")
            else:
                self.router.bind(make_endpoint(host, port))
        except zmq.ZMQError as exc:
            self.ctx.destroy(linger=0)
            raise Unusable(bind_problem(host, port, exc)) from exc
        self.endpoint = make_endpoint(host, port)
        self.announced = make_endpoint(config.get("distributor.advertise") or host, port)
        self.seen: tuple[str, Reachability] = ("", Reachability.UNKNOWN)
        self.hub_error = ""  # the last announce failure, logged once while it lasts
        self.unverified_announces = 0
        self.pull = self.ctx.socket(zmq.PULL)
        self.pull.setsockopt(zmq.LINGER, 0)
        self.pull.setsockopt(zmq.MAXMSGSIZE, 1024 * 1024)
        rundir.make(config.run_dir)
        self.pull.bind(notify_endpoint(config.run_dir))
        self.state = State(config.state_db)
        self.player_id = identity.player_id(config.data_dir)
        self.logic = DistributorLogic(slots=config.get("limits.upload_slots"),
                                      upload_rate=config.get("limits.upload_rate"), now=time.monotonic())
        self.settings = config_mod.Watcher(config)
        self.seeding_limits: tuple[float, float] = (config.get("seeding.ratio"), config.get("seeding.hours"))
        # a file library's file (or .part): path, fd, and for a complete one its size and mtime when opened
        self.files: dict[bytes, tuple[Path, int, tuple[int, int] | None]] = {}
        self.trees: dict[bytes, TreeFiles] = {}  # a tree library's files, opened as books are asked for
        # books handed to the socket and not yet written to the kernel: (tracker, requester, length)
        self.unsent: deque[tuple[zmq.MessageTracker, bytes, int]] = deque()
        self.complete: dict[bytes, bool] = {}
        self.announces = Announces()  # when each library is announced next (and the backoff of failed ones)
        self.outbox: list[AnnounceJob] = []  # announces of this loop turn, sent together at its end
        self.next_limits_look = 0.0
        self.hub = HubLink(self.ctx, identity=self.keys)
        self.heartbeat = HeartbeatSender(self.ctx, heartbeat, rundir.DISTRIBUTOR,
                                         config.get("maestro.heartbeat_interval")) if heartbeat else None
        self.uploaded_unsaved = False
        self.next_uploaded_save = 0.0
        self.acted_on: dict[str, tuple[Status, Path, bytes]] = {}  # each record as last served: (status, stuff, have)
        self.running = True
        rundir.distributor_endpoint_file(config.run_dir).write_text(self.endpoint)

    # -- catalogue from state.db ---------------------------------------------
    def look(self, now: float) -> None:
        """The loop's look for news, every LOOK_SECONDS: settings, and state.db only if another process wrote it."""
        fresh = self.settings.changed()
        if fresh is not None:
            self.logic.set_rate(fresh.get("limits.upload_rate"), now)
            limits = (fresh.get("seeding.ratio"), fresh.get("seeding.hours"))
            if limits != self.seeding_limits:
                self.seeding_limits = limits
                self.reload(now)  # every library against the new limits
        if self.state.changed():
            self.reload(now)
        if now >= self.next_uploaded_save:
            self.next_uploaded_save = now + UPLOADED_SAVE_SECONDS
            for library_id, served in list(self.logic.served.items()):
                if served.uploaded:
                    self._count_uploaded(library_id.hex(), served)
                    if any(self.seeding_limits):
                        self.refresh(library_id, now)  # its ratio grew: a seeding limit may be reached
        if self.seeding_limits[1] and now >= self.next_limits_look:  # a limit in hours: time alone reaches it
            self.next_limits_look = now + LIMITS_LOOK_SECONDS
            self.reload(now)

    def reload(self, now: float) -> None:
        """Serve what state.db's records say; only records changed since they were last acted on cost more
        than a comparison. A library stopped, or past a seeding limit, is not served."""
        records = {r.id: r for r in self.state.all() if self._servable(r)}
        for library_id in list(self.logic.served):
            if library_id.hex() not in records:
                self._stop_serving(library_id, now)
        for record in records.values():
            self._serve(record, now)

    def refresh(self, library_id: bytes, now: float) -> None:
        """The Requestor's notice that one library's record changed (a download started, completed)."""
        record = self.state.get(library_id.hex())
        if record is not None and self._servable(record):
            self._serve(record, now)
        elif library_id in self.logic.served:
            self._stop_serving(library_id, now)

    def _stop_serving(self, library_id: bytes, now: float) -> None:
        self._announce(library_id, hub_pb2.STOPPED, now)
        self._close(library_id)
        self.logic.drop_library(library_id)
        self.acted_on.pop(library_id.hex(), None)
        self.complete.pop(library_id, None)  # served again later (resumed): announced as started
        self.announces.forget(library_id)

    def _servable(self, record: LibraryRecord) -> bool:
        return record.status is not Status.STOPPED and not self._limited(record)

    def _serve(self, record: LibraryRecord, now: float) -> None:
        """Serve ``record``'s library as it now stands (books held, where its stuff is), unless nothing changed."""
        seen = (record.status, record.stuff_path, record.have.to_bytes())
        if self.acted_on.get(record.id) == seen:
            return
        self.acted_on[record.id] = seen  # an unreadable or untrusted library is tried again when its record changes
        if record.status is Status.ERROR:
            return
        library_id = bytes.fromhex(record.id)
        served = self.logic.served.get(library_id)
        library = served.library if served else self._read(record.lib_path)
        if library is None or not self._trusted(library):
            return
        self.logic.serve_library(library, record.have, now)
        done = record.status is Status.SEEDING
        if library.tree is not None:
            self._open_tree(library, record.stuff_path)
        else:
            self._open(library_id, record.stuff_path if done else partial_path(record.stuff_path), partial=not done)
        was = self.complete.get(library_id)
        done = done and record.have.complete  # a selection of a tree's files, complete, is not the library
        self.complete[library_id] = done
        if was is None:
            self._announce(library_id, hub_pb2.STARTED, now, record)
        elif done and not was:
            self._announce(library_id, hub_pb2.COMPLETED, now, record)

    def _limited(self, record: LibraryRecord) -> bool:
        """A seeding limit of settings is reached: the library is stopped (not served) with the reason."""
        reason = seeding.limit_reached(record, *self.seeding_limits, time.time())
        if not reason:
            return False
        try:
            self.state.set_status(record.id, Status.STOPPED, reason=reason)
        except sqlite3.Error as exc:  # a full data folder: served on, stopped once it can be saved
            log.warning("seeding_not_stopped", library=record.id, error=str(exc), hint="free space in the data folder")
            return False
        log.info("seeding_stopped", library=record.id, reason=reason)
        return True

    def _count_uploaded(self, library_id: str, served: Served) -> None:
        """Add what was uploaded to state.db; on a full or failing disk keep it for the next try."""
        try:
            self.state.add_uploaded(library_id, served.uploaded)
        except sqlite3.Error as exc:
            if not self.uploaded_unsaved:
                log.warning("uploaded_not_saved", library=library_id, error=str(exc),
                            hint="free space in the data folder; the count is kept and saved when it can be")
            self.uploaded_unsaved = True
            return
        self.uploaded_unsaved = False
        served.uploaded = 0

    def _read(self, path: Path) -> Library | None:
        try:
            return read_library(path)
        except LibraryError as exc:
            log.warning("library_unreadable", path=str(path), error=str(exc))
            return None

    def _trusted(self, library: Library) -> bool:
        """Whether the trusted publishers let us serve ``library`` (a refusal is logged once)."""
        refusal = self.trusted.refusal(library.publisher_key)
        if refusal and library.id not in self.refused_libraries:
            self.refused_libraries.add(library.id)
            log.error("library_not_served", library=library.id_hex, error=refusal)
        return not refusal

    def _open(self, library_id: bytes, path: Path, *, partial: bool) -> None:
        """Open the file books are served from; a partial file the Requestor has not created yet is no news."""
        current = self.files.get(library_id)
        if current and current[0] == path:
            return
        try:
            fd = os.open(path, os.O_RDONLY)
            info = os.fstat(fd)
        except OSError as exc:
            if current is None and not (partial and exc.errno == errno.ENOENT):
                log.warning("stuff_unreadable", path=str(path), error=exc.strerror)
            return
        self._close(library_id)
        self.files[library_id] = (path, fd, None if partial else (info.st_size, info.st_mtime_ns))

    def _open_tree(self, library: Library, root: Path) -> None:
        """Serve a tree from ``root`` (a download in place, or a shared folder); files open as books are asked for."""
        current = self.trees.get(library.id)
        if current is not None and current.path == root:
            return
        self._close(library.id)
        self.trees[library.id] = TreeFiles(library, root, writable=False)

    def _close(self, library_id: bytes) -> None:
        entry = self.files.pop(library_id, None)
        if entry:
            os.close(entry[1])
        tree = self.trees.pop(library_id, None)
        if tree is not None:
            tree.close()

    # -- hub --------------------------------------------------------------------
    def _announce(self, library_id: bytes, event: int, now: float, record: LibraryRecord | None = None) -> None:
        """Queue an announce (sent with the turn's others, or once MAX_BATCH wait); ``record``: the library's, if
        just read."""
        served = self.logic.served.get(library_id)
        if served is None:
            return
        library = served.library
        left = sum(library.book_span(i)[1] for i in range(library.books) if i not in served.have)
        record = record or self.state.get(library_id.hex())
        self.outbox.append(AnnounceJob(
            library_id=library_id, hubs=library.hubs, player_id=self.player_id, endpoint=self.announced,
            event=event, uploaded=record.uploaded if record else 0,
            downloaded=record.downloaded if record else 0, left=left, numwant=0,
            hub_keys=library.hub_keys, plain=not self.encrypted,
        ))
        self.announces.sent(library_id, now)
        if len(self.outbox) >= MAX_BATCH:  # a batch is full: the hub takes it while this loop reads on
            self._send_announces()
        periodic = event == hub_pb2.ANNOUNCE_EVENT_UNSPECIFIED  # every minute or so: debug.log, not events
        (dlog.debug if periodic else log.info)("announce", library=library_id.hex(), kind=names.announce_event(event),
                                               left=left)

    def _hub_results(self, now: float) -> None:
        for result in self.hub.results():
            if not isinstance(result.job, AnnounceJob) or result.job.event == hub_pb2.STOPPED:
                continue
            if not result.ok:
                self.announces.failed(result.job.library_id, now)
                if result.error != self.hub_error:
                    self.hub_error = result.error
                    slog.warning("announce_failed", library=result.job.library_id.hex(), error=result.error)
                    self.seen = ("", Reachability.UNKNOWN)  # said again when a hub answers
                    if self.heartbeat:  # View Services and `emma services`: a seed nobody can find says so
                        self.heartbeat.detail = (f"announces fail, so no player finds what this one seeds: "
                                                 f"{result.error}")
                continue
            self.hub_error = ""
            if result.endpoint:
                self._seen_as(result.endpoint, result.reachable)
            unverified = result.endpoint and result.reachable is Reachability.UNKNOWN
            interval = result.interval
            if unverified and self.unverified_announces < UNVERIFIED_ANNOUNCES:
                self.unverified_announces += 1
                interval = ANNOUNCE_UNVERIFIED
            self.announces.answered(result.job.library_id, now, interval)

    def _send_announces(self) -> None:
        """The announces of this turn, to the hub worker: those to the same hubs together (see hublink)."""
        if self.outbox:
            for job in batches(self.outbox):
                self.hub.submit(job)
            self.outbox.clear()

    def _seen_as(self, endpoint: str, reachable: Reachability) -> None:
        """What the hub says of us: the endpoint it hands out, and whether it could connect to it."""
        if (endpoint, reachable) == self.seen:
            return
        self.seen = (endpoint, reachable)
        if reachable is Reachability.UNREACHABLE:
            port = endpoint.rsplit(":", 1)[-1]
            detail = (f"unreachable: the hub cannot connect to {endpoint}; let TCP port {port} in through the "
                      f"firewall, or set distributor.advertise to an address others reach")
            log.warning("distributor_unreachable", endpoint=endpoint, hint=detail.split("; ", 1)[1])
        else:
            detail = f"{'reachable' if reachable is Reachability.REACHABLE else 'announced'} at {endpoint}"
            log.info("distributor_seen", endpoint=endpoint, reachable=reachable.name.lower())
        if self.heartbeat:
            self.heartbeat.detail = detail

    # -- the loop -----------------------------------------------------------------
    def run(self) -> None:
        poller = zmq.Poller()
        poller.register(self.router, zmq.POLLIN)
        poller.register(self.pull, zmq.POLLIN)
        poller.register(self.hub.socket, zmq.POLLIN)
        gate = set(self.gate.sockets())
        for sock in gate:
            poller.register(sock, zmq.POLLIN)
        slog.info("distributor_started", endpoint=self.endpoint, pid=os.getpid())
        print(f"distributor listening on {self.endpoint}", flush=True)
        self.reload(time.monotonic())
        next_look = 0.0
        while self.running:
            now = time.monotonic()
            if now >= next_look:
                self.look(now)
                self.gate.refresh(now)
                next_look = now + LOOK_SECONDS
                for library_id in self.announces.due(now):
                    self._announce(library_id, hub_pb2.ANNOUNCE_EVENT_UNSPECIFIED, now)
                self._send_announces()
            if self.heartbeat:
                self.heartbeat.tick(now, self._counters)
            wait = self.logic.wait(now)
            timeout = min(next_look - now, LOOK_SECONDS if wait is None else wait, DRAIN_POLL if self.unsent else 1.0)
            events = dict(poller.poll(max(0, int(timeout * 1000))))
            now = time.monotonic()
            if self.router in events:
                self._receive(now)
            if self.pull in events:
                self._notices(now)
            if self.hub.socket in events:
                self._hub_results(now)
            if gate.intersection(events):
                self.gate.handle(now)
            self._drained(now)
            self._execute(self.logic.serve(now))
            self._send_announces()
        self.shutdown()

    def _counters(self) -> dict[str, int]:
        return {**self.logic.counts, "libraries": len(self.logic.served), "unread_dropped": self.unread_dropped}

    def _receive(self, now: float) -> None:
        if not self.allowlist.open:
            self._receive_checked(now)
            return
        for frames in waiting(self.router, RECEIVE_BATCH):
            if len(frames) < 2:
                continue
            self._execute(self.logic.handle(frames[0].bytes, [frame.bytes for frame in frames[1:]], now))

    def _receive_checked(self, now: float) -> None:
        """As :meth:`_receive`, each request checked against the allowlist: a key revoked since its connection
        was opened gets NOT_AUTHORISED, not books."""
        for frames in waiting(self.router, RECEIVE_BATCH):
            if len(frames) < 2:
                continue
            identity = frames[0].bytes
            if not self.allowlist.admits(key_of(frames[1])):
                self.logic.gone(identity)
                self._revoked(identity, frames[1])
                continue
            self._execute(self.logic.handle(identity, [frame.bytes for frame in frames[1:]], now))

    def _revoked(self, identity: bytes, frame: zmq.Frame) -> None:
        reason = "your key is no longer on this player's allowlist; ask its owner to add it back"
        try:
            self.router.send_multipart([identity, framing.error(ErrorCode.NOT_AUTHORISED, reason, b"", 0)],
                                       _NOBLOCK)
        except zmq.ZMQError:
            pass  # gone already, or reads nothing
        if identity not in self.revoked and len(self.revoked) < MAX_CONNECTIONS:  # one line per connection
            self.revoked.add(identity)
            log.warning("request_refused", key=key_of(frame).decode(), reason="key revoked",
                        address=source_of(frame))

    def _notices(self, now: float) -> None:
        """The local Requestor's news: landed books, or a library whose record changed (a notice without
        books), told to the subscribers by ``serve`` (see the logic's HAVE_HOLD)."""
        changed: set[bytes] = set()
        for _ in range(NOTICE_BATCH):
            try:
                frame = self.pull.recv(zmq.NOBLOCK)
            except zmq.Again:
                break
            try:
                notice: wire_pb2.LocalNotice = framing.decode_local_notice(frame)
            except Exception as exc:
                log.warning("bad_local_notice", error=str(exc))
                continue
            if notice.books:
                self.logic.books_landed(notice.library_id, list(notice.books), now)
            else:
                changed.add(notice.library_id)
        for library_id in changed:
            self.refresh(library_id, now)

    def _execute(self, actions: list[Send | SendBook]) -> None:
        for action in actions:
            try:
                self._carry_out(action)
            except zmq.ZMQError as exc:
                if exc.errno == errno.EAGAIN:
                    self._unread(action.identity)
                elif exc.errno == errno.EHOSTUNREACH:
                    self.logic.gone(action.identity)  # ROUTER_MANDATORY: that requester is no longer connected
                else:
                    raise

    def _unread(self, identity: bytes) -> None:
        """``identity`` left QUEUED_PER_REQUESTER messages unread: forget it (its queue, its subscriptions, its
        share of the pipe) and drop this message; it handshakes again once it reads (requests get FORBIDDEN)."""
        self.logic.gone(identity)
        self.unread_dropped += 1
        if identity not in self.unread and len(self.unread) < MAX_CONNECTIONS:  # one line per requester
            self.unread.add(identity)
            log.warning("requester_not_reading", identity=identity.hex(), queued=QUEUED_PER_REQUESTER,
                        hint="its answers are dropped and its requests forgotten until it reads again")

    def _carry_out(self, action: Send | SendBook) -> None:
        """Frame by frame with int flags: ``send_multipart`` costs an enum operation per frame, and a swarm's
        Distributor sends a have to every subscriber for most books it lands."""
        if isinstance(action, Send):
            # EHOSTUNREACH here if the requester is gone, EAGAIN if it reads nothing (QUEUED_PER_REQUESTER)
            self.router.send(action.identity, _SNDMORE | _NOBLOCK)
            if action.payload:  # a library file: counted in the pipe as a book is, until the kernel has it
                self.router.send(action.frame, _SNDMORE)
                tracker = self.router.send(action.payload, 0, copy=False, track=True)
                if tracker is not None:
                    self.unsent.append((tracker, action.identity, len(action.payload)))
            else:
                self.router.send(action.frame, 0, copy=not action.shared)
            return
        payload = self._pread(action)
        if payload is None:
            reason = "book could not be read; try another peer"
            error = framing.error(ErrorCode.INTERNAL, reason, action.library_id, action.book)
            self.router.send_multipart([action.identity, error], _NOBLOCK)
            return
        header = framing.book_header(action.library_id, action.book, action.length)
        self.router.send(action.identity, _SNDMORE | _NOBLOCK)
        self.router.send(header, _SNDMORE)
        tracker = self.router.send(payload, 0, copy=False, track=True)
        if tracker is not None:  # always, with track=True; typed as optional
            self.unsent.append((tracker, action.identity, action.length))

    def _drained(self, now: float) -> None:
        """Tell the logic about the books the socket has written to the kernel since the last look."""
        if not self.unsent:
            return
        left: deque[tuple[zmq.MessageTracker, bytes, int]] = deque()
        for entry in self.unsent:
            tracker, identity, length = entry
            if tracker.done:
                self.logic.drained(identity, length, now)
            else:
                left.append(entry)
        self.unsent = left

    def _pread(self, action: SendBook) -> bytes | None:
        tree = self.trees.get(action.library_id)
        if tree is not None:
            try:
                return tree.read(action.book, action.length)
            except OSError as exc:  # the file cannot be opened (DiskError)
                log.error("book_read_failed", library=action.library_id.hex(), book=action.book, error=str(exc))
                return None
        entry = self.files.get(action.library_id)
        if entry is None:
            return None
        try:
            if entry[2] is not None and self._changed(action.library_id, entry[0], entry[1], entry[2]):
                return None
            data = os.pread(entry[1], action.length, action.offset)
        except OSError as exc:
            log.error("book_read_failed", library=action.library_id.hex(), book=action.book, error=exc.strerror)
            return None
        return data if len(data) == action.length else None

    def _changed(self, library_id: bytes, path: Path, fd: int, stamp: tuple[int, int]) -> bool:
        """Whether the complete file seeded from ``fd`` was written since it was opened (its size or mtime moved):
        its books no longer match the library, and every player that got one would throw it away and ban this
        one. Such a library is no longer served, and is in error with the reason."""
        info = os.fstat(fd)
        if (info.st_size, info.st_mtime_ns) == stamp:
            return False
        reason = (f"{path} was written while it was seeded: its books no longer match the library; if that was "
                  f"meant, share it again (`emma share {path}`)")
        log.error("stuff_changed", library=library_id.hex(), path=str(path), reason=reason)
        try:
            self.state.set_status(library_id.hex(), Status.ERROR, reason=reason)
        except sqlite3.Error as exc:  # a full data folder: not served all the same, and said in the log
            log.warning("stuff_changed_not_saved", library=library_id.hex(), error=str(exc))
        self._stop_serving(library_id, time.monotonic())
        return True

    def stop(self, *_: object) -> None:
        self.running = False

    def shutdown(self) -> None:
        now = time.monotonic()
        for library_id, served in self.logic.served.items():
            if served.sent_total:
                once = {} if served.sent_once_at is None else {  # as a wall-clock time, for other processes' clocks
                    "sent_once_at": round(time.time() - (now - served.sent_once_at), 3)}
                log.info("library_uploaded", library=library_id.hex(), **served.redundancy(), **once)
        for library_id in list(self.logic.served):
            self._announce(library_id, hub_pb2.STOPPED, now)
        self._send_announces()
        self.hub.close(timeout=3.0)
        for library_id in [*self.files, *self.trees]:
            self._close(library_id)
        if self.heartbeat:
            self.heartbeat.close()
        self.state.close()
        self.gate.close()
        self.ctx.destroy(linger=0)
        slog.info("distributor_stopped", pid=os.getpid())


def main(argv: list[str] | None = None) -> int:
    return service_main(rundir.DISTRIBUTOR, Distributor, argv)


if __name__ == "__main__":
    raise SystemExit(main())
