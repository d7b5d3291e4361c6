"""How many players of each library one network address brought in: a bound on fake players.

Why. Player ids cost nothing and, in clear, so does naming any endpoint: one host could
announce thousands of made-up players into a library (a new player id and port each,
within the address's request rate), until the library's player cap answered FULL to every
real newcomer and most peers handed out were fakes. A real host runs one player, a NAT a
few dozen; :class:`Crowds` refuses a new player of a library once its address holds
``limit`` of them. Loopback addresses are the hub's own host (a test swarm, a benchmark)
and are not counted; neither is an unknown address (an in-process caller).

How. Each (library, address) keeps its players with the time each expires, renewed by
every announce of that player (as the store renews the player) and forgotten on a stop,
when it expires, or by ``sweep``. Hubs sharing a store each count what they were told:
the bound is per hub. Pure state: the caller passes ``now``.
"""

from __future__ import annotations

from services.hub.addresses import is_loopback


class Crowds:
    def __init__(self, limit: int, expiry: float) -> None:
        self.limit = limit
        self.expiry = expiry
        self._players: dict[tuple[bytes, str], dict[bytes, float]] = {}

    @staticmethod
    def counted(source: str) -> bool:
        return bool(source) and not is_loopback(source)

    def full(self, library_id: bytes, source: str, player_id: bytes, now: float) -> bool:
        """Whether ``player_id``, new to ``library_id``, would be one player too many from ``source``."""
        if not self.counted(source):
            return False
        players = self._players.get((library_id, source))
        if players is None or player_id in players or len(players) < self.limit:
            return False
        self._expire(players, now)
        return len(players) >= self.limit

    def seen(self, library_id: bytes, source: str, player_id: bytes, now: float) -> None:
        """``player_id`` announced ``library_id`` from ``source`` (and the store holds it)."""
        if self.counted(source):
            self._players.setdefault((library_id, source), {})[player_id] = now + self.expiry

    def gone(self, library_id: bytes, source: str, player_id: bytes) -> None:
        """``player_id`` stopped ``library_id``."""
        players = self._players.get((library_id, source))
        if players is not None:
            players.pop(player_id, None)
            if not players:
                del self._players[(library_id, source)]

    def sweep(self, now: float) -> None:
        """Forget every player past its expiry, and the addresses left with none."""
        for key, players in list(self._players.items()):
            self._expire(players, now)
            if not players:
                del self._players[key]

    def __len__(self) -> int:
        return sum(len(players) for players in self._players.values())

    @staticmethod
    def _expire(players: dict[bytes, float], now: float) -> None:
        for player_id in [p for p, expires in players.items() if expires <= now]:
            del players[player_id]
