"""Scenarios written as strings, as the picker's tests began: ``*`` a book held, ``.`` one not held."""

from __future__ import annotations

from services.peer.bitfield import Bitfield


def bits(pattern: str) -> Bitfield:
    field = Bitfield(len(pattern))
    for index, mark in enumerate(pattern):
        if mark == "*":
            field.add(index)
    return field
