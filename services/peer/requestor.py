"""The Requestor process: the player's acquisition, a thin loop around ``RequestorLogic``.

Each turn it waits for its sockets (a DEALER per remote endpoint, the hub link, the
Syncer; ``SocketWatch``, which asks only the sockets that may have news), hands what
arrives to the logic with ``now``, and carries out the
actions that come back: sends, the disk (``storage.py``: verify and write,
state.db, the partial files), fdatasync in the Syncer thread, notices to the
local Distributor, hub jobs. The commands the Maestro forwards (a user's get, pause, resume,
remove, share: ``commands.py``) arrive on ``run/requestor.sock`` and are acted on at once: the
records they changed are read again, their downloads opened, paused or dropped, the
Distributor told, and the answer sent. Every LOOK_SECONDS (REST_SECONDS while it fetches
nothing) it looks for news: a change of ``<data>/libs/`` (a dropped library) or a write to
state.db by another process (the CLI while no player ran, the Distributor); only then does
it read the records again.

Run: ``python -m services.peer.requestor --data-dir D``.
"""

from __future__ import annotations

import os
import time
from collections import deque
from collections.abc import Callable
from typing import Any

import zmq

from services.peer import catalog, identity, signing
from services.peer import requestor_logic as rl
from services.peer.commands import MAX_COMMAND_BYTES, Commands
from services.peer.hooks import Hooks
from services.peer.hublink import HubLink, HubResult, PeersJob, ReportJob
from services.peer.state import State, Status
from services.peer.storage import Storage
from services.peer.syncer import Syncer
from services.runtime import config as config_mod
from services.runtime import rundir
from services.runtime.heartbeat import HeartbeatSender
from services.runtime.logs import get_logger
from services.runtime.service import Unusable, key_file_problem, service_main
from services.wire import curve, framing, names
from services.wire.errors import ErrorCode, ProtocolError
from services.wire.pb import wire_pb2
from services.wire.waiting import SocketWatch, waiting

log = get_logger("events")
slog = get_logger("services")
dlog = get_logger("debug")
LOOK_SECONDS = 0.1  # the loop looks for news this often: one stat of libs/, one query of state.db's data version
REST_SECONDS = 0.25  # ... and turns this often, looking too, while it fetches nothing (no download, no peer)
FULL_LOOK_SECONDS = 5.0  # and every file of libs/ this often (a file rewritten in place does not touch the folder)
_REFUSED = zmq.EVENT_HANDSHAKE_FAILED_AUTH | zmq.EVENT_HANDSHAKE_FAILED_PROTOCOL | zmq.EVENT_HANDSHAKE_FAILED_NO_DETAIL
_NOBLOCK = int(zmq.NOBLOCK)  # a plain int: pyzmq's enum flags cost an enum operation per use
RECEIVE_BATCH = 64  # messages taken from one remote per turn, so one remote cannot hold the loop
# Messages one remote may have waiting unread; past it libzmq stops reading that connection (TCP holds the rest:
# nothing is lost). Legitimately a remote has at most a window of books (Window.maximum, 64) and a few haves
# on their way; unbounded, a stranger pushing books no one asked for filled memory whenever the loop paused.
RECEIVE_QUEUE = 256
COMMAND_BATCH = 16  # commands taken per turn
MONITOR_BATCH = 64  # handshake events taken per remote per look (a connection says a few in its life)


class Requestor:
    def __init__(self, config: config_mod.Config, heartbeat: str | None = None) -> None:
        self.config = config
        self.ctx: zmq.Context[Any] = zmq.Context()
        self.state = State(config.state_db)
        self.keys = curve.load_or_create(config.data_dir)
        self.player_id = identity.player_id(config.data_dir)
        try:
            self.trusted = signing.Trusted.from_file(config.get("security.publishers"))
        except signing.SignatureError as exc:
            self.state.close()
            self.ctx.destroy(linger=0)
            raise Unusable(key_file_problem(exc)) from exc
        self.logic = rl.RequestorLogic(player_id=self.player_id, download_rate=config.get("limits.download_rate"),
                                       now=time.monotonic())
        self.push = self.ctx.socket(zmq.PUSH)
        self.push.setsockopt(zmq.LINGER, 1000)
        self.push.connect(rundir.notify_endpoint(config.run_dir))
        self.hub = HubLink(self.ctx, identity=self.keys)
        self.syncer = Syncer(self.ctx)
        self.watch = SocketWatch()  # which sockets hold messages (not zmq.Poller: see waiting.py)
        self.watch.add(self.hub.socket)
        self.watch.add(self.syncer.socket)
        self.command = self.ctx.socket(zmq.ROUTER)  # the Maestro forwards a user's commands here
        self.command.setsockopt(zmq.MAXMSGSIZE, MAX_COMMAND_BYTES)
        self.command.setsockopt(zmq.LINGER, 0)
        self.command.bind(rundir.requestor_endpoint(config.run_dir))
        self.watch.add(self.command)
        self.sockets: dict[str, zmq.Socket[Any]] = {}
        # the handshake-failure monitor of each remote's socket, read on the look schedule (LOOK_SECONDS), not
        # watched: a monitor says something once in a connection's life
        self.monitors: dict[zmq.Socket[Any], str] = {}
        self.peer_refused: dict[bytes, set[str]] = {}  # per download: remotes that refused our key
        self.hub_refused: dict[bytes, str] = {}  # per download: why its hubs refused us
        self.endpoints: dict[zmq.Socket[Any], str] = {}
        self.storage = Storage(self.state)
        self.commands = Commands(config, self.state, self._release)
        self.drop_folder = catalog.DropFolder()  # the libs/ folder, each file parsed once per change
        self.stalled: dict[bytes, int] = {}
        self.landed: dict[bytes, list[int]] = {}  # books landed this loop turn, for the Distributor
        self.settings = config_mod.Watcher(config)
        self.heartbeat = HeartbeatSender(self.ctx, heartbeat, rundir.REQUESTOR,
                                         config.get("maestro.heartbeat_interval")) if heartbeat else None
        self.next_full_look = 0.0
        self.hooks = Hooks(config.data_dir / "logs" / "on-complete.out")
        self.running = True
        self.handlers: dict[type, Callable[[Any, float], list[rl.Action] | None]] = {
            rl.Connect: self._connect, rl.Drop: self._drop, rl.SendTo: self._send, rl.Notify: self._notify,
            rl.Land: lambda a, now: self.logic.written(self.storage.land(a), now),
            rl.Sync: lambda a, now: self.syncer.submit(a.library_id, self.storage.sync_fds(a.library_id)),
            rl.Persist: lambda a, now: self.storage.persist(a, now), rl.Stop: self._stop, rl.Finish: self._finish,
            rl.Fail: lambda a, now: self.storage.fail(a, now), rl.Stalled: self._stalled,
            rl.AskHub: lambda a, now: self.hub.submit(PeersJob(a.library_id, a.hubs, self.player_id, a.numwant,
                                                               self._hub_keys(a.library_id))),
            rl.Report: lambda a, now: self.hub.submit(ReportJob(a.library_id, a.hubs, self.player_id, a.endpoint,
                                                                self._hub_keys(a.library_id))),
            rl.Log: lambda a, now: getattr(log, a.level)(a.event, **a.fields),
        }

    def _hub_keys(self, library_id: bytes) -> tuple[str, ...]:
        download = self.logic.downloads.get(library_id)
        return download.library.hub_keys if download is not None else ()

    def do(self, actions: list[rl.Action], now: float) -> None:
        """Carry out ``actions`` in order; what an action leads to comes before the next one."""
        pending = deque(actions)
        while pending:
            action = pending.popleft()
            follow = self.handlers[type(action)](action, now)
            if follow:
                pending.extendleft(reversed(follow))

    # -- which libraries to download -------------------------------------------------------------
    def look(self, now: float) -> None:
        """The loop's look for news, every LOOK_SECONDS; cheap when nothing changed.

        The libs folder is scanned when it changed (and in full every FULL_LOOK_SECONDS); state.db's
        records are read again when another process wrote to it (the Maestro on a user's command, the
        CLI), when the scan recorded a library, or while a download waits for something. And each remote's
        handshake monitor is read: a refusal is said within LOOK_SECONDS.
        """
        for monitor in list(self.monitors):
            self._handshake_events(monitor)
        fresh = self.settings.changed()
        if fresh is not None:
            self.logic.set_rate(fresh.get("limits.download_rate"), now)
        self.storage.retry(now)
        imported, full = self.drop_folder.imported, now >= self.next_full_look
        if full or self.drop_folder.changed(self.config, time.time()):
            self.storage.guard(lambda: self.drop_folder.scan(self.config, self.state, full=full), now)
        if full or not self.logic.own_endpoint:  # the Distributor writes it once it has bound (again)
            self.next_full_look = now + FULL_LOOK_SECONDS if full else self.next_full_look
            self.logic.own_endpoint = rundir.distributor_endpoint(self.config.run_dir) or self.logic.own_endpoint
        added = self.drop_folder.imported - imported
        if self.state.changed() or self.storage.waiting() or added > len(self.drop_folder.recorded):
            self.reload(now)
        elif added:  # only libraries the scan recorded itself: read just those
            self.reload(now, self.drop_folder.recorded[-added:])

    def reload(self, now: float, only: list[str] | tuple[str, ...] | None = None) -> None:
        """Open, pause or drop downloads as state.db's records say (of the libraries ``only`` names, if given)."""
        if only is None:
            records = {bytes.fromhex(r.id): r for r in self.state.all()}
            gone = [library_id for library_id in self.logic.downloads if library_id not in records]
        else:
            found = {bytes.fromhex(library_id): self.state.get(library_id) for library_id in only}
            records = {library_id: r for library_id, r in found.items() if r is not None}
            gone = [library_id for library_id, r in found.items() if r is None and library_id in self.logic.downloads]
        for library_id in gone:
            self.do(self.logic.remove(library_id, "removed", now), now)
        for library_id, record in list(records.items()):
            if library_id not in self.logic.downloads:
                continue
            if record.status is not Status.DOWNLOADING:
                self.do(self.logic.remove(library_id, record.status.value, now), now)
            elif self.storage.selection_changed(record):  # `emma get --only` chose more: open it again below
                self.do(self.logic.remove(library_id, "selection changed", now), now)
                fresh = self.state.get(record.id)
                if fresh is not None:
                    records[library_id] = fresh
        for library_id, record in records.items():
            if library_id not in self.logic.downloads and self.storage.ready(record, now):
                opened = self.storage.open(record, now, self.trusted)
                if opened is not None:
                    self.do(self.logic.add(opened.library, opened.have, now, downloaded=record.downloaded,
                                           fetched=record.fetched, wanted=opened.wanted), now)

    # -- a user's commands, forwarded by the Maestro ------------------------------------------------
    def _commands(self, now: float) -> None:
        """Carry out each command at once (its downloads opened, paused or dropped now, the Distributor told),
        then answer it."""
        for _ in range(COMMAND_BATCH):
            try:
                frames = self.command.recv_multipart(zmq.NOBLOCK)
            except zmq.Again:
                return
            if len(frames) != 2:
                log.warning("bad_command", frames=len(frames), hint="only the Maestro sends to run/requestor.sock")
                continue
            outcome = self.commands.handle(frames[1], now)
            if outcome.changed:
                self.reload(now, outcome.changed)
                for library_id in outcome.changed:
                    self.push.send(framing.local_notice(wire_pb2.LocalNotice(library_id=bytes.fromhex(library_id))))
            self.command.send_multipart([frames[0], outcome.reply])

    def _release(self, library_id: str) -> None:
        """Stop downloading ``library_id`` now (its progress saved), if it is downloading."""
        key = bytes.fromhex(library_id)
        if key in self.logic.downloads:
            self.do(self.logic.remove(key, "shared", time.monotonic()), time.monotonic())

    # -- what arrives ----------------------------------------------------------------------------------
    def _receive(self, socket: zmq.Socket[Any], now: float) -> None:
        endpoint = self.endpoints[socket]
        for frames in waiting(socket, RECEIVE_BATCH):
            try:
                if len(frames) > 2:
                    raise ProtocolError(ErrorCode.MALFORMED, f"{len(frames)} frames; a peer sends one or two")
                message = framing.decode(frames[0].buffer)
            except ProtocolError as exc:
                log.warning("bad_peer_message", endpoint=endpoint, code=names.error_code(exc.code), error=exc.message)
                continue
            if self.peer_refused:
                for refusing in self.peer_refused.values():
                    refusing.discard(endpoint)  # it admits us now
            self.do(self.logic.received(endpoint, message, frames[1] if len(frames) == 2 else None, now), now)
            if endpoint not in self.sockets:
                return  # an action dropped this remote (and closed its socket)
        self.watch.touch(socket)  # messages may be left (RECEIVE_BATCH), and news taken by the receives

    def _on_hub(self, result: HubResult, now: float) -> None:
        job = result.job
        if result.refused:
            if self.hub_refused.get(job.library_id) != result.error:  # said once while it lasts
                log.warning("hub_refused", library=job.library_id.hex(), error=result.error)
            self.hub_refused[job.library_id] = result.error
        elif result.ok:
            self.hub_refused.pop(job.library_id, None)
        if isinstance(job, PeersJob):
            dlog.debug("hub_peers", library=job.library_id.hex(), ok=result.ok, error=result.error,
                       peers=[p.endpoint for p in result.peers])
            self.do(self.logic.hub_answer(job.library_id, result.peers, result.ok, now, job.numwant), now)

    # -- actions -------------------------------------------------------------------------------------------
    def _connect(self, action: rl.Connect, now: float) -> None:
        socket = self.ctx.socket(zmq.DEALER)
        socket.setsockopt(zmq.LINGER, 0)
        socket.setsockopt(zmq.MAXMSGSIZE, framing.MAX_BOOK_FRAME)
        socket.setsockopt(zmq.RCVHWM, RECEIVE_QUEUE)
        curve.connect_curve(socket, self.keys, action.key)
        monitor = socket.get_monitor_socket(_REFUSED)
        socket.connect(action.endpoint)
        self.sockets[action.endpoint], self.endpoints[socket] = socket, action.endpoint
        self.monitors[monitor] = action.endpoint
        self.watch.add(socket)

    def _drop(self, action: rl.Drop, now: float) -> None:
        socket = self.sockets.pop(action.endpoint)
        del self.endpoints[socket]
        self.watch.remove(socket)
        for monitor, endpoint in list(self.monitors.items()):
            if endpoint == action.endpoint:
                del self.monitors[monitor]
                socket.disable_monitor()
                monitor.close(linger=0)
        socket.close(linger=0)

    def _handshake_events(self, monitor: zmq.Socket[Any]) -> None:
        """A remote refused our handshake: say so (libzmq tells the socket nothing; it is taken for dead later)."""
        endpoint = self.monitors[monitor]
        for frames in waiting(monitor, MONITOR_BATCH):
            head = frames[0].bytes
            event = int.from_bytes(head[:2], "little") if len(head) >= 2 else 0
            if not event & _REFUSED:
                continue
            remote = self.logic.remotes.get(endpoint)
            libraries = list(remote.books) if remote is not None else []
            why = ("not authorised by peer: our key is not on its allowlist" if event == zmq.EVENT_HANDSHAKE_FAILED_AUTH
                   else "handshake failed: the peer's key is not the one the hub handed out, or it runs in clear")
            for library_id in libraries:
                self.peer_refused.setdefault(library_id, set()).add(endpoint)
            log.warning("peer_refused", endpoint=endpoint, reason=why, libraries=[lib.hex() for lib in libraries])

    def _send(self, action: rl.SendTo, now: float) -> None:
        socket = self.sockets[action.endpoint]
        try:
            socket.send(action.frame, _NOBLOCK)
        except zmq.Again:
            pass  # not connected yet: the handshake timeout notices
        self.watch.touch(socket)

    def _notify(self, action: rl.Notify, now: float) -> None:
        """Books landed this turn go to the Distributor together at its end (see ``_flush_notices``)."""
        if action.books:
            self.landed.setdefault(action.library_id, []).extend(action.books)
        else:
            self.push.send(framing.local_notice(wire_pb2.LocalNotice(library_id=action.library_id)))

    def _flush_notices(self) -> None:
        for library_id, books in self.landed.items():
            self.push.send(framing.local_notice(wire_pb2.LocalNotice(library_id=library_id, books=books)))
        self.landed.clear()

    def _stop(self, action: rl.Stop, now: float) -> None:
        self.stalled.pop(action.library_id, None)
        self.storage.stop(action, now)

    def _finish(self, action: rl.Finish, now: float) -> None:
        self.stalled.pop(action.library_id, None)
        final = self.storage.finish(action, now)
        record = self.state.get(action.library_id.hex()) if final is not None else None
        if final is not None and record is not None and record.on_complete:
            self.hooks.start(record.id, record.on_complete, final)
        if final is not None:
            self._flush_notices()
            self.push.send(framing.local_notice(wire_pb2.LocalNotice(library_id=action.library_id)))  # now seeding

    def _stalled(self, action: rl.Stalled, now: float) -> None:
        self.stalled[action.library_id] = action.books

    # -- the loop ----------------------------------------------------------------------------------------------
    def run(self) -> None:
        slog.info("requestor_started", pid=os.getpid())
        self.reload(time.monotonic())
        next_look = 0.0
        while self.running:
            now = time.monotonic()
            resting = not self.logic.downloads and not self.logic.remotes
            if now >= next_look:
                self.look(now)
                next_look = now + (REST_SECONDS if resting else LOOK_SECONDS)
            if self.heartbeat:
                self.heartbeat.detail = self.storage.detail() or "running"  # a disk error, kept for the Maestro
                self.heartbeat.tick(now, self._counters)
            self.do(self.logic.tick(now), now)
            wait = REST_SECONDS if resting else LOOK_SECONDS
            for socket in self.watch.wait(min(wait, max(0.0, next_look - now))):
                now = time.monotonic()
                if socket is self.syncer.socket:
                    for library_id, error in self.syncer.results():
                        self.storage.synced(library_id, error, now)
                        self.do(self.logic.synced(library_id, error, now), now)
                elif socket is self.hub.socket:
                    for result in self.hub.results():
                        self._on_hub(result, now)
                elif socket is self.command:
                    self._commands(now)
                elif socket in self.endpoints:  # not dropped by an action earlier in this turn
                    self._receive(socket, now)
            for socket in (self.hub.socket, self.syncer.socket, self.command):  # used by this turn's actions
                self.watch.touch(socket)
            self._flush_notices()
            self.hooks.reap()
        self.shutdown()

    def _counters(self) -> dict[str, int]:
        stalled = {rl.stalled_counter(library_id.hex()): books for library_id, books in self.stalled.items() if books}
        refused = {rl.refused_counter(library_id.hex()): (1 if library_id in self.hub_refused else 0)
                   + 2 * len(self.peer_refused.get(library_id, ()))
                   for library_id in {*self.hub_refused, *self.peer_refused} if library_id in self.logic.downloads}
        return {**self.logic.counters(), **stalled, **refused}

    def stop(self, *_: object) -> None:
        self.running = False

    def shutdown(self) -> None:
        now = time.monotonic()
        for library_id in list(self.logic.downloads):
            self.do(self.logic.remove(library_id, "shutdown", now), now)
        self._flush_notices()
        for socket in self.sockets.values():
            socket.disable_monitor()
            socket.close(linger=0)
        for monitor in self.monitors:
            monitor.close(linger=0)
        self.watch.close()
        self.hub.close(timeout=1.0)
        self.syncer.close()
        self.storage.close()
        if self.heartbeat:
            self.heartbeat.close()
        self.state.close()
        self.ctx.destroy(linger=0)
        slog.info("requestor_stopped", pid=os.getpid())


def main(argv: list[str] | None = None) -> int:
    return service_main(rundir.REQUESTOR, Requestor, argv)


if __name__ == "__main__":
    raise SystemExit(main())
