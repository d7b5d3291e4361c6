"""A fixed-size set of book indices, stored as bits (MSB first in each byte)."""

from __future__ import annotations


class Bitfield:
    """Which books are held. Serializes to the wire's ``bits`` bytes."""

    __slots__ = ("_bits", "_count", "size")

    def __init__(self, size: int, bits: bytes | None = None) -> None:
        nbytes = (size + 7) // 8
        if bits is not None and len(bits) != nbytes:
            raise ValueError(f"bitfield for {size} books needs {nbytes} bytes, got {len(bits)}")
        self.size = size
        self._bits = bytearray(bits) if bits is not None else bytearray(nbytes)
        if bits is not None and size % 8 and self._bits[-1] & (0xFF >> (size % 8)):
            raise ValueError("bitfield has bits set past its last book")
        self._count = sum(bin(b).count("1") for b in self._bits)

    @classmethod
    def full(cls, size: int) -> Bitfield:
        field = cls(size)
        for index in range(size):
            field.add(index)
        return field

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


def _ones(bits: bytearray) -> list[int]:
    """The indices of the set bits, MSB first in each byte."""
    out: list[int] = []
    for index, byte in enumerate(bits):
        if byte == 0xFF:
            out.extend(range(index << 3, (index << 3) + 8))
        elif byte:
            base = index << 3
            out.extend(base + bit for bit in range(8) if byte & (0x80 >> bit))
    return out
