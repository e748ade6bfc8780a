"""Value types of the command line's flags, shared by every ``ticker`` subcommand."""

from __future__ import annotations

import argparse
import os
from collections.abc import Callable
from typing import Any


def env(name: str, default: object) -> object:
    """The ``TICKER_<NAME>`` environment value, or ``default``."""
    return os.environ.get(f"TICKER_{name}", default)


def positive(kind: Callable[[str], Any]) -> Callable[[str], Any]:
    """A converter to ``kind`` that refuses zero and negative values."""

    def conv(text: str) -> Any:
        value = kind(text)
        if value <= 0:
            raise argparse.ArgumentTypeError(f"must be positive, got {text!r}")
        return value

    conv.__name__ = kind.__name__
    return conv


def port(text: str) -> int:
    """A TCP port, 0 to 65535 (0 picks a free one)."""
    value = int(text)
    if not 0 <= value <= 65535:
        raise argparse.ArgumentTypeError(f"port must be 0-65535, got {text!r}")
    return value


def optional_port(text: str) -> int | None:
    """A port, or ``None`` for an empty value or ``none`` (a listener that is off)."""
    return None if text.strip().lower() in ("", "none") else port(text)
