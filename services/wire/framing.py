"""Peer-wire framing: PeerMessage frames in, typed values out, and back.

A control message is one frame; a book is two: a ``book`` header frame and
the raw payload frame. Decoding never trusts the input: anything malformed
raises ProtocolError(MALFORMED) for the caller to answer or drop.
"""

from __future__ import annotations

from google.protobuf.message import DecodeError

from services.wire.errors import ErrorCode, ProtocolError
from services.wire.pb import common_pb2, wire_pb2
from services.wire.versions import WIRE

MAX_CONTROL_FRAME = 64 * 1024
# What a Distributor reads: a requester sends only handshakes, requests, cancels and library requests, each
# under 100 bytes. A ROUTER queues up to its RCVHWM messages per connection before the loop reads them, so
# this, not MAX_CONTROL_FRAME, is what one connection can make it hold: 10,000 x 1 KiB, not x 64 KiB.
MAX_REQUEST_FRAME = 1024
MAX_BOOK_FRAME = 64 * 1024 * 1024 + 4096


def decode(frame: bytes | memoryview) -> wire_pb2.PeerMessage:
    """Parse one PeerMessage frame."""
    if len(frame) > MAX_CONTROL_FRAME:
        raise ProtocolError(ErrorCode.TOO_LARGE, f"control frame of {len(frame)} bytes is over {MAX_CONTROL_FRAME}")
    message = wire_pb2.PeerMessage()
    try:
        message.ParseFromString(bytes(frame))
    except DecodeError as exc:
        raise ProtocolError(ErrorCode.MALFORMED, "cannot decode peer message") from exc
    WIRE.check(message.version)
    if message.WhichOneof("body") is None:
        raise ProtocolError(ErrorCode.UNKNOWN_REQUEST, "peer message has no body")
    return message


def handshake(library_id: bytes, player_id: bytes) -> bytes:
    return _pack(handshake=wire_pb2.Handshake(library_id=library_id, player_id=player_id))


def bitfield(library_id: bytes, book_count: int, bits: bytes, slots: int) -> bytes:
    return _pack(bitfield=wire_pb2.Bitfield(library_id=library_id, book_count=book_count, bits=bits,
                                            upload_slots=slots))


def have(library_id: bytes, books: list[int]) -> bytes:
    return _pack(have=wire_pb2.Have(library_id=library_id, books=books))


def request(library_id: bytes, book: int) -> bytes:
    return _pack(request=wire_pb2.Request(library_id=library_id, book=book))


def cancel(library_id: bytes, book: int) -> bytes:
    return _pack(cancel=wire_pb2.Cancel(library_id=library_id, book=book))


def book_header(library_id: bytes, book: int, length: int) -> bytes:
    return _pack(book=wire_pb2.BookHeader(library_id=library_id, book=book, length=length))


def busy(library_id: bytes, book: int, retry_after_ms: int, book_only: bool = False) -> bytes:
    return _pack(busy=wire_pb2.Busy(library_id=library_id, book=book, retry_after_ms=retry_after_ms,
                                    book_only=book_only))


def library_request(library_id: bytes) -> bytes:
    return _pack(library_request=wire_pb2.LibraryRequest(library_id=library_id))


def library_file(library_id: bytes, length: int) -> bytes:
    return _pack(library_file=wire_pb2.LibraryFile(library_id=library_id, length=length))


def error(code: common_pb2.ErrorCode.ValueType, message: str, library_id: bytes = b"", book: int = 0) -> bytes:
    return _pack(error=wire_pb2.PeerError(error=common_pb2.Error(code=code, message=message),
                                          library_id=library_id, book=book))


def _pack(**body: object) -> bytes:
    return wire_pb2.PeerMessage(version=WIRE.current, **body).SerializeToString()  # type: ignore[arg-type]


def local_notice(notice: wire_pb2.LocalNotice) -> bytes:
    return notice.SerializeToString()


def decode_local_notice(frame: bytes) -> wire_pb2.LocalNotice:
    notice = wire_pb2.LocalNotice()
    try:
        notice.ParseFromString(frame)
    except DecodeError as exc:
        raise ProtocolError(ErrorCode.MALFORMED, "cannot decode local notice") from exc
    return notice
