"""Seeding limits and --on-complete commands: plain functions, and one real child process."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
from structlog.testing import capture_logs

from services.peer.bitfield import Bitfield
from services.peer.hooks import CommandError, Hooks, argv, parse
from services.peer.seeding import limit_reached
from services.peer.state import LibraryRecord, Status
from services.runtime import config as config_mod
from tests.polling import wait_for

MIB = 1 << 20


def record(status: Status = Status.SEEDING, uploaded: int = 0, completed_at: float | None = 1000.0) -> LibraryRecord:
    return LibraryRecord(id="ab" * 32, lib_path=Path("/l"), stuff_path=Path("/s"), name="x", size=10 * MIB,
                         books=10, status=status, have=Bitfield.full(10), uploaded=uploaded, downloaded=0,
                         fetched=0, added_at=0.0, completed_at=completed_at)


def test_no_limit_never_stops_seeding() -> None:
    assert limit_reached(record(uploaded=10**12), 0, 0, 10**9) == ""


def test_the_ratio_limit_counts_what_was_sent_against_the_size() -> None:
    assert limit_reached(record(uploaded=20 * MIB - 1), 2, 0, 1000.0) == ""
    assert limit_reached(record(uploaded=20 * MIB), 2, 0, 1000.0).startswith("seeding ratio 2 reached")
    assert limit_reached(record(Status.DOWNLOADING, uploaded=20 * MIB), 2, 0, 1000.0) == ""  # only a seed


def test_the_time_limit_counts_from_completion() -> None:
    assert limit_reached(record(), 0, 1.5, 1000.0 + 1.5 * 3600 - 1) == ""
    assert limit_reached(record(), 0, 1.5, 1000.0 + 1.5 * 3600).startswith("seeded for 1.5 h (seeding.hours)")
    assert limit_reached(record(completed_at=None), 0, 1.5, 10**9) == ""


@pytest.mark.parametrize("value", [-1, "x", float("nan"), True, 1e7])
def test_seeding_limits_refuse_what_is_no_limit(tmp_path: Path, value: object) -> None:
    config = config_mod.Config(data_dir=tmp_path, values={})
    with pytest.raises(config_mod.ConfigError):
        config.set("seeding.ratio", value)
    assert config.set("seeding.hours", "2.5") == 2.5


def test_commands_are_words_and_the_path_is_one_more() -> None:
    assert argv("cp -n '/a b'", Path("/dl/x; rm -rf ~")) == ["cp", "-n", "/a b", "/dl/x; rm -rf ~"]
    for bad, why in [("", "empty"), ("echo 'open", "cannot read"), ("no-such-program-x", "no program"),
                     ("echo \x1b[2J", "printable")]:
        with pytest.raises(CommandError, match=why):
            parse(bad)


def test_a_command_runs_in_the_background_and_its_failure_is_logged(tmp_path: Path) -> None:
    hooks = Hooks(tmp_path / "logs" / "on-complete.out")
    with capture_logs() as logs:
        hooks.start("ab", f"{sys.executable} -c 'import sys; print(sys.argv[1]); raise SystemExit(3)'", tmp_path / "x")
        hooks.start("cd", "no-such-program-x", tmp_path / "y")

        def ended() -> bool:
            hooks.reap()
            return not hooks.running
        wait_for(ended, 60, "the command to end")
    failed = [(e["library"], e.get("status")) for e in logs if e["event"] == "on_complete_failed"]
    assert failed == [("cd", None), ("ab", 3)]
    assert (tmp_path / "logs" / "on-complete.out").read_text() == f"{tmp_path / 'x'}\n"
