"""The swarm simulator (tools/simulate.py): the bound, complete swarms, churn, a seed leaving, determinism."""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

from services.runtime.units import parse_size
from tools import simulate
from tools.simulator.engine import Simulation
from tools.simulator.events import EventQueue
from tools.simulator.network import Links
from tools.simulator.report import percentile
from tools.simulator.scenario import RateClass, Scenario, assign, kumar_ross_bound, parse_classes

ROOT = Path(__file__).resolve().parents[2]
FAST = (RateClass(1.0, 8 << 20, 8 << 20),)


def small(**changes: object) -> Scenario:
    base: dict[str, object] = {"players": 8, "seeds": 1, "size": 2 << 20, "book_size": 128 << 10,
                               "classes": FAST, "latency": 0.001, "seed": 7}
    return Scenario(**{**base, **changes})  # type: ignore[arg-type]


def test_the_bound_is_the_largest_of_its_three_terms() -> None:
    # F/u_seed: the seed's upload is the limit (100 / 10)
    assert kumar_ross_bound(100, [10.0], [10.0] * 4, [20.0] * 4) == pytest.approx(10.0)
    # N F / (u_seed + sum u_i): the swarm's upload is the limit (9 * 100 / (10 + 9))
    assert kumar_ross_bound(100, [10.0], [1.0] * 9, [100.0] * 9) == pytest.approx(900 / 19)
    # F / d_min: the slowest download is the limit (100 / 2)
    assert kumar_ross_bound(100, [10.0], [100.0, 100.0], [100.0, 2.0]) == pytest.approx(50.0)
    # several seeds add up: 5 seeds of 300 and 2,600 leechers of 300, 3,000 units: the download, 10
    assert kumar_ross_bound(3000, [300.0] * 5, [300.0] * 2600, [300.0] * 2600) == pytest.approx(10.0)


def test_a_share_one_end_cannot_use_goes_to_the_flows_at_the_other_end() -> None:
    # A sends to X and Y; X also downloads from B, C and D. X's download holds A's flow to it at a quarter
    # of X's link, so A's other flow, to Y, takes the rest of A's upload (max-min fairness, as TCP shares
    # the links), not half of it.
    queue = EventQueue()
    links = Links(queue, [100.0] * 6, [100.0] * 6)
    a, b, c, d, x, y = range(6)
    ended: dict[str, float] = {}

    def end(name: str) -> Callable[[float], None]:
        return lambda now: ended.__setitem__(name, now)

    for name, src in (("ax", a), ("bx", b), ("cx", c), ("dx", d)):
        links.send(name.encode(), src, x, 1000, end(name))
    links.send(b"ay", a, y, 150, end("ay"))
    assert sorted(flow.rate for flow in links.up[a].values()) == [25.0, 75.0]
    assert [flow.rate for flow in links.down[x].values()] == [25.0] * 4
    queue.run(10.0, lambda: "ay" in ended)
    assert ended["ay"] == pytest.approx(2.0)  # 150 bytes at 75/s (at 50/s, A's upload a quarter idle: 3.0)


def test_rate_classes_sizes_and_percentiles() -> None:
    assert parse_size("3G") == 3 << 30 and parse_size("64K") == 64 << 10 and parse_size("1000") == 1000
    assert parse_classes("0.5:100M,0.5:20M/40M") == [RateClass(0.5, 100 << 20, 100 << 20),
                                                      RateClass(0.5, 20 << 20, 40 << 20)]
    assert [c.upload for c in assign(parse_classes("0.25:4,0.75:1"), 4)] == [4, 1, 1, 1]
    assert percentile([1.0, 2.0, 3.0, 4.0], 50) == 2.0 and percentile([1.0, 2.0, 3.0, 4.0], 99) == 4.0
    assert percentile([1.0, math.inf], 99) == math.inf
    with pytest.raises(ValueError):
        parse_classes("0.5:0")


def test_a_32_player_swarm_completes_with_every_book_everywhere() -> None:
    simulation = Simulation(small(players=32, seeds=2))
    result = simulation.run()
    assert len(result.completions) == 32 and result.unfinished == 0 and result.failed == 0
    for player in simulation.players:
        served = player.distributor.served[simulation.library.id]
        assert served.have.complete
        assert not player.requestor.downloads
    assert result.completions[0] >= result.bound  # nobody beats the bound
    assert result.redundancy() >= 1.0  # every book left a seed at least once


def test_the_same_seed_gives_the_same_figures_and_another_seed_others() -> None:
    first = Simulation(small(players=12)).run().to_json()
    again = Simulation(small(players=12)).run().to_json()
    other = Simulation(small(players=12, seed=8)).run().to_json()
    assert first == again
    assert first["completions"] != other["completions"]


def test_runs_agree_bit_for_bit_across_processes_with_different_hash_seeds() -> None:
    args = [sys.executable, str(ROOT / "tools" / "simulate.py"), "--json", "--players", "12", "--size", "2M",
            "--book-size", "128K", "--classes", "0.5:8M,0.5:4M", "--jitter", "0.002", "--churn", "0.2"]
    outputs = []
    for hash_seed in ("1", "2"):
        env = {**os.environ, "PYTHONHASHSEED": hash_seed}
        done = subprocess.run(args, capture_output=True, text=True, env=env, cwd=ROOT, timeout=60, check=True)
        figures = json.loads(done.stdout)
        del figures["host"]  # wall time and memory
        outputs.append(figures)
    assert outputs[0] == outputs[1]


def test_churners_leave_and_everyone_who_stays_finishes() -> None:
    result = Simulation(small(players=16, churn=0.25)).run()
    assert result.churned == 4
    assert len(result.completions) == 12 and result.unfinished == 0


def test_a_seed_that_leaves_after_one_copy_of_every_book_still_lets_everyone_finish() -> None:
    simulation = Simulation(small(players=8, seeds_leave="copy"))
    result = simulation.run()
    seed = simulation.players[0]
    assert not seed.alive and 0 in simulation.left_at
    assert result.seeds[0].books_sent == result.books
    assert len(result.completions) == 8 and result.unfinished == 0
    assert max(result.completions) > simulation.left_at[0]  # some finished from the leechers alone


def test_a_player_that_never_finishes_counts_as_never_and_misses_every_target(capsys) -> None:
    code = simulate.main(["--players", "4", "--size", "2M", "--book-size", "128K", "--classes", "8M",
                          "--horizon", "0.1", "--target-last", "100"])
    assert code == 1
    out, err = capsys.readouterr()
    assert "never" in out and "TARGET MISSED" in err


def test_json_output_has_the_figures_the_issue_asks_for(capsys) -> None:
    code = simulate.main(["--json", "--players", "6", "--size", "1M", "--book-size", "64K", "--classes", "8M",
                          "--target-p99", "1000"])
    assert code == 0
    figures = json.loads(capsys.readouterr().out)
    assert set(figures["completion"]) == {"p50", "p90", "p99", "p99.9", "last"}
    assert set(figures["completion"]["p99"]) == {"seconds", "ratio"}
    assert figures["completion"]["last"]["ratio"] >= 1.0
    assert figures["finished"] == 6 and figures["unfinished"] == 0
    assert figures["seeds"]["redundancy"] >= 1.0 and len(figures["seeds"]["each"]) == 1
    assert figures["idle_upload"]["series"] and 0.0 <= figures["idle_upload"]["mean"] <= 1.0
    assert figures["cost"]["events"] > 0 and figures["host"]["events_per_second"] > 0


def test_plot_without_matplotlib_is_one_clear_line(capsys, monkeypatch, tmp_path) -> None:
    monkeypatch.setitem(sys.modules, "matplotlib", None)  # import matplotlib now raises ImportError
    code = simulate.main(["--players", "2", "--size", "256K", "--book-size", "64K", "--classes", "8M",
                          "--plot", str(tmp_path / "out.png")])
    assert code == 2
    assert capsys.readouterr().err.strip().splitlines() == [
        "simulate: --plot needs matplotlib: pip install -e '.[plot]'"]
    assert not (tmp_path / "out.png").exists()


def test_bench_swarm_gives_the_simulator_the_namespace_links_in_order() -> None:
    from tools.bench_swarm import link_classes

    classes = link_classes([12.5e6, 12.5e6, 2.5e6, 2.5e6, 2.5e6])
    assert classes == (RateClass(2.0, 12_500_000, 1_250_000_000), RateClass(3.0, 2_500_000, 250_000_000))
    scenario = Scenario(players=5, classes=classes)
    assert [c.upload for c in scenario.leecher_classes()] == [12_500_000] * 2 + [2_500_000] * 3


def test_tcp_headers_leave_a_link_the_payload_of_its_full_segments() -> None:
    # 1448 bytes of payload per 1514 on the wire; a leecher's upload also carries an ACK of 66 bytes for
    # every two segments it receives, a seed's does not; without tcp_headers a link carries payload alone.
    assert Scenario().payload_shares(seed=True) == (1.0, 1.0)
    headers = Scenario(tcp_headers=True)
    assert headers.payload_shares(seed=True) == pytest.approx((1448 / 1514, 1448 / 1514))
    assert headers.payload_shares(seed=False) == pytest.approx((1448 / 1547, 1448 / 1514))


def test_a_seed_bound_swarm_takes_longer_by_the_headers_its_link_carries() -> None:
    plain = Simulation(small(players=1)).run()
    headers = Simulation(small(players=1, tcp_headers=True)).run()
    assert headers.completions[0] / plain.completions[0] == pytest.approx(1514 / 1448, rel=0.01)
