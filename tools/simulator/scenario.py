"""What one simulated run is: players, their links, when they come and go, and the bound it is judged by."""

from __future__ import annotations

import random
from dataclasses import dataclass

from services.runtime.units import parse_size

# What a link carries besides the payload, as tc's shaping counts it (Scenario.tcp_headers). A full TCP segment
# on a 1500-byte MTU holds MSS bytes of payload behind TCP's header with timestamps (32 bytes), IP's (20) and
# Ethernet's (14); the receiver answers every SEGMENTS_PER_ACK segments (delayed ACKs) with an ACK of those
# headers alone, on its own upload.
MSS = 1448
HEADERS = 32 + 20 + 14  # TCP with timestamps, IP, Ethernet
SEGMENT_ON_WIRE = MSS + HEADERS
ACK_ON_WIRE = HEADERS
SEGMENTS_PER_ACK = 2


@dataclass(frozen=True)
class RateClass:
    """A share of the leechers and their link: upload and download in bytes/s."""

    share: float
    upload: int
    download: int


def parse_classes(spec: str) -> list[RateClass]:
    """``0.5:100M,0.5:20M`` (share:rate, the rate both ways) or ``0.5:100M/400M`` (upload/download);
    a lone ``300M`` is one class of everyone."""
    classes = []
    for part in spec.split(","):
        share, _, link = part.strip().rpartition(":")
        up, _, down = link.partition("/")
        upload = parse_size(up)
        download = parse_size(down) if down else upload
        if upload <= 0 or download <= 0:
            raise ValueError(f"rate class {part!r}: rates must be positive")
        classes.append(RateClass(float(share) if share else 1.0, upload, download))
    if sum(c.share for c in classes) <= 0:
        raise ValueError(f"rate classes {spec!r}: shares must add up to more than 0")
    return classes


def assign(classes: list[RateClass], count: int) -> list[RateClass]:
    """One class per leecher, in order: each class gets its share of ``count`` (the last takes the rest)."""
    total = sum(c.share for c in classes)
    out: list[RateClass] = []
    for index, rate_class in enumerate(classes):
        wanted = count - len(out) if index == len(classes) - 1 else round(count * rate_class.share / total)
        out += [rate_class] * max(0, min(wanted, count - len(out)))
    return out


def kumar_ross_bound(size: int, seed_uploads: list[float], uploads: list[float], downloads: list[float]) -> float:
    """The least time in which seeds uploading ``seed_uploads`` can get ``size`` bytes to every leecher:
    max{F/u_seed, F/d_min, N F/(u_seed + sum u_i)} (Kumar and Ross, 2006), u_seed the seeds' total."""
    if not uploads:
        return 0.0
    u_seed = sum(seed_uploads)
    return max(size / u_seed, size / min(downloads), len(uploads) * size / (u_seed + sum(uploads)))


@dataclass(frozen=True)
class Scenario:
    """Everything that decides a run; the same scenario and seed give the same result, bit for bit."""

    players: int = 16  # leechers
    seeds: int = 1
    size: int = 64 << 20
    book_size: int = 1 << 20
    classes: tuple[RateClass, ...] = (RateClass(1.0, 20 << 20, 20 << 20),)
    seed_upload: int = 0  # bytes/s of each seed's link; 0: the first class's upload
    latency: float = 0.001  # seconds, one way between any two players (and to the hub)
    jitter: float = 0.0  # each player's own extra one-way latency, uniform in [0, jitter]
    join_spread: float = 0.0  # leechers join uniformly over this many seconds (0: all at once)
    churn: float = 0.0  # this fraction of the leechers leaves before finishing, never to return
    seeds_leave: str = "never"  # "never", "copy" (after each book left the seeds once) or seconds
    capped: bool = False  # every player's token bucket set to its link's upload (else the link is the limit)
    tcp_headers: bool = False  # links carry TCP/IP's headers and ACKs too (a shaped real link); else payload only
    slots: int = 8
    turn: float = 0.002  # a player's loop turn: messages arriving within it are handled together
    horizon: float = 0.0  # give up at this simulated time (0: 20x the bound + the join spread + 60 s)
    seed: int = 1

    def payload_shares(self, seed: bool) -> tuple[float, float]:
        """The shares of a player's upload and download rates that carry payload. With ``tcp_headers``, a
        download carries MSS of every SEGMENT_ON_WIRE bytes (0.956); an upload as much, less the ACKs of what
        the player receives (a leecher receives about what it sends, over a run: 0.936 in all); a seed receives
        nothing. Without, links carry payload alone (a token bucket counts payload)."""
        if not self.tcp_headers:
            return 1.0, 1.0
        acks = 0.0 if seed else ACK_ON_WIRE / SEGMENTS_PER_ACK
        return MSS / (SEGMENT_ON_WIRE + acks), MSS / SEGMENT_ON_WIRE

    def seed_link(self) -> int:
        return self.seed_upload or self.classes[0].upload

    def leecher_classes(self) -> list[RateClass]:
        return assign(list(self.classes), self.players)

    def churners(self) -> list[int]:
        """Which leechers (by index) leave before they finish."""
        count = round(self.players * self.churn)
        return sorted(random.Random(f"churn-{self.seed}").sample(range(self.players), count))

    def stayers(self) -> list[int]:
        gone = set(self.churners())
        return [i for i in range(self.players) if i not in gone]

    def bound(self) -> float:
        """The Kumar-Ross bound over the leechers that stay (a churner's demand and upload both leave)."""
        classes = self.leecher_classes()
        kept = [classes[i] for i in self.stayers()]
        return kumar_ross_bound(self.size, [float(self.seed_link())] * self.seeds,
                                [float(c.upload) for c in kept], [float(c.download) for c in kept])

    def end(self) -> float:
        return self.horizon or 20 * self.bound() + self.join_spread + 60.0
