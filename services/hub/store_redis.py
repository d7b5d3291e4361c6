"""The Redis store: every hub sharing one Redis gives the same answers.

How this works. Keys of one library share the hash tag ``{<library hex>}`` and
are only ever touched together, by one Lua script per operation (so the layout
also works on Redis Cluster, where a script may only touch one slot):

    emma:{L}:exp    ZSET player -> expires_at (milliseconds since the epoch, as every score of a time here)
    emma:{L}:all    ZSET wire -> a random order, fixed when the player arrives
    emma:{L}:leech  ZSET wire -> its random order, leechers only
    emma:{L}:wire   HASH player -> wire, the peer as encoded in replies (PeerRecord.wire)
    emma:{L}:ep     HASH player -> endpoint
    emma:{L}:done   STRING completed downloads (kept DONE_KEEP seconds after the last one)

Expiry needs no sweep over all keys. Every script first trims its own
library: members of ``exp`` with a score ``<= now`` are removed from the five
keys (a ZRANGE by score: nothing to do costs one lookup). A library nobody
touches any more vanishes by itself: each write gives its keys a TTL reaching
past the entry's expiry (never shortening one). Samples are windows of
consecutive members of ``all`` (or ``leech``) from a random start, as in the
memory index: the order is a uniformly random permutation, so a window is a
uniformly random subset, and the client's ``rng`` chooses the start (the same
rng gives the same choice). Their members are the encoded peers themselves,
so a sample is the reply's bytes with no lookup (a wire names its player).

Counts over all libraries live under ``{emma}`` (and per player and per
endpoint under their own tags), as sorted sets scored by expiry, so a count
is a ZCOUNT from ``now`` and expired members need no removal to stop counting:

    emma:{emma}:entries    ZSET library+player -> expires_at
    emma:{emma}:players    ZSET player -> expiry of its latest announce
    emma:{emma}:libs       ZSET library -> expiry of its latest announce
    emma:{P<player hex>}:libs   ZSET library -> expires_at   (per-player cap)
    emma:{E<endpoint>}:entries  ZSET library+player -> expires_at   (per-endpoint cap)

``maintain`` removes expired members of the three global sets once a
second; the per-player and per-endpoint sets are trimmed when written and
expire with their last member.

Round trips: a periodic announce (the same endpoint and seed status as the
entry it refreshes) is one: the library's refresh script, which also counts
the swarm, followed by one or two plain ZRANGEs reading the sample window, all
sent together on :class:`FastLane`. The window's start is drawn against the
library's size as its last refresh counted (a reply Redis builds in C costs a
fraction of one passed through Lua); a library this hub has not seen yet is
sampled inside the script, and one that shrank since, leaving the window
short, is sampled again by script. The new expiry reaches
the global, per-player and per-endpoint sets at the next ``maintain`` (every
broker tick, about 50 ms), for all refreshes of that tick in one pipeline,
and only once the score there lags by ``refresh_slack`` (half an interval, as
the SQLite store writes): a live player's score there stays ahead of ``now``,
and one that stopped announcing leaves those counts at most that much before
its entry expires. New entries, moves and removals take two or three round
trips.

Redis trouble: any connection error or timeout raises
:class:`StoreUnavailable`, which the hub answers as UNAVAILABLE ("try the
next hub"); redis-py reconnects by itself on a later call. Clocks: hubs
compare expiry times they wrote with their own clock, so hubs sharing a
Redis need synchronised clocks (NTP), as any fleet has.

Unreachable reports, their pings and verdicts, and requests per address are
shared too (:class:`RedisShared`).
"""

from __future__ import annotations

import collections
import math
import random
import socket
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import hiredis
import redis
from redis.commands.core import Script
from redis.connection import parse_url
from redis.exceptions import NoScriptError

from services.hub.model import LibraryCounts, PeerRecord, Room, Totals
from services.hub.store_errors import StoreError, StoreUnavailable
from services.wire.pb import hub_pb2

DONE_KEEP = 90 * 86_400  # seconds a library's completed counter outlives its last completion
MAINTAIN_EVERY = 1.0
PRUNE_EVERY = 60.0
RATE_KEEP = 10  # seconds a one-second window's request count is kept (a slow hub may add to it late)
SOCKET_TIMEOUT = 0.5  # a Redis that does not answer in this long is treated as down for this request
SIZES_KEPT = 100_000  # libraries whose size a hub remembers, to read sample windows without Lua
_CHUNK = 1000  # members passed to one ZREM/HDEL from Lua (Lua's unpack has a stack limit)
_GLOBAL = b"emma:{emma}:"

# Every library script starts here: KEYS = exp, all, leech, wire, ep; ARGV[1] = now (milliseconds, see _ms).
_PRELUDE = """
local exp, all, leech, wire, ep = KEYS[1], KEYS[2], KEYS[3], KEYS[4], KEYS[5]
local now = ARGV[1]
local KEEP_MARGIN = 300
local function drop(ids)
  for i = 1, #ids, 1000 do
    local part = {unpack(ids, i, math.min(i + 999, #ids))}
    local wires, present = redis.call('HMGET', wire, unpack(part)), {}
    for j = 1, #wires do if wires[j] then present[#present + 1] = wires[j] end end
    if #present > 0 then
      redis.call('ZREM', all, unpack(present))
      redis.call('ZREM', leech, unpack(present))
    end
    redis.call('ZREM', exp, unpack(part))
    redis.call('HDEL', wire, unpack(part))
    redis.call('HDEL', ep, unpack(part))
  end
end
drop(redis.call('ZRANGE', exp, '-inf', now, 'BYSCORE'))
local function record(player)
  local expires = redis.call('ZSCORE', exp, player)
  if not expires then return false end
  local w = redis.call('HGET', wire, player)
  return {expires, redis.call('HGET', ep, player), redis.call('ZSCORE', leech, w) and 0 or 1, w}
end
-- Each key lives at least ttl seconds more; extended by KEEP_MARGIN more at a time, so that most
-- announces find it long enough. keep_all looks at every key (a key may be new); keep_for at exp only.
local function keep_all(ttl)
  for _, key in ipairs({exp, all, leech, wire, ep}) do
    local left = redis.call('TTL', key)
    if left ~= -2 and left < ttl then redis.call('EXPIRE', key, ttl + KEEP_MARGIN) end
  end
end
local function keep_for(ttl)
  if redis.call('TTL', exp) < ttl then keep_all(ttl) end
end
-- Up to count consecutive members of key (wires, in random order) from a random start, never exclude.
local function window(key, count, frac, exclude)
  local n = redis.call('ZCARD', key)
  if n == 0 or count <= 0 then return {} end
  local take = math.min(count + 1, n)
  local start = math.floor(frac * n)
  local picked = redis.call('ZRANGE', key, start, start + take - 1)
  if start + take > n then
    local more = redis.call('ZRANGE', key, 0, start + take - n - 1)
    for i = 1, #more do picked[#picked + 1] = more[i] end
  end
  local out = {}
  for i = 1, #picked do
    if picked[i] ~= exclude and #out < count then out[#out + 1] = picked[i] end
  end
  return out
end
local function counts()
  local everyone = redis.call('ZCARD', all)
  local leechers = redis.call('ZCARD', leech)
  return {everyone - leechers, leechers}
end
"""

# ARGV: now, player, endpoint, seed (0/1), expires, wire, order, ttl
_UPSERT = _PRELUDE + """
local player, new = ARGV[2], ARGV[6]
local old = record(player)
if old and old[4] ~= new then
  redis.call('ZREM', all, old[4])
  redis.call('ZREM', leech, old[4])
end
redis.call('ZADD', exp, ARGV[5], player)
redis.call('ZADD', all, 'NX', ARGV[7], new)
if ARGV[4] == '1' then redis.call('ZREM', leech, new) else redis.call('ZADD', leech, 'NX', ARGV[7], new) end
redis.call('HSET', wire, player, new)
redis.call('HSET', ep, player, ARGV[3])
keep_all(tonumber(ARGV[8]))
return old
"""

# The announce hot path. ARGV: now, player, wire, expires, ttl, count, seeds (0/1), frac. Nil when
# the entry is not live with this very wire (endpoint and seed status): the caller then takes the
# full path. Returns {seeders, leechers} and, when frac is given, the sample window as a third item;
# with an empty frac the caller reads the window itself, by plain ZRANGEs sent right after (a reply
# built in C costs a fraction of one passed through Lua).
_REFRESH = _PRELUDE + """
local player, mine = ARGV[2], ARGV[3]
if redis.call('HGET', wire, player) ~= mine then return false end
redis.call('ZADD', exp, ARGV[4], player)
keep_for(tonumber(ARGV[5]))
local out = counts()
if ARGV[8] ~= '' then
  out[3] = window(ARGV[7] == '1' and all or leech, tonumber(ARGV[6]), tonumber(ARGV[8]), mine)
end
return out
"""

# ARGV: now, player. Returns {old record or false, players left in the library}.
_REMOVE = _PRELUDE + """
local old = record(ARGV[2])
if old then drop({ARGV[2]}) end
return {old, redis.call('ZCARD', exp)}
"""

# ARGV: now, player
_GET = _PRELUDE + """
return record(ARGV[2])
"""

# ARGV: now, count, exclude (a player id), seeds (0/1), frac. Returns the wires picked.
_SAMPLE = _PRELUDE + """
local mine = ARGV[3] ~= '' and redis.call('HGET', wire, ARGV[3]) or ''
return window(ARGV[4] == '1' and all or leech, tonumber(ARGV[2]), tonumber(ARGV[5]), mine or '')
"""

# KEYS as the prelude plus done; ARGV: now
_COUNTS = _PRELUDE + """
local out = counts()
out[3] = tonumber(redis.call('GET', KEYS[6]) or '0')
return out
"""

# ARGV: now, endpoint, remove (0/1). Returns the matching player ids (removed when asked).
_ENDPOINT = _PRELUDE + """
local found = {}
local flat = redis.call('HGETALL', ep)
for i = 1, #flat, 2 do
  if flat[i + 1] == ARGV[2] then found[#found + 1] = flat[i] end
end
if ARGV[3] == '1' and #found > 0 then drop(found) end
return {found, redis.call('ZCARD', exp)}
"""


def _library_keys(library_id: bytes) -> list[bytes]:
    prefix = b"emma:{" + library_id.hex().encode() + b"}:"
    return [prefix + b"exp", prefix + b"all", prefix + b"leech", prefix + b"wire", prefix + b"ep", prefix + b"done"]


def _player_key(player_id: bytes) -> bytes:
    return b"emma:{P" + player_id.hex().encode() + b"}:libs"


def _endpoint_key(endpoint: str) -> bytes:
    return b"emma:{E" + endpoint.encode() + b"}:entries"


def _ttl(expires_at: float, now: float) -> int:
    """Seconds a key holding an entry that expires at ``expires_at`` must live (relative, so that a hub's
    clock and Redis's need not agree to the second)."""
    return max(1, math.ceil(expires_at - now) + 1)


def _ms(seconds: float) -> int:
    """A time as the sorted sets score it: whole milliseconds. Integer scores are stored as integers in a small
    sorted set (a listpack), so Redis compares them without parsing a decimal string per member: an expiry's
    update in a library of a hundred players costs a quarter of what a float score does."""
    return round(seconds * 1000)


def _pack(*parts: Any) -> bytes:
    """One RESP command (hiredis's stub types its argument as a one-element tuple)."""
    packed: bytes = hiredis.pack_command(parts)
    return packed


def _window_ranges(size: int, count: int, frac: float) -> tuple[tuple[int, int], ...]:
    """The index ranges (inclusive) of a sample window in a set of ``size``: ``count`` + 1 members (one may be
    the asker) from ``floor(frac * size)``, wrapping round to the start."""
    take = min(count + 1, size)
    if count <= 0:
        return ()
    start = math.floor(frac * size)
    if start + take <= size:
        return ((start, start + take - 1),)
    return ((start, size - 1), (0, start + take - size - 1))


@dataclass(slots=True)
class _Plan:
    """One refresh sent: what was asked, and how many ZRANGE replies follow its script's."""

    record: PeerRecord
    count: int
    seeds: bool
    frac: float
    ranges: int


@dataclass(slots=True)
class _Sent:
    """Commands sent on a :class:`FastLane`, and their replies once read."""

    script: Script
    commands: list[bytes]
    generation: int
    replies: list[Any] | None = None


class FastLane:
    """One plain socket speaking RESP through hiredis, for the announce hot path (the refresh script).

    redis-py spends about twice the CPU of the whole call around each command (connection pool, retry
    wrappers, hooks); this lane packs and parses in C and keeps one connection. It reconnects on the next
    call after any error, and loads the script when a restarted Redis has forgotten it (NOSCRIPT).
    """

    def __init__(self, url: str, timeout: float = SOCKET_TIMEOUT) -> None:
        self._options: dict[str, Any] = parse_url(url)  # type: ignore[no-untyped-call]  # redis-py leaves it untyped
        self._timeout = timeout
        self._sock: socket.socket | None = None
        self._generation = 0  # counts connections: replies awaited on a connection since lost never come
        self._unread: collections.deque[_Sent] = collections.deque()  # sends whose replies are not read yet
        self._reader = hiredis.Reader()
        self._buffer = bytearray(1 << 16)

    def send(self, script: Script, commands: list[bytes]) -> _Sent:
        """Send packed commands (EVALSHAs of ``script`` and any others) without waiting; :meth:`receive` reads the
        replies (calls to receive come in the order of the sends)."""
        try:
            sock = self._sock or self._connect()
            sock.sendall(b"".join(commands))
        except (OSError, hiredis.ProtocolError) as exc:
            raise self._lost(exc) from None
        sent = _Sent(script, commands, self._generation)
        self._unread.append(sent)
        return sent

    def receive(self, sent: _Sent) -> list[Any]:
        """The replies to a :meth:`send`, in order. A Redis that forgot the script (it restarted) is given it, and
        the whole batch is sent again (its commands are idempotent, and the ones after a refused script must see
        what it does)."""
        if sent.generation != self._generation:
            raise StoreUnavailable("the connection to Redis was lost before its replies came")
        self._read_until(sent)
        replies = sent.replies
        assert replies is not None
        refused = [reply for reply in replies if isinstance(reply, hiredis.ReplyError)]
        if not refused:
            return replies
        script = sent.script
        if not all(str(reply).startswith("NOSCRIPT") for reply in refused):
            raise StoreUnavailable(f"Redis refused a command of the {script.sha[:8]} batch: {refused[0]}")
        loaded = self._call(_pack(b"SCRIPT", b"LOAD", script.script), 1)[0]
        if isinstance(loaded, hiredis.ReplyError):
            raise StoreUnavailable(f"Redis refused to load a script: {loaded}")
        again = self._call(b"".join(sent.commands), len(sent.commands))
        for reply in again:
            if isinstance(reply, hiredis.ReplyError):
                raise StoreUnavailable(f"Redis refused a command of the {script.sha[:8]} batch: {reply}")
        return again

    def _read_until(self, sent: _Sent | None) -> None:
        """Read the replies of earlier sends, in order, until ``sent``'s are in (None: all of them)."""
        try:
            while self._unread and (sent is None or sent.replies is None):
                head = self._unread.popleft()
                assert self._sock is not None
                head.replies = [self._read(self._sock) for _ in head.commands]
        except (OSError, hiredis.ProtocolError) as exc:
            raise self._lost(exc) from None

    def _call(self, commands: bytes, count: int) -> list[Any]:
        """Send packed commands once every earlier send's replies are read; read ``count`` replies (error
        replies are returned, not raised)."""
        self._read_until(None)
        try:
            sock = self._sock or self._connect()
            sock.sendall(commands)
            return [self._read(sock) for _ in range(count)]
        except (OSError, hiredis.ProtocolError) as exc:
            raise self._lost(exc) from None

    def _lost(self, exc: Exception) -> StoreUnavailable:
        self.close()
        self._unread.clear()
        return _unavailable(exc)

    def _read(self, sock: socket.socket) -> Any:
        reader, buffer = self._reader, self._buffer
        while (reply := reader.gets()) is False:
            got = sock.recv_into(buffer)
            if not got:
                raise ConnectionResetError("Redis closed the connection")
            reader.feed(buffer, 0, got)  # type: ignore[arg-type]  # any buffer; the stub says bytes
        return reply

    def _connect(self) -> socket.socket:
        options = self._options
        if "path" in options:
            sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            sock.settimeout(self._timeout)
            sock.connect(options["path"])
        else:
            sock = socket.create_connection((options.get("host", "localhost"), options.get("port", 6379)),
                                            timeout=self._timeout)
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self._sock, self._reader = sock, hiredis.Reader()
        self._generation += 1
        setup: list[tuple[Any, ...]] = []
        if options.get("password"):
            setup.append((b"AUTH", *([options["username"]] if options.get("username") else []), options["password"]))
        if options.get("db"):
            setup.append((b"SELECT", options["db"]))
        for command in setup:
            sock.sendall(_pack(*command))
            reply = self._read(sock)
            if isinstance(reply, hiredis.ReplyError):
                raise ConnectionRefusedError(f"{command[0].decode()}: {reply}")
        return sock

    def close(self) -> None:
        if self._sock is not None:
            self._sock.close()
            self._sock = None


class RedisStore:
    """A :class:`~services.hub.store.HubStore` in a Redis server shared by any number of hubs."""

    name = "redis"

    def __init__(self, client: redis.Redis, url: str, refresh_slack: float = 0.0) -> None:
        self._redis = client
        self._lane = FastLane(url)
        self._slack = refresh_slack
        self._scripts: dict[str, Script] = {
            name: client.register_script(body)
            for name, body in (("upsert", _UPSERT), ("refresh", _REFRESH), ("remove", _REMOVE), ("get", _GET),
                               ("sample", _SAMPLE), ("counts", _COUNTS), ("endpoint", _ENDPOINT))
        }
        self._next_maintain = self._next_prune = 0.0
        self._refreshed: dict[tuple[bytes, bytes], tuple[str, float]] = {}  # (library, player) -> (endpoint, expiry)
        self._pushed: dict[tuple[bytes, bytes], float] = {}  # (library, player) -> expiry this hub last pushed
        self._sizes: dict[bytes, tuple[int, int]] = {}  # library -> (players, leechers) its last refresh counted
        self.shared = RedisShared(client)

    @classmethod
    def open(cls, path: Path | None, now: float, *, refresh_slack: float = 0.0, url: str = "") -> RedisStore:
        """Connect to the Redis at ``url`` (``redis://host:port/db``); ``path`` is unused."""
        if not url:
            raise StoreError("the redis store needs a server address: --redis redis://HOST:PORT/0")
        try:
            client = redis.Redis.from_url(
                url, socket_timeout=SOCKET_TIMEOUT, socket_connect_timeout=SOCKET_TIMEOUT, health_check_interval=0,
            )
        except ValueError as exc:
            raise StoreError(f"--redis {_shown(url)!r}: {exc}; write it as redis://HOST:PORT/0") from None
        store = cls(client, url, refresh_slack)
        try:
            client.ping()
        except redis.RedisError as exc:
            client.close()
            raise StoreError(f"cannot reach Redis at {_shown(url)}: {exc}; start it or fix --redis") from None
        return store

    def _run(self, script: str, library_id: bytes, args: Sequence[Any], *, keys: int = 5) -> Any:
        try:
            return self._scripts[script](keys=_library_keys(library_id)[:keys], args=args)
        except redis.RedisError as exc:
            raise _unavailable(exc) from None

    def _pipeline(self, build: Sequence[tuple[str, tuple[Any, ...]]]) -> list[Any]:
        """Send the commands in one round trip; their replies. A script Redis forgot (it restarted) is loaded
        and the whole pipeline sent once more (each of our pipelines can be repeated)."""
        for attempt in range(2):
            try:
                pipe = self._redis.pipeline(transaction=False)
                for command, args in build:
                    getattr(pipe, command)(*args)
                return list(pipe.execute())
            except NoScriptError:
                if attempt:
                    raise StoreUnavailable("Redis forgot a script just loaded; is it restarting?") from None
                try:
                    for script in self._scripts.values():
                        self._redis.script_load(script.script)
                except redis.RedisError as exc:
                    raise _unavailable(exc) from None
            except redis.RedisError as exc:
                raise _unavailable(exc) from None
        raise AssertionError("unreachable")

    # -- one library --------------------------------------------------------------------------

    def upsert(self, record: PeerRecord, now: float) -> PeerRecord | None:
        library_id, player_id, endpoint = record.library_id, record.player_id, record.endpoint
        member = library_id + player_id
        keep = _ttl(record.expires_at, now)
        expires = _ms(record.expires_at)
        args = (_ms(now), player_id, endpoint, int(record.seed), expires, record.wire, repr(random.random()), keep)
        commands: list[tuple[str, tuple[Any, ...]]] = [
            ("evalsha", (self._scripts["upsert"].sha, 5, *_library_keys(library_id)[:5], *args)),
            ("zadd", (_GLOBAL + b"entries", {member: expires})),
            ("zadd", (_GLOBAL + b"players", {player_id: expires})),
            ("zadd", (_GLOBAL + b"libs", {library_id: expires})),
            ("zremrangebyscore", (_player_key(player_id), "-inf", _ms(now))),
            ("zadd", (_player_key(player_id), {library_id: expires})),
            ("expire", (_player_key(player_id), keep)),
            ("zremrangebyscore", (_endpoint_key(endpoint), "-inf", _ms(now))),
            ("zadd", (_endpoint_key(endpoint), {member: expires})),
            ("expire", (_endpoint_key(endpoint), keep)),
        ]
        old = _record(library_id, player_id, self._pipeline(commands)[0])
        if old is not None and old.endpoint != endpoint:  # it moved: its old endpoint has one entry fewer
            self._pipeline([("zrem", (_endpoint_key(old.endpoint), member))])
        self._pushed[(library_id, player_id)] = record.expires_at
        return old

    def refresh(
        self, record: PeerRecord, count: int, now: float, *, seeds: bool, rng: random.Random
    ) -> tuple[list[bytes], LibraryCounts] | None:
        return self.refresh_many([(record, count, seeds)], now, rng)[0]

    def refresh_many(
        self, asks: Sequence[tuple[PeerRecord, int, bool]], now: float, rng: random.Random
    ) -> list[tuple[list[bytes], LibraryCounts] | None]:
        return self.refresh_start(asks, now, rng)()

    def refresh_start(
        self, asks: Sequence[tuple[PeerRecord, int, bool]], now: float, rng: random.Random
    ) -> Callable[[], list[tuple[list[bytes], LibraryCounts] | None]]:
        if not asks:
            return list
        stamp, sha = _ms(now), self._scripts["refresh"].sha
        commands: list[bytes] = []
        plans: list[_Plan] = []
        for record, count, seeds in asks:
            keys = _library_keys(record.library_id)[:5]
            frac = rng.random()
            known = self._sizes.get(record.library_id)
            size = 0 if known is None else known[0] if seeds else known[1]
            ranges = _window_ranges(size, count, frac) if size else ()  # none: the script samples
            commands.append(_pack(b"EVALSHA", sha, 5, *keys, stamp, record.player_id, record.wire,
                                  _ms(record.expires_at), _ttl(record.expires_at, now), count, int(seeds),
                                  b"" if ranges else repr(frac)))
            key = keys[1] if seeds else keys[2]
            commands += [_pack(b"ZRANGE", key, start, stop) for start, stop in ranges]
            plans.append(_Plan(record, count, seeds, frac, len(ranges)))
        sent = self._lane.send(self._scripts["refresh"], commands)
        return partial(self._refreshed_from, plans, sent, now)

    def _refreshed_from(self, plans: Sequence[_Plan], sent: _Sent,
                        now: float) -> list[tuple[list[bytes], LibraryCounts] | None]:
        out: list[tuple[list[bytes], LibraryCounts] | None] = []
        replies = iter(self._lane.receive(sent))
        for plan in plans:
            raw = next(replies)
            window: list[bytes] = next(replies) if plan.ranges else []
            if plan.ranges == 2:
                window += next(replies)
            if raw is None:
                out.append(None)
                continue
            record = plan.record
            seeders, leechers = int(raw[0]), int(raw[1])
            self._remember_size(record.library_id, seeders + leechers, leechers)
            if plan.ranges:
                # The window was read at the size last seen; a library that shrank since may leave it short.
                if record.wire in window:
                    window.remove(record.wire)
                wires = window[:plan.count]
                others = (seeders + leechers if plan.seeds else leechers) - (plan.seeds or not record.seed)
                if len(wires) < min(plan.count, others):
                    wires = self._sample_at(record.library_id, plan.count, now, record.player_id, plan.seeds,
                                            plan.frac)
            else:
                wires = raw[2]
            self._refreshed_one(record)
            out.append((wires, LibraryCounts(seeders, leechers, 0)))
        return out

    def _refreshed_one(self, record: PeerRecord) -> None:
        """The global, per-player and per-endpoint scores follow at the next maintain(), for every refresh of the
        tick at once, and only once they lag by the slack: the announce itself is one round trip."""
        key = (record.library_id, record.player_id)
        pushed = self._pushed.get(key)
        if pushed is None or record.expires_at - pushed >= self._slack:
            self._refreshed[key] = (record.endpoint, record.expires_at)
            self._pushed[key] = record.expires_at

    def _remember_size(self, library_id: bytes, everyone: int, leechers: int) -> None:
        if len(self._sizes) >= SIZES_KEPT and library_id not in self._sizes:
            self._sizes.clear()  # a hub that saw this many libraries starts over; each costs one Lua window again
        self._sizes[library_id] = (everyone, leechers)

    def _flush_refreshed(self, now: float) -> None:
        """Push the expiries of the entries refreshed since the last call into the sets over all libraries (XX:
        an entry removed meanwhile is not brought back)."""
        if not self._refreshed:
            return
        refreshed, self._refreshed = self._refreshed, {}
        entries: dict[bytes, int] = {}
        players: dict[bytes, int] = {}
        libraries: dict[bytes, int] = {}
        per_player: dict[bytes, dict[bytes, int]] = {}
        per_endpoint: dict[str, dict[bytes, int]] = {}
        for (library_id, player_id), (endpoint, expiry) in refreshed.items():
            member, expires_at = library_id + player_id, _ms(expiry)
            entries[member] = expires_at
            players[player_id] = max(expires_at, players.get(player_id, 0))
            libraries[library_id] = max(expires_at, libraries.get(library_id, 0))
            per_player.setdefault(player_id, {})[library_id] = expires_at
            per_endpoint.setdefault(endpoint, {})[member] = expires_at
        commands: list[tuple[str, tuple[Any, ...]]] = [
            ("zadd", (_GLOBAL + b"entries", entries, False, True)),
            ("zadd", (_GLOBAL + b"players", players, False, True)),
            ("zadd", (_GLOBAL + b"libs", libraries, False, True)),
        ]
        for player_id, scores in per_player.items():
            commands += [("zadd", (_player_key(player_id), scores, False, True)),
                         ("expire", (_player_key(player_id), _ttl(max(scores.values()) / 1000, now)))]
        for endpoint, scores in per_endpoint.items():
            commands += [("zadd", (_endpoint_key(endpoint), scores, False, True)),
                         ("expire", (_endpoint_key(endpoint), _ttl(max(scores.values()) / 1000, now)))]
        self._pipeline(commands)

    def remove(self, library_id: bytes, player_id: bytes, now: float) -> PeerRecord | None:
        raw, left = self._run("remove", library_id, (_ms(now), player_id))
        old = _record(library_id, player_id, raw)
        if old is not None:
            self._forget(library_id, [(player_id, old.endpoint)], int(left), now)
        return old

    def _forget(self, library_id: bytes, gone: list[tuple[bytes, str]], left: int, now: float) -> None:
        """Take removed entries out of the global, per-player and per-endpoint sets."""
        commands: list[tuple[str, tuple[Any, ...]]] = []
        for player_id, endpoint in gone:
            self._pushed.pop((library_id, player_id), None)
            member = library_id + player_id
            commands += [
                ("zrem", (_GLOBAL + b"entries", member)),
                ("zrem", (_player_key(player_id), library_id)),
                ("zrem", (_endpoint_key(endpoint), member)),
                ("zcount", (_player_key(player_id), f"({_ms(now)}", "+inf")),
            ]
        if left == 0:
            commands.append(("zrem", (_GLOBAL + b"libs", library_id)))
        results = self._pipeline(commands)
        idle = [player_id for n, (player_id, _) in enumerate(gone) if results[4 * n + 3] == 0]
        if idle:
            self._pipeline([("zrem", (_GLOBAL + b"players", *idle))])

    def remove_endpoint(self, library_id: bytes, endpoint: str, now: float) -> list[bytes]:
        found, left = self._run("endpoint", library_id, (_ms(now), endpoint, 1))
        found = [bytes(player_id) for player_id in found]
        if found:
            self._forget(library_id, [(player_id, endpoint) for player_id in found], int(left), now)
        return found

    def find_endpoint(self, library_id: bytes, endpoint: str, now: float) -> list[bytes]:
        found, _ = self._run("endpoint", library_id, (_ms(now), endpoint, 0))
        return [bytes(player_id) for player_id in found]

    def get(self, library_id: bytes, player_id: bytes, now: float) -> PeerRecord | None:
        return _record(library_id, player_id, self._run("get", library_id, (_ms(now), player_id)))

    def sample(
        self, library_id: bytes, count: int, now: float, *, exclude: bytes = b"", seeds: bool = True,
        rng: random.Random,
    ) -> list[PeerRecord]:
        wires = self.sample_wires(library_id, count, now, exclude=exclude, seeds=seeds, rng=rng)
        peers = [_peer(wire) for wire in wires]
        if not peers:
            return []
        expiries = self._pipeline([("zmscore", (_library_keys(library_id)[0], [p.player_id for p in peers]))])[0]
        return [PeerRecord(library_id, p.player_id, p.endpoint, p.seed, float(expires) / 1000, wire)
                for p, expires, wire in zip(peers, expiries, wires, strict=True)]

    def sample_wires(
        self, library_id: bytes, count: int, now: float, *, exclude: bytes = b"", seeds: bool = True,
        rng: random.Random,
    ) -> list[bytes]:
        return self._sample_at(library_id, count, now, exclude, seeds, rng.random())

    def _sample_at(self, library_id: bytes, count: int, now: float, exclude: bytes, seeds: bool,
                   frac: float) -> list[bytes]:
        """Up to ``count`` wires of the window starting at ``floor(frac * size)``."""
        return [bytes(w) for w in self._run("sample", library_id, (_ms(now), count, exclude, int(seeds),
                                                                    repr(frac)))]

    def counts(self, library_id: bytes, now: float) -> LibraryCounts:
        seeders, leechers, completed = self._run("counts", library_id, (_ms(now),), keys=6)
        return LibraryCounts(int(seeders), int(leechers), int(completed))

    def add_completed(self, library_id: bytes) -> None:
        done = _library_keys(library_id)[5]
        self._pipeline([("incr", (done,)), ("expire", (done, DONE_KEEP))])

    # -- over all libraries -----------------------------------------------------------------------

    def libraries_of(self, player_id: bytes, now: float) -> int:
        self._flush_refreshed(now)  # this hub reads its own refreshes at once; other hubs a tick later
        return int(self._pipeline([("zcount", (_player_key(player_id), f"({_ms(now)}", "+inf"))])[0])

    def endpoint_entries(self, endpoint: str, now: float) -> int:
        self._flush_refreshed(now)
        return int(self._pipeline([("zcount", (_endpoint_key(endpoint), f"({_ms(now)}", "+inf"))])[0])

    def room(self, library_id: bytes, player_id: bytes, endpoint: str, now: float) -> Room:
        self._flush_refreshed(now)
        after = f"({_ms(now)}"
        ep_entries, libraries, counts, entries = self._pipeline([
            ("zcount", (_endpoint_key(endpoint), after, "+inf")),
            ("zcount", (_player_key(player_id), after, "+inf")),
            ("evalsha", (self._scripts["counts"].sha, 6, *_library_keys(library_id), _ms(now))),
            ("zcount", (_GLOBAL + b"entries", after, "+inf")),
        ])
        return Room(int(ep_entries), int(libraries), int(counts[0]) + int(counts[1]), int(entries))

    def totals(self, now: float) -> Totals:
        self._flush_refreshed(now)
        after = f"({_ms(now)}"
        players, libraries, entries = self._pipeline([
            ("zcount", (_GLOBAL + b"players", after, "+inf")),
            ("zcount", (_GLOBAL + b"libs", after, "+inf")),
            ("zcount", (_GLOBAL + b"entries", after, "+inf")),
        ])
        return Totals(int(players), int(libraries), int(entries))

    def swarms(self, now: float) -> list[tuple[bytes, int, int]]:
        self._flush_refreshed(now)
        live = self._pipeline([("zrangebyscore", (_GLOBAL + b"libs", f"({_ms(now)}", "+inf"))])[0]
        library_ids = [bytes(lib) for lib in live]
        try:
            pipe = self._redis.pipeline(transaction=False)
            for library_id in library_ids:
                self._scripts["counts"](keys=_library_keys(library_id), args=(_ms(now),), client=pipe)
            results = pipe.execute()
        except redis.RedisError as exc:
            raise _unavailable(exc) from None
        return [(lib, int(seeders), int(leechers)) for lib, (seeders, leechers, _) in zip(library_ids, results,
                                                                                       strict=True)
                if seeders or leechers]

    def maintain(self, now: float) -> None:
        self._flush_refreshed(now)
        if now < self._next_maintain:
            return
        self._next_maintain = now + MAINTAIN_EVERY
        if now >= self._next_prune:  # what expired is forgotten: the table stays as large as the live entries
            self._next_prune = now + PRUNE_EVERY
            self._pushed = {key: expiry for key, expiry in self._pushed.items() if expiry > now}
        self._pipeline([("zremrangebyscore", (_GLOBAL + name, "-inf", _ms(now))) for name in (b"entries", b"players",
                                                                                          b"libs")])

    def close(self) -> None:
        try:
            self._flush_refreshed(time.time())
        except StoreUnavailable:
            pass  # what was not written is re-announced within an interval
        finally:
            self._lane.close()
            self._redis.close()


class RedisShared:
    """What the hubs on one Redis share besides players: unreachable reports and ping verdicts, and
    requests per address (see :class:`~services.hub.store.SharedState`).

    Per endpoint E, under the tag ``{V<E>}``: ``allow`` (the hub may ping E; set
    at announce time, expires by itself), ``pending`` (one hub claimed the ping;
    expires after the window), ``libs`` (libraries E was reported in while the
    ping is pending) and ``verdict`` ("<reachability> <time>"). A report made
    to any hub adds to the same pending ping; only the hub that claimed it
    pings, and its verdict is read by all.
    """

    def __init__(self, client: redis.Redis) -> None:
        self._redis = client
        # KEYS: pending, libs, verdict; ARGV: library (may be empty), window, reachable code, cooldown, now
        self._claim = client.register_script("""
local verdict = redis.call('GET', KEYS[3])
if verdict then
  local code, at = string.match(verdict, '(%d+) (.+)')
  if code == ARGV[3] and tonumber(ARGV[5]) - tonumber(at) < tonumber(ARGV[4]) then return 0 end
end
if ARGV[1] ~= '' then
  redis.call('SADD', KEYS[2], ARGV[1])
  redis.call('EXPIRE', KEYS[2], ARGV[2])
end
if redis.call('SET', KEYS[1], '1', 'NX', 'EX', ARGV[2]) then return 1 end
return 0
""")
        # KEYS: pending, libs, verdict; ARGV: "<code> <now>", keep seconds
        self._done = client.register_script("""
redis.call('SET', KEYS[3], ARGV[1], 'EX', ARGV[2])
local libs = redis.call('SMEMBERS', KEYS[2])
redis.call('DEL', KEYS[1], KEYS[2])
return libs
""")

    @staticmethod
    def _keys(endpoint: str) -> list[bytes]:
        prefix = b"emma:{V" + endpoint.encode() + b"}:"
        return [prefix + b"pending", prefix + b"libs", prefix + b"verdict", prefix + b"allow"]

    def allow(self, endpoint: str, seconds: float) -> None:
        self._call(lambda: self._redis.set(self._keys(endpoint)[3], b"1", ex=max(1, math.ceil(seconds))))

    def may_ping(self, endpoint: str) -> bool:
        return bool(self._call(lambda: self._redis.exists(self._keys(endpoint)[3])))

    def claim(self, endpoint: str, library_id: bytes, window: float, reachable: int, cooldown: float,
              now: float) -> bool:
        """Add ``library_id`` to the pending ping of ``endpoint``; True when this hub should ping it (no
        ping is pending and no reachable verdict is younger than ``cooldown``)."""
        args = (library_id, max(1, math.ceil(window)), reachable, repr(cooldown), repr(now))
        return bool(self._call(lambda: self._claim(keys=self._keys(endpoint)[:3], args=args)))

    def verdict(self, endpoint: str) -> tuple[int, float] | None:
        raw = self._call(lambda: self._redis.get(self._keys(endpoint)[2]))
        if not raw:
            return None
        code, at = raw.split(b" ", 1)
        return int(code), float(at)

    def done(self, endpoint: str, verdict: int, now: float, keep: float) -> list[bytes]:
        """Record a ping's verdict; return (and forget) the libraries it was reported in."""
        args = (f"{verdict} {now!r}", max(1, math.ceil(keep)))
        return sorted(bytes(lib) for lib in self._call(lambda: self._done(keys=self._keys(endpoint)[:3], args=args)))

    def count_requests(self, counts: dict[str, int], window: int) -> dict[str, int]:
        """Add this hub's requests per address in one-second ``window``; return the totals over every hub."""
        if not counts:
            return {}
        try:
            pipe = self._redis.pipeline(transaction=False)
            for address in counts:
                key = b"emma:{R" + address.encode() + b"}:" + str(window).encode()
                pipe.incrby(key, counts[address])
                pipe.expire(key, RATE_KEEP)
            results = pipe.execute()
        except redis.RedisError as exc:
            raise _unavailable(exc) from None
        return {address: int(results[2 * n]) for n, address in enumerate(counts)}

    @staticmethod
    def _call(action: Any) -> Any:
        try:
            return action()
        except redis.RedisError as exc:
            raise _unavailable(exc) from None


def _shown(url: str) -> str:
    """``url`` as it may be printed: without its password."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    host = parts.netloc.rsplit("@", 1)[-1]
    user = f"{parts.username}:***@" if parts.username else ":***@"
    return urlunsplit(parts._replace(netloc=user + host))


def _peer(wire: bytes) -> hub_pb2.Peer:
    """The peer a wire encodes (a ``peers`` field: tag, length, then the Peer message)."""
    return hub_pb2.Peer.FromString(wire[1 + _varint_size(wire, 1):])


def _varint_size(data: bytes, at: int) -> int:
    size = 1
    while data[at + size - 1] & 0x80:
        size += 1
    return size


def _record(library_id: bytes, player_id: bytes, raw: Any) -> PeerRecord | None:
    if not raw:
        return None
    expires, endpoint, seed, wire = raw
    return PeerRecord(library_id, player_id, bytes(endpoint).decode(), bool(int(seed)), float(expires) / 1000,
                      bytes(wire))


def _unavailable(exc: Exception) -> StoreUnavailable:
    return StoreUnavailable(f"Redis is unreachable ({exc}); players are sent to the next hub until it is back")
