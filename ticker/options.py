"""Typed options: a dataclass field that carries its default, help, flag and ``TICKER_*`` env twin once.

::

    @dataclass(slots=True)
    class Config:
        port: int = option(8888, "port to listen on; 0 picks one", env="PORT", parse=port)

The command line (:mod:`ticker.cli.flags`) turns such a dataclass into flags and back into an
instance; everything else only sees the typed instance. Value parsers raise
:class:`~ticker.errors.OptionError`, whose message is shown as is; any other ``ValueError`` reads
"invalid <parser name> value".
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from ticker.errors import OptionError

ENV_PREFIX = "TICKER_"
_OPTION = "ticker.option"
_NESTED = "ticker.nested"


@dataclass(frozen=True, slots=True)
class Option:
    """What the command line needs to know about one field, besides its name and default."""

    help: str | None = None
    #: Name of the environment twin without ``TICKER_`` (``"PORT"`` → ``TICKER_PORT``); None: none.
    env: str | None = None
    #: ``--flag``; None: ``--`` and the field name with dashes. A positional has ``positional`` set.
    flag: str | None = None
    #: Text → value; None keeps the text (a ``bool`` default makes an on/off switch instead).
    parse: Callable[[str], Any] | None = None
    choices: tuple[str, ...] | None = None
    #: Heading the flag is listed under in ``--help``; None: the command's own options.
    group: str | None = None
    metavar: str | None = None
    positional: bool = False
    #: ``"+"`` for a positional taking one or more values.
    nargs: str | None = None


def option(
    default: Any = dataclasses.MISSING,
    help: str | None = None,
    *,
    env: str | None = None,
    flag: str | None = None,
    parse: Callable[[str], Any] | None = None,
    choices: tuple[str, ...] | None = None,
    group: str | None = None,
    metavar: str | None = None,
    positional: bool = False,
    nargs: str | None = None,
) -> Any:
    """A dataclass field declaring one option; no ``default`` makes it required (unless its env twin is set).

    A list default is copied for each instance.
    """
    meta = {_OPTION: Option(help, env, flag, parse, choices, group, metavar, positional, nargs)}
    if isinstance(default, list):
        return dataclasses.field(default_factory=lambda: list(default), metadata=meta)
    return dataclasses.field(default=default, metadata=meta)


def nested(cls: type, help: Mapping[str, str] | None = None) -> Any:
    """A field holding another options dataclass, whose flags join the command's; ``help`` overrides by field name."""
    return dataclasses.field(default_factory=cls, metadata={_NESTED: dict(help or {})})


def option_of(f: dataclasses.Field[Any]) -> Option | None:
    """The :class:`Option` declared on field ``f``, if any."""
    return f.metadata.get(_OPTION)


def nested_help(f: dataclasses.Field[Any]) -> dict[str, str] | None:
    """For a :func:`nested` field, its help overrides (maybe empty); None for any other field."""
    return f.metadata.get(_NESTED)


def default_of(f: dataclasses.Field[Any]) -> Any:
    """The default of field ``f`` (a fresh one for a factory), or ``dataclasses.MISSING``."""
    if f.default_factory is not dataclasses.MISSING:
        return f.default_factory()
    return f.default


# -- value parsers shared by the commands ----------------------------------------------------


def positive(kind: Callable[[str], Any]) -> Callable[[str], Any]:
    """A parser to ``kind`` that refuses zero and negative values."""

    def conv(text: str) -> Any:
        value = kind(text)
        if value <= 0:
            raise OptionError(f"must be positive, got {text!r}")
        return value

    conv.__name__ = kind.__name__
    return conv


def port(text: str) -> int:
    """A TCP port, 0 to 65535 (0 picks a free one)."""
    value = int(text)
    if not 0 <= value <= 65535:
        raise OptionError(f"port must be 0-65535, got {text!r}")
    return value


def optional_port(text: str) -> int | None:
    """A port, or ``None`` for an empty value or ``none`` (a listener that is off)."""
    return None if text.strip().lower() in ("", "none") else port(text)


def truthy(text: str) -> bool:
    """An on/off switch's environment value: ``1``, ``true``, ``yes`` or ``on`` is on."""
    return text.strip().lower() in ("1", "true", "yes", "on")


LOG_LEVELS = ("debug", "info", "warning", "error")


@dataclass(frozen=True, slots=True)
class ProcessOptions:
    """How a long-running command (``serve``, ``feed``, ``record``) logs and which event loop it runs."""

    log_level: str = option("info", env="LOG_LEVEL", parse=str.lower, choices=LOG_LEVELS)
    log_format: str = option(
        "text",
        "log lines as text, or json: one object per line (text)",
        env="LOG_FORMAT",
        parse=str.lower,
        choices=("text", "json"),
    )
    loop: str = option(
        "auto",
        "event loop implementation (auto: uvloop when installed)",
        env="LOOP",
        choices=("auto", "uvloop", "asyncio"),
    )
    allocator: str = option(
        "auto",
        "memory allocator: jemalloc gives memory freed after a burst of connections back to the system "
        "(auto: jemalloc when libjemalloc is installed, else pymalloc, Python's own)",
        env="ALLOCATOR",
        parse=str.lower,
        choices=("auto", "jemalloc", "pymalloc"),
    )
