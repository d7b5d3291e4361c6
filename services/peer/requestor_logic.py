"""What the Requestor decides: pure logic, no sockets, no files, no clock.

How it works. The Requestor's loop (``requestor.py``) feeds events in, each
with ``now``, and carries out the actions that come back, in order:

    event (method)                          actions it may return
    add / remove a library                  Connect / Drop an endpoint, SendTo an endpoint
    hub_answer (peers, or a failure)        Land a payload -> the loop verifies, writes, calls written()
    received (a decoded peer message)       Notify the local Distributor of landed books
    written (the verify-and-write outcome)  Sync a file off the loop -> the loop calls synced()
    synced (that fdatasync's outcome)       Persist durable books; Stop, Finish or Fail a download
    peer_lost (a connection ended)          AskHub for peers, Report an endpoint unreachable
    tick (time passed)                      Stalled (no source for N books), Log an event

Remote players are ``Remote`` records keyed by endpoint; each library being
downloaded is a ``Download`` (picker, sync batch, strikes and bans, hub
schedule). ``tick`` tops up every remote's request window from the picker, all
windows together holding at most IN_FLIGHT_BYTES of books (less for a player
ahead of its peers, so the players behind get the senders' upload) and the
download token bucket permitting; the remotes with the fewest requests in
flight, and then the fastest, are asked first. On its own schedule it expires late requests, stale
handshakes and silent remotes, starts sync batches, asks the hub for peers and
updates each download's stalled state.

Trust: a remote that sends BAN_THRESHOLD bad books is banned for that library;
every request still in flight to it is cancelled at once and its books go
back to the picker, so nothing more from it is hashed.
"""

from __future__ import annotations

import math
import random
from dataclasses import dataclass, field
from typing import Any

from services.hub.client_types import PeerInfo
from services.peer.bitfield import Bitfield
from services.peer.download import Download
from services.peer.library import Library
from services.peer.pace import Pace
from services.peer.picker import Picker
from services.peer.ratelimit import TokenBucket
from services.peer.remote import Remote
from services.peer.window import IN_FLIGHT_BYTES, Held, Window
from services.peer.writer import Outcome, Written
from services.runtime.latency import Latency
from services.wire import framing, names
from services.wire.errors import ErrorCode, ProtocolError
from services.wire.pb import wire_pb2

EXPIRE_SECONDS = 0.25  # how often late requests, stale handshakes, idle remotes and stalls are checked
SYNC_SECONDS = 0.5  # how often written books are made durable
PEERS_EVERY = 5.0  # hub asks once the swarm has formed
STARVED_FIRST = 0.5  # after a failed or empty hub answer, ask again this soon, doubling up to PEERS_EVERY
ASK_PENDING = 30.0  # a hub ask whose answer never came is sent again after this long
NUMWANT = 50
NUMWANT_SEARCHING = 200  # the most a hub hands out at once
MAX_PEERS = 20  # remotes a download keeps at once (more while none serves it: a hub answer full of dead or fake
# entries is tried NUMWANT_SEARCHING at a time). A player serves every one that asks at once, sharing its link,
# and a book is passed on only when whole: with 40, a seed of a 2,600-host fleet shared its link among 40
# requesters, so its first books arrived after 2 s (16 MiB books), and each relay of a new book, asked for by
# every neighbour (rarest first), took as long again. With 10 (Kraken's connections per torrent) the start was
# faster still, but a player behind had too few peers to catch up from (256 hosts, 4 MiB books: p99 1.42x
# the bound against 1.26x with 20 and 1.24x with 40).
HANDSHAKE_ATTEMPTS = 3
REFUSED_SECONDS = 0.5  # after a busy for a book, ask that remote for other books this long
ERROR_SECONDS = 5.0  # after an error for a book (not held there, say), do not ask that remote for it this long
STALL_GRACE = 2.0  # missing books without a source this long make the download stalled
DEAD_FIRST = 3.0  # an endpoint that never answered is not tried again for this long, doubling each time
DEAD_MAX = 60.0  # up to this
MAX_DEAD = 10_000
LEAD_SPAN = 0.05  # each 1% of the books a player is ahead of its peers takes 20% off its IN_FLIGHT_BYTES ...
LEAD_FLOOR = 0.25  # ... down to this share of it
PEER_PACE = 0.5  # peers gaining books at least this fraction as fast as this player are the ones it may be ahead of
WRITE_BUCKET = "write_seconds_bucket_"  # heartbeat counters of the write latency histogram, by bucket index
WRITE_SUM_US = "write_seconds_sum_us"


def peers_counter(library_hex: str) -> str:
    """The heartbeat counter of the peers serving a download (read by the Maestro)."""
    return f"peers.{library_hex}"


def refused_counter(library_hex: str) -> str:
    """The heartbeat counter of who refused this player's key for a download: 1 its hubs, plus 2 for each peer
    (absent: nobody)."""
    return f"refused.{library_hex}"


HUB_NAMED, HUB_NAMED_NOBODY = 1, 2  # values of a hub counter: its last answer named other players, or none


def hub_counter(library_hex: str) -> str:
    """The heartbeat counter of a download's hubs (read by the Maestro): absent until one answers or all fail;
    HUB_NAMED or HUB_NAMED_NOBODY after an answer; else the time.monotonic() in ms since when none answers."""
    return f"hub.{library_hex}"


def stalled_counter(library_hex: str) -> str:
    """The heartbeat counter of a download's missing books that no source holds (absent: 0)."""
    return f"stalled.{library_hex}"


@dataclass(frozen=True)
class Connect:
    endpoint: str
    key: bytes = b""  # the remote distributor's CURVE key, as the hub handed it out (b"": in clear)


@dataclass(frozen=True)
class Drop:
    endpoint: str


@dataclass(frozen=True)
class SendTo:
    endpoint: str
    frame: bytes


@dataclass(frozen=True)
class Land:
    """Verify ``payload`` as ``book`` and write it; then feed the outcome to ``written``."""

    library_id: bytes
    book: int
    endpoint: str
    payload: Any = field(compare=False, repr=False)


@dataclass(frozen=True)
class Notify:
    """Tell the local Distributor: ``books`` are on disk (none: this library is now downloading)."""

    library_id: bytes
    books: tuple[int, ...] = ()


@dataclass(frozen=True)
class Sync:
    """fdatasync the library's partial file off the loop; then feed the outcome to ``synced``."""

    library_id: bytes


@dataclass(frozen=True)
class Persist:
    """Save ``have`` (durable books) and the counters to state.db."""

    library_id: bytes
    have: Bitfield = field(compare=False)
    downloaded: int
    fetched: int


@dataclass(frozen=True)
class Stop:
    """The download stops: make every written book durable, then persist ``have`` and close the file."""

    library_id: bytes
    have: Bitfield = field(compare=False)
    downloaded: int
    fetched: int
    reason: str


@dataclass(frozen=True)
class Finish:
    """Every book is in and durable: give the file its final name and seed it."""

    library_id: bytes
    fetched: int
    bad_books: int


@dataclass(frozen=True)
class Fail:
    """The download cannot go on: mark it failed with ``reason`` (a Stop follows)."""

    library_id: bytes
    reason: str


@dataclass(frozen=True)
class AskHub:
    library_id: bytes
    hubs: tuple[str, ...]
    numwant: int


@dataclass(frozen=True)
class Report:
    """Tell the hubs ``endpoint`` did not answer."""

    library_id: bytes
    hubs: tuple[str, ...]
    endpoint: str


@dataclass(frozen=True)
class Stalled:
    """``books`` missing books have no known source (0: every missing book has one again)."""

    library_id: bytes
    books: int


@dataclass(frozen=True)
class Log:
    event: str
    fields: dict[str, object] = field(default_factory=dict, compare=False)
    level: str = "info"


Action = (Connect | Drop | SendTo | Land | Notify | Sync | Persist | Stop | Finish | Fail | AskHub | Report
          | Stalled | Log)


def peers_interval(asks: int, starved: int, got: int, numwant: int) -> float:
    """When to ask the hub again: after failed or empty answers soon, then backing off; while the
    swarm is still forming (players join a library at about the same time) soon and then less
    often; every PEERS_EVERY once it has formed."""
    if starved:
        return min(PEERS_EVERY, STARVED_FIRST * 2.0 ** min(starved - 1, 8))
    if got >= numwant:
        return PEERS_EVERY
    return min(PEERS_EVERY, 0.25 * 2.0 ** min(asks, 8))


def _by_promise(remotes: list[Remote]) -> None:
    """Which remotes to ask first when the memory bound leaves room for only some: those with the fewest
    requests in flight, and among those the ones that deliver fastest. A remote not asked yet has no
    measured rate and is taken to deliver as fast as the measured ones do on average: ranked after it,
    it would never be tried while any remote had ever delivered, however slowly, and the requests of a
    fleet gathered at the few remotes each player met first (at 256 hosts a quarter of the players,
    holding as many books as the rest, were asked for almost nothing while others served 20 to 35
    requesters at once)."""
    measured = [remote.window.rate for remote in remotes if remote.window.rate]
    unknown = sum(measured) / len(measured) if measured else 0.0
    remotes.sort(key=lambda remote: (len(remote.window.sent), -(remote.window.rate or unknown)))


class RequestorLogic:
    def __init__(self, *, player_id: bytes, download_rate: int, now: float,
                 rng: random.Random | None = None) -> None:
        self.player_id = player_id
        self.own_endpoint = ""
        self.bucket = TokenBucket(download_rate, now)
        self.rng = rng
        self.downloads: dict[bytes, Download] = {}
        self.remotes: dict[str, Remote] = {}
        self.held = Held()  # the bytes every remote's window holds credit for, together (at most budget)
        self.budget = IN_FLIGHT_BYTES
        self.dead: dict[str, tuple[float, float]] = {}  # never answered: endpoint -> (not tried before, pause)
        self.next_expire = now
        self.next_sync = now + SYNC_SECONDS
        self.counts = {"books": 0, "bad_books": 0, "bytes_received": 0, "bytes_wasted": 0}
        self.write_latency = Latency()  # pwrite of each verified book
        # _fill runs when something it reads may have changed: an event (every public entry below marks it
        # due), the expiry schedule, or the earliest time a remote's pause or a refusal ends or the download
        # bucket refills (_fill_wake). A turn with none of these (most, in a swarm) costs no look at each remote.
        self._fill_due = True
        self._fill_wake = 0.0

    def set_rate(self, download_rate: int, now: float) -> None:
        self._fill_due = True
        self.bucket.set_rate(download_rate, now)

    # -- libraries ----------------------------------------------------------------------------
    def add(self, library: Library, have: Bitfield, now: float, *, downloaded: int = 0,
            fetched: int = 0, wanted: Bitfield | None = None) -> list[Action]:
        """Download ``library``, of which the books in ``have`` are durable already; of a selection of files,
        only the books in ``wanted`` (the others are never requested, and the download is complete without)."""
        self._fill_due = True
        if library.id in self.downloads:
            return []
        picker = Picker(Bitfield(library.books, have.to_bytes()), self.rng, wanted)
        download = self.downloads[library.id] = Download(library, picker, downloaded=downloaded,
                                                         fetched=fetched, next_ask=now)
        out: list[Action] = [Notify(library.id), Log("download_started", {
            "library": library.id_hex, "name": library.name, "have": len(picker.have), "books": library.books,
            "wanted": library.books if wanted is None else len(wanted)})]
        if download.complete:
            out += self._finish(download)
        return out

    def remove(self, library_id: bytes, reason: str, now: float) -> list[Action]:
        """Stop downloading (paused, removed, failed, shutdown): cancel what is in flight."""
        self._fill_due = True
        download = self.downloads.pop(library_id, None)
        if download is None:
            return []
        out: list[Action] = []
        for remote in self.remotes.values():
            out += self._cancel(remote, library_id)
            remote.forget(library_id)
        have = Bitfield(download.library.books, download.picker.have.to_bytes())
        out.append(Stop(library_id, have, download.downloaded, download.fetched, reason))
        out.append(Log("download_stopped", {"library": download.library.id_hex, "reason": reason}))
        return out

    # -- the hub ------------------------------------------------------------------------------
    def hub_answer(self, library_id: bytes, peers: list[PeerInfo], ok: bool, now: float,
                   numwant: int = NUMWANT) -> list[Action]:
        """The hub named ``peers`` for the library (``ok`` False: no hub answered)."""
        self._fill_due = True
        download = self.downloads.get(library_id)
        if download is None:
            return []
        out: list[Action] = []
        room = self._peer_room(download)
        for peer in peers:
            if room <= 0:
                break
            if peer.player_id == self.player_id or peer.endpoint in (self.own_endpoint, ""):
                continue
            if peer.endpoint in download.banned or self.dead.get(peer.endpoint, (0.0, 0.0))[0] > now:
                continue
            remote = self.remotes.get(peer.endpoint)
            if remote is None:
                remote = self.remotes[peer.endpoint] = Remote(peer.endpoint, Window(pool=self.held), last_heard=now)
                out.append(Connect(peer.endpoint, peer.public_key))
            if library_id not in remote.books:
                out += self._handshake(remote, library_id, now)
                room -= 1
        download.answered = True
        download.hub_down_since = None if ok else (download.hub_down_since or now)
        if ok:
            download.hub_ok = True
            download.hub_named = any(p.player_id != self.player_id and p.endpoint != self.own_endpoint for p in peers)
        download.asks += 1
        download.starved = 0 if ok and peers else download.starved + 1
        download.next_ask = now + peers_interval(download.asks, download.starved, len(peers), numwant)
        return out

    # -- messages from remotes ------------------------------------------------------------------
    def received(self, endpoint: str, message: wire_pb2.PeerMessage, payload: Any, now: float) -> list[Action]:
        """A decoded message from ``endpoint``; ``payload`` is a book's payload frame (else None)."""
        remote = self.remotes.get(endpoint)
        if remote is None:
            return []  # dropped meanwhile
        remote.last_heard = now
        remote.heard = True
        kind = message.WhichOneof("body")
        if kind == "have" and payload is None:  # the most frequent message by far: one per book per peer
            return self._on_have(remote, message.have)
        self._fill_due = True
        try:
            if (kind == "book") != (payload is not None):
                raise ProtocolError(ErrorCode.MALFORMED, "a book, and only a book, has a payload frame")
            if kind == "book":
                return self._on_book(remote, message.book, payload, now)
            if kind == "bitfield":
                return self._on_bitfield(remote, message.bitfield)
            if kind == "have":
                return self._on_have(remote, message.have)
            if kind == "busy":
                return self._on_busy(remote, message.busy, now)
            if kind == "error":
                return self._on_error(remote, message.error, now)
            raise ProtocolError(ErrorCode.UNKNOWN_REQUEST, f"a requestor does not expect {kind!r}")
        except ProtocolError as exc:
            return [Log("bad_peer_message", {"endpoint": endpoint, "code": names.error_code(exc.code),
                                             "error": exc.message}, "warning")]

    def _on_bitfield(self, remote: Remote, message: wire_pb2.Bitfield) -> list[Action]:
        download = self.downloads.get(message.library_id)
        if download is None or message.library_id not in remote.books:
            return []
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
        remote.attempts = 0
        remote.window.advertise(message.upload_slots)
        download.picker.peer_has(books.indices())
        return []

    def _on_have(self, remote: Remote, message: wire_pb2.Have) -> list[Action]:
        """The remote gained books. Only a request to this remote can follow, so the windows are filled
        again only if it has credit, the memory bound leaves room for a book, and one of the books may be
        asked for (missing and not in flight, or any in the endgame): most haves (one per book per peer)
        can lead to no request, and cost no look at each remote."""
        download = self.downloads.get(message.library_id)
        books = remote.books.get(message.library_id)
        if download is None or books is None:
            return []
        new = [b for b in message.books if 0 <= b < books.size and books.add(b)]
        if new:
            picker = download.picker
            picker.peer_has(new)
            if (self.budget - self.held.bytes >= download.library.book_size and remote.window.credit > 0
                    and (picker.endgame or picker.askable(new))):
                self._fill_due = True
        return []

    def _on_busy(self, remote: Remote, busy: wire_pb2.Busy, now: float) -> list[Action]:
        key = (busy.library_id, busy.book)
        retry = min(5.0, busy.retry_after_ms / 1000)
        if busy.book_only:  # the remote spreads its upload: this book elsewhere, others from it at once
            if remote.window.forget(key):
                self._release(key, remote)
            remote.refuse(key, now + retry)
            return []
        if remote.window.forget(key):
            remote.window.on_busy(key)
            self._release(key, remote)
        remote.refuse(key, now + max(REFUSED_SECONDS, retry))
        remote.not_before = now + retry
        return []

    def _on_error(self, remote: Remote, message: wire_pb2.PeerError, now: float) -> list[Action]:
        key = (message.library_id, message.book)
        out: list[Action] = [Log("peer_error", {"endpoint": remote.endpoint,
                                                "code": names.error_code(message.error.code),
                                                "message": message.error.message})]
        if message.error.code == ErrorCode.FORBIDDEN and message.library_id in remote.books:
            # "handshake first": the remote no longer knows us (it restarted). What was asked of it goes
            # back to the picker and we introduce ourselves again; more such errors while we wait change nothing.
            if remote.window.forget(key):
                self._release(key, remote)  # refused already: no cancel for it
            if remote.answered(message.library_id):
                out += self._forget_library(remote, message.library_id)
                out += self._handshake(remote, message.library_id, now)
        elif message.library_id in remote.books and not remote.answered(message.library_id):
            out += self._forget_library(remote, message.library_id)  # the handshake was refused
        elif remote.window.forget(key):
            self._release(key, remote)
            remote.refuse(key, now + ERROR_SECONDS)
        return out

    def _on_book(self, remote: Remote, header: wire_pb2.BookHeader, payload: Any, now: float) -> list[Action]:
        key = (header.library_id, header.book)
        size = len(payload)
        self.counts["bytes_received"] += size
        if not remote.window.arrived(key, now):
            self.counts["bytes_wasted"] += size
            return []  # cancelled (a ban, an endgame loser, a stop), or a late duplicate: never hashed
        download = self.downloads.get(header.library_id)
        if download is None or header.book in download.picker.have or header.book in download.verifying:
            self.counts["bytes_wasted"] += size
            remote.window.landed(key)
            if download is not None:
                download.picker.release(header.book, remote.endpoint)
            return []
        download.verifying.add(header.book)
        return [Land(header.library_id, header.book, remote.endpoint, payload)]

    def peer_lost(self, endpoint: str, now: float) -> list[Action]:
        """The connection to ``endpoint`` ended."""
        self._fill_due = True
        remote = self.remotes.get(endpoint)
        return self._drop(remote, report=True, why="connection lost") if remote else []

    # -- outcomes of the loop's work -------------------------------------------------------------
    def written(self, result: Written, now: float) -> list[Action]:
        """What became of a Land: written, a bad hash, or a disk error."""
        self._fill_due = True
        remote = self.remotes.get(result.peer)
        if remote is not None:
            remote.window.landed((result.library_id, result.book))
        download = self.downloads.get(result.library_id)
        if download is None or result.book not in download.verifying:
            self.counts["bytes_wasted"] += result.length
            return []  # the download stopped meanwhile
        download.verifying.discard(result.book)
        if result.outcome is not Outcome.WRITTEN:
            self.counts["bytes_wasted"] += result.length  # fetched again later
        else:
            self.write_latency.observe(result.write_seconds)
        if result.outcome is Outcome.BAD_HASH:
            return self._bad_book(download, result)
        if result.outcome is Outcome.DISK_ERROR:
            download.picker.release(result.book, result.peer)
            return [Fail(download.id, result.error), *self.remove(download.id, "disk error", now)]
        return self._landed(download, result)

    def _bad_book(self, download: Download, result: Written) -> list[Action]:
        download.picker.release(result.book, result.peer)
        self.counts["bad_books"] += 1
        banned = download.strike(result.peer)
        out: list[Action] = [Log("bad_book", {"library": download.library.id_hex, "book": result.book,
                                              "endpoint": result.peer, "banned": banned}, "warning")]
        remote = self.remotes.get(result.peer)
        if banned and remote is not None:
            out += self._forget_library(remote, download.id)
        return out

    def _landed(self, download: Download, result: Written) -> list[Action]:
        download.record_written(result.book, result.length)
        self.counts["books"] += 1
        out: list[Action] = []
        for other in download.picker.received(result.book, result.peer):
            loser = self.remotes.get(str(other))
            if loser is not None and loser.window.forget((download.id, result.book)):
                out.append(SendTo(loser.endpoint, framing.cancel(download.id, result.book)))
        out.append(Notify(download.id, (result.book,)))
        if download.complete:
            out.append(Log("download_verified", {"library": download.library.id_hex,
                                                 "books": download.library.books, "fetched": download.fetched}))
            out += self._sync(download)
        return out

    def synced(self, library_id: bytes, error: str, now: float) -> list[Action]:
        """The fdatasync of a Sync returned (``error`` empty) or failed."""
        self._fill_due = True
        download = self.downloads.get(library_id)
        if download is None or download.syncing is None:
            return []
        if error:
            download.abort_sync()
            return [Log("sync_failed", {"library": download.library.id_hex, "error": error,
                                        "hint": "check the disk; the books will be synced again"}, "error")]
        download.end_sync()
        have = Bitfield(download.library.books, download.durable.to_bytes())
        out: list[Action] = [Persist(library_id, have, download.downloaded, download.fetched)]
        if download.complete:
            out += self._sync(download)
        return out

    def _sync(self, download: Download) -> list[Action]:
        if download.begin_sync():
            return [Sync(download.id), Log("books_written", {"library": download.library.id_hex,
                                                             "books": list(download.syncing or ())}, "debug")]
        return self._finish(download) if download.finishable else []

    def _finish(self, download: Download) -> list[Action]:
        del self.downloads[download.id]
        for remote in self.remotes.values():
            remote.forget(download.id)
        return [Finish(download.id, download.fetched, download.bad_books)]

    # -- time ---------------------------------------------------------------------------------------
    def tick(self, now: float) -> list[Action]:
        """Time passed: what is due now, then top up the request windows."""
        out: list[Action] = []
        if now >= self.next_expire:
            self.next_expire = now + EXPIRE_SECONDS
            self._fill_due = True
            out += self._expire(now)
            self.budget = self._budget(now)
            for download in list(self.downloads.values()):
                out += self._check_stalled(download, now)
        if now >= self.next_sync:
            self.next_sync = now + SYNC_SECONDS
            for download in list(self.downloads.values()):
                out += self._sync(download)
        for download in self.downloads.values():
            if now >= download.next_ask:
                download.next_ask = now + ASK_PENDING  # until the answer schedules the next ask
                out.append(AskHub(download.id, download.library.hubs, self._numwant(download)))
        if self._fill_due or now >= self._fill_wake:
            self._fill_due = False
            out += self._fill(now)
            self._fill_wake = self._wake(now)
        return out

    def _wake(self, now: float) -> float:
        """The earliest time _fill could send more with no event before it: a remote's pause (busy) or a
        refused book's wait ends, or the download bucket refills; infinity when none is pending."""
        later = [remote.not_before for remote in self.remotes.values() if remote.not_before > now]
        later += [until for remote in self.remotes.values() for until in remote.refused.values() if until > now]
        if not self.bucket.ready(now):
            later.append(now + self.bucket.wait(now))
        return min(later, default=math.inf)

    def _numwant(self, download: Download) -> int:
        """Peers to ask the hub for: more while the hub has answered but none of its peers serves us (a
        library full of dead or fake entries: each answer tries more of them at once)."""
        if download.answered and not download.complete and not self._has_source(download.id):
            return NUMWANT_SEARCHING
        return NUMWANT

    def _peer_room(self, download: Download) -> int:
        """How many more remotes the download may use: up to MAX_PEERS, as many as _numwant asks for while
        none serves it. Every book a player gets is a ``have`` to each player using it, and each remote is
        looked at on every fill: with every player a hub ever named as a remote (an answer every PEERS_EVERY
        adds up to NUMWANT), a fleet's haves grew as players x books x players."""
        using = sum(1 for remote in self.remotes.values() if download.id in remote.books)
        searching = self._numwant(download) == NUMWANT_SEARCHING
        return (NUMWANT_SEARCHING if searching else MAX_PEERS) - using

    def _has_source(self, library_id: bytes) -> bool:
        """Whether some remote answered our handshake for the library (it may serve us)."""
        return any(remote.answered(library_id) for remote in self.remotes.values())

    def _fill(self, now: float) -> list[Action]:
        """Top up the windows that have credit. Runs every loop turn, so the common cases (the memory bound
        reached, every window full, or nothing left to fetch) cost at most one look at each remote."""
        out: list[Action] = []
        fetching = [download.library.book_size for download in self.downloads.values() if not download.complete]
        if not fetching or not self.bucket.ready(now):
            return out
        smallest = min(fetching)
        room = self.budget - self.held.bytes
        if room < smallest:
            return out  # no window may take another book
        ready = [remote for remote in self.remotes.values() if remote.window.credit > 0 and now >= remote.not_before]
        _by_promise(ready)
        for remote in ready:
            if room < smallest:
                break
            for library_id, books in remote.books.items():
                download = self.downloads.get(library_id)
                if not books or download is None or download.complete:
                    continue  # not answered yet, or it holds no book at all (a leecher just started)
                credit = min(remote.window.credit, room // download.library.book_size)
                if credit <= 0:
                    continue
                if not self.bucket.ready(now):
                    return out
                for book in download.picker.pick(remote.endpoint, remote.offer(library_id, books, now), credit):
                    length = download.library.book_span(book)[1]
                    remote.window.on_send((library_id, book), now, length)
                    room -= length
                    self.bucket.take(length, now)
                    out.append(SendTo(remote.endpoint, framing.request(library_id, book)))
        return out

    def _budget(self, now: float) -> int:
        """The bytes all windows may hold: IN_FLIGHT_BYTES, less for a player ahead of its peers.

        A swarm is done when its last player is: a player that holds more books than the peers still
        downloading about as fast as it does (on average) asks for fewer at a time (see LEAD_SPAN,
        LEAD_FLOOR), so the senders' upload it would have taken goes to the players behind; it still
        fetches, and none of them waits on it. Peers on slower links (gaining books at less than PEER_PACE
        of its pace) do not count: they are behind because of their own link, which more upload would not
        widen. Looked at on the expiry schedule: a lead changes slowly."""
        lead = 0.0
        for download in self.downloads.values():
            mine = len(download.picker.have)
            keeps_pace = PEER_PACE * download.pace.sample(mine, now)
            library_id, others = download.id, []
            for remote in self.remotes.values():
                books = remote.books.get(library_id)
                if books is None or books.complete:
                    continue
                paced = remote.paces.get(library_id)
                if paced is None:
                    paced = remote.paces[library_id] = Pace()
                if paced.sample(len(books), now) >= keeps_pace:
                    others.append(len(books))
            if others:
                lead = max(lead, (mine - sum(others) / len(others)) / download.library.books)
        return int(IN_FLIGHT_BYTES * max(LEAD_FLOOR, 1.0 - lead / LEAD_SPAN))

    def _expire(self, now: float) -> list[Action]:
        out: list[Action] = []
        for remote in list(self.remotes.values()):
            late = remote.window.expired(now)
            for key in late:
                self._release(key, remote)
                out.append(Log("request_timeout", {"endpoint": remote.endpoint, "library": key[0].hex(),
                                                   "book": key[1]}))
            if late and now - remote.last_heard > remote.window.timeout:
                out += self._drop(remote, report=True, why="silent")
                continue
            if remote.never_answered(now):
                out += self._dead(remote, now)
                continue
            stale = remote.stale_handshakes(now)
            if stale:
                remote.attempts += 1
                if remote.attempts >= HANDSHAKE_ATTEMPTS:
                    out += self._drop(remote, report=True, why="no answer to handshakes")
                    continue
                for library_id in stale:
                    out += self._handshake(remote, library_id, now)
            elif not remote.books:
                out += self._drop(remote, report=False, why="nothing to fetch")
        return out

    def _check_stalled(self, download: Download, now: float) -> list[Action]:
        """Stalled: missing books that no known source holds, for STALL_GRACE. Unchanged while the hub has
        not answered yet or a handshake is pending (a source may be about to appear)."""
        library_id = download.id
        if not download.answered or any(remote.books.get(library_id, True) is None for remote in self.remotes.values()):
            return []
        without = download.picker.unavailable()
        if not without:
            download.stalled_since = None
        elif download.stalled_since is None:
            download.stalled_since = now
        shown = without if download.stalled_since is not None and now - download.stalled_since >= STALL_GRACE else 0
        if shown == download.stalled:
            return []
        out: list[Action] = [Stalled(download.id, shown)]
        if not download.stalled or not shown:
            event = "download_stalled" if shown else "download_unstalled"
            out.append(Log(event, {"library": download.library.id_hex, "books_without_source": shown},
                           "warning" if shown else "info"))
        download.stalled = shown
        return out

    # -- remotes ------------------------------------------------------------------------------------
    def _handshake(self, remote: Remote, library_id: bytes, now: float) -> list[Action]:
        remote.handshaking(library_id, now)
        return [SendTo(remote.endpoint, framing.handshake(library_id, self.player_id))]

    def _release(self, key: tuple[bytes, int], remote: Remote) -> None:
        download = self.downloads.get(key[0])
        if download is not None:
            download.picker.release(key[1], remote.endpoint)

    def _cancel(self, remote: Remote, library_id: bytes) -> list[Action]:
        """Cancel every request in flight to ``remote`` for the library (its credit is free again)."""
        out: list[Action] = []
        for book in remote.in_flight(library_id):
            remote.window.forget((library_id, book))
            out.append(SendTo(remote.endpoint, framing.cancel(library_id, book)))
        return out

    def _forget_library(self, remote: Remote, library_id: bytes) -> list[Action]:
        """Stop using ``remote`` for the library: its requests are cancelled, its books go back to the picker."""
        out = self._cancel(remote, library_id)
        books = remote.forget(library_id)
        download = self.downloads.get(library_id)
        if download is not None:
            download.picker.peer_gone(remote.endpoint, books.indices() if books else [])
        return out

    def _dead(self, remote: Remote, now: float) -> list[Action]:
        """Drop a remote that never answered and keep it out of the next hub answers for a while (DEAD_FIRST,
        doubling each time it happens again, up to DEAD_MAX: a live peer on a busy host is back soon, a
        fake seed stays out); a download left without a source asks the hub for others soon."""
        if len(self.dead) >= MAX_DEAD:
            self.dead = {endpoint: entry for endpoint, entry in self.dead.items() if entry[0] + entry[1] > now}
            while len(self.dead) >= MAX_DEAD:
                del self.dead[next(iter(self.dead))]
        until, pause = self.dead.get(remote.endpoint, (0.0, 0.0))
        pause = DEAD_FIRST if until + pause < now else min(DEAD_MAX, 2 * pause)  # forgiven after a quiet pause
        self.dead[remote.endpoint] = (now + pause, pause)
        libraries = list(remote.books)
        out = self._drop(remote, report=True, why="never answered")
        for library_id in libraries:
            download = self.downloads.get(library_id)
            if download is not None and not self._has_source(library_id):
                download.next_ask = min(download.next_ask, now + STARVED_FIRST)
        return out

    def _drop(self, remote: Remote, report: bool, why: str) -> list[Action]:
        """Forget ``remote`` altogether: what it held and what it was asked for go back to the pickers."""
        out: list[Action] = []
        for library_id, books in remote.books.items():
            download = self.downloads.get(library_id)
            if download is None:
                continue
            download.picker.peer_gone(remote.endpoint, books.indices() if books else [])
            if report:
                out.append(Report(library_id, download.library.hubs, remote.endpoint))
        remote.window.close()
        del self.remotes[remote.endpoint]
        out.append(Drop(remote.endpoint))
        out.append(Log("peer_dropped", {"endpoint": remote.endpoint, "reported": report, "reason": why}))
        return out

    def counters(self) -> dict[str, int]:
        """For the heartbeat: totals, and the peers serving each download."""
        per_library = {
            peers_counter(download.library.id_hex): sum(1 for r in self.remotes.values() if r.answered(library_id))
            for library_id, download in self.downloads.items()
        }
        for download in self.downloads.values():
            if download.hub_down_since is not None:
                per_library[hub_counter(download.library.id_hex)] = max(HUB_NAMED_NOBODY + 1,
                                                                         int(download.hub_down_since * 1000))
            elif download.hub_ok:
                per_library[hub_counter(download.library.id_hex)] = HUB_NAMED if download.hub_named else (
                    HUB_NAMED_NOBODY)
        latency = self.write_latency
        histogram = {f"{WRITE_BUCKET}{i}": count for i, count in enumerate(latency.counts)}
        in_flight = sum(len(remote.window.sent) for remote in self.remotes.values())
        return {**self.counts, "peers": len(self.remotes), "downloads": len(self.downloads),
                "requests_in_flight": in_flight, WRITE_SUM_US: int(latency.sum * 1e6), **histogram, **per_library}
