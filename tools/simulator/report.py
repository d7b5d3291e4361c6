"""What a run produced, as figures: completion percentiles against the bound, the seeds' redundancy,
idle upload capacity over time; printed, as JSON, or plotted (matplotlib, an optional extra)."""

from __future__ import annotations

import dataclasses
import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tools.simulator.scenario import Scenario

PERCENTILES = (50.0, 90.0, 99.0, 99.9)


@dataclass(frozen=True)
class Sample:
    """At ``time``: bytes/s all uploads moved since the previous sample, and what the live players could."""

    time: float
    upload: float
    capacity: float

    @property
    def idle(self) -> float:
        return max(0.0, 1.0 - self.upload / self.capacity) if self.capacity else 1.0


@dataclass(frozen=True)
class Seeds:
    """One seed's uploads (DistributorLogic's ``Served.redundancy``)."""

    sends: int
    books_sent: int
    books_repeated: int
    most: int
    early_repeats: int


def percentile(sorted_values: list[float], p: float) -> float:
    """Nearest rank: the smallest value with at least p% of the values at or below it."""
    if not sorted_values:
        return math.inf
    rank = max(1, math.ceil(p / 100 * len(sorted_values)))
    return sorted_values[rank - 1]


@dataclass
class Result:
    scenario: Scenario
    bound: float
    books: int
    completions: list[float]  # seconds from join to finish, of the leechers that stayed and finished
    unfinished: int  # leechers that stayed and never finished: failures, counted as never
    failed: int
    churned: int
    churned_finished: int
    seeds: list[Seeds]
    samples: list[Sample]
    end: float
    events: int
    messages: int
    books_delivered: int
    hub_requests: int
    turns: int
    logs: dict[str, int] = field(default_factory=dict)

    def times(self) -> list[float]:
        """Every staying leecher's completion, a player that never finished as infinity."""
        return self.completions + [math.inf] * self.unfinished

    def figures(self) -> dict[str, float]:
        times = self.times()
        out = {f"p{p:g}": percentile(times, p) for p in PERCENTILES}
        out["last"] = times[-1] if times else math.inf
        return out

    def ratio(self, name: str) -> float:
        return self.figures()[name] / self.bound if self.bound else math.inf

    def redundancy(self) -> float:
        """How many times, on average, each book left a seed."""
        return sum(s.sends for s in self.seeds) / self.books if self.books else 0.0

    def idle_mean(self) -> float:
        """Idle upload capacity, averaged over the samples until the last staying leecher finished."""
        last = max(self.completions, default=0.0)
        kept = [s for s in self.samples[1:] if s.time <= last + 1e-9] or self.samples[1:]
        return sum(s.idle for s in kept) / len(kept) if kept else 1.0

    def to_json(self) -> dict[str, Any]:
        figures = self.figures()
        scenario = dataclasses.asdict(self.scenario)
        return {
            "scenario": scenario,
            "bound": self.bound,
            "books": self.books,
            "completion": {name: {"seconds": _finite(value), "ratio": _finite(value / self.bound)}
                           for name, value in figures.items()},
            "finished": len(self.completions), "unfinished": self.unfinished, "failed": self.failed,
            "churned": self.churned, "churned_finished": self.churned_finished,
            "seeds": {"redundancy": self.redundancy(), "each": [dataclasses.asdict(s) for s in self.seeds]},
            "idle_upload": {"mean": self.idle_mean(),
                            "series": [[s.time, s.idle] for s in self.samples[1:]]},
            "completions": self.completions,
            "cost": {"events": self.events, "messages": self.messages, "books": self.books_delivered,
                     "hub_requests": self.hub_requests, "turns": self.turns, "simulated_seconds": self.end},
            "logs": self.logs,
        }

    def text(self) -> str:
        s = self.scenario
        lines = [f"{s.players} leechers, {s.seeds} seed(s), {_size(s.size)} in {self.books} books of "
                 f"{_size(s.book_size)}; Kumar-Ross bound {self.bound:.3f} s",
                 f"{'':8} {'seconds':>9} {'x bound':>8}"]
        for name, value in self.figures().items():
            lines.append(f"{name:8} {_seconds(value):>9} {_seconds(value / self.bound):>8}")
        lines.append(f"finished {len(self.completions)}, never finished {self.unfinished} (failed {self.failed}), "
                     f"churned {self.churned} ({self.churned_finished} had finished)")
        each = ", ".join(f"{x.sends / self.books:.2f}x (most {x.most})" for x in self.seeds)
        lines.append(f"seeds' upload redundancy: {self.redundancy():.2f} sends per book [{each}]")
        lines.append(f"idle upload capacity until the last finished: {100 * self.idle_mean():.1f}% on average")
        lines.append("idle over time: " + _sparkline([x.idle for x in self.samples[1:]]))
        if self.logs:
            lines.append("logged: " + ", ".join(f"{k} {v}" for k, v in self.logs.items()))
        return "\n".join(lines)


def _finite(value: float) -> float | None:
    return None if math.isinf(value) or math.isnan(value) else value


def _seconds(value: float) -> str:
    return "never" if math.isinf(value) else f"{value:.3f}"


def _size(n: int) -> str:
    for unit, scale in (("GiB", 1 << 30), ("MiB", 1 << 20), ("KiB", 1 << 10)):
        if n >= scale:
            return f"{n / scale:g} {unit}"
    return f"{n} B"


def _sparkline(values: list[float], width: int = 50) -> str:
    if not values:
        return ""
    marks = " .:-=+*#%@"
    step = max(1, len(values) // width)
    chunks = [values[i:i + step] for i in range(0, len(values), step)]
    return "[" + "".join(marks[min(9, int(10 * sum(c) / len(c)))] for c in chunks) + "] (' ' busy .. '@' idle)"


class PlotUnavailable(RuntimeError):
    pass


def check_plotting() -> None:
    """Raise PlotUnavailable, with what to install, unless matplotlib can be imported."""
    try:
        import matplotlib

        matplotlib.use("Agg")
    except ImportError:
        raise PlotUnavailable("--plot needs matplotlib: pip install -e '.[plot]'") from None


def plot(result: Result, path: Path) -> None:
    """The completion CDF against the bound, and the aggregate upload over time, in one PNG."""
    check_plotting()
    import matplotlib.pyplot as plt
    figure, (cdf, upload) = plt.subplots(1, 2, figsize=(12, 4.5))
    times = result.completions
    total = len(times) + result.unfinished
    cdf.step(times, [(i + 1) / total for i in range(len(times))], where="post", label="players finished")
    cdf.axvline(result.bound, color="red", linestyle="--", label=f"Kumar-Ross bound {result.bound:.2f} s")
    cdf.set_xlabel("seconds from joining")
    cdf.set_ylabel("fraction of leechers")
    cdf.set_title("completion")
    cdf.legend(loc="lower right")
    samples = result.samples[1:]
    upload.plot([x.time for x in samples], [x.upload / (1 << 20) for x in samples], label="uploaded")
    upload.plot([x.time for x in samples], [x.capacity / (1 << 20) for x in samples], linestyle=":",
                label="capacity of live players")
    upload.set_xlabel("seconds")
    upload.set_ylabel("MiB/s, all players")
    upload.set_title("aggregate upload")
    upload.legend(loc="lower right")
    s = result.scenario
    figure.suptitle(f"{s.players} leechers, {s.seeds} seed(s), {_size(s.size)}, books of {_size(s.book_size)}")
    figure.tight_layout()
    figure.savefig(path, dpi=100)
    plt.close(figure)


def dumps(result: Result) -> str:
    return json.dumps(result.to_json(), indent=1)
