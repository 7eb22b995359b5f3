"""The suite's own rule for missing material: a test that needs ``../shared`` data or Chromium
skips on a user's clone, and fails under ``CI=true``, where a skip would hide a failure."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.support import skip_or_fail

REPO_ROOT = Path(__file__).resolve().parents[1]


def test_skip_or_fail_skips_on_a_users_clone(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("CI", raising=False)
    with pytest.raises(pytest.skip.Exception, match="no data here"):
        skip_or_fail("no data here")
    monkeypatch.setenv("CI", "false")
    with pytest.raises(pytest.skip.Exception):
        skip_or_fail("no data here")


@pytest.mark.parametrize("value", ["true", "TRUE", "1"])
def test_skip_or_fail_fails_under_ci(monkeypatch: pytest.MonkeyPatch, value: str) -> None:
    monkeypatch.setenv("CI", value)
    with pytest.raises(pytest.fail.Exception, match=r"no data here \[CI=true: this test must run"):
        skip_or_fail("no data here")


def run_shared_data_test(tmp_path: Path, ci: str) -> subprocess.CompletedProcess:
    """A test that asks for the ``shared_data`` fixture of tests/conftest.py (loaded as a
    plugin), run by a pytest of its own with ``../shared/data`` missing."""
    test = tmp_path / "test_needs_shared_data.py"
    test.write_text("def test_reads_the_real_data(shared_data):\n    assert shared_data.is_dir()\n")
    env = dict(os.environ, CI=ci, SPLEEN_SHARED_DATA=str(tmp_path / "no-shared-data"),
               PYTHONPATH=str(REPO_ROOT), PYTEST_DISABLE_PLUGIN_AUTOLOAD="1")
    return subprocess.run([sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "-p", "tests.conftest", "-q",
                           "-rsfE", str(test)], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)


@pytest.mark.slow
def test_missing_shared_data_fails_under_ci(tmp_path: Path) -> None:
    under_ci = run_shared_data_test(tmp_path, "true")
    assert under_ci.returncode == 1, under_ci.stdout[-2000:]
    assert "1 error" in under_ci.stdout                       # raised in the fixture
    assert "real test data not found at" in under_ci.stdout and "CI=true" in under_ci.stdout
