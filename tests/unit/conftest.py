"""Unit tests run without the network and without processes: any socket connect, bind or subprocess fails."""

from __future__ import annotations

import os
import socket
import subprocess
from collections.abc import Iterator
from typing import Any

import pytest
from hypothesis import HealthCheck, settings

# Hypothesis (tests/unit/test_fuzz_*.py): few examples so that `make test-unit` stays fast; derandomized
# under CI=true so that a CI run is the same on every push; HYPOTHESIS_PROFILE=fuzz for a long run by hand.
# A failing example is kept in .hypothesis/ (git-ignored by its own .gitignore) and tried first next time.
settings.register_profile(
    "dev",
    max_examples=60,
    deadline=None,
    print_blob=True,
    # the autouse _no_io fixture below is function-scoped; sharing it across a test's examples is right
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)
settings.register_profile("ci", settings.get_profile("dev"), derandomize=True)
settings.register_profile("fuzz", settings.get_profile("dev"), max_examples=20_000)
settings.load_profile(
    os.environ.get("HYPOTHESIS_PROFILE") or ("ci" if os.environ.get("CI", "").lower() == "true" else "dev")
)


def _refuse(*args: Any, **kwargs: Any) -> Any:
    raise AssertionError("a unit test touched the network or started a process; it belongs in tests/e2e")


@pytest.fixture(autouse=True)
def _no_io(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    for name in ("connect", "connect_ex", "bind"):
        monkeypatch.setattr(socket.socket, name, _refuse)
    monkeypatch.setattr(subprocess.Popen, "__init__", _refuse)
    yield
