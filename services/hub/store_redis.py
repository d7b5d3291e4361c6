"""The Redis store: every hub sharing one Redis gives the same answers.

How this works. Keys of one library share the hash tag ``{<library hex>}`` and
are only ever touched together, by one Lua script per operation (so the layout
also works on Redis Cluster, where a script may only touch one slot):

    emma:{L}:exp    ZSET player -> expires_at (seconds since the epoch)
    emma:{L}:all    ZSET player -> a random order, fixed when the player arrives
    emma:{L}:leech  ZSET player -> its random order, leechers only
    emma:{L}:wire   HASH player -> the peer as encoded in replies (PeerRecord.wire)
    emma:{L}:ep     HASH player -> endpoint
    emma:{L}:done   STRING completed downloads (kept DONE_KEEP seconds after the last one)

Expiry needs no sweep over all keys. Every script first trims its own
library: members of ``exp`` with a score ``<= now`` are removed from the five
keys (a ZRANGE by score: nothing to do costs one lookup). A library nobody
touches any more vanishes by itself: each write gives its keys a TTL reaching
past the entry's expiry (never shortening one). Samples are windows of consecutive members of ``all`` (or ``leech``)
from a random start, as in the memory index: the order is a uniformly random
permutation, so a window is a uniformly random subset, and the client's
``rng`` chooses the start (the same rng gives the same choice).

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
entry it refreshes) is one pipeline: the library's refresh script (which also
samples peers and counts the swarm) plus the score updates of the global
sets. New entries, moves and removals take two or three.

Redis trouble: any connection error or timeout raises
:class:`StoreUnavailable`, which the hub answers as UNAVAILABLE ("try the
next hub"); redis-py reconnects by itself on a later call. Clocks: hubs
compare expiry times they wrote with their own clock, so hubs sharing a
Redis need synchronised clocks (NTP), as any fleet has.

Unreachable reports, their pings and verdicts, and requests per address are
shared too (:class:`RedisShared`).
"""

from __future__ import annotations

import math
import random
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import redis
from redis.commands.core import Script
from redis.exceptions import NoScriptError

from services.hub.model import LibraryCounts, PeerRecord, Totals
from services.hub.store_errors import StoreError, StoreUnavailable

DONE_KEEP = 90 * 86_400  # seconds a library's completed counter outlives its last completion
MAINTAIN_EVERY = 1.0
SOCKET_TIMEOUT = 0.5  # a Redis that does not answer in this long is treated as down for this request
_CHUNK = 1000  # members passed to one ZREM/HDEL from Lua (Lua's unpack has a stack limit)
_GLOBAL = b"emma:{emma}:"

# Every library script starts here: KEYS = exp, all, leech, wire, ep; ARGV[1] = now.
_PRELUDE = """
local exp, all, leech, wire, ep = KEYS[1], KEYS[2], KEYS[3], KEYS[4], KEYS[5]
local now = ARGV[1]
local function drop(ids)
  for i = 1, #ids, 1000 do
    local part = {unpack(ids, i, math.min(i + 999, #ids))}
    redis.call('ZREM', exp, unpack(part))
    redis.call('ZREM', all, unpack(part))
    redis.call('ZREM', leech, unpack(part))
    redis.call('HDEL', wire, unpack(part))
    redis.call('HDEL', ep, unpack(part))
  end
end
drop(redis.call('ZRANGE', exp, '-inf', now, 'BYSCORE'))
local function record(player)
  local expires = redis.call('ZSCORE', exp, player)
  if not expires then return false end
  local leecher = redis.call('ZSCORE', leech, player)
  return {expires, redis.call('HGET', ep, player), leecher and 0 or 1, redis.call('HGET', wire, player)}
end
local function keep_for(ttl)
  for _, key in ipairs({exp, all, leech, wire, ep}) do
    local left = redis.call('TTL', key)
    if left ~= -2 and left < ttl then redis.call('EXPIRE', key, ttl) end
  end
end
local function window(key, count, frac, exclude)
  local n = redis.call('ZCARD', key)
  if n == 0 or count <= 0 then return {} end
  local take = math.min(count + 1, n)
  local start = math.floor(frac * n)
  local ids = redis.call('ZRANGE', key, start, start + take - 1)
  if start + take > n then
    local more = redis.call('ZRANGE', key, 0, start + take - n - 1)
    for i = 1, #more do ids[#ids + 1] = more[i] end
  end
  local out = {}
  for i = 1, #ids do
    if ids[i] ~= exclude and #out < count then out[#out + 1] = ids[i] end
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
local player = ARGV[2]
local old = record(player)
redis.call('ZADD', exp, ARGV[5], player)
redis.call('ZADD', all, 'NX', ARGV[7], player)
if ARGV[4] == '1' then redis.call('ZREM', leech, player) else redis.call('ZADD', leech, 'NX', ARGV[7], player) end
redis.call('HSET', wire, player, ARGV[6])
redis.call('HSET', ep, player, ARGV[3])
keep_for(tonumber(ARGV[8]))
return old
"""

# ARGV: now, player, wire, expires, ttl, count, seeds (0/1), frac. Nil when the entry is not
# live with this very wire (endpoint and seed status): the caller then takes the full path.
_REFRESH = _PRELUDE + """
local player = ARGV[2]
if redis.call('HGET', wire, player) ~= ARGV[3] then return false end
redis.call('ZADD', exp, ARGV[4], player)
keep_for(tonumber(ARGV[5]))
local picked = window(ARGV[7] == '1' and all or leech, tonumber(ARGV[6]), tonumber(ARGV[8]), player)
local out = counts()
if #picked > 0 then
  local wires = redis.call('HMGET', wire, unpack(picked))
  for i = 1, #wires do out[#out + 1] = wires[i] end
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

# ARGV: now, count, exclude, seeds (0/1), frac, with records (0/1).
# Returns {ids, wires} or {ids, wires, endpoints, expiries, leecher flags}.
_SAMPLE = _PRELUDE + """
local picked = window(ARGV[4] == '1' and all or leech, tonumber(ARGV[2]), tonumber(ARGV[5]), ARGV[3])
if #picked == 0 then return {{}, {}} end
local out = {picked, redis.call('HMGET', wire, unpack(picked))}
if ARGV[6] == '1' then
  out[3] = redis.call('HMGET', ep, unpack(picked))
  local expiries, leechers = {}, {}
  for i = 1, #picked do
    expiries[i] = redis.call('ZSCORE', exp, picked[i])
    leechers[i] = redis.call('ZSCORE', leech, picked[i]) and 1 or 0
  end
  out[4], out[5] = expiries, leechers
end
return out
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


class RedisStore:
    """A :class:`~services.hub.store.HubStore` in a Redis server shared by any number of hubs."""

    name = "redis"

    def __init__(self, client: redis.Redis) -> None:
        self._redis = client
        self._scripts: dict[str, Script] = {
            name: client.register_script(body)
            for name, body in (("upsert", _UPSERT), ("refresh", _REFRESH), ("remove", _REMOVE), ("get", _GET),
                               ("sample", _SAMPLE), ("counts", _COUNTS), ("endpoint", _ENDPOINT))
        }
        self._next_maintain = 0.0
        self.shared = RedisShared(client)

    def _load_scripts(self) -> None:
        try:
            for script in self._scripts.values():
                self._redis.script_load(script.script)
        except redis.RedisError as exc:
            raise _unavailable(exc) from None

    @classmethod
    def open(cls, path: Path | None, now: float, *, refresh_slack: float = 0.0, url: str = "") -> RedisStore:
        """Connect to the Redis at ``url`` (``redis://host:port/db``); ``path`` and ``refresh_slack`` are unused."""
        if not url:
            raise StoreError("the redis store needs a server address: --redis redis://HOST:PORT/0")
        try:
            client = redis.Redis.from_url(
                url, socket_timeout=SOCKET_TIMEOUT, socket_connect_timeout=SOCKET_TIMEOUT, health_check_interval=0,
            )
        except ValueError as exc:
            raise StoreError(f"--redis {url!r}: {exc}; write it as redis://HOST:PORT/0") from None
        store = cls(client)
        try:
            client.ping()
        except redis.RedisError as exc:
            client.close()
            raise StoreError(f"cannot reach Redis at {url}: {exc}; start it or fix --redis") from None
        return store

    def _run(self, script: str, library_id: bytes, args: Sequence[Any], *, keys: int = 5) -> Any:
        try:
            return self._scripts[script](keys=_library_keys(library_id)[:keys], args=args)
        except redis.RedisError as exc:
            raise _unavailable(exc) from None

    def _pipeline(self, build: Iterable[tuple[str, tuple[Any, ...]]]) -> list[Any]:
        try:
            pipe = self._redis.pipeline(transaction=False)
            for command, args in build:
                getattr(pipe, command)(*args)
            return list(pipe.execute())
        except redis.RedisError as exc:
            raise _unavailable(exc) from None

    # -- one library --------------------------------------------------------------------------

    def upsert(self, record: PeerRecord, now: float) -> PeerRecord | None:
        library_id, player_id, endpoint = record.library_id, record.player_id, record.endpoint
        raw = self._run("upsert", library_id, (
            repr(now), player_id, endpoint, int(record.seed), repr(record.expires_at), record.wire,
            repr(random.random()), _ttl(record.expires_at, now),
        ))
        old = _record(library_id, player_id, raw)
        member = library_id + player_id
        keep = _ttl(record.expires_at, now)
        commands: list[tuple[str, tuple[Any, ...]]] = [
            ("zadd", (_GLOBAL + b"entries", {member: record.expires_at})),
            ("zadd", (_GLOBAL + b"players", {player_id: record.expires_at})),
            ("zadd", (_GLOBAL + b"libs", {library_id: record.expires_at})),
            ("zremrangebyscore", (_player_key(player_id), "-inf", now)),
            ("zadd", (_player_key(player_id), {library_id: record.expires_at})),
            ("expire", (_player_key(player_id), keep)),
            ("zremrangebyscore", (_endpoint_key(endpoint), "-inf", now)),
            ("zadd", (_endpoint_key(endpoint), {member: record.expires_at})),
            ("expire", (_endpoint_key(endpoint), keep)),
        ]
        if old is not None and old.endpoint != endpoint:
            commands.append(("zrem", (_endpoint_key(old.endpoint), member)))
        self._pipeline(commands)
        return old

    def refresh(
        self, record: PeerRecord, count: int, now: float, *, seeds: bool, rng: random.Random
    ) -> tuple[list[bytes], LibraryCounts] | None:
        library_id, player_id = record.library_id, record.player_id
        member = library_id + player_id
        keep = _ttl(record.expires_at, now)
        script = self._scripts["refresh"]
        keys = _library_keys(library_id)[:5]
        args = (repr(now), player_id, record.wire, repr(record.expires_at), keep, count, int(seeds), repr(rng.random()))
        raw = None
        for attempt in range(2):
            try:
                pipe = self._redis.pipeline(transaction=False)
                pipe.evalsha(script.sha, 5, *keys, *args)  # not script(): that asks SCRIPT EXISTS on every execute
                pipe.zadd(_GLOBAL + b"entries", {member: record.expires_at}, xx=True)
                pipe.zadd(_GLOBAL + b"players", {player_id: record.expires_at}, xx=True)
                pipe.zadd(_GLOBAL + b"libs", {library_id: record.expires_at}, xx=True)
                pipe.zadd(_player_key(player_id), {library_id: record.expires_at}, xx=True)
                pipe.expire(_player_key(player_id), keep)
                pipe.zadd(_endpoint_key(record.endpoint), {member: record.expires_at}, xx=True)
                pipe.expire(_endpoint_key(record.endpoint), keep)
                raw = pipe.execute()[0]
                break
            except NoScriptError:  # a restarted Redis forgot its scripts: load them, try once more
                if attempt:
                    raise _unavailable(NoScriptError("scripts could not be loaded")) from None
                self._load_scripts()
            except redis.RedisError as exc:
                raise _unavailable(exc) from None
        if raw is None:
            return None
        seeders, leechers, *wires = raw
        return wires, LibraryCounts(int(seeders), int(leechers), 0)

    def remove(self, library_id: bytes, player_id: bytes, now: float) -> PeerRecord | None:
        raw, left = self._run("remove", library_id, (repr(now), player_id))
        old = _record(library_id, player_id, raw)
        if old is not None:
            self._forget(library_id, [(player_id, old.endpoint)], int(left), now)
        return old

    def _forget(self, library_id: bytes, gone: list[tuple[bytes, str]], left: int, now: float) -> None:
        """Take removed entries out of the global, per-player and per-endpoint sets."""
        commands: list[tuple[str, tuple[Any, ...]]] = []
        for player_id, endpoint in gone:
            member = library_id + player_id
            commands += [
                ("zrem", (_GLOBAL + b"entries", member)),
                ("zrem", (_player_key(player_id), library_id)),
                ("zrem", (_endpoint_key(endpoint), member)),
                ("zcount", (_player_key(player_id), f"({now!r}", "+inf")),
            ]
        if left == 0:
            commands.append(("zrem", (_GLOBAL + b"libs", library_id)))
        results = self._pipeline(commands)
        idle = [player_id for n, (player_id, _) in enumerate(gone) if results[4 * n + 3] == 0]
        if idle:
            self._pipeline([("zrem", (_GLOBAL + b"players", *idle))])

    def remove_endpoint(self, library_id: bytes, endpoint: str, now: float) -> list[bytes]:
        found, left = self._run("endpoint", library_id, (repr(now), endpoint, 1))
        found = [bytes(player_id) for player_id in found]
        if found:
            self._forget(library_id, [(player_id, endpoint) for player_id in found], int(left), now)
        return found

    def find_endpoint(self, library_id: bytes, endpoint: str, now: float) -> list[bytes]:
        found, _ = self._run("endpoint", library_id, (repr(now), endpoint, 0))
        return [bytes(player_id) for player_id in found]

    def get(self, library_id: bytes, player_id: bytes, now: float) -> PeerRecord | None:
        return _record(library_id, player_id, self._run("get", library_id, (repr(now), player_id)))

    def sample(
        self, library_id: bytes, count: int, now: float, *, exclude: bytes = b"", seeds: bool = True,
        rng: random.Random,
    ) -> list[PeerRecord]:
        raw = self._run("sample", library_id, (repr(now), count, exclude, int(seeds), repr(rng.random()), 1))
        if not raw[0]:
            return []
        ids, wires, endpoints, expiries, leechers = raw
        return [
            PeerRecord(library_id, bytes(p), e.decode(), not int(le), float(x), bytes(w))
            for p, w, e, x, le in zip(ids, wires, endpoints, expiries, leechers, strict=True)
        ]

    def sample_wires(
        self, library_id: bytes, count: int, now: float, *, exclude: bytes = b"", seeds: bool = True,
        rng: random.Random,
    ) -> list[bytes]:
        raw = self._run("sample", library_id, (repr(now), count, exclude, int(seeds), repr(rng.random()), 0))
        return [bytes(w) for w in raw[1]]

    def counts(self, library_id: bytes, now: float) -> LibraryCounts:
        seeders, leechers, completed = self._run("counts", library_id, (repr(now),), keys=6)
        return LibraryCounts(int(seeders), int(leechers), int(completed))

    def add_completed(self, library_id: bytes) -> None:
        done = _library_keys(library_id)[5]
        self._pipeline([("incr", (done,)), ("expire", (done, DONE_KEEP))])

    # -- over all libraries -----------------------------------------------------------------------

    def libraries_of(self, player_id: bytes, now: float) -> int:
        return int(self._pipeline([("zcount", (_player_key(player_id), f"({now!r}", "+inf"))])[0])

    def endpoint_entries(self, endpoint: str, now: float) -> int:
        return int(self._pipeline([("zcount", (_endpoint_key(endpoint), f"({now!r}", "+inf"))])[0])

    def totals(self, now: float) -> Totals:
        after = f"({now!r}"
        players, libraries, entries = self._pipeline([
            ("zcount", (_GLOBAL + b"players", after, "+inf")),
            ("zcount", (_GLOBAL + b"libs", after, "+inf")),
            ("zcount", (_GLOBAL + b"entries", after, "+inf")),
        ])
        return Totals(int(players), int(libraries), int(entries))

    def swarms(self, now: float) -> list[tuple[bytes, int, int]]:
        live = self._pipeline([("zrangebyscore", (_GLOBAL + b"libs", f"({now!r}", "+inf"))])[0]
        library_ids = [bytes(lib) for lib in live]
        try:
            pipe = self._redis.pipeline(transaction=False)
            for library_id in library_ids:
                self._scripts["counts"](keys=_library_keys(library_id), args=(repr(now),), client=pipe)
            results = pipe.execute()
        except redis.RedisError as exc:
            raise _unavailable(exc) from None
        return [(lib, int(seeders), int(leechers)) for lib, (seeders, leechers, _) in zip(library_ids, results,
                                                                                       strict=True)
                if seeders or leechers]

    def maintain(self, now: float) -> None:
        if now < self._next_maintain:
            return
        self._next_maintain = now + MAINTAIN_EVERY
        self._pipeline([("zremrangebyscore", (_GLOBAL + name, "-inf", now)) for name in (b"entries", b"players",
                                                                                          b"libs")])

    def close(self) -> None:
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
                pipe.expire(key, 2)
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


def _record(library_id: bytes, player_id: bytes, raw: Any) -> PeerRecord | None:
    if not raw:
        return None
    expires, endpoint, seed, wire = raw
    return PeerRecord(library_id, player_id, bytes(endpoint).decode(), bool(int(seed)), float(expires), bytes(wire))


def _unavailable(exc: redis.RedisError) -> StoreUnavailable:
    return StoreUnavailable(f"Redis is unreachable ({exc}); players are sent to the next hub until it is back")
