"""One policy for a real service a test needs and cannot get: skipped on a developer's machine without it, failed
where the environment says it must be there (``.ci/run`` exports every ``ADAPTLOG_REQUIRE_*``), so CI never passes
by quietly testing less."""

from __future__ import annotations

import os
from typing import NoReturn

import pytest


def missing(what: str, require_env: str, reason: str) -> NoReturn:
    """Fail the test when ``require_env`` is 1, else skip it; ``what`` is the service, ``reason`` why it is absent."""
    if os.environ.get(require_env) == "1":
        pytest.fail(f"no {what} for the tests ({require_env}=1): {reason}", pytrace=False)
    pytest.skip(f"no {what}: {reason}")
