"""What the Distributor does with each message: pure logic, no sockets, no files.

How it works. ``handle(identity, frames, now)`` answers one incoming message
with a list of outgoing actions: ``Send`` (a control frame) or ``SendBook``
(the loop reads the book with pread and sends header + payload). Requests are
queued; ``serve(now)`` releases them while the upload token bucket allows,
choosing, at a rate-limited player, the queued book sent the fewest times so
far. A full queue answers ``busy`` instead of stalling.

The link as the limit: with no cap configured, the loop reports when each book
it handed to the socket has been written to the kernel (``drained``), and
``serve`` keeps only a short pipe of unwritten books per requester (see pipe.py).
When no queued request fits the pipe, or it never empties, the link is the
limit and the Distributor queues as under a configured cap, at the rate the
pipe measured: queued requests are chosen least-sent first and the queue holds
about QUEUE_SECONDS of upload.

Spreading (a seed with more than one requester): while some books have never
been sent, the seed's first copy of each book is the swarm's scarcest
resource, whatever limits its upload, so a request for a book it sent in the
last SPREAD_HOLD seconds is answered with a busy for that book only (the
requester gets it from the player that has it, whose ``have`` it has seen or
will see, and asks the seed for other books at once) and the seed spends its
upload on books no one holds yet. Under a configured cap this was the whole
policy; on a real link the seed could not tell it was the limit in time (the
kernel's buffers hide the first seconds of backlog), and every repeat let
through cost the last leecher its time. The hold is short so no requester can
wait on it for long; once every book went out once, the seed serves
everything, least-sent first.

Answers that cost more than the request: a bitfield (up to 64 KB for a few bytes
of handshake) and a library file (up to 80 MiB for a library_request). Each is
built once per state of its library and shared by every answer (``Send.shared``:
sent without a copy), so answers a requester never reads hold references, not
copies; a library file also goes through the requester's share of the pipe and
the upload budget as a book does, and is answered ``busy`` when neither has room.

News: ``books_landed`` holds a book just written by the local Requestor (it is
served at once) and ``serve`` tells it, HAVE_HOLD later, to every player that
handshook for its library, with every book that landed meanwhile in the same
``have``. Told one by one, haves were most of the swarm's messages (each landed
book a message to each of a dozen or more subscribers, against one message
for the book itself): the CPU of both ends and a packet on the wire each.
"""

from __future__ import annotations

from collections import OrderedDict, deque
from dataclasses import dataclass, field

from services.peer.bitfield import Bitfield
from services.peer.library import Library
from services.peer.pipe import Pipe
from services.peer.ratelimit import TokenBucket
from services.wire import framing
from services.wire.errors import ErrorCode, ProtocolError
from services.wire.ids import LIBRARY_ID_LEN

MAX_SUBSCRIBERS = 4096
MAX_WAIT = 1.0  # seconds a queued request may be passed over for less-sent books
QUEUE_SECONDS = 0.5  # under a rate limit, queue about this much upload; beyond it, answer busy
SPREAD_HOLD = 3.0  # seconds a seed refuses to repeat a book while others were never sent
HAVE_HOLD = 0.05  # seconds a landed book waits to be told, so books landing meanwhile share its ``have``
HAVE_BOOKS = 10_000  # books in one have at most: 3 bytes each below MAX_BOOKS, well within a control frame


@dataclass(frozen=True)
class Send:
    identity: bytes
    frame: bytes
    payload: bytes = b""  # a second, raw frame (a library file after its header, counted in the pipe); b"": none
    shared: bool = False  # ``frame`` is kept and sent again to others: send it without a copy


@dataclass(frozen=True)
class SendBook:
    identity: bytes
    library_id: bytes
    book: int
    offset: int
    length: int


Action = Send | SendBook


@dataclass
class Served:
    """A library this player serves, and who listens for its news."""

    library: Library
    have: Bitfield
    subscribers: OrderedDict[bytes, None] = field(default_factory=OrderedDict)
    sent: list[int] = field(default_factory=list)
    last_sent: list[float] = field(default_factory=list)
    unsent: int = 0
    uploaded: int = 0
    early_repeats: int = 0  # books sent again while others had never been sent: the seed's upload wasted
    sent_once_at: float | None = None  # when the last book that had never gone out went (``now``'s clock)
    bitfield_frame: bytes | None = None  # the handshake answer for ``have`` as it stands; None: build it again
    file_bytes: bytes | None = None  # the library file, serialized once for every library_request

    def __post_init__(self) -> None:
        self.sent = [0] * self.library.books
        self.last_sent = [0.0] * self.library.books
        self.unsent = self.library.books

    def record_sent(self, book: int, now: float) -> None:
        if self.sent[book] == 0:
            self.unsent -= 1
            if not self.unsent:
                self.sent_once_at = now
        elif self.unsent:
            self.early_repeats += 1
        self.sent[book] += 1
        self.last_sent[book] = now

    @property
    def sent_total(self) -> int:
        return sum(self.sent)

    def redundancy(self) -> dict[str, int]:
        """How often books went out: total sends, books sent at least once, more than once, the most of one."""
        return {"sends": self.sent_total, "books_sent": self.library.books - self.unsent,
                "books_repeated": sum(1 for count in self.sent if count > 1), "most": max(self.sent, default=0),
                "early_repeats": self.early_repeats}

    def spread_busy(self, book: int, now: float) -> bytes:
        """The refusal of a book already spread: this book only, for the rest of its hold."""
        hold_ms = int(1000 * max(0.0, SPREAD_HOLD - (now - self.last_sent[book])))
        return framing.busy(self.library.id, book, max(1, hold_ms), book_only=True)

    def already_spread(self, book: int, now: float) -> bool:
        """A complete holder that still has never-sent books, and more than one requester, should not
        send ``book`` again yet: not within SPREAD_HOLD of its last send (afterwards it does, so nobody
        waits on it forever: a requester that lost the book, a book other seeds spread instead)."""
        return (self.unsent > 0 and self.sent[book] > 0 and now - self.last_sent[book] < SPREAD_HOLD
                and self.have.complete and len(self.subscribers) > 1)


@dataclass(frozen=True)
class Pending:
    identity: bytes
    library_id: bytes
    book: int
    queued_at: float = field(default=0.0, compare=False)


class DistributorLogic:
    def __init__(self, *, slots: int, upload_rate: int, now: float) -> None:
        self.slots = slots
        self.capacity = slots * 4
        self.bucket = TokenBucket(upload_rate, now)
        self.pipe = Pipe()
        self.served: dict[bytes, Served] = {}
        self.queue: deque[Pending] = deque()
        self.queued_by: dict[bytes, int] = {}  # requests in the queue per requester
        self.untold: dict[bytes, list[int]] = {}  # per library: books landed and not yet told to its subscribers
        self.tell_at: float | None = None  # when the oldest untold book is due to be told
        self.counts: dict[str, int] = {"requests": 0, "books_sent": 0, "bytes_sent": 0, "busy": 0, "errors": 0}

    # -- catalogue ----------------------------------------------------------
    def serve_library(self, library: Library, have: Bitfield, now: float) -> None:
        """Start serving ``library`` or refresh which books it holds (never forgets books).

        Books new to this refresh are told with ``have`` as ``books_landed``'s are: whichever of
        state.db or the Requestor's notice tells first, the subscribers hear of every book.
        """
        current = self.served.get(library.id)
        if current is None:
            self.served[library.id] = Served(library=library, have=have)
        else:
            self.books_landed(library.id, have.indices(), now)

    def drop_library(self, library_id: bytes) -> None:
        self.served.pop(library_id, None)
        self.untold.pop(library_id, None)
        self.queue = deque(p for p in self.queue if p.library_id != library_id)
        self.queued_by = {}
        for pending in self.queue:
            self.queued_by[pending.identity] = self.queued_by.get(pending.identity, 0) + 1

    def gone(self, identity: bytes) -> None:
        """The requester ``identity`` is no longer connected: forget everything it held here."""
        for served in self.served.values():
            served.subscribers.pop(identity, None)
        if self.queued_by.pop(identity, None):
            self.queue = deque(p for p in self.queue if p.identity != identity)
        self.pipe.forget(identity)

    def set_rate(self, upload_rate: int, now: float) -> None:
        self.bucket.set_rate(upload_rate, now)

    def drained(self, identity: bytes, nbytes: int, now: float) -> None:
        """The socket wrote ``nbytes`` of a book for ``identity`` to the kernel (a tracked send finished)."""
        self.pipe.drained(nbytes, now, identity)

    def upload_limit(self, now: float) -> float:
        """The rate that limits uploads now: the configured cap, or the link's when the link is the limit; 0 none."""
        if self.bucket.rate:
            return float(self.bucket.rate)
        return self.pipe.rate if self.pipe.limited(now) and self.pipe.rate else 0.0

    # -- messages -------------------------------------------------------------
    def handle(self, identity: bytes, frames: list[bytes], now: float) -> list[Action]:
        """Answer one message from ``identity`` (its frames after the identity).

        An error reply names the library and book it is about, so the
        requestor can match it to the request it answers.
        """
        about: tuple[bytes, int] = (b"", 0)
        try:
            if len(frames) != 1:
                raise ProtocolError(ErrorCode.MALFORMED, f"expected 1 frame, got {len(frames)}")
            message = framing.decode(frames[0])
            kind = message.WhichOneof("body")
            if kind == "handshake":
                about = (message.handshake.library_id, 0)
                return self._handshake(identity, message.handshake.library_id)
            if kind == "request":
                about = (message.request.library_id, message.request.book)
                return self._request(identity, message.request.library_id, message.request.book, now)
            if kind == "cancel":
                self._cancel(identity, message.cancel.library_id, message.cancel.book)
                return []
            if kind == "library_request":
                about = (message.library_request.library_id, 0)
                return self._library_file(identity, message.library_request.library_id, now)
            raise ProtocolError(ErrorCode.UNKNOWN_REQUEST, f"a distributor does not answer {kind!r}")
        except ProtocolError as exc:
            self.counts["errors"] += 1
            return [Send(identity, framing.error(exc.code, exc.message, *about))]

    def _library(self, library_id: bytes) -> Served:
        if len(library_id) != LIBRARY_ID_LEN:
            raise ProtocolError(ErrorCode.INVALID_ARGUMENT, "library id must be 32 bytes")
        served = self.served.get(library_id)
        if served is None:
            raise ProtocolError(ErrorCode.NOT_FOUND, f"library {library_id.hex()[:16]} is not served here")
        return served

    def _handshake(self, identity: bytes, library_id: bytes) -> list[Action]:
        served = self._library(library_id)
        served.subscribers[identity] = None
        served.subscribers.move_to_end(identity)
        while len(served.subscribers) > MAX_SUBSCRIBERS:
            served.subscribers.popitem(last=False)
        if served.bitfield_frame is None:
            served.bitfield_frame = framing.bitfield(library_id, served.library.books, served.have.to_bytes(),
                                                     self.slots)
        return [Send(identity, served.bitfield_frame, shared=True)]

    def _library_file(self, identity: bytes, library_id: bytes, now: float) -> list[Action]:
        """The library file, as a book is sent: within the requester's share of the pipe and the upload
        budget (``busy`` otherwise), so asking again and again, read or not, costs neither memory nor
        more than its share of the upload."""
        served = self._library(library_id)
        if not (self.pipe.room(identity) and self.bucket.ready(now)):
            self.counts["busy"] += 1
            return [Send(identity, framing.busy(library_id, 0, self._retry_ms(served, now)))]
        if served.file_bytes is None:
            served.file_bytes = served.library.to_bytes()
        data = served.file_bytes
        self.bucket.take(len(data), now)
        self.pipe.put(len(data), now, identity)
        self.counts["bytes_sent"] += len(data)
        return [Send(identity, framing.library_file(library_id, len(data)), data)]

    def _request(self, identity: bytes, library_id: bytes, book: int, now: float) -> list[Action]:
        self.counts["requests"] += 1
        served = self._library(library_id)
        if identity not in served.subscribers:
            raise ProtocolError(ErrorCode.FORBIDDEN, "handshake for this library before asking for its books")
        if book not in served.have:
            raise ProtocolError(ErrorCode.NOT_FOUND, f"book {book} is not held here")
        if served.already_spread(book, now):
            self.counts["busy"] += 1  # ask a leecher for this one; other books are welcome at once
            return [Send(identity, served.spread_busy(book, now))]
        capacity = self._capacity(served, now)
        mine = self.queued_by.get(identity, 0)
        if len(self.queue) >= capacity or mine >= max(4, capacity // 2):  # nobody holds more than half of it
            self.counts["busy"] += 1
            return [Send(identity, framing.busy(library_id, book, self._retry_ms(served, now)))]
        self.queue.append(Pending(identity, library_id, book, now))
        self.queued_by[identity] = mine + 1
        return []

    def _dequeued(self, pending: Pending) -> None:
        left = self.queued_by.get(pending.identity, 1) - 1
        if left > 0:
            self.queued_by[pending.identity] = left
        else:
            self.queued_by.pop(pending.identity, None)

    def _capacity(self, served: Served, now: float) -> int:
        """Queued requests accepted: under an upload limit, about QUEUE_SECONDS of upload (at least 4)."""
        limit = self.upload_limit(now)
        if not limit:
            return self.capacity
        return max(4, min(self.capacity, int(QUEUE_SECONDS * limit / served.library.book_size)))

    def _retry_ms(self, served: Served, now: float) -> int:
        """A hint for a busy reply: about when the queue will have drained."""
        limit = self.upload_limit(now)
        if not limit:
            return 50
        backlog = len(self.queue) * served.library.book_size / limit
        return int(1000 * min(5.0, max(0.05, self.bucket.wait(now) + backlog / 2)))

    def _cancel(self, identity: bytes, library_id: bytes, book: int) -> None:
        target = Pending(identity, library_id, book)
        try:
            self.queue.remove(target)
        except ValueError:
            return
        self._dequeued(target)

    # -- serving ------------------------------------------------------------------
    def serve(self, now: float) -> list[Action]:
        """What is due now: the haves held HAVE_HOLD, then the queued requests the upload budget allows."""
        out = self._tell() if self.tell_at is not None and now >= self.tell_at else []
        while self.queue and self.bucket.ready(now):
            pending = self._next(now)
            if pending is None:
                self.pipe.blocked(now)
                break
            served = self.served.get(pending.library_id)
            if served is None:
                continue
            if served.already_spread(pending.book, now):
                self.counts["busy"] += 1
                out.append(Send(pending.identity, served.spread_busy(pending.book, now)))
                continue
            offset, length = served.library.book_span(pending.book)
            self.bucket.take(length, now)
            self.pipe.put(length, now, pending.identity)
            served.record_sent(pending.book, now)
            served.uploaded += length
            self.counts["books_sent"] += 1
            self.counts["bytes_sent"] += length
            out.append(SendBook(pending.identity, pending.library_id, pending.book, offset, length))
        return out

    def _next(self, now: float) -> Pending | None:
        """The request to serve next, among those whose requester has room in the pipe (None: none has).

        First come first served; under an upload limit, least-sent first, but no request waits past
        MAX_WAIT (no starvation)."""
        ready = [i for i, pending in enumerate(self.queue) if self.pipe.room(pending.identity)]
        if not ready:
            return None
        best = ready[0]
        if self.upload_limit(now) and now - self.queue[best].queued_at <= MAX_WAIT:
            best = min(ready, key=lambda i: self._times_sent(self.queue[i]))
        chosen = self.queue[best]
        del self.queue[best]
        self._dequeued(chosen)
        return chosen

    def _times_sent(self, pending: Pending) -> int:
        served = self.served.get(pending.library_id)
        return served.sent[pending.book] if served else 0

    def wait(self, now: float) -> float | None:
        """Seconds until ``serve`` has something to do; None if no have is held and no request is queued,
        or only a drain of the pipe can make room (the loop looks for drains on its own)."""
        tell = None if self.tell_at is None else max(0.0, self.tell_at - now)
        if not any(self.pipe.room(pending.identity) for pending in self.queue):
            return tell
        release = self.bucket.wait(now)
        return release if tell is None else min(tell, release)

    def books_landed(self, library_id: bytes, books: list[int], now: float) -> None:
        """The local Requestor wrote ``books``: serve them from now on, and tell the subscribers within
        HAVE_HOLD (``serve``)."""
        served = self.served.get(library_id)
        if served is None:
            return
        fresh = [b for b in books if 0 <= b < served.library.books and served.have.add(b)]
        if fresh:
            served.bitfield_frame = None
            self.untold.setdefault(library_id, []).extend(fresh)
            if self.tell_at is None:
                self.tell_at = now + HAVE_HOLD

    def _tell(self) -> list[Action]:
        """One ``have`` per library and subscriber for every book not yet told (one per HAVE_BOOKS books: a
        refresh from state.db can bring a whole library at once, and a peer refuses a control frame past
        MAX_CONTROL_FRAME)."""
        out: list[Action] = []
        for library_id, books in self.untold.items():
            served = self.served.get(library_id)
            if served is None or not served.subscribers:
                continue
            for start in range(0, len(books), HAVE_BOOKS):
                frame = framing.have(library_id, books[start : start + HAVE_BOOKS])
                out.extend(Send(identity, frame) for identity in served.subscribers)
        self.untold.clear()
        self.tell_at = None
        return out
