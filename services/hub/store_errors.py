"""What a hub store raises, whichever backend: the broker and the logic catch these two."""

from __future__ import annotations


class StoreError(RuntimeError):
    """The store cannot be opened or written; the message says what to do."""


class StoreUnavailable(StoreError):
    """The store is out of reach for now (a Redis that is down); the hub answers UNAVAILABLE and retries later."""
