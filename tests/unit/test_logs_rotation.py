"""Log files: rotated by size even when several processes write one file, lines lost to a full
disk counted and reported once writing works, a service's .out rolled over at start."""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator
from pathlib import Path

import pytest

from services.runtime.logs import BACKUPS, MAX_BYTES, SharedRotatingFileHandler, rotate_out, setup_logging

LINE = 100  # bytes per line written below, newline included


def handler(path: Path, max_bytes: int = 1000, backups: int = 50) -> SharedRotatingFileHandler:
    made = SharedRotatingFileHandler(path, maxBytes=max_bytes, backupCount=backups, encoding="utf-8")
    made.setFormatter(logging.Formatter("%(message)s"))
    return made


def record(text: str) -> logging.LogRecord:
    return logging.makeLogRecord({"msg": text.ljust(LINE - 1, "."), "levelno": logging.INFO})


@pytest.fixture
def log_dir(tmp_path: Path) -> Path:
    folder = tmp_path / "logs"
    folder.mkdir()
    return folder


def lines_in(folder: Path) -> list[str]:
    return [line for path in sorted(folder.iterdir()) for line in path.read_text().splitlines()]


def test_defaults_are_ten_mebibytes_times_five() -> None:
    assert (MAX_BYTES, BACKUPS) == (10 * 1024 * 1024, 5)


def test_two_writers_of_one_file_rotate_it_once_each_time_and_lose_no_line(log_dir: Path) -> None:
    path = log_dir / "events.log"
    first, second = handler(path), handler(path)  # as the Maestro and a service would
    try:
        for index in range(300):
            (first if index % 2 else second).emit(record(f"line {index}"))
    finally:
        first.close()
        second.close()
    assert sorted(lines_in(log_dir)) == sorted(record(f"line {i}").getMessage() for i in range(300))
    rotated = [p.stat().st_size for p in log_dir.iterdir() if p.name != "events.log"]
    assert len(rotated) == 33 and set(rotated) == {900}  # each rotated once, when full (9 lines of 100 bytes)


def test_at_most_backups_old_files_are_kept(log_dir: Path) -> None:
    path = log_dir / "debug.log"
    writer = handler(path, max_bytes=1000, backups=3)
    try:
        for index in range(100):
            writer.emit(record(f"line {index}"))
    finally:
        writer.close()
    assert sorted(p.name for p in log_dir.iterdir()) == ["debug.log", "debug.log.1", "debug.log.2", "debug.log.3"]
    assert record("line 99").getMessage() in path.read_text()


def test_lines_lost_to_a_full_disk_are_counted_then_reported(log_dir: Path, capsys) -> None:
    path = log_dir / "errors.log"
    writer = handler(path)
    try:
        writer.close()
        writer.baseFilename = "/dev/full"  # every write: No space left on device
        writer.stream = open("/dev/full", "a")  # noqa: SIM115 - closed by the handler
        for index in range(5):
            writer.emit(record(f"lost {index}"))
        assert writer.lost == 5 and "No space left" in writer.lost_error
        writer.baseFilename = str(path)  # space is back
        writer.emit(record("back"))
    finally:
        writer.close()
    assert capsys.readouterr().err == ""  # no traceback per lost line
    lines = path.read_text().splitlines()
    assert len(lines) == 2 and lines[1].startswith("back")
    assert lines[0] == "log_lines_lost"


def test_the_lost_lines_note_carries_its_numbers_in_the_json_logs(tmp_path: Path) -> None:
    setup_logging(tmp_path, process="test")
    errors = next(h for h in logging.getLogger().handlers
                  if isinstance(h, SharedRotatingFileHandler) and h.baseFilename.endswith("errors.log"))
    try:
        errors.lost, errors.lost_error = 3, "[Errno 28] No space left on device"
        logging.getLogger("emma.services").warning("after")
    finally:
        for h in list(logging.getLogger().handlers):
            logging.getLogger().removeHandler(h)
            h.close()
    first, second = (json.loads(line) for line in (tmp_path / "logs" / "errors.log").read_text().splitlines())
    assert (first["event"], first["lines"], first["error"]) == ("log_lines_lost", 3,
                                                                "[Errno 28] No space left on device")
    assert first["file"].endswith("errors.log") and first["process"] == "test"
    assert second["event"] == "after"


@pytest.fixture
def out(tmp_path: Path) -> Iterator[Path]:
    yield tmp_path / "requestor.out"


def test_an_out_file_is_rolled_over_past_its_limit_keeping_a_few(out: Path) -> None:
    for generation in range(5):
        out.write_bytes(bytes([65 + generation]) * 200)
        rotate_out(out, max_bytes=100, backups=3)
    assert not out.exists()
    kept = {p.name: p.read_bytes()[:1] for p in out.parent.iterdir()}
    assert kept == {"requestor.out.1": b"E", "requestor.out.2": b"D", "requestor.out.3": b"C"}


def test_a_small_or_missing_out_file_is_left_alone(out: Path) -> None:
    rotate_out(out, max_bytes=100)
    out.write_bytes(b"x" * 100)
    rotate_out(out, max_bytes=100)
    assert out.read_bytes() == b"x" * 100 and not out.with_name("requestor.out.1").exists()
