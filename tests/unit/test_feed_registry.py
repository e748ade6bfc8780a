"""The feed registry imports an adapter only when its name is used; flag declarations need none."""

from __future__ import annotations

import importlib
import sys
from collections.abc import Iterator

import pytest

from feeds.options import FeedOptions

ADAPTER_PACKAGES = ("feeds.streaming", "feeds.polled", "feeds.recording")


def _loaded(prefix: str) -> set[str]:
    return {name for name in sys.modules if name == prefix or name.startswith(prefix + ".")}


@pytest.fixture
def fresh_feeds() -> Iterator[None]:
    """Forget every ``feeds`` and ``ticker.cli`` module for the test, then put the originals back."""
    saved = dict(sys.modules)
    evicted = _loaded("feeds") | _loaded("ticker.cli") | _loaded("ticker.server")
    for name in evicted:
        del sys.modules[name]
    try:
        yield
    finally:
        sys.modules.clear()
        sys.modules.update(saved)
        for name in evicted:  # fresh imports rebound the parents' attributes: point them back
            parent, _, child = name.rpartition(".")
            if parent in saved:
                setattr(saved[parent], child, saved[name])


def _adapters() -> set[str]:
    return set().union(*(_loaded(p) for p in ADAPTER_PACKAGES))


@pytest.mark.usefixtures("fresh_feeds")
def test_building_the_command_line_imports_no_adapter() -> None:
    importlib.import_module("ticker.cli.main").build_parser()
    assert "feeds.registry" in sys.modules and "feeds.options" in sys.modules
    assert _adapters() == set()
    assert "feeds.simulated" not in sys.modules


@pytest.mark.usefixtures("fresh_feeds")
def test_naming_a_feed_imports_only_its_module() -> None:
    registry = importlib.import_module("feeds.registry")
    (sim,) = registry.create_feeds(["simulated"], FeedOptions(symbols=["AAPL"]))
    assert type(sim).__module__ == "feeds.simulated"
    assert _adapters() == set()

    registry.factory("coinbase")
    streaming = _loaded("feeds.streaming")
    assert "feeds.streaming.coinbase" in streaming
    assert not streaming & {f"feeds.streaming.{n}" for n in ("alpaca", "binance", "finnhub", "polygon")}
    assert _loaded("feeds.polled") == set() and _loaded("feeds.recording") == set()


def test_every_name_resolves_to_a_factory() -> None:
    from feeds import registry

    for name in registry.FEEDS:
        assert callable(registry.factory(name)), name


def test_unknown_name_is_one_clear_error() -> None:
    from feeds import registry

    with pytest.raises(ValueError, match=r"unknown feed 'nope' \(known: alpaca, binance, .*yahoo\)"):
        registry.create_feeds(["simulated", "nope"], FeedOptions())
