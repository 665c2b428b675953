"""A pretrained classifier's classes matched to a dataset's by name: the one rule that both the
configuration check (``--dry-run``) and the No-FT run apply.

A pretrained expression classifier keeps its own class names (Savchenko's seven or eight, the
names a converted file's ``.json`` records, a ``pretrained_classes`` option). No-FT evaluates it
on a dataset by taking, for each of the dataset's classes, the output of the same name, compared
ignoring case (``Happy`` is ``happy``); outputs the dataset lacks (``contempt``) are dropped. A
dataset class no output has cannot be evaluated: the configuration is refused, naming it.
No TensorFlow here.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Sequence


def class_key(name: str) -> str:
    """What two class names must share to be the same class: the name ignoring case."""
    return name.casefold()


def class_names_problem(names: Any) -> str | None:
    """What makes ``names`` unusable as the class of each output of a pretrained classifier, in
    output order, or None: not a non-empty list of texts, an empty name, or a name given twice
    (ignoring case, as :func:`map_classes` compares names). Any names are allowed otherwise: which
    of them a dataset has is decided per dataset (:func:`map_classes`)."""
    if not isinstance(names, (list, tuple)) or not names or not all(isinstance(name, str) for name in names):
        return f"must be a non-empty list of class names, one per output of the pretrained model, in its order; got {names!r}"
    if any(not name.strip() for name in names):
        return f"an empty class name in {list(names)}"
    repeated = _repeated(names)
    if repeated:
        return f"names a class twice ({', '.join(map(repr, repeated))}; names are compared ignoring case): {list(names)}"
    return None


@dataclass(frozen=True)
class ClassMapping:
    """How a pretrained classifier's outputs become a dataset's classes.

    - ``columns``: for each dataset class found among the outputs, in the dataset's order, the
      index of its output (all of the dataset's classes when ``missing`` is empty).
    - ``dropped``: the model's classes the dataset lacks, in output order (No-FT drops their
      outputs and divides the others by their sum).
    - ``missing``: the dataset's classes the model lacks, in the dataset's order (No-FT is then
      impossible).
    """

    columns: tuple[int, ...]
    dropped: tuple[str, ...]
    missing: tuple[str, ...]


def map_classes(model_classes: Sequence[str], dataset_classes: Sequence[str]) -> ClassMapping:
    """Match ``model_classes`` (a classifier's, in output order) to ``dataset_classes`` by name,
    ignoring case. Raises ValueError when the model's names are unusable
    (:func:`class_names_problem`) or two dataset classes differ only in case (one output cannot
    be both)."""
    problem = class_names_problem(list(model_classes))
    if problem:
        raise ValueError(f"the pretrained model's classes: {problem}")
    repeated = _repeated(dataset_classes)
    if repeated:
        raise ValueError(f"the dataset's classes {', '.join(map(repr, repeated))} differ from others only in case; "
                         "a pretrained model's output cannot be mapped to both")
    outputs = {class_key(name): index for index, name in enumerate(model_classes)}
    wanted = {class_key(name) for name in dataset_classes}
    return ClassMapping(
        columns=tuple(outputs[class_key(name)] for name in dataset_classes if class_key(name) in outputs),
        dropped=tuple(name for name in model_classes if class_key(name) not in wanted),
        missing=tuple(name for name in dataset_classes if class_key(name) not in outputs),
    )


def _repeated(names: Sequence[str]) -> list[str]:
    """The names that repeat an earlier one, ignoring case, in order."""
    seen: set[str] = set()
    repeated = []
    for name in names:
        if class_key(name) in seen:
            repeated.append(name)
        seen.add(class_key(name))
    return repeated
