"""The ``ticker`` command line (``serve``, ``feed``, ``record``, ``watch``); the console script runs :func:`main`."""

from ticker.cli.main import main

__all__ = ["main"]
