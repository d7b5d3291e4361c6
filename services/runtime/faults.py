"""Fault injection for supervision tests, switched on by an environment variable.

Unset (always, outside tests) it does nothing. ``EMMA_FAULT`` names one fault:

- ``crash-at-start:requestor`` makes that service exit with status 3 as soon
  as it starts, every time: a service that cannot start ends FATAL while the
  rest keeps running.
- ``crash-in-loop:requestor`` makes that service's loop raise at its second
  heartbeat: the Maestro shows the exception the service died of (its last
  words) with the failure.
- ``ignore-term:requestor`` makes that service ignore SIGTERM: a stop has to
  wait out the grace, and the Maestro keeps serving meanwhile.
"""

from __future__ import annotations

import os

ENV = "EMMA_FAULT"
CRASH_STATUS = 3
CRASH_AT_BEAT = 2


class InjectedFault(RuntimeError):
    """Raised where the environment asked for a fault."""


def crash_at_start(service: str) -> None:
    """Exit now if the environment asks this service to crash at start-up."""
    if os.environ.get(ENV) == f"crash-at-start:{service}":
        raise SystemExit(CRASH_STATUS)


def ignores_term(service: str) -> bool:
    """Whether the environment asks this service to ignore SIGTERM."""
    return os.environ.get(ENV) == f"ignore-term:{service}"


def crash_in_loop(service: str, beat: int) -> None:
    """Raise from the service's loop at its CRASH_AT_BEAT-th heartbeat, if the environment asks."""
    if beat == CRASH_AT_BEAT and os.environ.get(ENV) == f"crash-in-loop:{service}":
        raise InjectedFault(f"{ENV} asked the {service} loop to fail")
