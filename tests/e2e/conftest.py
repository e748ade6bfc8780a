"""Shared fixtures: a real ticker server on an ephemeral port."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.support.serverproc import ServerProcess


@pytest.fixture(scope="session")
def server() -> Iterator[ServerProcess]:
    """One server for the read-mostly tests: simulated feed, fast ticks, a fixed seed."""
    with ServerProcess(["--sim-rate", "20", "--seed", "7", "--log-level", "warning"]) as srv:
        yield srv
