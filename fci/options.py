"""Config fields that are command-line options: each field of a config dataclass
carries its flag and help text in its metadata (`option`), so one place states
an option, and `fci.cli.add_config_arguments` builds the argparse group from it.

    >>> from dataclasses import dataclass
    >>> @dataclass(frozen=True)
    ... class Schedule:
    ...     epochs: int = option(10, help="training epochs")
    >>> [o.flag for o in config_options(Schedule)]
    ['--epochs']

This module imports nothing from fci, so every config module can use it.
"""

from __future__ import annotations

import dataclasses
from dataclasses import MISSING
from typing import Any, Callable, Sequence

__all__ = ["option", "ConfigOption", "config_options", "flag_of"]


def option(default: Any = MISSING, *, help: str, flag: str | None = None, parse: Callable[[str], Any] | None = None,
           choices: Sequence[Any] | None = None, metavar: str | None = None, regime: bool = False,
           shown: str | None = None, default_factory: Any = MISSING) -> Any:
    """A dataclass field that is also a command-line option.

    Args:
        default: as for `dataclasses.field`.
        default_factory: as for `dataclasses.field` (instead of `default`).
        help: the option's help text (one line; the default is added when shown).
        flag: its flag; default `--` + the field name with `-` for `_`.
        parse: the string -> value conversion (default: the default value's type).
        choices: the allowed values, if a closed set.
        metavar: the placeholder shown in --help.
        regime: one of the task and training options every Boolean command takes
            (the "regime" of a study: recorded in summary.json and in captions).
        shown: how --help shows the default, where the value itself would not say
            what it means (e.g. "C*k" for a None that resolves to it).
    """
    meta = {"option": {"help": help, "flag": flag, "parse": parse, "choices": tuple(choices) if choices else None,
                       "metavar": metavar, "regime": regime,
                       "shown": shown}}
    if default_factory is not MISSING:
        return dataclasses.field(default_factory=default_factory, metadata=meta)
    return dataclasses.field(default=default, metadata=meta)


@dataclasses.dataclass(frozen=True)
class ConfigOption:
    """One config field as a command-line option."""

    field: str
    flag: str
    help: str
    parse: Callable[[str], Any] | None
    choices: tuple[Any, ...] | None
    metavar: str | None
    regime: bool
    default: Any
    shown: str | None = None

    @property
    def dest(self) -> str:
        """The argparse destination of the flag."""
        return self.flag[2:].replace("-", "_")


def config_options(cls: type) -> list[ConfigOption]:
    """The options of a config dataclass, in field order; a field without `option`
    metadata is not an option (and `fci.cli` refuses to build a parser from a class
    with such a field, so none is forgotten)."""
    out = []
    for f in dataclasses.fields(cls):
        meta = f.metadata.get("option")
        if meta is None:
            continue
        default = f.default if f.default is not MISSING else (f.default_factory() if f.default_factory is not MISSING else None)
        out.append(ConfigOption(f.name, meta["flag"] or "--" + f.name.replace("_", "-"), meta["help"], meta["parse"],
                                meta["choices"], meta["metavar"], meta["regime"], default, meta.get("shown")))
    return out


def flag_of(field: str, *classes: type) -> str | None:
    """The flag of config field `field` in the first of `classes` that has it."""
    for cls in classes:
        for o in config_options(cls):
            if o.field == field:
                return o.flag
    return None
