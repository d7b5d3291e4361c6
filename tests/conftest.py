"""Suite-wide settings and fixtures.

Property tests have no deadline and no "too slow" health check (a busy machine must fail
neither). ``redis_server`` starts a real redis-server for one test and ends it by pid; where
none is installed the test is skipped with the reason, except under CI (``CI=true``), where a
missing server is a failure.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest
from hypothesis import HealthCheck, settings

from tools.redis_server import RedisServer, missing_reason

settings.register_profile("emma", deadline=None, suppress_health_check=[HealthCheck.too_slow])
settings.load_profile("emma")


def require_redis() -> None:
    """Skip the calling test when redis-server is missing (fail it under CI)."""
    reason = missing_reason()
    if reason:
        if os.environ.get("CI") == "true":
            pytest.fail(f"{reason} (CI must run the Redis tests: .ci/run installs it)")
        pytest.skip(reason)


@pytest.fixture
def redis_server(tmp_path: Path) -> Iterator[RedisServer]:
    require_redis()
    with RedisServer(tmp_path / "redis") as server:
        yield server
