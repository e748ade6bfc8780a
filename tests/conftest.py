"""Every test: pytest-timeout's limits (``timeout`` in setup.cfg, ``@pytest.mark.timeout``) scale with
``TICKER_TEST_TIMEOUT_FACTOR`` like every other timeout of the suite (see :mod:`tests.support.timing`)."""

from __future__ import annotations

import os

import pytest

from tests.support.timing import FACTOR, timeout


def _configured_timeout(config: pytest.Config) -> float | None:
    """The suite-wide limit pytest-timeout uses: ``--timeout``, else ``PYTEST_TIMEOUT``, else the ini file."""
    for value in (
        config.getoption("timeout", None),
        os.environ.get("PYTEST_TIMEOUT"),
        config.getini("timeout"),
    ):
        if value not in (None, ""):
            return float(value)
    return None


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Give each test a ``timeout`` marker holding its limit times the factor (markers win over the ini)."""
    if FACTOR == 1:
        return
    default = _configured_timeout(config)
    for item in items:
        marker = item.get_closest_marker("timeout")
        kwargs = dict(marker.kwargs) if marker else {}
        if marker is not None and (marker.args or "timeout" in kwargs):
            seconds = marker.args[0] if marker.args else kwargs.pop("timeout")
            method = marker.args[1:2]
        else:
            seconds, method = default, ()
        if seconds is None or float(seconds) <= 0:
            continue  # no limit stays no limit
        item.add_marker(pytest.mark.timeout(timeout(float(seconds)), *method, **kwargs), append=False)
