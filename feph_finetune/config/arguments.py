"""The arguments of a :class:`feph_finetune.Session` (or ``run_matrix``/``plan_matrix``) checked
for their types before anything else, each problem named as the caller wrote the argument
(``only=[1]`` in Python, ``--only`` on the command line: :class:`ArgumentNames`), so that a
mistake in a script reads as one on the command line does, not as a TypeError deep inside.
Their values are checked later, with the configuration. No TensorFlow here.
"""

from __future__ import annotations

from pathlib import PurePath
from typing import Any, Iterable, Iterator, Mapping

from rich.console import Console

from feph_finetune.config.reading import ArgumentNames, ConfigError, Problem
from feph_finetune.data.user_files import empty_path_problem


def check_arguments(names: ArgumentNames, **arguments: Any) -> None:
    """Refuse :class:`feph_finetune.Session`'s arguments of the wrong type, each named as ``names`` names it
    (``only=[1]``): ConfigError listing every one, so that a mistake in a script reads as one on
    the command line does, not as a TypeError deep inside. Their values are checked later, with
    the configuration."""
    problems = [Problem(names(name) if name == "config" else names(name, value), message)  # a config is too long to quote
                for name, value in arguments.items() for message in _argument_problems(name, value)]
    if problems:
        raise ConfigError(problems)


#: What each argument of :class:`feph_finetune.Session` takes, for :func:`check_arguments`'s messages.
_TAKES = {
    "config": "the path of an experiments TOML (str or pathlib.Path) or a dict of its tables",
    "only": "an experiment name or a list of them",
    "overrides": "a KEY=VALUE string or a list of them, such as ['seed=4']",
    "executor": "an executor's name, such as 'inline'",
    "devices": "GPU indices: a list such as [0, 1] or the text '0,1'",
    "force": "True or False",
    "output": "a folder's path (str or pathlib.Path)",
    "track": "a tracking plugin's name or a list of them",
    "console": "a rich.console.Console",
    "warn": "a function of one line of text",
}


def _argument_problems(name: str, value: Any) -> list[str]:
    """What is wrong with the type of argument ``name``'s ``value`` (a list already if it was an
    iterable: :func:`listed`); None is allowed but for ``config`` (the defaults)."""
    wrong = [f"expected {_TAKES[name]}, got {'None' if value is None else type(value).__name__}"]
    if value is None:
        return wrong if name == "config" else []
    if name in ("config", "output") and (empty := empty_path_problem(value)):
        return [f"expected {_TAKES[name]}, got {empty}"]
    if name == "config":
        if isinstance(value, Mapping):
            return [f"keys of a configuration dict must be strings: {key!r} in {where or 'the top level'}" for where, key in _non_string_keys(value)]
        return [] if isinstance(value, (str, PurePath)) else wrong
    if name in _ITEM_TYPES:
        if isinstance(value, str):
            return []
        if not isinstance(value, list):
            return wrong
        item_type, item_name = _ITEM_TYPES[name]
        return [] if all(isinstance(item, item_type) and not isinstance(item, bool) for item in value) else [f"expected {_TAKES[name]}, got an item that is not {item_name}"]
    takes = {"executor": str, "force": bool, "output": (str, PurePath), "console": Console}
    return [] if (callable(value) if name == "warn" else isinstance(value, takes[name])) else wrong


#: The arguments that take a list (or one text), with the type of their items.
_ITEM_TYPES = {"only": (str, "a string"), "overrides": (str, "a string"), "track": (str, "a string"), "devices": (int, "an integer")}


def listed(value: Any) -> Any:
    """A list of ``value``'s items when it is an iterable other than text or a dict (a generator
    is read once), else ``value`` as it is."""
    return list(value) if isinstance(value, Iterable) and not isinstance(value, (str, bytes, Mapping)) else value


def _non_string_keys(tables: Mapping, where: str = "") -> Iterator[tuple[str, Any]]:
    """(dotted place, key) of each key that is not a string in ``tables`` and the tables in it."""
    for key, value in tables.items():
        if not isinstance(key, str):
            yield where, key
        elif isinstance(value, Mapping):
            yield from _non_string_keys(value, f"{where}.{key}" if where else key)
