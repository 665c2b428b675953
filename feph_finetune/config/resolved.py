"""A run's resolved configuration as a typed record: :class:`RunConfig`.

Its fields are generated from :data:`feph_finetune.config.schema.EXPERIMENT_OPTIONS`, so every
key is declared once: a field per key, in the schema's order, typed from its declaration's
default (or ``kind``), defaulting to it, with the declaration in the field's metadata
(``dataclasses.fields(RunConfig)[i].metadata["option"]``; ``python -m feph_finetune plugins
--settings`` lists them with their meaning). The matrix builder
(:mod:`feph_finetune.config.matrix`) resolves an experiment as a dict (inheritance, grid values,
the model's input size, plugin options with their defaults) and makes the record once that is
done.

The record is frozen, and is also a read-only :class:`~collections.abc.Mapping` of key to value
(``config["batch_size"]``, ``config.get("timeout")``): plugins receive it as
``RunContext.config`` and ``TrackedRun.config``, documented as read-only mappings. Its values are
JSON values (the tables and arrays are plain dicts and lists, not to be changed), so
:meth:`RunConfig.to_json` is what ``config.json``'s ``config`` holds, key for key and in the same
order, and :meth:`RunConfig.from_json` reads it back: ``from_json(to_json(c)) == c``.

No TensorFlow here.
"""

from __future__ import annotations

import copy
import dataclasses
from collections.abc import Mapping
from typing import Any, Iterator

from feph_finetune.config.options import Option, option_problems
from feph_finetune.config.schema import EXPERIMENT_OPTIONS


class ConfigRecord(Mapping):
    """Read-only mapping access by key and a JSON round trip, for a frozen dataclass whose values
    are JSON values."""

    def __getitem__(self, key: str) -> Any:
        if key not in self.__dataclass_fields__:
            raise KeyError(key)
        return getattr(self, key)

    def __iter__(self) -> Iterator[str]:
        return iter(self.__dataclass_fields__)

    def __len__(self) -> int:
        return len(self.__dataclass_fields__)

    def to_json(self) -> dict[str, Any]:
        """The record as a JSON object (a fresh dict, its values copied), in field order."""
        return {name: copy.deepcopy(getattr(self, name)) for name in self.__dataclass_fields__}

    @classmethod
    def from_json(cls, data: Mapping[str, Any]):
        """The record of a JSON object as :meth:`to_json` gives it. A key it lacks takes its
        declared default (a ``config.json`` written before that key existed). ValueError
        naming each unknown key and each value its declaration refuses (paths are not checked:
        a file named then may be gone now); TypeError when ``data`` is not a mapping (a JSON
        text must be parsed first: ``json.loads``)."""
        if not isinstance(data, Mapping):
            raise TypeError(f"{cls.__name__}.from_json takes the JSON object as a dict (json.loads of the text), got {type(data).__name__}")
        problems = [f"unknown key {key!r}" for key in data if key not in cls.__dataclass_fields__]
        for key, value in data.items():
            option = _declaration(cls, key) if key in cls.__dataclass_fields__ else None
            if option is not None and not (value is None and option.default is None):  # None: unset (seed)
                problems += [f"{key}: {message}" for message in option_problems(value, option, check_paths=False)]
        if problems:
            raise ValueError(f"not a {cls.__name__}: " + "; ".join(problems))
        return cls(**{key: copy.deepcopy(value) for key, value in data.items()})


def _declaration(cls: type, key: str) -> Option:
    return cls.__dataclass_fields__[key].metadata["option"]


def _field_type(option: Option) -> Any:
    """The Python type of a declaration's values: its default's type, or ``kind`` where the
    default does not show it (None: unset; an empty list)."""
    if isinstance(option.default, list):
        item = option.kind or (type(option.default[0]) if option.default else Any)
        return list[item]
    if isinstance(option.default, dict):
        return dict[str, Any]
    if option.default is None:
        return option.kind | None if option.kind else Any
    return type(option.default)


def _field(key: str, option: Option) -> tuple[str, Any, dataclasses.Field]:
    default, metadata = option.default, {"help": option.help, "option": option}
    if isinstance(default, (list, dict)):
        return key, _field_type(option), dataclasses.field(default_factory=lambda: copy.deepcopy(default), metadata=metadata)
    return key, _field_type(option), dataclasses.field(default=default, metadata=metadata)


def _record_class(name: str, declarations: Mapping[str, Option], doc: str) -> type:
    """A frozen :class:`ConfigRecord` dataclass with one field per declaration."""
    fields = [_field(key, option) for key, option in declarations.items()]
    return dataclasses.make_dataclass(name, fields, bases=(ConfigRecord,), frozen=True, namespace={"__doc__": doc, "__module__": __name__})


RunConfig = _record_class(
    "RunConfig",
    EXPERIMENT_OPTIONS,
    """A run's resolved configuration: one field per key of an experiment, as declared in
    :data:`feph_finetune.config.schema.EXPERIMENT_OPTIONS` (its help says what each means), the
    values after inheritance, grid expansion and defaults: ``seed`` is the run's, ``label`` is
    set, ``input_size`` is the model's when the TOML sets none, and ``options`` holds the options
    of the plugins the run uses, their defaults filled in. Frozen; also a read-only mapping of key
    to value; :meth:`to_json` and :meth:`from_json` convert it to and from ``config.json``'s
    ``config``.""",
)
