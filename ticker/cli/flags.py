"""Options dataclasses (:mod:`ticker.options`) as argparse flags, and parsed flags back as a typed instance.

Each :func:`~ticker.options.option` field becomes one flag whose default is its ``TICKER_*`` env
twin when that is set (a flag on the command line wins), else the field's default; a value the
field's parser refuses ends the command with one line on stderr and exit status 2.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
from collections.abc import Callable, Mapping
from typing import Any, NoReturn, TypeVar

from ticker.errors import OptionError
from ticker.options import ENV_PREFIX, default_of, nested_help, option_of, truthy

T = TypeVar("T")
Groups = dict[str, argparse._ArgumentGroup]


class Parser(argparse.ArgumentParser):
    """An ArgumentParser whose errors are one line on stderr and exit status 2."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"{self.prog}: error: {message}\n")


def add_flags(
    parser: argparse.ArgumentParser,
    cls: type,
    help: Mapping[str, str] | None = None,
    groups: Groups | None = None,
) -> None:
    """Add a flag to ``parser`` for every option of dataclass ``cls`` (and of its nested ones), in field order.

    ``help`` replaces the help of the fields it names; a field's ``group`` heading is created the
    first time a field names it.
    """
    groups = {} if groups is None else groups
    for f in dataclasses.fields(cls):
        inner = nested_help(f)
        if inner is not None:
            add_flags(
                parser,
                f.default_factory,  # type: ignore[arg-type]
                {**inner, **(help or {})},
                groups,
            )
            continue
        opt = option_of(f)
        if opt is None:  # set by the program, not the command line
            continue
        target: argparse._ActionsContainer = parser
        if opt.group is not None:
            if opt.group not in groups:
                groups[opt.group] = parser.add_argument_group(opt.group)
            target = groups[opt.group]
        default = default_of(f)
        env = os.environ.get(ENV_PREFIX + opt.env) if opt.env else None
        kwargs: dict[str, Any] = {"help": (help or {}).get(f.name, opt.help)}
        if isinstance(default, bool) and opt.parse is None:  # an on/off switch
            kwargs.update(action="store_true", default=default if env is None else truthy(env))
        else:
            if opt.parse is not None:
                kwargs["type"] = _argtype(opt.parse)
            if opt.choices is not None:
                kwargs["choices"] = opt.choices
            if opt.nargs is not None:
                kwargs["nargs"] = opt.nargs
            if default is dataclasses.MISSING:
                default = None
                if not opt.positional:
                    kwargs["required"] = env is None
            kwargs["default"] = default if env is None else env
        if opt.metavar is not None:
            kwargs["metavar"] = opt.metavar
        if opt.positional:
            target.add_argument(f.name, **kwargs)
            continue
        flag = opt.flag or "--" + f.name.replace("_", "-")
        named = flag.lstrip("-").replace("-", "_")
        if named != f.name and not kwargs.keys() & {"metavar", "choices", "action"}:
            kwargs["metavar"] = named.upper()  # what argparse shows for the flag itself
        target.add_argument(flag, dest=f.name, **kwargs)


def read_flags(cls: type[T], ns: argparse.Namespace) -> T:
    """An instance of dataclass ``cls`` from flags :func:`add_flags` declared and argparse parsed.

    ``ValueError`` from the dataclass itself (checks across fields) propagates.
    """
    values: dict[str, Any] = {}
    for f in dataclasses.fields(cls):  # type: ignore[arg-type]
        if nested_help(f) is not None:
            values[f.name] = read_flags(f.default_factory, ns)  # type: ignore[arg-type]
        elif option_of(f) is not None:
            values[f.name] = getattr(ns, f.name)
    return cls(**values)


def _argtype(parse: Callable[[str], Any]) -> Callable[[str], Any]:
    """``parse`` as an argparse type: an :class:`OptionError` message is shown as is."""

    def conv(text: str) -> Any:
        try:
            return parse(text)
        except OptionError as exc:
            raise argparse.ArgumentTypeError(str(exc)) from None

    conv.__name__ = getattr(parse, "__name__", repr(parse))  # "invalid <name> value" for other errors
    return conv
