"""Fault injection for supervision tests, switched on by an environment variable.

``EMMA_FAULT=crash-at-start:requestor`` makes that service exit with status 3
as soon as it starts, every time. Unset (always, outside tests) it does
nothing. Tests of the Maestro use it to show a service that cannot start
ends FATAL while the rest keeps running.
"""

from __future__ import annotations

import os

ENV = "EMMA_FAULT"
CRASH_STATUS = 3


def crash_at_start(service: str) -> None:
    """Exit now if the environment asks this service to crash at start-up."""
    if os.environ.get(ENV) == f"crash-at-start:{service}":
        raise SystemExit(CRASH_STATUS)
