"""Bitfield basics and the player's state.db: upsert, get, progress that survives a reopen."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from services.peer.bitfield import Bitfield, bit, books_of
from services.peer.state import State, Status

# --- Bitfield -----------------------------------------------------------------------------------


def test_empty_bitfield() -> None:
    field = Bitfield(10)
    assert (len(field), field.complete, field.to_bytes()) == (0, False, b"\x00\x00")
    assert field.indices() == [] and field.missing() == list(range(10))


def test_add_is_msb_first_and_reports_news() -> None:
    field = Bitfield(10)
    assert field.add(0) is True
    assert field.add(0) is False
    assert field.add(9) is True
    assert field.to_bytes() == b"\x80\x40"
    assert len(field) == 2
    assert 0 in field and 9 in field and 1 not in field
    assert field.indices() == [0, 9]
    assert field.missing() == list(range(1, 9))


@given(st.integers(1, 300), st.data())
def test_the_mask_holds_the_same_books_built_or_parsed(size: int, data: st.DataObject) -> None:
    held = data.draw(st.sets(st.integers(0, size - 1)))
    built = Bitfield(size)
    for book in sorted(held, reverse=True):
        built.add(book)
    parsed = Bitfield(size, built.to_bytes())
    assert built.mask == parsed.mask == int.from_bytes(built.to_bytes(), "big")
    assert books_of(size, built.mask) == sorted(held) == built.indices()
    assert all(bool(built.mask & bit(size, book)) == (book in held) for book in range(size))
    assert Bitfield.full(size).indices() == list(range(size)) and Bitfield.full(size).complete


@pytest.mark.parametrize("index", [-1, 10, 100])
def test_out_of_range(index: int) -> None:
    field = Bitfield.full(10)
    assert index not in field
    with pytest.raises(IndexError, match="out of range"):
        field.add(index)


@pytest.mark.parametrize(("size", "data"), [(0, b""), (1, b"\x80"), (8, b"\xff"), (10, b"\xff\xc0")])
def test_full(size: int, data: bytes) -> None:
    field = Bitfield.full(size)
    assert field.complete and len(field) == size
    assert field.to_bytes() == data


@pytest.mark.parametrize(("size", "data"), [(10, b"\xff"), (10, b"\x00\x00\x00"), (0, b"\x00"), (8, b"")])
def test_wrong_byte_count(size: int, data: bytes) -> None:
    with pytest.raises(ValueError, match="needs"):
        Bitfield(size, data)


@pytest.mark.parametrize(("size", "data"), [(10, b"\x00\x20"), (10, b"\x00\x01"), (1, b"\x40")])
def test_bits_past_the_last_book(size: int, data: bytes) -> None:
    with pytest.raises(ValueError, match="past its last book"):
        Bitfield(size, data)


@given(data=st.data(), size=st.integers(0, 200))
def test_bytes_round_trip(data: st.DataObject, size: int) -> None:
    held = data.draw(st.sets(st.integers(0, size - 1))) if size else set()
    field = Bitfield(size)
    for index in held:
        field.add(index)
    back = Bitfield(size, field.to_bytes())
    assert back.indices() == sorted(held)
    assert len(back) == len(held)
    assert back.complete == (len(held) == size)
    assert sorted(back.indices() + back.missing()) == list(range(size))


# --- State --------------------------------------------------------------------------------------

LIB = "ab" * 32


@pytest.fixture
def state(tmp_path: Path) -> Iterator[State]:
    db = State(tmp_path / "data" / "state.db")
    yield db
    db.close()


def add(state: State, status: Status, have: Bitfield, library_id: str = LIB, stuff: str = "/dl/movie") -> None:
    state.upsert(
        library_id=library_id, lib_path=Path(f"/libs/lib_{library_id}.lib"), stuff_path=Path(stuff),
        name="movie", size=10 * 1024, books=have.size, status=status, have=have,
    )


def test_get_unknown_is_none(state: State) -> None:
    assert state.get(LIB) is None
    assert state.all() == []


def test_upsert_then_get(state: State) -> None:
    have = Bitfield(10)
    have.add(3)
    add(state, Status.DOWNLOADING, have)
    record = state.get(LIB)
    assert record is not None
    assert (record.id, record.name, record.size, record.books) == (LIB, "movie", 10 * 1024, 10)
    assert (record.lib_path, record.stuff_path) == (Path(f"/libs/lib_{LIB}.lib"), Path("/dl/movie"))
    assert record.status is Status.DOWNLOADING
    assert record.have.indices() == [3]
    assert (record.uploaded, record.downloaded, record.fetched, record.completed_at) == (0, 0, 0, None)


def test_save_progress_survives_reopen(tmp_path: Path, state: State) -> None:
    add(state, Status.DOWNLOADING, Bitfield(10))
    have = Bitfield(10)
    for index in (0, 1, 7):
        have.add(index)
    state.save_progress(LIB, have, downloaded=3000, fetched=3100)
    state.close()
    again = State(tmp_path / "data" / "state.db")
    try:
        record = again.get(LIB)
    finally:
        again.close()
    assert record is not None
    assert record.have.indices() == [0, 1, 7]
    assert (record.downloaded, record.fetched) == (3000, 3100)


def test_upsert_downloading_again_keeps_progress(state: State) -> None:
    add(state, Status.DOWNLOADING, Bitfield(10))
    have = Bitfield(10)
    have.add(5)
    state.save_progress(LIB, have, downloaded=1, fetched=2)
    add(state, Status.DOWNLOADING, Bitfield(10), stuff="/elsewhere")
    record = state.get(LIB)
    assert record is not None
    assert record.have.indices() == [5]
    assert (record.downloaded, record.fetched, record.stuff_path) == (1, 2, Path("/dl/movie"))


def test_upsert_seeding_takes_over(state: State) -> None:
    add(state, Status.DOWNLOADING, Bitfield(10))
    add(state, Status.SEEDING, Bitfield.full(10), stuff="/shared/movie")
    record = state.get(LIB)
    assert record is not None
    assert record.status is Status.SEEDING and record.have.complete
    assert record.stuff_path == Path("/shared/movie")
    assert record.completed_at is not None


def test_status_counters_find_and_remove(state: State) -> None:
    other = "cd" * 32
    add(state, Status.DOWNLOADING, Bitfield(10))
    add(state, Status.SEEDING, Bitfield.full(4), library_id=other)
    state.set_status(LIB, Status.PAUSED)
    state.add_uploaded(other, 100)
    state.add_uploaded(other, 23)
    assert [r.id for r in state.all()] == [LIB, other]
    assert [r.id for r in state.find("cd")] == [other]
    assert state.find("ef") == []
    paused, seeding = state.get(LIB), state.get(other)
    assert paused is not None and paused.status is Status.PAUSED and paused.completed_at is None
    assert seeding is not None and seeding.uploaded == 123
    state.set_status(LIB, Status.SEEDING, stuff_path=Path("/done/movie"))
    done = state.get(LIB)
    assert done is not None and done.stuff_path == Path("/done/movie") and done.completed_at is not None
    state.remove(LIB)
    assert state.get(LIB) is None and [r.id for r in state.all()] == [other]
