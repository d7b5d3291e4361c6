"""The one exception type that crosses protocol edges, and its error codes.

Handlers raise :class:`ProtocolError` with a code from ``common.proto``; the
socket loop turns it into an error reply. Messages are safe to show a client.
Anything else that escapes a handler is logged and answered as INTERNAL.
"""

from __future__ import annotations

from services.wire.pb import common_pb2

ErrorCode = common_pb2.ErrorCode


class ProtocolError(Exception):
    """A request that cannot be served, with a code and a human message."""

    def __init__(self, code: common_pb2.ErrorCode.ValueType, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message

    def to_pb(self) -> common_pb2.Error:
        return common_pb2.Error(code=self.code, message=self.message)

    @property
    def code_name(self) -> str:
        return common_pb2.ErrorCode.Name(self.code)


def error_pb(code: common_pb2.ErrorCode.ValueType, message: str) -> common_pb2.Error:
    return common_pb2.Error(code=code, message=message)
