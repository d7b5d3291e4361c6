"""What a name in a library may be: the stuff's name, and each component of a path in a tree.

Shared by library.py (the stuff's name) and tree.py (paths in a tree), and the one home of
``LibraryError``, the error every check of a library raises.
"""

from __future__ import annotations

import unicodedata

FS_NAME_MAX = 255  # bytes in one file name on the file systems we run on (ext4, xfs, btrfs, tmpfs)
PART_SUFFIX = ".part"  # a download's bytes until every book is in (partfile.partial_path)
CLASH_SUFFIX_LEN = 9  # ".<8 hex of the id>", added when the final name is taken (partfile.final_path)
MAX_NAME_BYTES = FS_NAME_MAX - max(len(PART_SUFFIX), CLASH_SUFFIX_LEN)  # 246
# Characters that reorder text on screen (bidirectional controls): a name could show as another.
_BIDI_CONTROLS = frozenset("\u061c\u200e\u200f\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069")
_CONTROL_CATEGORIES = frozenset({"Cc", "Zl", "Zp"})  # C0, DEL, C1; line and paragraph separators


class LibraryError(ValueError):
    """A library that cannot be used, with a one-line reason."""


def control_character(text: str) -> str | None:
    """The first character of ``text`` that must not reach a screen or a file name, if any.

    C0 and C1 controls and DEL (escape sequences, newlines), line and paragraph separators,
    bidirectional controls, and lone surrogates (bytes of a file name that are not UTF-8).
    """
    if text.isprintable():
        return None
    for ch in text:
        if ch in _BIDI_CONTROLS or unicodedata.category(ch) in _CONTROL_CATEGORIES or "\ud800" <= ch <= "\udfff":
            return ch
    return None


def quoted(text: str, limit: int = 64) -> str:
    """``text`` for an error message: quoted, escaped by ``repr``, cut after ``limit`` characters."""
    return repr(text[:limit]) + ("..." if len(text) > limit else "")


def check_name(name: str) -> str:
    """A stuff name must be one plain file name a download can add its suffixes to.

    Refused: empty, ``.``, ``..``, a path separator, a leading ``~``, control characters
    (see ``control_character``) and more than ``MAX_NAME_BYTES`` bytes. Dots elsewhere are
    plain characters: ``release..v2.txt`` is a name, not a path.
    """
    if name in {"", ".", ".."}:
        raise LibraryError(f"bad stuff name {quoted(name)}: must be a plain file name, not empty, '.' or '..'")
    if "/" in name or "\\" in name or name.startswith("~"):
        raise LibraryError(f"bad stuff name {quoted(name)}: must not contain a path separator or start with '~'")
    bad = control_character(name)
    if bad is not None:
        what = "is not UTF-8" if "\ud800" <= bad <= "\udfff" else f"contains control character U+{ord(bad):04X}"
        raise LibraryError(f"bad stuff name {quoted(name)}: {what}; a name must be plain printable text")
    size = len(name.encode())
    if size > MAX_NAME_BYTES:
        raise LibraryError(
            f"bad stuff name {quoted(name)}: {size} bytes, at most {MAX_NAME_BYTES} "
            f"({FS_NAME_MAX} less room for the {PART_SUFFIX!r} or '.<id>' a download adds)"
        )
    return name
