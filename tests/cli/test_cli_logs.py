"""``emma logs`` and the log reading behind it and the console's View Logs."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pexpect
import pytest

from services.cli.logs_view import Entry, Follower, level_rank, parse, render
from tests.cli.helpers import ctrl_c_reaches_it, emma

LINES: list[dict[str, object]] = [
    {"timestamp": "2026-01-02T10:11:12.345678Z", "level": "debug", "event": "tick", "process": "requestor", "pid": 7,
     "logger": "emma.services"},
    {"timestamp": "2026-01-02T10:11:13.000001Z", "level": "info", "event": "library_added", "process": "requestor",
     "library": "ab12", "name": "big file.bin"},
    {"timestamp": "2026-01-02T10:11:14.5Z", "level": "warning", "event": "service_failed", "process": "maestro",
     "service": "distributor", "retry_in": 0.1},
    {"timestamp": "2026-01-02T10:11:15.000000Z", "level": "error", "event": "download_failed", "process": "requestor",
     "error": "disk full"},
]


def write_log(data: Path, kind: str, entries: list[dict[str, object]], extra: str = "") -> Path:
    path = data / "logs" / f"{kind}.log"
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a", encoding="utf-8") as out:
        out.write("".join(json.dumps(e) + "\n" for e in entries) + extra)
    return path


@pytest.fixture
def data(tmp_path: Path) -> Path:
    return tmp_path / "data"


# --- the command --------------------------------------------------------------------------------------------


def test_text_newest_last_with_fields(data: Path) -> None:
    write_log(data, "events", LINES)
    result = emma(data, "logs")
    assert result.exit_code == 0, result.output
    assert result.stdout.splitlines() == [
        "2026-01-02 10:11:12.345 DEBUG    requestor   tick",
        '2026-01-02 10:11:13.000 INFO     requestor   library_added library=ab12 name="big file.bin"',
        "2026-01-02 10:11:14.5 WARNING  maestro     service_failed service=distributor retry_in=0.1",
        "2026-01-02 10:11:15.000 ERROR    requestor   download_failed error=\"disk full\"",
    ]


def test_level_count_and_kind(data: Path) -> None:
    write_log(data, "debug", LINES)
    write_log(data, "events", LINES[:1])
    result = emma(data, "logs", "--kind", "debug", "--level", "info", "-n", "2")
    assert [line.split()[4] for line in result.stdout.splitlines()] == ["service_failed", "download_failed"]
    assert len(emma(data, "logs", "--kind", "debug", "--lines", "0").stdout.splitlines()) == 0
    assert len(emma(data, "logs", "--level", "error").stdout.splitlines()) == 0


def test_json_lines(data: Path) -> None:
    write_log(data, "errors", LINES, extra="a stray line that is not JSON\n")
    result = emma(data, "logs", "--kind", "errors", "--level", "info", "--json")
    assert result.exit_code == 0
    rows = [json.loads(line) for line in result.stdout.splitlines()]
    assert [r["event"] for r in rows] == ["library_added", "service_failed", "download_failed",
                                          "a stray line that is not JSON"]  # a line without a level counts as info
    assert rows[1] == {"timestamp": "2026-01-02T10:11:14.5Z", "level": "warning", "process": "maestro",
                       "event": "service_failed", "service": "distributor", "retry_in": 0.1}


def test_no_log_yet_says_how_to_get_one(data: Path) -> None:
    result = emma(data, "logs", "--kind", "services")
    assert result.exit_code == 0 and result.stdout == ""
    assert result.stderr.strip() == (f"no services log yet at {data / 'logs' / 'services.log'}; it appears once "
                                     "the player runs (`emma peer --detach`)")


@pytest.mark.parametrize(("args", "text"), [(["--kind", "chat"], "--kind"), (["--level", "loud"], "--level"),
                                            (["-n", "-1"], "-n")])
def test_bad_options_are_usage_errors(data: Path, args: list[str], text: str) -> None:
    result = emma(data, "logs", *args)
    assert result.exit_code == 2
    assert result.stderr.startswith("error: invalid value for") and text in result.stderr
    assert result.stderr.count("\n") == 1 and "see `emma logs --help`" in result.stderr


def test_follow_prints_new_lines_until_ctrl_c(data: Path) -> None:
    path = write_log(data, "services", LINES[:1])
    child = pexpect.spawn(sys.executable, ["-m", "services.cli.app", "--data-dir", str(data), "logs", "--kind",
                                           "services", "--follow", "--json"], encoding="utf-8", timeout=20,
                          preexec_fn=ctrl_c_reaches_it)
    try:
        child.expect('"event": "tick"')
        write_log(data, "services", [], extra=json.dumps(LINES[1])[:30])  # half a line: not shown yet
        write_log(data, "services", [], extra=json.dumps(LINES[1])[30:] + "\n")
        child.expect('"event": "library_added"')
        path.rename(path.with_suffix(".log.1"))  # rotation: a new file takes its place
        write_log(data, "services", LINES[2:3])
        child.expect('"event": "service_failed"')
        child.sendintr()
        child.expect(pexpect.EOF)
    finally:
        child.close(force=True)
    assert child.exitstatus == 0, child.before
    assert "Traceback" not in child.before


# --- the pieces ---------------------------------------------------------------------------------------------


def test_parse_keeps_odd_lines_as_text() -> None:
    assert parse("plain text\n") == Entry(event="plain text")
    assert parse("[1, 2]") == Entry(event="[1, 2]")
    assert parse(json.dumps(LINES[0])).fields == {}
    assert parse(json.dumps({"event": "x", "level": "exception"})).rank == level_rank("error")


def test_render_colours_levels() -> None:
    text = render(parse(json.dumps(LINES[3])))
    styles = {text.plain[span.start:span.end]: str(span.style) for span in text.spans}
    assert styles["ERROR    "] == "bold red"
    assert styles["download_failed"] == "bold"


def test_level_rank_names() -> None:
    assert [level_rank(n) for n in ("debug", "INFO", "warning", "error", "critical")] == [0, 1, 2, 3, 4]
    with pytest.raises(ValueError, match="unknown level 'loud'"):
        level_rank("loud")


def test_tail_and_follower(tmp_path: Path) -> None:
    path = tmp_path / "logs" / "events.log"
    follower = Follower(path, min_rank=1)
    assert follower.backlog(5) == []
    write_log(tmp_path, "events", LINES)
    assert [e.event for e in Follower(path).backlog(2)] == ["service_failed", "download_failed"]
    assert [e.event for e in follower.poll()] == ["library_added", "service_failed", "download_failed"]
    assert follower.poll() == []
    path.write_text(json.dumps(LINES[1]) + "\n")  # truncated and rewritten: start over
    assert [e.event for e in follower.poll()] == ["library_added"]
