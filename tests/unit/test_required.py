"""The one policy for a missing real service (harness/required.py): skipped by default, failed when required."""

from __future__ import annotations

import pytest

from harness.required import missing


def test_a_missing_service_skips_unless_the_environment_requires_it(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("ADAPTLOG_REQUIRE_SOMETHING", raising=False)
    with pytest.raises(pytest.skip.Exception, match="no something: not installed"):
        missing("something", "ADAPTLOG_REQUIRE_SOMETHING", "not installed")
    monkeypatch.setenv("ADAPTLOG_REQUIRE_SOMETHING", "1")
    with pytest.raises(pytest.fail.Exception, match=r"ADAPTLOG_REQUIRE_SOMETHING=1\): not installed"):
        missing("something", "ADAPTLOG_REQUIRE_SOMETHING", "not installed")
