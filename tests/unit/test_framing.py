"""Peer-wire framing: every builder round-trips, and decode turns any garbage into ProtocolError."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from services.wire import framing
from services.wire.errors import ErrorCode, ProtocolError
from services.wire.pb import wire_pb2
from services.wire.versions import WIRE

LIB = bytes(range(32))
PLAYER = b"p" * 16


def test_handshake_round_trip() -> None:
    message = framing.decode(framing.handshake(LIB, PLAYER))
    assert message.version == WIRE.current
    assert message.WhichOneof("body") == "handshake"
    assert (message.handshake.library_id, message.handshake.player_id) == (LIB, PLAYER)


def test_bitfield_round_trip() -> None:
    message = framing.decode(framing.bitfield(LIB, 10, b"\xff\xc0", 16))
    assert message.WhichOneof("body") == "bitfield"
    body = message.bitfield
    assert (body.library_id, body.book_count, body.bits, body.upload_slots) == (LIB, 10, b"\xff\xc0", 16)


def test_have_round_trip() -> None:
    message = framing.decode(framing.have(LIB, [3, 1, 4]))
    assert message.WhichOneof("body") == "have"
    assert (message.have.library_id, list(message.have.books)) == (LIB, [3, 1, 4])


@pytest.mark.parametrize(("build", "kind"), [(framing.request, "request"), (framing.cancel, "cancel")])
def test_request_and_cancel_round_trip(build: object, kind: str) -> None:
    assert callable(build)
    message = framing.decode(build(LIB, 7))
    assert message.WhichOneof("body") == kind
    body = getattr(message, kind)
    assert (body.library_id, body.book) == (LIB, 7)


def test_book_header_round_trip() -> None:
    message = framing.decode(framing.book_header(LIB, 2, 16384))
    assert message.WhichOneof("body") == "book"
    assert (message.book.library_id, message.book.book, message.book.length) == (LIB, 2, 16384)


def test_busy_round_trip() -> None:
    message = framing.decode(framing.busy(LIB, 5, 250))
    assert message.WhichOneof("body") == "busy"
    assert (message.busy.library_id, message.busy.book, message.busy.retry_after_ms) == (LIB, 5, 250)


def test_error_round_trip() -> None:
    message = framing.decode(framing.error(ErrorCode.NOT_FOUND, "no such book", LIB, 9))
    assert message.WhichOneof("body") == "error"
    assert message.error.error.code == ErrorCode.NOT_FOUND
    assert message.error.error.message == "no such book"
    assert (message.error.library_id, message.error.book) == (LIB, 9)


def test_decode_accepts_a_memoryview() -> None:
    frame = framing.request(LIB, 1)
    assert framing.decode(memoryview(frame)).request.book == 1


# --- garbage ---------------------------------------------------------------------------------


def code_of(frame: bytes) -> int:
    with pytest.raises(ProtocolError) as info:
        framing.decode(frame)
    return info.value.code


@pytest.mark.parametrize("frame", [b"\xff", b"\x0a\xff\xff\xff", b"\x80" * 11, b"\x0f\x00"])
def test_undecodable_bytes_are_malformed(frame: bytes) -> None:
    assert code_of(frame) == ErrorCode.MALFORMED


def test_truncated_message_is_malformed() -> None:
    frame = framing.request(LIB, 1)
    assert code_of(frame[:-5]) == ErrorCode.MALFORMED


def test_a_newer_minor_version_is_read() -> None:
    frame = wire_pb2.PeerMessage(version=WIRE.current + 1, request=wire_pb2.Request(library_id=LIB, book=3))
    assert framing.decode(frame.SerializeToString()).request.book == 3


def test_a_version_older_than_supported_is_refused_naming_both() -> None:
    frame = wire_pb2.PeerMessage(version=WIRE.oldest - 1, request=wire_pb2.Request(library_id=LIB))
    with pytest.raises(ProtocolError) as info:
        framing.decode(frame.SerializeToString())
    assert info.value.code == ErrorCode.UNSUPPORTED_VERSION
    assert f"version {WIRE.oldest - 1} " in info.value.message and f"speaks {WIRE.current}" in info.value.message


def test_empty_frame_has_no_version() -> None:
    assert code_of(b"") == ErrorCode.UNSUPPORTED_VERSION


def test_message_without_body_is_an_unknown_request() -> None:
    assert code_of(wire_pb2.PeerMessage(version=1).SerializeToString()) == ErrorCode.UNKNOWN_REQUEST


def test_oversized_frame_is_too_large_before_parsing() -> None:
    assert code_of(b"\xff" * (framing.MAX_CONTROL_FRAME + 1)) == ErrorCode.TOO_LARGE


def error_frame_of_size(size: int) -> bytes:
    for text_len in range(size, 0, -1):
        frame = framing.error(ErrorCode.INTERNAL, "x" * text_len)
        if len(frame) == size:
            return frame
    raise AssertionError(f"no error frame of {size} bytes")


def test_frame_at_the_limit_is_parsed_and_one_byte_more_is_not() -> None:
    frame = error_frame_of_size(framing.MAX_CONTROL_FRAME)
    assert framing.decode(frame).WhichOneof("body") == "error"
    assert code_of(error_frame_of_size(framing.MAX_CONTROL_FRAME + 1)) == ErrorCode.TOO_LARGE


def test_error_messages_are_safe_to_show() -> None:
    with pytest.raises(ProtocolError) as info:
        framing.decode(b"\xff")
    assert info.value.code_name == "MALFORMED"
    assert info.value.to_pb().message == "cannot decode peer message"


@given(st.binary(max_size=300))
def test_any_bytes_decode_or_raise_protocol_error(frame: bytes) -> None:
    try:
        message = framing.decode(frame)
    except ProtocolError as exc:
        assert exc.code in (ErrorCode.MALFORMED, ErrorCode.UNSUPPORTED_VERSION, ErrorCode.UNKNOWN_REQUEST)
    else:
        assert message.version == WIRE.current
        assert message.WhichOneof("body") is not None


# --- local notices ---------------------------------------------------------------------------


def test_local_notice_round_trip() -> None:
    notice = wire_pb2.LocalNotice(library_id=LIB, books=[1, 2])
    back = framing.decode_local_notice(framing.local_notice(notice))
    assert (back.library_id, list(back.books)) == (LIB, [1, 2])


def test_garbage_local_notice_is_malformed() -> None:
    with pytest.raises(ProtocolError) as info:
        framing.decode_local_notice(b"\xff\xff")
    assert info.value.code == ErrorCode.MALFORMED
