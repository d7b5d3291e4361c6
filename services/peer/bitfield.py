"""A fixed-size set of book indices, stored as bits (MSB first in each byte)."""

from __future__ import annotations

from collections.abc import Iterable


class Bitfield:
    """Which books are held. Serializes to the wire's ``bits`` bytes."""

    __slots__ = ("_bits", "_count", "_mask", "size")

    def __init__(self, size: int, bits: bytes | None = None) -> None:
        nbytes = (size + 7) // 8
        if bits is not None and len(bits) != nbytes:
            raise ValueError(f"bitfield for {size} books needs {nbytes} bytes, got {len(bits)}")
        self.size = size
        self._bits = bytearray(bits) if bits is not None else bytearray(nbytes)
        if bits is not None and size % 8 and self._bits[-1] & (0xFF >> (size % 8)):
            raise ValueError("bitfield has bits set past its last book")
        self._count = int.from_bytes(self._bits, "big").bit_count()
        self._mask: int | None = None

    @property
    def mask(self) -> int:
        """The same bits as one int, book i at bit (8 * len(bytes) - 1 - i): to_bytes(.., "big") gives the
        wire's bytes back, and set operations over every book (what a peer has that we lack) are one int
        operation. Made again after an add, when next asked (an add to the int itself would copy all of it)."""
        if self._mask is None:
            self._mask = int.from_bytes(self._bits, "big")
        return self._mask

    @classmethod
    def full(cls, size: int) -> Bitfield:
        bits = bytearray(b"\xff" * ((size + 7) // 8))
        if size % 8:
            bits[-1] = (0xFF << (8 - size % 8)) & 0xFF  # no books past the last
        return cls(size, bytes(bits))

    def __contains__(self, index: object) -> bool:
        if not isinstance(index, int):
            return False
        return 0 <= index < self.size and bool(self._bits[index >> 3] & (0x80 >> (index & 7)))

    def add(self, index: int) -> bool:
        """Mark ``index`` held; True if it was not held before."""
        if not 0 <= index < self.size:
            raise IndexError(f"book {index} out of range 0..{self.size - 1}")
        mask = 0x80 >> (index & 7)
        if self._bits[index >> 3] & mask:
            return False
        self._bits[index >> 3] |= mask
        self._count += 1
        self._mask = None
        return True

    def __len__(self) -> int:
        return self._count

    @property
    def complete(self) -> bool:
        return self._count == self.size

    def to_bytes(self) -> bytes:
        return bytes(self._bits)

    def indices(self) -> list[int]:
        """The books held, in order (a byte at a time: a bitfield is mostly empty or mostly full bytes)."""
        return _ones(self._bits)

    def missing(self) -> list[int]:
        """The books not held, in order."""
        flipped = bytearray(b ^ 0xFF for b in self._bits)
        if self.size % 8:
            flipped[-1] &= (0xFF << (8 - self.size % 8)) & 0xFF  # no books past the last
        return _ones(flipped)


def bit(size: int, index: int) -> int:
    """Book ``index``'s bit in the ``mask`` of a bitfield of ``size`` books."""
    return 1 << (((size + 7) & ~7) - 1 - index)


def mask_of(size: int, books: Iterable[int]) -> int:
    """The mask (as ``Bitfield.mask``) of ``books``, in one pass over them."""
    bits = bytearray((size + 7) // 8)
    for book in books:
        bits[book >> 3] |= 0x80 >> (book & 7)
    return int.from_bytes(bits, "big")


def books_of(size: int, mask: int) -> list[int]:
    """The books whose bits are set in ``mask`` (of a bitfield of ``size`` books), in order. A few: one bit
    at a time (each step touches the whole int); many: one pass over the bytes."""
    if mask.bit_count() > 64:
        return _ones(mask.to_bytes((size + 7) // 8, "big"))
    top = ((size + 7) & ~7) - 1
    out = []
    while mask:
        high = mask.bit_length() - 1
        out.append(top - high)
        mask ^= 1 << high
    return out


def _ones(bits: bytes | bytearray) -> list[int]:
    """The indices of the set bits, MSB first in each byte (a byte at a time: a bitfield is mostly empty or
    mostly full bytes)."""
    out: list[int] = []
    for index, byte in enumerate(bits):
        if byte == 0xFF:
            out.extend(range(index << 3, (index << 3) + 8))
        elif byte:
            base = index << 3
            out.extend(base + offset for offset in range(8) if byte & (0x80 >> offset))
    return out
